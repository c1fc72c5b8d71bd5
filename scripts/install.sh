#!/bin/sh
# install.sh - install relevo (used by `make install` and scripts/build-deb.sh).
#
#   scripts/install.sh BIN
#
# installs, under $DESTDIR (default: none, the live system):
#   $SBINDIR/relevo                          the binary BIN           (PREFIX/sbin)
#   $UNITDIR/relevo.service                  the systemd unit         (PREFIX/lib/systemd/system)
#   $SYSCONFDIR/relevo/relevo.yaml.example   the commented sample     (/etc)
#   $MANDIR/man8/relevo.8, man5/relevo.yaml.5  generated from README.md (PREFIX/share/man)
# PREFIX defaults to /usr/local. Never touches an existing relevo.yaml, creates no
# user (see README, "Running it for real"), and installs no `sendmail` link: on Debian
# /usr/sbin/sendmail belongs to the installed MTA package.
set -eu
BIN=${1:?usage: install.sh BIN}
SRC=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SBINDIR=${SBINDIR:-$PREFIX/sbin}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
SYSCONFDIR=${SYSCONFDIR:-/etc}
MANDIR=${MANDIR:-$PREFIX/share/man}

VERSION=$("$BIN" --version | sed -n 's/^relevo //p')
[ -n "$VERSION" ] || { echo "install.sh: $BIN --version printed no version" >&2; exit 1; }

MAN=$(mktemp -d)
trap 'rm -rf "$MAN"' EXIT
"$SRC/scripts/gen-man.py" "$SRC/README.md" "$MAN" "$VERSION"

install -d -m 0755 "$DESTDIR$SBINDIR" "$DESTDIR$UNITDIR" "$DESTDIR$SYSCONFDIR/relevo" \
	"$DESTDIR$MANDIR/man8" "$DESTDIR$MANDIR/man5"
install -m 0755 "$BIN" "$DESTDIR$SBINDIR/relevo"
sed "s|@SBINDIR@|$SBINDIR|g" "$SRC/packaging/relevo.service.in" >"$MAN/relevo.service"
install -m 0644 "$MAN/relevo.service" "$DESTDIR$UNITDIR/relevo.service"
install -m 0644 "$SRC/packaging/relevo.yaml.example" "$DESTDIR$SYSCONFDIR/relevo/relevo.yaml.example"
install -m 0644 "$MAN/relevo.8" "$DESTDIR$MANDIR/man8/relevo.8"
install -m 0644 "$MAN/relevo.yaml.5" "$DESTDIR$MANDIR/man5/relevo.yaml.5"
echo "install.sh: relevo $VERSION: $DESTDIR$SBINDIR/relevo, $DESTDIR$UNITDIR/relevo.service, $DESTDIR$SYSCONFDIR/relevo/relevo.yaml.example, man pages in $DESTDIR$MANDIR"
