"""
test_hardening_helpers.py - shared pieces of the hardening suites (issue 5); holds
no tests itself.

  start_with_env   start a Relevo with extra environment variables (the fault seam
                   RELEVO_FAULT, RELEVO_DEBUG) without touching conftest.py: the
                   harness builds the daemon's environment from os.environ, so the
                   variables are set around start() only and never leak into the
                   CLI calls (`relevo queue ...`) made later.
  start_with_nofile  start a Relevo with its RLIMIT_NOFILE set (the test's own
                   limits stay as they are).
  more_fds         raise the test process's own open-file limit for a test that
                   holds many connections (a generator for a fixture).
  rss_kb           the daemon's resident set size (VmRSS of /proc/PID/status).
  start_measured   start_with_env with a small ASan quarantine, for tests that
                   measure RSS (harmless for the release build).
  wait_settled     wait until every queued message has had a delivery attempt.
  relay_message    a complete message with a unique Message-ID and a body whose
                   every line names that id, so a partial delivery is detectable.
  client_from      an SMTPClient connected from another loopback address
                   (127.0.0.x), for limits that are kept per client address.
  trickle          send bytes one at a time with a pause between them, watching
                   for the server's answer.
  HostileMX        a raw-socket SMTP "server" on 127.0.0.1 running a per-test script
                   per connection: whatever bytes, in whatever order, a hostile MX
                   may send. Records every connection (its lifetime, the lines the
                   client sent, whether TLS was negotiated).
"""

import os
import resource
import socket
import subprocess
import ssl
import threading
import time

import pytest

from conftest import DEFAULT_TIMEOUT, SMTPClient, make_message

# On a fresh data_dir the daemon's start-up makes 4 fsync calls through the seam
# (data_dir and spool/ directories, then the first segment's SEG record and its
# directory) and 1 write (the SEG record). The first message's batch is therefore
# fsync #5 and write #2. A test that relies on this first proves it (a start-up
# with the fault one call earlier must fail).
FSYNC_AT_START = 4
WRITE_AT_START = 1


def start_with_env(relevo, env):
    """relevo.start() with env added to the daemon's environment (only)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return relevo.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_with_nofile(relevo, soft, hard=None):
    """relevo.start() with the daemon's RLIMIT_NOFILE at soft (and hard: by
    default the current hard limit, which relevo may raise its soft one to)."""
    if hard is None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    real = subprocess.Popen

    def popen(*a, **kw):
        kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return real(*a, **kw)

    subprocess.Popen = popen
    try:
        return relevo.start()
    finally:
        subprocess.Popen = real


def more_fds(need):
    """Generator for a fixture: this process's open-file soft limit raised to 4096
    (at most the hard limit) for the test, then restored; skips the test when the
    hard limit is below need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if want < need:
        pytest.skip("RLIMIT_NOFILE hard limit %s is too low (need %d)" % (hard, need))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)


def rss_kb(relevo):
    """VmRSS of the running daemon, in KiB."""
    return int(proc_status(relevo.proc.pid)["VmRSS"].split()[0])


# The sanitizer build keeps freed memory in a quarantine (256 MiB by default), so
# its RSS after churning through megabytes says nothing about buffering. Daemons
# whose memory a test measures run with a small quarantine; everything else in
# the harness's ASAN_OPTIONS stays as it is.
SMALL_QUARANTINE = ("detect_leaks=1:abort_on_error=0:halt_on_error=1:"
                    "quarantine_size_mb=4:thread_local_quarantine_size_kb=256:"
                    "allocator_release_to_os_interval_ms=100")


def start_measured(relevo, env=None):
    """Start a daemon whose RSS the test will measure (see SMALL_QUARANTINE)."""
    e = dict(env or {})
    e.setdefault("ASAN_OPTIONS", SMALL_QUARANTINE)
    return start_with_env(relevo, e)


def wait_settled(relevo, timeout=15):
    """Until every queued message has had its first delivery attempt."""
    from fakes import wait_for
    wait_for(lambda: all(e.state != "queued" for e in relevo.queue_list()),
             timeout=timeout, what="every message attempted once")


def relay_message(mid, size=600, sender="load@sender.test", to="rcpt@dest.test"):
    """A message whose Message-ID is <mid> and whose body lines all carry mid."""
    line = ("%s line " % mid).encode()
    body = b""
    i = 0
    while len(body) < size:
        body += line + b"%06d " % i + b"." * 40 + b"\r\n"
        i += 1
    return make_message(sender=sender, to=to, subject="msg %s" % mid, body=body,
                        message_id="<%s>" % mid, date="Thu, 01 Jan 2026 00:00:00 +0000")


def relay_send(relevo, msg, sender="load@sender.test", rcpts=("rcpt@dest.test",)):
    """One transaction over the relay listener; returns the final reply."""
    with relevo.client("relay") as c:
        c.ehlo()
        r = c.mail_transaction(sender, list(rcpts), msg)
        c.quit()
    return r


class _ClientFrom(SMTPClient):
    """SMTPClient whose socket is bound to source (an address of 127.0.0.0/8)."""

    def __init__(self, port, source, tls, tlsmat, timeout):
        self.port = port
        self.tlsmat = tlsmat
        self.timeout = timeout
        self.buf = b""
        self.transcript = []
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.tls = False
        if tls:
            self._wrap()
        self.greeting = self.reply()
        self.extensions = {}


def client_from(relevo, source, mode="submissions", timeout=DEFAULT_TIMEOUT):
    """A client of relevo's `mode` listener connecting from `source` (127.0.0.x)."""
    return _ClientFrom(relevo.ports[mode], source, mode == "submissions", relevo.tls, timeout)


def trickle(c, data, interval=0.2, give_up=60.0):
    """Send data one byte every `interval` seconds until the server says something
    or closes. Returns (what it said, seconds from the first byte to then)."""
    t0 = time.monotonic()
    for b in data:
        try:
            c.sock.sendall(bytes([b]))
        except OSError:
            break
        got = c.pending(interval)
        if got or time.monotonic() - t0 > give_up:
            return got, time.monotonic() - t0
    return c.pending(5), time.monotonic() - t0


# ---------------------------------------------------------------------------
# A scriptable hostile MX
# ---------------------------------------------------------------------------

class MXConn:
    """One connection at a HostileMX, as seen by its script."""

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.buf = b""
        self.lines = []             # lines the client sent (without CRLF)
        self.tls = False
        self.started = time.monotonic()
        self.ended = None
        self.sent = 0
        self.error = None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)
        self.sent += len(data)

    def _read_until(self, marker, timeout):
        """Receive until marker is in the buffer; False at EOF/timeout."""
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except (socket.timeout, OSError):
                return False
            if not d:
                return False
            self.buf += d
        return True

    def readline(self, timeout=30):
        """The next line from the client (str, CRLF stripped); None at EOF/timeout."""
        if not self._read_until(b"\n", timeout):
            return None
        line, self.buf = self.buf.split(b"\n", 1)
        s = line.rstrip(b"\r").decode("utf-8", "replace")
        self.lines.append(s)
        return s

    def read_data(self, timeout=30):
        """The message after 354, up to and including CRLF.CRLF (bytes) or None."""
        if not self._read_until(b"\r\n.\r\n", timeout):
            return None
        data, self.buf = self.buf.split(b"\r\n.\r\n", 1)
        return data + b"\r\n.\r\n"

    def wait_closed(self, timeout=30):
        """Read until the client closes (True) or timeout (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return True
            if not d:
                return True
            self.buf += d
        return False

    def starttls(self, ctx):
        self.sock.settimeout(15)
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.tls = True
        self.buf = b""

    def commands(self):
        return [l.split(" ", 1)[0].upper() for l in self.lines]

    @property
    def duration(self):
        end = self.ended if self.ended is not None else time.monotonic()
        return end - self.started


class HostileMX:
    """Listens on 127.0.0.1:<free port>; runs script(conn) for each connection in
    its own thread, then closes the socket. script may raise OSError freely (the
    client went away)."""

    def __init__(self, script, max_conns=200):
        self.script = script
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.max_conns = max_conns
        self.stopping = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def route(self):
        return "[127.0.0.1]:%d" % self.port

    def _accept(self):
        while not self.stopping:
            try:
                s, peer = self.sock.accept()
            except OSError:
                return
            c = MXConn(s, peer)
            with self.lock:
                self.conns.append(c)
                over = len(self.conns) > self.max_conns
            if over:
                s.close()
                continue
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.script(c)
        except (OSError, ssl.SSLError, ValueError) as e:
            c.error = e
        finally:
            c.ended = time.monotonic()
            try:
                c.sock.close()
            except OSError:
                pass

    def finished(self):
        with self.lock:
            return [c for c in self.conns if c.ended is not None]

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.close()
            except OSError:
                pass


def server_tls_context(tls_ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls_ca.cert, tls_ca.key)
    return ctx


def greet_and_ehlo(c, ehlo_lines=("PIPELINING", "8BITMIME")):
    """220, then answer EHLO with the given extension lines. False if the client
    did not say EHLO."""
    c.send("220 %s ESMTP hostile\r\n" % "mx.hostile.test")
    line = c.readline()
    if line is None or not line.upper().startswith(("EHLO", "HELO")):
        return False
    exts = list(ehlo_lines)
    out = "250%smx.hostile.test\r\n" % ("-" if exts else " ")
    for i, e in enumerate(exts):
        out += "250%s%s\r\n" % ("-" if i < len(exts) - 1 else " ", e)
    c.send(out)
    return True

