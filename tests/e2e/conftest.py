"""
conftest.py - the end-to-end harness: the real `relevo` binary on loopback.

Everything a test needs is built here, per test, in a short private directory
under /tmp that is removed afterwards (set RELEVO_E2E_KEEP=1 to keep it):

  tls_ca        a throw-away CA and a server certificate for "relay.test"
                (subjectAltName DNS:relay.test, IP:127.0.0.1), made with the
                openssl CLI once per session; clients verify against the CA.
  pick_ports    free loopback ports from this worker's own range (see there).
  make_relevo   a factory: writes a config (the spec's defaults, overridable),
                adds the standard users with `relevo user add`, and returns a
                Relevo (start/stop/kill9/cli/queue_list...).
  relevo        a started daemon with the default config.

A Relevo is always stopped at teardown (SIGTERM, wait, SIGKILL if it hangs),
and its stderr is then checked: any AddressSanitizer / UBSan ("runtime error:")
/ LeakSanitizer report fails the test, and so does a daemon that needed SIGKILL
to stop. When a test fails, every daemon's stderr is attached to the report.

SMTPClient is a raw socket client: it sends exactly the bytes it is given and
reads replies with timeouts, so tests can assert exact transcripts.
"""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import base64
import http.client
import json

import pytest

RELEVO_BIN = os.environ.get(
    "RELEVO_BIN", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "relevo"))
HOSTNAME = "relay.test"
DEFAULT_TIMEOUT = 15.0          # seconds for any single network read
START_TIMEOUT = 20.0            # daemon start (ASan builds are slow)
STOP_TIMEOUT = 10.0             # graceful stop after SIGTERM
SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                      "ERROR: ThreadSanitizer", "ERROR: UndefinedBehaviorSanitizer")

# The standard accounts every daemon starts with.
USERS = {
    "alice": ("alice-Secret-1", ["example.com"]),
    "carol": ("carol-Secret-3", ["example.net", "example.org"]),
}

ID_RE = re.compile(r"^[0-9A-Fa-f]{16}$")
QUEUED_RE = re.compile(r"queued as ([0-9A-Fa-f]{16})\b")


def sanitizer_env():
    """Environment for every relevo process: sanitizer reports to stderr."""
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    env.setdefault("LSAN_OPTIONS", "exitcode=23")
    return env


def sanitizer_findings(text):
    """The lines of text that are sanitizer reports (empty list if clean)."""
    return [l for l in text.splitlines() if any(p in l for p in SANITIZER_PATTERNS)]


# ---------------------------------------------------------------------------
# TLS material
# ---------------------------------------------------------------------------

class TLSMaterial:
    def __init__(self, d):
        self.dir = d
        self.ca = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "cert.pem")
        self.key = os.path.join(d, "key.pem")

    def client_context(self):
        """A client context that verifies the server against the test CA."""
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr))


@pytest.fixture(scope="session")
def tls_ca():
    d = tempfile.mkdtemp(prefix="relevo-tls-", dir="/tmp")
    try:
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                 "-keyout", "ca.key", "-out", "ca.pem", "-days", "3",
                 "-subj", "/CN=relevo e2e test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-sha256",
                 "-keyout", "key.pem", "-out", "server.csr",
                 "-subj", "/CN=" + HOSTNAME, cwd=d)
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("subjectAltName=DNS:%s,IP:127.0.0.1\n"
                    "basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid,issuer\n" % HOSTNAME)
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "cert.pem", "-days", "3", "-sha256",
                 "-extfile", "ext.cnf", cwd=d)
        os.chmod(os.path.join(d, "key.pem"), 0o600)
        yield TLSMaterial(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# A fake MX that defers everything
# ---------------------------------------------------------------------------

class TempfailMX:
    """Listens on 127.0.0.1; every connection gets "421 4.3.2" and is closed, so
    every delivery attempt fails temporarily and mail stays queued."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                c.settimeout(5)
                c.sendall(b"421 4.3.2 relevo-e2e fake MX: try again later\r\n")
                c.shutdown(socket.SHUT_WR)
                c.recv(4096)
            except OSError:
                pass
            finally:
                c.close()

    def close(self):
        self.stopping = True
        self.sock.close()


@pytest.fixture(scope="session")
def tempfail_mx():
    mx = TempfailMX()
    yield mx
    mx.close()


# ---------------------------------------------------------------------------
# Ports and config
# ---------------------------------------------------------------------------

# Ports. Each pytest process (an xdist worker, or the one process of a serial
# run) takes listener ports from its own slice of 20000-32767: below the kernel's
# ephemeral range (32768-60999), so no connect() or bind(0) anywhere on the host
# takes one between the pick and the daemon's bind, and disjoint between the
# workers of one run, so two tests running side by side never pick the same port
# (a FakeMX farm listens on 127.0.0.N:PORT, which a probe of 127.0.0.1 cannot
# see). Within its slice a process walks on from a random start (other runs on
# the same machine use the same slices) and skips ports it cannot bind.
PORT_BASE, PORT_SLICE, PORT_SLICES = 20000, 1590, 8


def worker_index():
    """This process's xdist worker number (gw3 -> 3); 0 when not under xdist."""
    m = re.match(r"^gw(\d+)$", os.environ.get("PYTEST_XDIST_WORKER", ""))
    return int(m.group(1)) if m else 0


def worker_tag():
    """A short name unique among the workers of a run ("gw0".., "main" if serial)."""
    return os.environ.get("PYTEST_XDIST_WORKER") or "main"


_port_cursor = [None]


def _port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_ports(n):
    """n distinct free TCP ports on 127.0.0.1, from this worker's slice (see above)."""
    lo = PORT_BASE + (worker_index() % PORT_SLICES) * PORT_SLICE
    if _port_cursor[0] is None:
        _port_cursor[0] = int.from_bytes(os.urandom(2), "big") % PORT_SLICE
    ports = []
    for _ in range(PORT_SLICE):
        port = lo + _port_cursor[0]
        _port_cursor[0] = (_port_cursor[0] + 1) % PORT_SLICE
        if _port_free(port):
            ports.append(port)
            if len(ports) == n:
                return ports
    raise RuntimeError("no %d free ports in %d-%d" % (n, lo, lo + PORT_SLICE - 1))


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if re.match(r"^[A-Za-z0-9_./@-][A-Za-z0-9_./:@-]*$", s) and not s.endswith(":"):
        return s                # plain scalar, as an operator would write it
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def default_config(workdir, tls, ports, mx_port=None):
    """The spec's configuration as a dict (ports: submission, submissions, relay).

    With mx_port, every domain is routed to that loopback port (a fake MX that
    answers 421), so accepted mail stays in the queue, deferred, for the whole test
    and nothing is ever looked up in the real DNS or sent off the host."""
    return {
        "hostname": HOSTNAME,
        "data_dir": os.path.join(workdir, "data"),
        "listen": [
            {"address": "127.0.0.1:%d" % ports["submission"], "mode": "submission"},
            {"address": "127.0.0.1:%d" % ports["submissions"], "mode": "submissions"},
            {"address": "127.0.0.1:%d" % ports["relay"], "mode": "relay"},
        ],
        "trusted_networks": ["127.0.0.0/8"],
        "tls": {"cert": tls.cert, "key": tls.key},
        "smtp": {
            "max_message_size": 1048576, "max_recipients": 5, "max_connections": 50,
            "max_connections_per_ip": 20, "max_errors": 10, "max_auth_failures": 3,
            "timeout_command": 300, "timeout_data": 180, "greeting_delay_ms": 0,
        },
        # The fake MXs live on 127.0.0.x: internal addresses, which MX delivery
        # refuses unless delivery.allow_networks lists them (issue 12; the spec's
        # config, without mx_port, stays exactly as documented).
        "delivery": {"port": 25} if mx_port is None else
                    {"port": 25, "allow_networks": ["127.0.0.0/8"],
                     "routes": {"*": "[127.0.0.1]:%d" % mx_port}},
        # Most tests are not about DKIM: let mail from unregistered domains go out
        # unsigned (the default, tempfail, is tested in test_dkim.py).
        "dkim": {"missing_key": "send"},
    }


def _yaml_flow(v):
    """A scalar, or a list of scalars as a flow sequence (inside a flow mapping)."""
    if isinstance(v, list):
        return "[%s]" % ", ".join(_yaml_scalar(x) for x in v)
    return _yaml_scalar(v)


def render_yaml(cfg, indent=0):
    """Render the small config dialect we use: nested mappings, lists of scalars
    (flow style) and lists of flat mappings (one flow mapping per line)."""
    pad = "  " * indent
    out = []
    for key, val in cfg.items():
        k = _yaml_scalar(key)
        if isinstance(val, dict):
            out.append("%s%s:" % (pad, k))
            out.append(render_yaml(val, indent + 1).rstrip("\n"))
        elif isinstance(val, list):
            if val and isinstance(val[0], dict):
                out.append("%s%s:" % (pad, k))
                for item in val:
                    out.append("%s  - {%s}" % (pad, ", ".join(
                        "%s: %s" % (ik, _yaml_flow(iv)) for ik, iv in item.items())))
            else:
                out.append("%s%s: [%s]" % (pad, k, ", ".join(_yaml_scalar(v) for v in val)))
        else:
            out.append("%s%s: %s" % (pad, k, _yaml_scalar(val)))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------

class CLIResult:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    def __repr__(self):
        return "relevo %s -> exit %s\n--- stdout ---\n%s--- stderr ---\n%s" % (
            " ".join(self.args), self.rc, self.out, self.err)


class QueueEntry:
    """One message of `relevo queue list`: its line
    "ID ARRIVED SIZE STATE <SENDER>" and the indented recipient lines after it
    ("<ADDR> STATE [attempts=N] [next=TIME] [(last reply)]")."""

    def __init__(self, line, rcpt_lines=()):
        self.line = "\n".join([line, *rcpt_lines])
        toks = line.split()
        assert len(toks) == 5, "queue list message line is not 5 fields: %r" % line
        self.id = toks[0]
        assert ID_RE.match(self.id), "queue list line does not start with an ID: %r" % line
        self.arrived = toks[1]
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", self.arrived), line
        self.size = int(toks[2])
        self.state = toks[3]
        assert toks[4].startswith("<") and toks[4].endswith(">"), line
        self.sender = toks[4][1:-1]
        self.rcpts = {}             # address -> (state, rest of the line)
        for r in rcpt_lines:
            m = re.match(r"^ {4}<([^>]*)>  (\S+)(.*)$", r)
            assert m, "bad queue list recipient line %r" % r
            self.rcpts[m.group(1)] = (m.group(2), m.group(3).strip())
        self.recipients = ",".join(self.rcpts)

    def __repr__(self):
        return "QueueEntry(%r)" % self.line


def parse_queue_list(out):
    """`relevo queue list` output: a list of QueueEntry ([] when empty)."""
    lines = [l for l in out.splitlines() if l.strip()]
    if lines == ["queue is empty"]:
        return []
    assert "queue is empty" not in out, out
    assert lines and lines[0].split()[:5] == ["ID", "ARRIVED", "SIZE", "STATE", "SENDER"], out
    entries, cur = [], None
    for l in lines[1:]:
        if l.startswith("    "):
            assert cur is not None, out
            cur[1].append(l)
        else:
            cur = (l, [])
            entries.append(cur)
    return [QueueEntry(l, r) for l, r in entries]


def _listening_ports():
    """Local TCP ports in LISTEN state on 127.0.0.1 / 0.0.0.0 (from /proc)."""
    ports = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A":
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


class Relevo:
    """One relevo installation (config, data dir) and at most one running daemon."""

    def __init__(self, workdir, tls, ports, config, name="relevo"):
        self.workdir = workdir
        self.tls = tls
        self.ports = ports
        self.config = config
        self.name = name
        self.conf_path = os.path.join(workdir, "relevo.yaml")
        self.data_dir = config.get("data_dir")
        self.proc = None
        self.runs = []              # (stderr path, exit status or None) per start
        self.killed_on_stop = False
        self.write_config()

    # -- config -------------------------------------------------------------
    def write_config(self, text=None):
        with open(self.conf_path, "w") as f:
            f.write(text if text is not None else render_yaml(self.config))

    # -- process control ----------------------------------------------------
    @property
    def stderr_path(self):
        return self.runs[-1][0] if self.runs else None

    def start(self, wait=True):
        assert self.proc is None, "daemon already running"
        n = len(self.runs)
        errp = os.path.join(self.workdir, "serve-%d.stderr" % n)
        outp = os.path.join(self.workdir, "serve-%d.stdout" % n)
        self._err = open(errp, "wb")
        self._out = open(outp, "wb")
        self.proc = subprocess.Popen([RELEVO_BIN, "serve", "-c", self.conf_path],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, env=sanitizer_env(),
                                     start_new_session=True)
        self.runs.append([errp, None])
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=START_TIMEOUT):
        want = set(self.ports.values())
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._reap(rc)
                raise AssertionError("relevo serve exited with status %s while starting:\n%s"
                                     % (rc, self.stderr()))
            missing = want - _listening_ports()
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError("relevo serve not listening on %s after %ss:\n%s"
                                     % (sorted(missing), timeout, self.stderr()))
            time.sleep(0.02)

    def _reap(self, rc):
        self.runs[-1][1] = rc
        self.proc = None
        self._err.close()
        self._out.close()

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; SIGKILL (and remember it) if it does not stop. Exit status."""
        if self.proc is None:
            return self.runs[-1][1] if self.runs else None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.killed_on_stop = True
            self.proc.kill()
            rc = self.proc.wait(10)
        self._reap(rc)
        return rc

    def terminate(self):
        """Send SIGTERM without waiting."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout=STOP_TIMEOUT):
        rc = self.proc.wait(timeout)
        self._reap(rc)
        return rc

    def kill9(self):
        """SIGKILL the daemon (a crash) and reap it."""
        assert self.proc is not None
        self.proc.kill()
        rc = self.proc.wait(10)
        self._reap(rc)
        return rc

    def restart(self):
        self.stop()
        return self.start()

    # -- output ---------------------------------------------------------------
    def stderr(self, run=None):
        """The daemon's stderr (of the latest run, or of run number run)."""
        if not self.runs:
            return ""
        path = self.runs[-1 if run is None else run][0]
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def all_stderr(self):
        parts = []
        for i, (path, rc) in enumerate(self.runs):
            status = "running" if (rc is None and self.proc) else "exit %s" % rc
            parts.append("=== %s serve run %d (%s) ===\n%s" % (self.name, i, status,
                                                               self.stderr(i)))
        return "\n".join(parts)

    # -- CLI ------------------------------------------------------------------
    def cli(self, args, stdin=None, timeout=60):
        """Run `relevo ARGS -c CONF`; returns a CLIResult. Sanitizer reports fail."""
        if isinstance(args, str):
            args = args.split()
        if isinstance(stdin, str):
            stdin = stdin.encode()
        r = subprocess.run([RELEVO_BIN, *args, "-c", self.conf_path],
                           input=stdin if stdin is not None else b"",
                           capture_output=True, timeout=timeout, env=sanitizer_env())
        res = CLIResult(list(args), r.returncode, r.stdout.decode("utf-8", "replace"),
                        r.stderr.decode("utf-8", "replace"))
        found = sanitizer_findings(res.err)
        assert not found, "sanitizer report from the CLI:\n%r" % res
        return res

    def cli_ok(self, args, stdin=None):
        res = self.cli(args, stdin)
        assert res.rc == 0, "expected exit 0: %r" % res
        return res

    def queue_list(self):
        """Parsed `relevo queue list`: a list of QueueEntry ([] when empty)."""
        res = self.cli_ok(["queue", "list"])
        return parse_queue_list(res.out)

    def queue_ids(self):
        return [e.id.upper() for e in self.queue_list()]

    def queue_show(self, msgid, body=True):
        """`relevo queue show` (with --body unless body=False)."""
        return self.cli_ok(["queue", "show", msgid, *(["--body"] if body else [])]).out

    def add_user(self, name, password, domains):
        # --no-register: most tests are not about DKIM, and making keys for every
        # account's domains of every daemon would cost seconds each (test_dkim*.py
        # register theirs).
        args = ["user", "add", name, "--no-register"]
        for d in domains:
            args += ["--domain", d]
        return self.cli_ok(args, stdin=password + "\n")

    # -- clients --------------------------------------------------------------
    def client(self, mode="submission", **kw):
        """A raw SMTPClient connected to the listener of that mode (greeting read)."""
        return SMTPClient(self.ports[mode], tls=(mode == "submissions"), tlsmat=self.tls, **kw)

    def teardown_check(self):
        """Stop, then complain about sanitizer reports or a hung shutdown."""
        self.stop()
        problems = []
        for i in range(len(self.runs)):
            found = sanitizer_findings(self.stderr(i))
            if found:
                problems.append("run %d: sanitizer report: %s" % (i, found[:5]))
        if self.killed_on_stop:
            problems.append("daemon did not exit within %ss of SIGTERM (SIGKILLed)"
                            % STOP_TIMEOUT)
        return problems


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="rlv-", dir="/tmp")
    yield d
    if not os.environ.get("RELEVO_E2E_KEEP"):
        shutil.rmtree(d, ignore_errors=True)


def _check_binary():
    if not os.access(RELEVO_BIN, os.X_OK):
        pytest.fail("RELEVO_BIN=%s is not an executable relevo binary" % RELEVO_BIN,
                    pytrace=False)


STORE_FILE = "relevo.db"


@pytest.fixture(scope="session")
def users_store(tls_ca, tempfail_mx):
    """The store (data_dir/relevo.db) of a data_dir where `relevo user add` has added
    the standard users, made once per pytest process: hashing their passwords (argon2id)
    costs a second of CPU per daemon, so make_relevo copies this file instead."""
    _check_binary()
    d = tempfile.mkdtemp(prefix="rlv-users-", dir="/tmp")
    try:
        cfg = default_config(d, tls_ca, dict(zip(["submission", "submissions", "relay"],
                                                 pick_ports(3))), tempfail_mx.port)
        os.makedirs(cfg["data_dir"])
        r = Relevo(d, tls_ca, {}, cfg, name="users-store")
        for name, (pw, domains) in USERS.items():
            r.add_user(name, pw, domains)
        names = os.listdir(cfg["data_dir"])
        assert names == [STORE_FILE], "user add left %s in data_dir" % names
        yield os.path.join(cfg["data_dir"], STORE_FILE)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_relevo(request, workdir, tls_ca, tempfail_mx, users_store):
    """Factory: make_relevo(smtp={...}, users=True, start=True, **top_level_overrides).

    users=True: the standard USERS exist (the store made by `relevo user add` in
    users_store, copied; with run_as set the CLI adds them, as that user)."""
    _check_binary()
    made = []
    request.node._relevo_daemons = made

    def make(users=True, start=True, **overrides):
        n = len(made)
        d = workdir if n == 0 else tempfile.mkdtemp(prefix="rlv%d-" % n, dir=workdir)
        keys = ["submission", "submissions", "relay"]
        ports = dict(zip(keys, pick_ports(3)))
        cfg = default_config(d, tls_ca, ports, tempfail_mx.port)
        for k, v in overrides.items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = {**cfg[k], **v}
            else:
                cfg[k] = v
        os.makedirs(cfg["data_dir"], exist_ok=True)
        r = Relevo(d, tls_ca, ports, cfg, name="relevo#%d" % n)
        made.append(r)
        if users and "run_as" not in cfg:
            shutil.copy2(users_store, os.path.join(cfg["data_dir"], STORE_FILE))
        elif users:
            for name, (pw, domains) in USERS.items():
                r.add_user(name, pw, domains)
        if start:
            r.start()
        return r

    yield make
    problems = []
    for r in made:
        problems += ["%s: %s" % (r.name, p) for p in r.teardown_check()]
    if problems:
        pytest.fail("daemon problems at teardown:\n" + "\n".join(problems) + "\n\n" +
                    "\n".join(r.all_stderr() for r in made), pytrace=False)


@pytest.fixture
def relevo(make_relevo):
    return make_relevo()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("call", "setup"):
        for r in getattr(item, "_relevo_daemons", []):
            rep.sections.append(("relevo daemon stderr: " + r.name, r.all_stderr()[-30000:]))


# ---------------------------------------------------------------------------
# The raw SMTP client
# ---------------------------------------------------------------------------

class Reply:
    """One (possibly multi-line) SMTP reply."""
    ENH_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")

    def __init__(self, code, lines):
        self.code = code
        self.lines = lines          # text of each line, after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enh(self):
        m = self.ENH_RE.match(self.lines[0]) if self.lines else None
        return "%s.%s.%s" % m.groups() if m else None

    @property
    def queued_id(self):
        m = QUEUED_RE.search(self.lines[-1]) if self.lines else None
        return m.group(1).upper() if m else None

    def __repr__(self):
        return "\\r\\n".join("%d%s%s" % (self.code, "-" if i < len(self.lines) - 1 else " ",
                                        l) for i, l in enumerate(self.lines))

    __str__ = __repr__


class Closed(Exception):
    """The server closed the connection."""


def expect(reply, code, enh=None):
    """Assert the reply's code and (exact or prefix-with-'x') enhanced code."""
    assert reply.code == code, "expected %s %s, got %r" % (code, enh or "", reply)
    if enh is not None:
        got = reply.enh
        assert got is not None, "expected enhanced code %s, got %r" % (enh, reply)
        want = enh.split(".")
        have = got.split(".")
        assert all(w == "x" or w == h for w, h in zip(want, have)), \
            "expected %s %s, got %r" % (code, enh, reply)
    return reply


class SMTPClient:
    def __init__(self, port, tls=False, tlsmat=None, timeout=DEFAULT_TIMEOUT,
                 read_greeting=True):
        self.port = port
        self.tlsmat = tlsmat
        self.timeout = timeout
        self.buf = b""
        self.transcript = []        # ("C"|"S", bytes)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.tls = False
        if tls:
            self._wrap()
        self.greeting = self.reply() if read_greeting else None
        self.extensions = {}

    def _wrap(self):
        ctx = self.tlsmat.client_context()
        self.sock = ctx.wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.tls = True

    # -- bytes ------------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(("C", data))
        self.sock.sendall(data)

    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError):
            data = b""
        except ssl.SSLZeroReturnError:
            data = b""
        if not data:
            raise Closed("connection closed by server; transcript:\n" + self.dump())
        self.transcript.append(("S", data))
        self.buf += data

    def read_line(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete reply line within %ss; transcript:\n%s"
                                   % (timeout, self.dump()))
            try:
                self._recv(left)
            except socket.timeout:
                raise TimeoutError("no complete reply line within %ss; transcript:\n%s"
                                   % (timeout, self.dump()))
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self, timeout=None):
        """Read one complete reply."""
        lines, code = [], None
        while True:
            line = self.read_line(timeout)
            # RFC 5321 4.2: "NNN" alone is a valid last line (text is optional)
            m = re.match(r"^(\d{3})([ -]|$)(.*)$", line)
            assert m, "malformed reply line %r; transcript:\n%s" % (line, self.dump())
            c = int(m.group(1))
            assert code is None or c == code, "reply code changed mid-reply: %r" % line
            code = c
            lines.append(m.group(3))
            if m.group(2) != "-":
                return Reply(code, lines)

    def pending(self, wait=0.3):
        """Whatever the server sends within wait seconds (b'' if nothing); never raises."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self._recv(left)
            except (socket.timeout, TimeoutError, Closed, OSError):
                break
        data, self.buf = self.buf, b""
        return data

    def wait_closed(self, timeout=None):
        """True if the server closes the connection within timeout (data is discarded)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._recv(left)
            except Closed:
                return True
            except socket.timeout:
                return False
            except OSError:
                return True

    def dump(self):
        out = []
        for who, data in self.transcript[-40:]:
            s = data.decode("utf-8", "replace")
            if len(s) > 600:
                s = s[:300] + "...(%d bytes)..." % len(data) + s[-200:]
            out.append("%s: %r" % (who, s))
        return "\n".join(out)

    # -- commands ---------------------------------------------------------------
    def cmd(self, line, timeout=None):
        """Send one command line (CRLF added) and read its reply."""
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply(timeout)

    def ehlo(self, name="client.example"):
        r = self.cmd("EHLO " + name)
        expect(r, 250)
        self.extensions = {}
        for l in r.lines[1:]:
            parts = l.split(None, 1)
            self.extensions[parts[0].upper()] = parts[1] if len(parts) > 1 else ""
        return r

    def starttls(self):
        r = self.cmd("STARTTLS")
        expect(r, 220)
        assert self.buf == b"", "server sent plaintext after its 220 to STARTTLS: %r" % self.buf
        self._wrap()
        return r

    def auth_plain(self, user, password):
        tok = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        return self.cmd("AUTH PLAIN " + tok)

    def auth_login(self, user, password):
        r = self.cmd("AUTH LOGIN")
        if r.code != 334:
            return r
        r = self.cmd(base64.b64encode(user.encode()).decode())
        if r.code != 334:
            return r
        return self.cmd(base64.b64encode(password.encode()).decode())

    def login(self, user="alice", password=None, ehlo=True):
        """EHLO (STARTTLS + EHLO on a plain connection) and AUTH PLAIN; asserts 235."""
        if password is None:
            password = USERS[user][0]
        if ehlo:
            self.ehlo()
            if not self.tls:
                self.starttls()
                self.ehlo()
        expect(self.auth_plain(user, password), 235, "2.7.0")

    def data(self, message, stuff=True):
        """DATA, the message (dot-stuffed), CRLF.CRLF; returns the final reply."""
        expect(self.cmd("DATA"), 354)
        if isinstance(message, str):
            message = message.encode()
        body = dot_stuff(message) if stuff else message
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        self.send(body + b".\r\n")
        return self.reply()

    def mail_transaction(self, sender, rcpts, message):
        """MAIL, RCPT..., DATA; asserts the envelope is accepted; final reply."""
        expect(self.cmd("MAIL FROM:<%s>" % sender), 250)
        for r in rcpts:
            expect(self.cmd("RCPT TO:<%s>" % r), 250)
        return self.data(message)

    def quit(self):
        try:
            r = self.cmd("QUIT")
            expect(r, 221)
        finally:
            self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def dot_stuff(msg):
    """RFC 5321 4.5.2 transparency: a line starting with '.' gets another '.'."""
    if msg.startswith(b"."):
        msg = b"." + msg
    return msg.replace(b"\r\n.", b"\r\n..")


def make_message(sender="alice@example.com", to="rcpt@example.net", subject="test",
                 body="Hello.\r\n", extra_headers=(), message_id=None, date=None):
    """A well-formed RFC 5322 message as bytes (CRLF line endings)."""
    h = ["From: <%s>" % sender, "To: <%s>" % to, "Subject: %s" % subject]
    if message_id:
        h.append("Message-ID: %s" % message_id)
    if date:
        h.append("Date: %s" % date)
    h += list(extra_headers)
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def submit(relevo, sender="alice@example.com", rcpts=("rcpt@example.net",), message=None,
           user="alice", mode="submissions"):
    """Authenticate and submit one message; returns (queue id, the reply)."""
    if message is None:
        message = make_message(sender=sender, to=rcpts[0])
    with relevo.client(mode) as c:
        if mode == "relay":
            c.ehlo()
        else:
            c.login(user)
        r = c.mail_transaction(sender, rcpts, message)
        expect(r, 250, "2.0.0")
        assert r.queued_id, "no 'queued as ID' in %r" % r
        c.quit()
    return r.queued_id, r


def open_transaction(relevo, mode="submissions", sender="alice@example.com",
                     rcpts=("rcpt@example.net",), data=True):
    """A client in the middle of a transaction: greeted, EHLO (relay) or logged in
    as alice, MAIL and RCPT accepted, and with data=True DATA answered 354. The
    caller sends the content (exact bytes) and closes it (a context manager)."""
    c = relevo.client(mode)
    if mode == "relay":
        c.ehlo()
    else:
        c.login("alice")
    expect(c.cmd("MAIL FROM:<%s>" % sender), 250)
    for r in rcpts:
        expect(c.cmd("RCPT TO:<%s>" % r), 250)
    if data:
        expect(c.cmd("DATA"), 354)
    return c


def header_lines(text, name):
    """Lines of text that start header `name:` (case-insensitive)."""
    pat = re.compile(r"^%s:" % re.escape(name), re.I | re.M)
    return pat.findall(text)


def poll(fn, timeout=10.0, interval=0.05, what="condition"):
    """Call fn until it returns a true value; return it, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# The HTTP API
# ---------------------------------------------------------------------------

APIKEY_RE = re.compile(r"^rlv_[0-9a-f]{16}_[0-9a-f]{40}$")


def enable_http(relevo, **http):
    """Give a not yet started relevo an http.listen on a free loopback port (and
    any other http.* settings); wait_listening then waits for it too."""
    port = pick_ports(1)[0]
    relevo.ports["http"] = port
    relevo.config["http"] = dict({"listen": ["127.0.0.1:%d" % port]}, **http)
    relevo.write_config()
    return port


def create_api_key(relevo, user="alice"):
    """`relevo apikey create USER`: the new key (printed once on stdout)."""
    res = relevo.cli_ok(["apikey", "create", user])
    key = res.out.strip()
    assert APIKEY_RE.match(key), "not an API key on stdout: %r" % res
    return key


class APIResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # {lower-case name: value}
        self.body = body                # bytes
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "HTTP %d %r %r" % (self.status, self.headers, self.body[:2000])


class APIClient:
    """A small client of relevo's HTTP API (http.client, one connection per call)."""

    def __init__(self, port, key=None):
        self.port = port
        self.key = key

    def request(self, method, path, body=None, key=..., raw=None, headers=None,
                timeout=DEFAULT_TIMEOUT):
        """body: a JSON value; raw: exact bytes instead; key=None sends no key."""
        key = self.key if key is ... else key
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = "Bearer " + key
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            return APIResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                               payload)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def expect_status(resp, status, code=None):
    """Assert an API response's status and, for errors, the JSON error document."""
    assert resp.status == status, "expected HTTP %d, got %r" % (status, resp)
    assert resp.headers.get("content-type", "").startswith("application/json"), resp
    assert resp.json is not None, "the body is not JSON: %r" % resp
    if status >= 400:
        err = resp.json.get("error")
        assert isinstance(err, dict) and err.get("status") == status, resp
        assert isinstance(err.get("message"), str) and err["message"], resp
        if code is not None:
            assert err.get("code") == code, "expected code %s: %r" % (code, resp)
    return resp.json


@pytest.fixture
def make_api_relevo(make_relevo):
    """Factory: a relevo with the HTTP API on, keys for alice and carol (r.keys),
    and r.api (alice's APIClient). make(relevo=None, start=True, http={...}):
    pass a relevo made with start=False (e.g. a delivering one) to add the API."""

    def make(relevo=None, start=True, http=None):
        r = relevo if relevo is not None else make_relevo(start=False)
        enable_http(r, **(http or {}))
        r.keys = {u: create_api_key(r, u) for u in USERS}
        r.api = APIClient(r.ports["http"], r.keys["alice"])
        if start:
            r.start()
        return r

    return make


@pytest.fixture
def api_relevo(make_api_relevo):
    """A started relevo with the HTTP API (mail stays queued: the 421 fake MX)."""
    return make_api_relevo()
