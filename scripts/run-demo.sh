#!/bin/sh
# run-demo.sh - start relevo on loopback with a demo configuration (used by `make run`).
#
# Everything lives in ./run/: a self-signed certificate, the config, the data
# directory (spool and SQLite store). A demo account is created once. The daemon
# runs in the foreground; Ctrl-C stops it gracefully.
set -eu
BIN=${1:-build/relevo}
cd "$(dirname "$0")/.."
RUN=$PWD/run
mkdir -p "$RUN"
chmod 700 "$RUN"

SUB_PORT=${RELEVO_DEMO_SUBMISSION_PORT:-2587}
SUBS_PORT=${RELEVO_DEMO_SUBMISSIONS_PORT:-2465}
RELAY_PORT=${RELEVO_DEMO_RELAY_PORT:-2525}
HTTP_PORT=${RELEVO_DEMO_HTTP_PORT:-8025}

if [ ! -f "$RUN/cert.pem" ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=relay.localhost" \
		-addext "subjectAltName=DNS:relay.localhost,DNS:localhost,IP:127.0.0.1" \
		-keyout "$RUN/key.pem" -out "$RUN/cert.pem" 2>/dev/null
	chmod 600 "$RUN/key.pem"
fi

cat > "$RUN/relevo.yaml" <<YAML
# relevo demo configuration, written by scripts/run-demo.sh
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
YAML

"$BIN" check-config -c "$RUN/relevo.yaml" >/dev/null
if ! "$BIN" user list -c "$RUN/relevo.yaml" 2>/dev/null | grep -q '^demo\b'; then
	printf 'demo-password\n' | "$BIN" user add demo --domain example.com -c "$RUN/relevo.yaml"
fi
# An API key for the demo account, kept in run/ (relevo shows a key only once).
if [ ! -s "$RUN/demo-apikey" ]; then
	"$BIN" apikey create demo --name demo -c "$RUN/relevo.yaml" 2>/dev/null >"$RUN/demo-apikey"
	chmod 600 "$RUN/demo-apikey"
fi
KEY=$(cat "$RUN/demo-apikey")
# Register the sending domain: relevo signs its mail with DKIM (RSA and Ed25519).
if ! "$BIN" domain list -c "$RUN/relevo.yaml" 2>/dev/null | grep -q '^example\.com\b'; then
	"$BIN" domain add example.com -c "$RUN/relevo.yaml" >/dev/null
fi

cat <<MSG

relevo is starting on loopback with the demo configuration in run/relevo.yaml.

  submission (STARTTLS + AUTH)  127.0.0.1:$SUB_PORT
  submissions (implicit TLS)    127.0.0.1:$SUBS_PORT
  relay (trusted 127.0.0.0/8)   127.0.0.1:$RELAY_PORT
  HTTP API                      http://127.0.0.1:$HTTP_PORT/v1/
  demo account                  demo / demo-password, may send as @example.com
  demo API key                  $KEY (also in run/demo-apikey)

Send a first message from another terminal:

  swaks --server 127.0.0.1:$SUB_PORT -tls --auth-user demo --auth-password demo-password \\
        --from you@example.com --to friend@example.org

or through the HTTP API:

  curl -s http://127.0.0.1:$HTTP_PORT/v1/messages -H "Authorization: Bearer $KEY" \\
       -H 'Content-Type: application/json' \\
       -d '{"from": "you@example.com", "to": ["friend@example.org"], "subject": "Hi", "text": "Hello"}'

and what happened to it: curl -s http://127.0.0.1:$HTTP_PORT/v1/events -H "Authorization: Bearer $KEY"

The demo runs in sandbox mode: instead of going to the recipient's servers, each
outgoing message is written, DKIM-signed, to run/data/sandbox/ID-DOMAIN.eml:

  ls run/data/sandbox/

and the queue (empty once the message is "delivered"):

  $BIN queue list -c run/relevo.yaml

The DNS records example.com would publish: $BIN domain records example.com -c run/relevo.yaml

Press Ctrl-C to stop.

MSG
exec "$BIN" serve -c "$RUN/relevo.yaml"
