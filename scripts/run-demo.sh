#!/bin/sh
# run-demo.sh - start relevo on loopback with a demo configuration (used by `make run`).
#
# Everything lives in ./run/: a self-signed certificate, the config, the data
# directory (spool and SQLite store). run/relevo.yaml is written only when it is
# missing, so edits to it are kept (delete it to get a fresh one). A demo account,
# its API key and its DKIM keys are created once. The ports of a new
# run/relevo.yaml come from RELEVO_DEMO_SUBMISSION_PORT (2587),
# RELEVO_DEMO_SUBMISSIONS_PORT (2465), RELEVO_DEMO_RELAY_PORT (2525),
# RELEVO_DEMO_HTTP_PORT (8025) and RELEVO_DEMO_METRICS_PORT (9025).
#
# The daemon runs in the foreground (its log on stderr); the banner, built from the
# listeners it reports, is printed once it has started (event=started), never for
# a start that failed. Ctrl-C stops it gracefully; the exit status is the daemon's.
set -eu
BIN=${1:-build/relevo}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
cd "$(dirname "$0")/.."
RUN=${RELEVO_DEMO_DIR:-$PWD/run}
CONF=$RUN/relevo.yaml
mkdir -p "$RUN"
chmod 700 "$RUN"

SUB_PORT=${RELEVO_DEMO_SUBMISSION_PORT:-2587}
SUBS_PORT=${RELEVO_DEMO_SUBMISSIONS_PORT:-2465}
RELAY_PORT=${RELEVO_DEMO_RELAY_PORT:-2525}
HTTP_PORT=${RELEVO_DEMO_HTTP_PORT:-8025}
METRICS_PORT=${RELEVO_DEMO_METRICS_PORT:-9025}

if [ ! -f "$RUN/cert.pem" ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=relay.localhost" \
		-addext "subjectAltName=DNS:relay.localhost,DNS:localhost,IP:127.0.0.1" \
		-keyout "$RUN/key.pem" -out "$RUN/cert.pem" 2>/dev/null
	chmod 600 "$RUN/key.pem"
fi

if [ -f "$CONF" ]; then
	if env | grep -q '^RELEVO_DEMO_[A-Z]*_PORT='; then
		echo "run-demo.sh: $CONF exists, RELEVO_DEMO_*_PORT ignored (delete it to write a new one)" >&2
	fi
else
	cat >"$CONF" <<YAML
# relevo demo configuration, written by scripts/run-demo.sh when missing: edit it
# freely (it is kept), or delete it to get a fresh one.
hostname: relay.localhost
data_dir: $RUN/data
listen:
  - address: 127.0.0.1:$SUB_PORT
    mode: submission
  - address: 127.0.0.1:$SUBS_PORT
    mode: submissions
  - address: 127.0.0.1:$RELAY_PORT
    mode: relay
trusted_networks: [127.0.0.0/8]
tls: {cert: $RUN/cert.pem, key: $RUN/key.pem}
smtp:
  max_message_size: 26214400
  max_recipients: 1000
delivery:
  mode: sandbox            # outgoing mail is written to run/data/sandbox/, never sent
http:
  listen: [127.0.0.1:$HTTP_PORT]   # the JSON API (/v1)
  metrics_listen: 127.0.0.1:$METRICS_PORT   # Prometheus /metrics
YAML
fi

"$BIN" check-config -c "$CONF" >/dev/null
if ! "$BIN" user list -c "$CONF" 2>/dev/null | grep -q '^demo\b'; then
	printf 'demo-password\n' | "$BIN" user add demo --domain example.com -c "$CONF"
fi
# An API key for the demo account, kept in run/ (relevo shows a key only once).
if [ ! -s "$RUN/demo-apikey" ]; then
	"$BIN" apikey create demo --name demo -c "$CONF" 2>/dev/null >"$RUN/demo-apikey"
	chmod 600 "$RUN/demo-apikey"
fi
KEY=$(cat "$RUN/demo-apikey")
# Register the sending domain: relevo signs its mail with DKIM (RSA and Ed25519).
if ! "$BIN" domain list -c "$CONF" 2>/dev/null | grep -q '^example\.com\b'; then
	"$BIN" domain add example.com -c "$CONF" >/dev/null
fi

# rel PATH - PATH relative to the checkout when it is inside it (for the banner).
rel() {
	case $1 in "$PWD"/*) printf '%s\n' "${1#"$PWD"/}" ;; *) printf '%s\n' "$1" ;; esac
}

# banner LISTENERS - what to try, from the listeners the daemon reported
# ("ADDRESS MODE" lines).
banner() {
	conf=$(rel "$CONF")
	bin=$(rel "$BIN")
	sub=$(printf '%s\n' "$1" | awk '$2 == "submission" { print $1; exit }')
	web=$(printf '%s\n' "$1" | awk '$2 == "http" { print $1; exit }')
	echo
	echo "relevo is running on loopback with the demo configuration in $conf."
	echo
	printf '%s\n' "$1" | while read -r addr mode; do
		case $mode in
		submission) printf '  %-30s %s\n' "submission (STARTTLS + AUTH)" "$addr" ;;
		submissions) printf '  %-30s %s\n' "submissions (implicit TLS)" "$addr" ;;
		relay) printf '  %-30s %s\n' "relay (trusted_networks)" "$addr" ;;
		http)
			# The API's index if this build has one, else its OpenAPI document.
			url=http://$addr/v1/
			curl -sf -o /dev/null "$url" || url=http://$addr/v1/openapi.json
			printf '  %-30s %s\n' "HTTP API" "$url" ;;
		metrics) printf '  %-30s %s\n' "metrics (Prometheus)" "http://$addr/metrics" ;;
		local) printf '  %-30s %s\n' "local submission (sendmail)" "$addr" ;;
		esac
	done
	printf '  %-30s %s\n' "demo account" "demo / demo-password, may send as @example.com"
	printf '  %-30s %s\n' "demo API key" "$KEY (also in $(rel "$RUN")/demo-apikey)"
	if [ -n "$sub" ]; then
		cat <<MSG

Send a first message from another terminal:

  swaks --server $sub -tls --auth-user demo --auth-password demo-password \\
        --from you@example.com --to friend@example.org
MSG
	fi
	if [ -n "$web" ]; then
		cat <<MSG

or through the HTTP API:

  curl -s http://$web/v1/messages -H "Authorization: Bearer $KEY" \\
       -H 'Content-Type: application/json' \\
       -d '{"from": "you@example.com", "to": ["friend@example.org"], "subject": "Hi", "text": "Hello"}'

and what happened to it: curl -s http://$web/v1/events -H "Authorization: Bearer $KEY"
MSG
	fi
	cat <<MSG

The demo runs in sandbox mode: instead of going to the recipient's servers, each
outgoing message is written, DKIM-signed, to $(rel "$RUN")/data/sandbox/ID-DOMAIN.eml.
The queue (empty once the message is "delivered"): $bin queue list -c $conf
The DNS records example.com would publish: $bin domain records example.com -c $conf

Press Ctrl-C to stop.

MSG
}

# The daemon's log goes through a FIFO to this shell, which echoes it and prints the
# banner at event=started. Ctrl-C reaches the daemon from the terminal (it drains
# and exits); SIGTERM or SIGHUP to this script is passed on.
FIFO=$RUN/.serve-log
rm -f "$FIFO"
mkfifo -m 600 "$FIFO"
"$BIN" serve -c "$CONF" 2>"$FIFO" &
PID=$!
trap 'kill -TERM "$PID" 2>/dev/null || true' TERM HUP
trap ':' INT
started=false
listeners=""
while :; do
	while IFS= read -r line; do
		printf '%s\n' "$line" >&2
		case $line in
		*event=listening*)
			addr=$(printf '%s\n' "$line" | sed -n 's/.*address=\([^ ]*\).*/\1/p')
			mode=$(printf '%s\n' "$line" | sed -n 's/.*mode=\([a-z]*\).*/\1/p')
			listeners="$listeners$addr $mode
" ;;
		*event=started*)
			if ! $started; then
				started=true
				banner "$listeners"
			fi ;;
		esac
	done
	kill -0 "$PID" 2>/dev/null || break
done <"$FIFO"
rm -f "$FIFO"
status=0
wait "$PID" || status=$?
if ! $started; then
	echo "run-demo.sh: relevo did not start (exit status $status): see its errors above" >&2
	[ "$status" -ne 0 ] || status=1
fi
exit "$status"
