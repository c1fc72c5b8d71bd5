#!/bin/sh
# build-deb.sh - build the Debian package relevo_VERSION_ARCH.deb (used by `make deb`).
#
#   scripts/build-deb.sh BIN [OUTDIR]
#
# A native package built with dpkg-deb (no debhelper): scripts/install.sh lays the
# files out as Debian wants them (/usr/sbin, /lib/systemd/system, /usr/share/man,
# /etc/relevo), the binary is stripped as dh_strip would, man pages and changelog
# are gzip -9n, dependencies come from dpkg-shlibdeps, and the maintainer scripts
# are packaging/debian/{postinst,prerm,postrm} (the relevo user, /var/lib/relevo).
# The version is the one BIN prints (relevo --version: CMake's project VERSION).
# Prints the path of the package on stdout.
set -eu
BIN=${1:?usage: build-deb.sh BIN [OUTDIR]}
OUT=$(cd "${2:-.}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
VERSION=$("$BIN" --version | sed -n 's/^relevo //p')
ARCH=$(dpkg --print-architecture)
MAINT="relevo maintainers <maintainers@relevo.example.org>"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/root
DESTDIR=$ROOT PREFIX=/usr UNITDIR=/lib/systemd/system SYSCONFDIR=/etc MANDIR=/usr/share/man \
	"$SRC/scripts/install.sh" "$BIN" >/dev/null
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$ROOT/usr/sbin/relevo"
gzip -9n "$ROOT/usr/share/man/man8/relevo.8" "$ROOT/usr/share/man/man5/relevo.yaml.5"

DOC=$ROOT/usr/share/doc/relevo
install -d -m 0755 "$DOC"
install -m 0644 "$SRC/packaging/debian/copyright" "$DOC/copyright"
DATE=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || date +%s)}")
cat >"$STAGE/changelog" <<CHANGELOG
relevo ($VERSION) unstable; urgency=medium

  * Built from the relevo repository by make deb; see its git log.

 -- $MAINT  $DATE
CHANGELOG
gzip -9nc "$STAGE/changelog" >"$DOC/changelog.gz"
chmod 0644 "$DOC/changelog.gz"

# dpkg-shlibdeps wants a debian/control to read; this minimal one serves it.
mkdir -p "$STAGE/debian"
printf 'Source: relevo\n\nPackage: relevo\nArchitecture: any\n' >"$STAGE/debian/control"
SHLIBS=$(cd "$STAGE" && dpkg-shlibdeps -O -e root/usr/sbin/relevo 2>/dev/null |
	sed -n 's/^shlibs:Depends=//p')

install -d -m 0755 "$ROOT/DEBIAN"
for s in postinst prerm postrm; do
	install -m 0755 "$SRC/packaging/debian/$s" "$ROOT/DEBIAN/$s"
done
echo /etc/relevo/relevo.yaml.example >"$ROOT/DEBIAN/conffiles"
cat >"$ROOT/DEBIAN/control" <<CONTROL
Package: relevo
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINT
Installed-Size: $(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
Depends: adduser, $SHLIBS
Section: mail
Priority: optional
Description: self-hosted SMTP relay with DKIM signing, durable queue and HTTP API
 relevo accepts mail from authenticated clients (SMTP AUTH over TLS on ports
 587 and 465) and from applications through a JSON API, queues it durably,
 signs it with DKIM (RSA and Ed25519) for the sender's domain and delivers it to
 each recipient domain's mail servers, with retries and RFC 3464 bounces.
 .
 Every step of every message is recorded as an event, readable through the API
 and pushed to signed webhooks. The package installs the relevo(8) command, a
 sandboxed systemd unit running as the relevo system user, and a commented
 sample configuration in /etc/relevo.
CONTROL
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
	xargs -0 md5sum) >"$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles" "$ROOT/DEBIAN/md5sums"

DEB=$OUT/relevo_${VERSION}_$ARCH.deb
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
