#!/bin/sh
# deps.sh - install relevo's build and test dependencies from Debian packages.
# Idempotent: installs only what is missing, so `make`, `make run` and `make test`
# can call it every time at almost no cost.
set -eu

PKGS="build-essential cmake pkg-config clang \
libevent-dev libssl-dev libunbound-dev libsqlite3-dev libyaml-dev libsodium-dev \
libjansson-dev libcmocka-dev libcrypt-dev libcurl4-openssl-dev curl \
openssl swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl python3 python3-pytest python3-pytest-xdist python3-aiosmtpd python3-dnslib python3-dkim \
python3-yaml systemd dpkg-dev lintian man-db groff-base adduser python3-prometheus-client"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: missing packages:$missing (run as root, or install them)" >&2
	exit 1
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
