#!/bin/bash
# bench/run.sh - `make bench`: relevo vs Postfix vs the smtp-source -> smtp-sink ceiling.
#
# Installs what is missing (Debian's postfix for smtp-source/smtp-sink and the relay,
# opendkim for Postfix's DKIM signing, gnuplot-nox for the plot), then runs bench/bench.py, which does the work and writes
# bench/results/. Everything listens on 127.0.0.1 ports picked at run time; whatever was
# started is stopped again, also on Ctrl-C or SIGTERM. See bench/README.md.
#
#   BENCH_QUICK=1            smoke run: 1 run per scenario, a tenth of the messages
#   BENCH_SCENARIOS=4k,100k  only these scenarios (4k 4k-dkim 4k-reuse 100k rcpt10 4k-500s)
#   BENCH_SYSTEMS=relevo     only these systems (ceiling relevo postfix)
#   BENCH_RUNS=5             runs per scenario (default 3)
#   BENCH_PERF=1             also profile one extra relevo run per scenario (perf record)
set -u
cd "$(dirname "$0")/.."

log() { printf 'bench: %s\n' "$*" >&2; }

# ------------------------------------------------------------------ dependencies
system_postfix_running() {
	[ -f /etc/postfix/main.cf ] && postfix status >/dev/null 2>&1
}
system_opendkim_running() {
	[ -f /run/opendkim/opendkim.pid ] && kill -0 "$(cat /run/opendkim/opendkim.pid)" 2>/dev/null
}

need=""
command -v smtp-source >/dev/null 2>&1 || need="$need postfix"
command -v gnuplot >/dev/null 2>&1 || need="$need gnuplot-nox"
command -v opendkim >/dev/null 2>&1 || need="$need opendkim"
command -v script >/dev/null 2>&1 || need="$need bsdutils"
if [ -n "$need" ]; then
	if [ "$(id -u)" != 0 ]; then
		log "missing:$need (install as root, or run make bench as root)"
		exit 1
	fi
	was_running=no
	system_postfix_running && was_running=yes
	dkim_was_running=no
	system_opendkim_running && dkim_was_running=yes
	log "installing:$need"
	# no system mail configuration: only the binaries are wanted
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/tmp/relevo-bench-apt.log 2>&1; then
		apt-get update -q >>/tmp/relevo-bench-apt.log 2>&1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >>/tmp/relevo-bench-apt.log 2>&1 || {
			log "apt-get install failed, see /tmp/relevo-bench-apt.log"
			exit 1
		}
	fi
	# a system Postfix that the install started must not keep running (port 25)
	if [ $was_running = no ] && system_postfix_running; then
		log "stopping the system Postfix that the package installation started"
		postfix stop >/dev/null 2>&1 || true
	fi
	if [ $dkim_was_running = no ] && system_opendkim_running; then
		log "stopping the system OpenDKIM that the package installation started"
		kill -TERM "$(cat /run/opendkim/opendkim.pid)" 2>/dev/null || true
	fi
fi
for tool in smtp-source smtp-sink postfix opendkim openssl gnuplot /usr/bin/python3; do
	command -v "$tool" >/dev/null 2>&1 || { log "$tool not found"; exit 1; }
done
RELEVO_BIN=${RELEVO_BIN:-$PWD/build/relevo}
export RELEVO_BIN
if [ ! -x "$RELEVO_BIN" ]; then
	log "$RELEVO_BIN not found: run make build first (make bench does)"
	exit 1
fi

# ------------------------------------------------------------------ run, clean up
BENCH_TMP=$(mktemp -d /tmp/relevo-bench.XXXXXX)
chmod 755 "$BENCH_TMP"
export BENCH_TMP
PY=""

cleanup() {
	trap - EXIT INT TERM HUP
	if [ -n "$PY" ] && kill -0 "$PY" 2>/dev/null; then
		kill -TERM "$PY" 2>/dev/null
		for _ in $(seq 1 100); do
			kill -0 "$PY" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$PY" 2>/dev/null
	fi
	# backstop if the driver died without cleaning up: the processes it recorded
	# (checked by name, so that a recycled pid is left alone) and its Postfix instances
	if [ -f "$BENCH_TMP/pids" ]; then
		while read -r pid name; do
			if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"; then
				kill -KILL "$pid" 2>/dev/null
			fi
		done <"$BENCH_TMP/pids"
	fi
	for etc in "$BENCH_TMP"/*/pf/etc; do
		[ -f "$etc/main.cf" ] || continue
		postfix -c "$etc" abort >/dev/null 2>&1 || true
	done
	rm -rf "$BENCH_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

/usr/bin/python3 bench/bench.py &
PY=$!
wait "$PY"
rc=$?
PY=""
exit $rc
