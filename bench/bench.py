#!/usr/bin/python3
"""relevo benchmark driver (started by bench/run.sh; see bench/README.md).

For each scenario and run it measures, side by side on this machine:
  ceiling  smtp-source -> smtp-sink
  relevo   smtp-source -> relevo (relay listener, durable spool) -> smtp-sink
  postfix  smtp-source -> a private Postfix instance (relayhost = the sink) -> smtp-sink
End-to-end time runs from starting smtp-source until the sink has counted every message.
A latency probe (bench/probe.py) sends timed messages through the relay meanwhile.

Environment:
  BENCH_QUICK=1          1 run per scenario, a tenth of the messages (smoke run)
  BENCH_RUNS=N           runs per scenario (default 3, quick 1)
  BENCH_SCENARIOS=a,b    scenarios to run (default all; names below)
  BENCH_SYSTEMS=a,b      systems to run: ceiling,relevo,postfix (default all)
  BENCH_PERF=1           one extra, unscored relevo run per scenario under perf record;
                         the report goes to bench/results/perf-<scenario>.txt
  BENCH_IDLE_CONNS=N     idle connections held open to relevo for the memory
                         measurement "conn10k" (default 10000; 0 skips it)
  RELEVO_BIN=path        relevo binary (default build/relevo)
  BENCH_TMP=dir          working directory (run.sh makes one and removes it)

`bench.py --replot` redraws results/latest.png from results/latest.json.
"""
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RUNS = int(os.environ.get("BENCH_RUNS", "1" if QUICK else "3"))
PERF = os.environ.get("BENCH_PERF", "") not in ("", "0")
RELEVO_BIN = os.path.abspath(os.environ.get("RELEVO_BIN", os.path.join(ROOT, "build", "relevo")))
SYSTEMS_ALL = ["ceiling", "relevo", "postfix"]
SYSTEM_LABEL = {"ceiling": "ceiling (source→sink)", "relevo": "relevo", "postfix": "Postfix"}

# Outbound concurrency given to both relays (Postfix: default_destination_concurrency_limit).
OUT_CONCURRENCY = 20
PROBE_SESSIONS = 4
PROBE_PAUSE_MS = 100

# name, title, messages, payload bytes, sessions, recipients per message, many msgs per conn
SCENARIOS = [
    dict(name="4k", title="4 KiB, 20 sessions, 1 msg/conn", msgs=20000, size=4096,
         sessions=20, rcpts=1, reuse=False),
    dict(name="4k-dkim", title="4 KiB, 20 sessions, 1 msg/conn, DKIM-signed", msgs=5000,
         size=4096, sessions=20, rcpts=1, reuse=False, dkim=True),
    dict(name="4k-reuse", title="4 KiB, 20 sessions, many msgs/conn", msgs=20000, size=4096,
         sessions=20, rcpts=1, reuse=True),
    dict(name="100k", title="100 KiB, 20 sessions, 1 msg/conn", msgs=2000, size=102400,
         sessions=20, rcpts=1, reuse=False),
    dict(name="rcpt10", title="4 KiB × 10 recipients, 20 sessions", msgs=5000, size=4096,
         sessions=20, rcpts=10, reuse=False),
    dict(name="4k-500s", title="4 KiB, 500 sessions, 1 msg/conn", msgs=10000, size=4096,
         sessions=500, rcpts=1, reuse=False),
]


# Not a throughput scenario: relevo's memory with this many idle client
# connections (measure_idle_conns), from 127.0.0.2.. (IDLE_SOURCES addresses).
IDLE_SCENARIO = "conn10k"
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", "10000"))
IDLE_SOURCES = 50

# x-axis labels of the plot
SHORT = {"4k": "4 KiB", "4k-dkim": "4 KiB DKIM", "4k-reuse": "4 KiB reuse",
         "100k": "100 KiB", "rcpt10": "4 KiB 10 rcpt", "4k-500s": "4 KiB 500 sess"}


class Interrupted(Exception):
    pass


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------- processes we started

class Procs:
    """Every process this driver starts, so that it (and run.sh's trap) can stop them."""

    def __init__(self, tmp):
        self.pidfile = os.path.join(tmp, "pids")
        self.live = {}  # pid -> (Popen, name)
        self.postfix = []  # PostfixInstance objects not yet stopped

    def _write(self):
        with open(self.pidfile + ".new", "w") as f:
            for pid, (_p, name) in self.live.items():
                f.write("%d %s\n" % (pid, name))
        os.replace(self.pidfile + ".new", self.pidfile)

    def start(self, name, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, **kw)
        self.live[p.pid] = (p, name)
        self._write()
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=10.0):
        if p is None:
            return None
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.forget(p)
        return p.returncode

    def forget(self, p):
        if p.pid in self.live:
            del self.live[p.pid]
            self._write()

    def stop_all(self):
        for pid, (p, _name) in list(self.live.items()):
            try:
                self.stop(p, timeout=5.0)
            except Exception as e:
                log("could not stop pid %d: %s" % (pid, e))
        for pf in list(self.postfix):
            try:
                pf.stop()
            except Exception as e:
                log("could not stop Postfix instance %s: %s" % (pf.etc, e))


# ---------------------------------------------------------------- /proc helpers

def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime) in clock ticks, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def all_ppids():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                out[int(name)] = st[0]
    return out


def tree(root):
    """root and all its descendants."""
    ppids = all_ppids()
    children = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in ppids or pid == root:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids, include_children=True):
    total = 0
    for pid in pids:
        st = proc_stat(pid)
        if st is not None:
            total += st[1] + (st[2] if include_children else 0)
    return total


def rss_bytes(pid):
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def pss_bytes(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def vm_hwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_busy(seconds):
    """Fraction of the machine's CPU time that was busy over `seconds` (from /proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v[:8]), idle
    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 0.0 if t1 == t0 else 1.0 - (i1 - i0) / float(t1 - t0)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_port(port, timeout, proc=None, what="server"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited (status %s) before listening on %d" % (what, proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.settimeout(5.0)
                greeting = s.recv(512)
                if greeting.startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("%s did not answer on port %d within %ds" % (what, port, timeout))


# ---------------------------------------------------------------- the sink

class Sink:
    """smtp-sink; with count=True it prints running counters (-c) to a file we poll."""

    def __init__(self, procs, port, path, count=True):
        self.path = path
        self.out = open(path, "wb")
        argv = ["smtp-sink"] + (["-c"] if count else []) + [
            "-u", "nobody", "-m", "2048", "127.0.0.1:%d" % port, "2048"]
        self.proc = procs.start("smtp-sink", argv, stdout=self.out, stderr=subprocess.STDOUT)
        self.procs = procs
        self.port = port

    def counters(self):
        """(sessions, messages) so far."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 200))
                tail = f.read()
        except OSError:
            return 0
        m = re.findall(rb"sess=(\d+) quit=\d+ mesg=(\d+)\r", tail)
        return (int(m[-1][0]), int(m[-1][1])) if m else (0, 0)

    def count(self):
        return self.counters()[1]

    def stop(self):
        self.procs.stop(self.proc)
        self.out.close()


# ---------------------------------------------------------------- relays

class Relevo:
    def __init__(self, procs, rundir, port, sink_port, probe_port, dkim=False, max_conns=4000):
        self.procs, self.port, self.dkim = procs, port, dkim
        self.conf = os.path.join(rundir, "relevo.yaml")
        self.logpath = os.path.join(rundir, "relevo.log")
        with open(self.conf, "w") as f:
            f.write("""# written by bench/bench.py
hostname: relay.bench
data_dir: {data}
listen:
  - {{address: "127.0.0.1:{port}", mode: relay}}
trusted_networks: [127.0.0.0/8]
smtp:
  max_connections: {max_conns}
  max_connections_per_ip: {max_conns}
dkim:
  # without DKIM scenarios the sender domain has no key: send unsigned
  missing_key: {missing}
delivery:
  max_connections: 100
  max_connections_per_destination: {conc}
  routes:
    probe.example: "[127.0.0.1]:{probe}"
    "*": "[127.0.0.1]:{sink}"
""".format(data=os.path.join(rundir, "relevo-data"), port=port, conc=OUT_CONCURRENCY,
           missing="tempfail" if dkim else "send",
           probe=probe_port, sink=sink_port, max_conns=max_conns))
        self.proc = None

    def start(self):
        if self.dkim:
            # register the sending domain: RSA-2048 + Ed25519 keys, both sign
            r = subprocess.run([RELEVO_BIN, "domain", "add", "src.example", "-c", self.conf],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise RuntimeError("relevo domain add failed: %s" % r.stdout.decode()[-300:])
        self.log = open(self.logpath, "wb")
        self.proc = self.procs.start("relevo", [RELEVO_BIN, "serve", "-c", self.conf],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, 20, self.proc, "relevo")

    def pids(self):
        return [self.proc.pid]

    def cpu(self):
        return cpu_ticks([self.proc.pid], include_children=False)

    def rss_sample(self, with_pss):
        pid = self.proc.pid
        return rss_bytes(pid), (pss_bytes(pid) if with_pss else None), 1

    def rss_peak_final(self):
        return vm_hwm(self.proc.pid)

    def stop(self):
        rc = self.procs.stop(self.proc, timeout=20.0)
        self.log.close()
        return rc

    def log_tail(self, n=15):
        try:
            with open(self.logpath, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""


POSTFIX_MAIN = """# written by bench/bench.py: a private Postfix instance used as a relay
compatibility_level = 3.6
queue_directory = {base}/spool
data_directory = {base}/lib
mail_owner = postfix
setgid_group = postdrop
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
myhostname = postfix.bench
mydomain = bench
myorigin = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{sink}
transport_maps = inline:{{ probe.example=smtp:[127.0.0.1]:{probe} }}
# --- tuning (see bench/README.md) ---
# enough smtpd (and cleanup) processes for 500 concurrent inbound sessions
default_process_limit = 600
# outbound: {conc} parallel connections to the relayhost, as relevo gets, from the start
default_destination_concurrency_limit = {conc}
initial_destination_concurrency = {conc}
# always reuse connections to the relayhost, not only when a backlog builds up
smtp_connection_cache_destinations = [127.0.0.1]:{sink}
# relevo does no reverse DNS of its clients either
smtpd_peername_lookup = no
"""

POSTFIX_MASTER = """# written by bench/bench.py (Debian's master.cf without chroot and unused services)
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


OPENDKIM_CONF = """# written by bench/bench.py
Syslog no
Mode s
Background no
Socket local:{run}/sock
PidFile {run}/pid
UserID opendkim:opendkim
UMask 000
KeyTable file:{run}/keytable
SigningTable refile:{run}/signingtable
Canonicalization relaxed/relaxed
OversignHeaders From
SignatureAlgorithm {alg}
RequireSafeKeys no
"""


def dkim_keys(tmp):
    """An RSA-2048 and an Ed25519 key for src.example, readable by opendkim."""
    d = os.path.join(tmp, "dkim-keys")
    if not os.path.isdir(d):
        os.makedirs(d)
        for name, args in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                           ("ed", ["-algorithm", "ed25519"])):
            path = os.path.join(d, name + ".pem")
            subprocess.run(["openssl", "genpkey"] + args + ["-out", path], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.chown(path, "opendkim")
            os.chmod(path, 0o600)
        os.chmod(d, 0o755)
    return d


class OpenDKIM:
    """One opendkim milter signing src.example with one key (it applies one signature
    algorithm per instance, so RSA + Ed25519 as relevo does takes two, chained)."""

    def __init__(self, procs, rundir, tmp, name, alg):
        self.procs = procs
        self.run = os.path.join(rundir, "opendkim-" + name)
        os.makedirs(self.run)
        shutil.chown(self.run, "opendkim")
        keys = dkim_keys(tmp)
        with open(os.path.join(self.run, "keytable"), "w") as f:
            f.write("%s._domainkey.src.example src.example:%s:%s/%s.pem\n" % (name, name, keys, name))
        with open(os.path.join(self.run, "signingtable"), "w") as f:
            f.write("*@src.example %s._domainkey.src.example\n" % name)
        self.conf = os.path.join(self.run, "opendkim.conf")
        with open(self.conf, "w") as f:
            f.write(OPENDKIM_CONF.format(run=self.run, alg=alg))
        self.sock = os.path.join(self.run, "sock")
        self.proc = None

    def start(self):
        self.proc = self.procs.start("opendkim", ["opendkim", "-x", self.conf, "-f"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("opendkim (%s) did not start" % self.conf)
            time.sleep(0.05)

    def stop(self):
        self.procs.stop(self.proc, timeout=10)


class PostfixInstance:
    def __init__(self, procs, rundir, port, sink_port, probe_port, dkim=False, tmp=None):
        self.procs, self.port = procs, port
        self.milters = []
        if dkim:
            self.milters = [OpenDKIM(procs, rundir, tmp, "rsa", "rsa-sha256"),
                            OpenDKIM(procs, rundir, tmp, "ed", "ed25519-sha256")]
        self.base = os.path.join(rundir, "pf")
        self.etc = os.path.join(self.base, "etc")
        for d in ("etc", "spool", "lib"):
            os.makedirs(os.path.join(self.base, d))
        os.chmod(self.base, 0o755)
        shutil.chown(os.path.join(self.base, "lib"), "postfix", "postfix")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(POSTFIX_MAIN.format(base=self.base, sink=sink_port, probe=probe_port,
                                        conc=OUT_CONCURRENCY))
            if self.milters:
                f.write("# DKIM: two OpenDKIM milters (RSA-2048, Ed25519); no signature, no 250\n"
                        "smtpd_milters = %s\nmilter_default_action = tempfail\n" %
                        ", ".join("unix:" + m.sock for m in self.milters))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER.format(port=port))
        self.master = None
        self.seen = set()

    def _postfix(self, cmd, timeout=60):
        # postfix(1) reports errors to syslog only, unless stderr is a terminal: use
        # script(1) to give it one, so that a failure is readable.
        r = subprocess.run(["script", "-qec", "postfix -c %s %s" % (self.etc, cmd), "/dev/null"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        return r.returncode, r.stdout.decode("utf-8", "replace").strip()

    def start(self):
        for m in self.milters:
            m.start()
        self.procs.postfix.append(self)
        rc, out = self._postfix("start")
        if rc != 0:
            raise RuntimeError("postfix start failed: %s" % out)
        pidfile = os.path.join(self.base, "spool", "pid", "master.pid")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(pidfile) as f:
                    self.master = int(f.read().split()[0])
                break
            except (OSError, ValueError, IndexError):
                time.sleep(0.05)
        if self.master is None:
            raise RuntimeError("postfix master did not write %s" % pidfile)
        wait_port(self.port, 20, None, "postfix")

    def pids(self):
        extra = [m.proc.pid for m in self.milters if m.proc is not None]
        if self.master is None:
            return extra
        p = tree(self.master)
        self.seen.update(p)
        return p + extra

    def cpu(self):
        # the master's cutime/cstime hold the CPU of every child it has reaped
        return cpu_ticks(self.pids(), include_children=True)

    def rss_sample(self, with_pss):
        p = self.pids()
        return (sum(rss_bytes(x) for x in p), sum(pss_bytes(x) for x in p) if with_pss else None,
                len(p))

    def rss_peak_final(self):
        return 0

    def stop(self):
        if self in self.procs.postfix:
            self.procs.postfix.remove(self)
        for m in self.milters:
            m.stop()
        if self.master is None:
            return 0
        self.pids()
        self._postfix("stop")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and os.path.exists("/proc/%d" % self.master):
            time.sleep(0.1)
        if os.path.exists("/proc/%d" % self.master):
            self._postfix("abort")
            time.sleep(0.5)
        # anything of this instance still alive gets SIGKILL (only pids seen in its tree)
        for pid in self.seen:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmd = f.read()
                if b"postfix" in cmd or cmd.split(b"\0")[0] in (
                        b"master", b"smtpd", b"smtp", b"cleanup", b"qmgr", b"pickup",
                        b"trivial-rewrite", b"anvil", b"scache", b"postlogd", b"tlsmgr",
                        b"bounce", b"proxymap", b"showq", b"flush", b"verify", b"error"):
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.master = None
        return 0

    def log_tail(self, n=15):
        try:
            with open(os.path.join(self.base, "maillog"), "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""


# ---------------------------------------------------------------- one run

class Sampler(threading.Thread):
    def __init__(self, relay, interval):
        super().__init__(daemon=True)
        self.relay, self.interval = relay, interval
        self.peak_rss, self.peak_pss, self.peak_procs = 0, 0, 0
        self.samples, self.busy = 0, 0.0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            t = time.thread_time()
            try:
                # PSS (smaps_rollup) costs more to read: every other sample
                rss, pss, n = self.relay.rss_sample(self.samples % 2 == 0)
                self.peak_rss = max(self.peak_rss, rss)
                self.peak_pss = max(self.peak_pss, pss or 0)
                self.peak_procs = max(self.peak_procs, n)
            except Exception:
                pass
            self.samples += 1
            self.busy += time.thread_time() - t
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(5)


def run_one(procs, tmp, sc, system, idx, perf_out=None):
    rundir = os.path.join(tmp, "%s-%s-%d%s" % (sc["name"], system, idx, "-perf" if perf_out else ""))
    os.makedirs(rundir)
    os.chmod(rundir, 0o755)
    sink_port, probe_port, relay_port = free_ports(3)
    res = dict(scenario=sc["name"], system=system, run=idx, msgs=sc["msgs"], ok=False)
    sink = probe_sink = relay = probe = src = sampler = perf = None
    try:
        sink = Sink(procs, sink_port, os.path.join(rundir, "sink.out"))
        wait_port(sink_port, 10, sink.proc, "smtp-sink")
        if system == "ceiling":
            target = sink_port
        else:
            probe_sink = Sink(procs, probe_port, os.path.join(rundir, "probe-sink.out"))
            wait_port(probe_port, 10, probe_sink.proc, "smtp-sink (probe)")
            if system == "relevo":
                relay = Relevo(procs, rundir, relay_port, sink_port, probe_port,
                               dkim=sc.get("dkim", False))
            else:
                relay = PostfixInstance(procs, rundir, relay_port, sink_port, probe_port,
                                        dkim=sc.get("dkim", False), tmp=tmp)
            relay.start()
            target = relay_port

        probe_out = os.path.join(rundir, "probe.json")
        probe = procs.start("probe.py", ["/usr/bin/python3", os.path.join(HERE, "probe.py"),
                                         "127.0.0.1", str(target), probe_out,
                                         "--sessions", str(PROBE_SESSIONS),
                                         "--pause-ms", str(PROBE_PAUSE_MS)],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(rundir, "probe.err"), "wb"))
        time.sleep(0.3)  # probe sessions connected: they measure the whole run
        if relay is not None:
            sampler = Sampler(relay, 0.25 if system == "postfix" else 0.1)
            sampler.start()
            cpu0 = relay.cpu()
        if perf_out:
            perf = procs.start("perf", ["perf", "record", "-e", "cpu-clock", "-F", "499",
                                        "--call-graph", "dwarf,16384",
                                        "-o", os.path.join(rundir, "perf.data"),
                                        "-p", str(relay.proc.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)

        argv = ["smtp-source", "-s", str(sc["sessions"]), "-m", str(sc["msgs"]),
                "-l", str(sc["size"]), "-r", str(sc["rcpts"]),
                "-f", "sender@src.example", "-t", "rcpt@dest.example", "-M", "bench.example"]
        if sc["reuse"]:
            argv.append("-d")
        argv.append("127.0.0.1:%d" % target)
        src_err = open(os.path.join(rundir, "smtp-source.err"), "wb")
        limit = 30 + sc["msgs"] * max(1, sc["size"] // 20480) / 100.0
        t0 = time.monotonic()
        src = procs.start("smtp-source", argv, stdout=src_err, stderr=subprocess.STDOUT)
        t_end = None
        while True:
            now = time.monotonic()
            rc = src.poll()
            if system == "ceiling":
                # smtp-source waits for each 250, which smtp-sink sends after counting:
                # when it exits, the sink has received everything.
                if rc is not None:
                    t_end = now
                    break
            elif sink.count() >= sc["msgs"]:
                t_end = now
                break
            if rc is not None and rc != 0:
                break
            if now - t0 > limit:
                break
            time.sleep(0.01)
        if relay is not None:
            cpu1 = relay.cpu()
            sampler.stop()
        if perf is not None:
            procs.stop(perf, sig=signal.SIGINT, timeout=30)
            data = os.path.join(rundir, "perf.data")
            with open(perf_out, "wb") as f:
                f.write(("# relevo under perf record -e cpu-clock -F 499 --call-graph dwarf, scenario %s (%d messages)\n"
                         "# 1. by shared object  2. self time by symbol  3. inclusive time "
                         "(children) by symbol\n\n" % (sc["name"], sc["msgs"])).encode())
                for args in (["--no-children", "--sort", "dso", "-g", "none"],
                             ["--no-children", "--sort", "dso,symbol", "-g", "none",
                              "--percent-limit", "0.5"],
                             ["--children", "--sort", "symbol", "-g", "none",
                              "--percent-limit", "3"]):
                    rep = subprocess.run(["perf", "report", "-i", data, "--stdio"] + args,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                    f.write(b"\n".join(l for l in rep.stdout.splitlines()
                                        if l.strip() and not l.startswith(b"#")) + b"\n\n")
        procs.stop(probe, timeout=15)
        try:
            with open(probe_out) as f:
                pr = json.load(f)
        except (OSError, ValueError):
            pr = {"latencies_ms": [], "ok": 0, "errors": 0, "error_samples": ["no probe output"]}
        if src.poll() is None:
            procs.stop(src, timeout=5)
        else:
            procs.forget(src)
        src_err.close()
        sink_sessions, got = sink.counters()
        res.update(sink_count=got, sink_sessions=sink_sessions, source_rc=src.returncode,
                   probe_ok=pr["ok"], probe_errors=pr["errors"], probe_error_samples=pr["error_samples"],
                   latencies_ms=pr["latencies_ms"])
        if system == "ceiling" and t_end is not None:
            # the probe wrote into the same sink
            if got < sc["msgs"]:
                t_end = None
        if t_end is None or src.returncode not in (0, None):
            with open(os.path.join(rundir, "smtp-source.err"), "rb") as f:
                err = f.read()[-600:].decode("utf-8", "replace")
            res["error"] = "sink got %d of %d after %.0fs; smtp-source status %s: %s" % (
                got, sc["msgs"], time.monotonic() - t0, src.returncode, err.strip())
            if relay is not None:
                res["relay_log_tail"] = relay.log_tail()
            return res
        secs = t_end - t0
        res.update(ok=True, seconds=secs, rate=sc["msgs"] / secs)
        if relay is not None:
            handled = sc["msgs"] + pr["ok"]
            res["cpu_ms_per_msg"] = (cpu1 - cpu0) * 1000.0 / TICK / handled
            res["peak_rss"] = max(sampler.peak_rss, relay.rss_peak_final())
            res["peak_pss"] = sampler.peak_pss
            res["sampler_ms_per_sample"] = sampler.busy * 1000.0 / max(1, sampler.samples)
            res["peak_procs"] = sampler.peak_procs
        return res
    finally:
        for p in (perf, probe, src):
            if p is not None:
                procs.stop(p, timeout=5)
        if relay is not None:
            relay.stop()
        for s in (sink, probe_sink):
            if s is not None:
                s.stop()
        shutil.rmtree(rundir, ignore_errors=True)


# ---------------------------------------------------------------- idle connections

def vm_rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def open_idle(port, n, timeout=120.0):
    """n connections to 127.0.0.1:port from 127.0.0.2.., each read up to its greeting.
    Returns (sockets, greeted, refused, failed, seconds)."""
    import selectors
    sel = selectors.DefaultSelector()
    socks, got = [], {}
    t0 = time.monotonic()
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind(("127.0.0.%d" % (2 + i % IDLE_SOURCES), 0))
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
        got[s.fileno()] = b""
        sel.register(s, selectors.EVENT_READ)
        if i % 500 == 499:          # let the accept queue drain as we go
            for key, _ in sel.select(0.05):
                try:
                    got[key.fd] += key.fileobj.recv(512)
                except OSError:
                    got[key.fd] = b"error"
                if b"\n" in got[key.fd] or got[key.fd] == b"error":
                    sel.unregister(key.fileobj)
    deadline = t0 + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            try:
                d = key.fileobj.recv(512)
            except OSError:
                d = b""
                got[key.fd] = b"error"
            got[key.fd] += d
            if not d or b"\n" in got[key.fd]:
                sel.unregister(key.fileobj)
    sel.close()
    greeted = sum(1 for v in got.values() if v.startswith(b"220"))
    refused = sum(1 for v in got.values() if v[:1] in (b"4", b"5"))
    return socks, greeted, refused, n - greeted - refused, time.monotonic() - t0


def measure_idle_conns(procs, tmp, n):
    """relevo's RSS idle, then with n idle (greeted) client connections, and whether a
    fresh client is still served promptly meanwhile."""
    rundir = os.path.join(tmp, "%s-relevo" % IDLE_SCENARIO)
    os.makedirs(rundir)
    sink_port, probe_port, relay_port = free_ports(3)
    res = dict(scenario=IDLE_SCENARIO, system="relevo", conns=n, ok=False)
    relay, socks = None, []
    try:
        relay = Relevo(procs, rundir, relay_port, sink_port, probe_port, max_conns=n + 1000)
        relay.start()
        time.sleep(1.0)
        pid = relay.proc.pid
        res["rss_idle"] = vm_rss(pid)
        socks, greeted, refused, failed, secs = open_idle(relay_port, n)
        time.sleep(2.0)             # settle: sessions fully set up
        res.update(greeted=greeted, refused=refused, failed=failed, open_secs=secs,
                   rss_conns=vm_rss(pid), hwm=vm_hwm(pid), fds=len(os.listdir("/proc/%d/fd" % pid)))
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", relay_port), timeout=10) as c:
            c.settimeout(10)
            res["fresh_greeting_ms"] = (time.monotonic() - t0) * 1000.0 if \
                c.recv(512).startswith(b"220") else None
            c.sendall(b"QUIT\r\n")
        res["ok"] = greeted == n
        if not res["ok"]:
            res["error"] = "%d of %d greeted (%d refused, %d failed)" % (greeted, n, refused, failed)
        return res
    finally:
        for s in socks:
            s.close()
        if relay is not None:
            relay.stop()
        shutil.rmtree(rundir, ignore_errors=True)


def render_idle(r):
    if r is None:
        return ""
    mb = 1048576.0
    out = ["", "## %s idle client connections to relevo" % format(r["conns"], ","), ""]
    if "rss_conns" not in r:
        out.append("**failed**: %s" % r.get("error", "?"))
        return "\n".join(out) + "\n"
    out.append("| RSS idle | RSS with the connections | peak (VmHWM) | per connection | "
               "greeted | time to open them | fresh client's greeting meanwhile |")
    out.append("|---|---|---|---|---|---|---|")
    per = (r["rss_conns"] - r["rss_idle"]) / max(1, r["greeted"])
    out.append("| %.0f MB | %.0f MB | %.0f MB | %.1f KiB | %d of %d%s | %.1f s | %s |" % (
        r["rss_idle"] / mb, r["rss_conns"] / mb, r["hwm"] / mb, per / 1024.0, r["greeted"],
        r["conns"], (" (%d refused, %d failed)" % (r["refused"], r["failed"]))
        if r["greeted"] < r["conns"] else "", r["open_secs"],
        fmt(r.get("fresh_greeting_ms"), ".1f") + " ms"))
    out.append("")
    out.append("Each connection is a plain TCP client from 127.0.0.2-%d that reads the 220 and "
               "then says nothing; relevo's smtp.max_connections and max_connections_per_ip are "
               "raised above the count for this run." % (1 + IDLE_SOURCES))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- summary

def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summarize(results, sc, system):
    rs = [r for r in results if r["scenario"] == sc["name"] and r["system"] == system]
    ok = [r for r in rs if r["ok"]]
    if not rs:
        return None
    s = dict(runs=len(rs), ok_runs=len(ok), errors=[r.get("error") for r in rs if not r["ok"]])
    if ok:
        rates = [r["rate"] for r in ok]
        s.update(rate=statistics.median(rates), rate_min=min(rates), rate_max=max(rates))
        if system != "ceiling":
            s["cpu"] = statistics.median([r["cpu_ms_per_msg"] for r in ok])
            s["rss"] = max(r["peak_rss"] for r in ok)
            s["pss"] = max(r["peak_pss"] for r in ok)
            s["procs"] = max(r["peak_procs"] for r in ok)
    lat = [x for r in rs for x in r.get("latencies_ms", [])]
    s["lat_n"] = len(lat)
    s["p50"], s["p99"] = pct(lat, 50), pct(lat, 99)
    s["probe_errors"] = sum(r.get("probe_errors", 0) for r in rs)
    return s


def fmt(v, spec, none="—"):
    return none if v is None else format(v, spec)


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    pf = subprocess.run(["postconf", "-dh", "mail_version"], stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL).stdout.decode().strip()
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout.decode().strip() or "?"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
    return dict(nproc=os.cpu_count(), cpu=model, mem_gib=mem, kernel=os.uname().release,
                postfix=pf, relevo=rev + ("+local changes" if dirty else ""))


def render(results, scenarios, systems, started, m, total_secs):
    bg = [r["background_busy"] for r in results if "background_busy" in r]
    mode = "quick (BENCH_QUICK=1: 1 run, a tenth of the messages; a smoke test, not a result)" if QUICK \
        else "full"
    out = []
    out.append("# relevo benchmark, %s" % started.strftime("%Y-%m-%d %H:%M UTC"))
    out.append("")
    out.append("Machine: %d × %s, %.1f GiB RAM, Linux %s. Postfix %s, relevo %s. Mode: %s; "
               "%d run(s) per cell; whole bench %.0f s." % (
                   m["nproc"], m["cpu"], m["mem_gib"], m["kernel"], m["postfix"], m["relevo"],
                   mode, RUNS, total_secs))
    if bg:
        out.append("")
        out.append("Background: CPU used by other processes, measured just before each run: "
                   "median %.0f%%, max %.0f%% of the machine.%s" % (
                       100 * statistics.median(bg), 100 * max(bg),
                       " **The machine was not idle: treat these numbers as noisy.**"
                       if statistics.median(bg) > 0.10 or max(bg) > 0.30 else ""))
    out.append("")
    out.append("msgs/s: end-to-end, first message sent → sink has them all; median of the runs "
               "[min–max]. CPU and memory: the relay only (Postfix: all processes of its instance, "
               "summed; RSS counts shared pages once per process, PSS shares them out). relevo's RSS is its VmHWM. Latency: final dot → 250, probe sessions during the bulk load, all "
               "runs pooled.")
    out.append("")
    out.append("| scenario | system | msgs/s median [min–max] | ×Postfix | ×ceiling | CPU ms/msg "
               "| peak MB RSS / PSS (procs) | p50 ms | p99 ms |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for sc in scenarios:
        per = {sy: summarize(results, sc, sy) for sy in systems}
        summary[sc["name"]] = per
        for sy in systems:
            s = per[sy]
            if s is None:
                continue
            if s["ok_runs"] == 0:
                rate = "**failed** (%d runs)" % s["runs"]
            else:
                rate = "%.0f [%.0f–%.0f]" % (s["rate"], s["rate_min"], s["rate_max"])
                if s["ok_runs"] < s["runs"]:
                    rate += " (%d of %d runs failed)" % (s["runs"] - s["ok_runs"], s["runs"])
            vs_pf = vs_ceil = ""
            if sy != "ceiling" and s.get("rate"):
                if sy != "postfix" and per.get("postfix") and per["postfix"].get("rate"):
                    vs_pf = "%.2f" % (s["rate"] / per["postfix"]["rate"])
                if per.get("ceiling") and per["ceiling"].get("rate"):
                    vs_ceil = "%.2f" % (s["rate"] / per["ceiling"]["rate"])
            cpu = fmt(s.get("cpu"), ".2f", "—" if sy == "ceiling" else "")
            rss = "—" if sy == "ceiling" else (
                "%.0f / %.0f (%d)" % (s["rss"] / 1048576.0, s["pss"] / 1048576.0, s["procs"])
                if s.get("rss") else "")
            p50, p99 = fmt(s["p50"], ".1f"), fmt(s["p99"], ".1f")
            if s["probe_errors"]:
                p99 += " (%d probe errors)" % s["probe_errors"]
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                sc["title"], SYSTEM_LABEL[sy], rate, vs_pf, vs_ceil, cpu, rss, p50, p99))
    notes = []
    for sc in scenarios:
        for sy in systems:
            s = summary[sc["name"]].get(sy)
            if s and s["errors"]:
                for e in s["errors"]:
                    notes.append("- %s / %s: %s" % (sc["name"], sy, (e or "").replace("\n", " ")[:400]))
    if notes:
        out.append("")
        out.append("Failed runs:")
        out.extend(notes)
    out.append("")
    return "\n".join(out), summary


def plot(summary, scenarios, systems, png, when):
    dat = png + ".dat"
    with open(dat, "w") as f:
        f.write("# scenario " + " ".join("%s_med %s_min %s_max %s_p99" % (s, s, s, s) for s in SYSTEMS_ALL) + "\n")
        for sc in scenarios:
            row = ['"%s"' % SHORT.get(sc["name"], sc["name"])]
            for sy in SYSTEMS_ALL:
                s = summary[sc["name"]].get(sy) if sy in systems else None
                if s and s.get("rate"):
                    row += ["%.1f" % s["rate"], "%.1f" % s["rate_min"], "%.1f" % s["rate_max"]]
                else:
                    row += ["NaN", "NaN", "NaN"]
                row.append("%.2f" % s["p99"] if s and s.get("p99") is not None else "NaN")
            f.write(" ".join(row) + "\n")
    gp = """
set terminal pngcairo size 1300,900 font ",10"
set output '{png}'
set datafile missing 'NaN'
set multiplot layout 2,1 title "relevo vs Postfix vs the smtp-source→smtp-sink ceiling ({when})"
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.8 border -1
set key top right
set grid ytics
set logscale y
set ylabel "messages/s (median, min–max), log scale"
set xtics noenhanced
set yrange [10:*]
plot '{dat}' using 2:3:4:xtic(1) title 'ceiling (source→sink)' lc rgb '#999999', \\
     '' using 6:7:8 title 'relevo' lc rgb '#1f77b4', \\
     '' using 10:11:12 title 'Postfix' lc rgb '#d62728'
set style histogram clustered gap 2
set ylabel "p99 final dot → 250 (ms), log scale"
set yrange [0.1:*]
plot '{dat}' using 5:xtic(1) title 'sink (ceiling)' lc rgb '#999999', \\
     '' using 9 title 'relevo' lc rgb '#1f77b4', \\
     '' using 13 title 'Postfix' lc rgb '#d62728'
unset multiplot
""".format(png=png, dat=dat, when=when)
    r = subprocess.run(["gnuplot"], input=gp.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.unlink(dat)
    if r.returncode != 0:
        log("gnuplot failed: %s" % r.stderr.decode("utf-8", "replace")[-500:])


# ---------------------------------------------------------------- main

def replot():
    """bench.py --replot: redraw results/latest.png from results/latest.json."""
    with open(os.path.join(RESULTS, "latest.json")) as f:
        raw = json.load(f)
    systems = sorted({r["system"] for r in raw["results"]}, key=SYSTEMS_ALL.index)
    plot(raw["summary"], raw["scenarios"], systems, os.path.join(RESULTS, "latest.png"),
         raw["started"][:10])
    return 0


def main():
    global RELEVO_BIN
    if sys.argv[1:] == ["--replot"]:
        return replot()

    def on_signal(sig, _frm):
        raise Interrupted("signal %d" % sig)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    names = [s["name"] for s in SCENARIOS] + [IDLE_SCENARIO]
    pick = [x.strip() for x in os.environ.get("BENCH_SCENARIOS", "").split(",") if x.strip()]
    for x in pick:
        if x not in names:
            log("unknown scenario %r (known: %s)" % (x, ", ".join(names)))
            return 2
    scenarios = [dict(s) for s in SCENARIOS if not pick or s["name"] in pick]
    systems = [x.strip() for x in os.environ.get("BENCH_SYSTEMS", ",".join(SYSTEMS_ALL)).split(",") if x.strip()]
    for x in systems:
        if x not in SYSTEMS_ALL:
            log("unknown system %r (known: %s)" % (x, ", ".join(SYSTEMS_ALL)))
            return 2
    if QUICK:
        for s in scenarios:
            s["msgs"] = max(100, s["msgs"] // 10)
    if "relevo" in systems and not os.access(RELEVO_BIN, os.X_OK):
        log("%s is missing: run `make build` (or set RELEVO_BIN)" % RELEVO_BIN)
        return 2

    tmp = os.environ.get("BENCH_TMP") or tempfile.mkdtemp(prefix="relevo-bench.")
    own_tmp = not os.environ.get("BENCH_TMP")
    os.chmod(tmp, 0o755)  # Postfix's processes (user postfix) must reach their queue
    if "relevo" in systems:
        # a private copy: a rebuild in the work tree during the bench changes nothing
        snap = os.path.join(tmp, "relevo")
        shutil.copy2(RELEVO_BIN, snap)
        RELEVO_BIN = snap
    procs = Procs(tmp)
    started = datetime.datetime.utcnow()
    t_start = time.monotonic()
    results = []
    idle = None
    status = 0
    try:
        background = machine_busy(2.0)
        if background > 0.15:
            log("warning: the machine is busy before the start (%.0f%% of its CPU used by other "
                "processes): the numbers will be noisy" % (100 * background))
        for sc in scenarios:
            log("scenario %s: %s — %d messages of %d bytes, %d recipient(s), %d sessions%s" % (
                sc["name"], sc["title"], sc["msgs"], sc["size"], sc["rcpts"], sc["sessions"],
                ", -d (many per connection)" if sc["reuse"] else ""))
            for i in range(RUNS):
                order = systems[i % len(systems):] + systems[:i % len(systems)]
                for sy in order:
                    try:
                        r = run_one(procs, tmp, sc, sy, i)
                    except Interrupted:
                        raise
                    except Exception as e:
                        r = dict(scenario=sc["name"], system=sy, run=i, msgs=sc["msgs"], ok=False,
                                 error="%s: %s" % (type(e).__name__, e))
                    r["background_busy"] = background
                    results.append(r)
                    if r["ok"]:
                        lat = r["latencies_ms"]
                        extra = ""
                        if "cpu_ms_per_msg" in r:
                            extra = ", CPU %.2f ms/msg, peak RSS %.0f MB PSS %.0f MB (%d procs; %.1f ms/sample)" % (
                                r["cpu_ms_per_msg"], r["peak_rss"] / 1048576.0, r["peak_pss"] / 1048576.0,
                                r["peak_procs"], r["sampler_ms_per_sample"])
                        log("  run %d/%d %-7s %6.0f msgs/s (%.2f s, %d sink sessions)%s, latency p50 %s p99 %s ms (n=%d, errors %d)" % (
                            i + 1, RUNS, sy, r["rate"], r["seconds"], r["sink_sessions"], extra,
                            fmt(pct(lat, 50), ".1f"), fmt(pct(lat, 99), ".1f"), len(lat), r["probe_errors"]))
                    else:
                        status = 1
                        log("  run %d/%d %-7s FAILED: %s" % (i + 1, RUNS, sy, r.get("error")))
                        if r.get("relay_log_tail"):
                            log("  relay log tail:\n" + r["relay_log_tail"])
                    os.sync()
                    # what other processes use of the machine, between our runs
                    background = machine_busy(0.7)
            if PERF and "relevo" in systems:
                os.makedirs(RESULTS, exist_ok=True)
                out = os.path.join(RESULTS, "perf-%s.txt" % sc["name"])
                r = run_one(procs, tmp, sc, "relevo", RUNS, perf_out=out)
                log("  perf run (not scored): %s -> %s" % ("ok" if r["ok"] else "failed", out))
        if "relevo" in systems and IDLE_CONNS > 0 and (not pick or IDLE_SCENARIO in pick):
            log("%s: relevo's memory with %d idle client connections" % (IDLE_SCENARIO, IDLE_CONNS))
            try:
                idle = measure_idle_conns(procs, tmp, IDLE_CONNS)
            except Interrupted:
                raise
            except Exception as e:
                idle = dict(scenario=IDLE_SCENARIO, system="relevo", conns=IDLE_CONNS, ok=False,
                            error="%s: %s" % (type(e).__name__, e))
            if idle["ok"]:
                log("  RSS %.0f MB idle, %.0f MB with %d connections (peak %.0f MB), fresh "
                    "greeting %s ms" % (idle["rss_idle"] / 1048576.0, idle["rss_conns"] / 1048576.0,
                                        idle["greeted"], idle["hwm"] / 1048576.0,
                                        fmt(idle.get("fresh_greeting_ms"), ".1f")))
            else:
                status = 1
                log("  FAILED: %s" % idle.get("error"))
    except Interrupted as e:
        log("interrupted (%s): cleaning up" % e)
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        if own_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if status == 130 or not (results or idle):
        return status

    total = time.monotonic() - t_start
    m = machine()
    md, summary = render(results, scenarios, systems, started, m, total)
    md += render_idle(idle)
    os.makedirs(RESULTS, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S") + ("-quick" if QUICK else "")
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write(md)
    with open(os.path.join(RESULTS, "%s.md" % stamp), "w") as f:
        f.write(md)
    raw = dict(started=started.isoformat() + "Z", quick=QUICK, runs=RUNS, machine=m,
               scenarios=scenarios, results=[{k: v for k, v in r.items() if k != "latencies_ms"}
                                             for r in results],
               summary=summary, idle_conns=idle)
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump(raw, f, indent=1)
    if scenarios:
        plot(summary, scenarios, systems, os.path.join(RESULTS, "latest.png"),
             started.strftime("%Y-%m-%d"))
    print(md)
    log("written: bench/results/latest.md, latest.png, latest.json, %s.md (%.0f s)" % (stamp, total))
    return status


if __name__ == "__main__":
    sys.exit(main())
