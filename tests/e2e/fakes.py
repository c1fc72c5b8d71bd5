"""
fakes.py - the outside world for the delivery tests: a fake DNS server and fake
MX servers on loopback, and helpers to drive a delivering relevo against them.

  FakeDNS     dnslib server (UDP and TCP, same port) on 127.0.0.1:<free port>
              answering from a per-test zone: MX, A, AAAA, TXT, CNAME; NXDOMAIN
              for unknown names; SERVFAIL or silence (a timeout) for names the
              test chooses. relevo's dns.resolver is "127.0.0.1@PORT".
  FakeMX      an aiosmtpd server on 127.0.0.N:PORT recording every connection
              (TLS or not, its transactions) and every accepted message (envelope,
              exact content bytes), scriptable per test: a 421 greeting, 4xx/5xx
              to RCPT for chosen recipients (once, or always), 4xx/5xx to DATA,
              the connection dropped in the middle of DATA, STARTTLS offered.
  MXFarm      the set of FakeMX of a test, all on one port (delivery.port).

Everything binds 127.0.0.0/8 only, on ports picked at run time, and is stopped
by the fixtures even when the test fails. Names are under .test.
"""

import asyncio
import email
import email.policy
import itertools
import os
import re
import socket
import ssl
import threading
import time

import pytest

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, SOA, TXT, A
from dnslib.server import DNSError, DNSLogger, DNSServer

from conftest import make_message, pick_ports, submit

TTL = 1


def wait_for(fn, timeout=15.0, what="condition", interval=0.05):
    """Call fn until it returns a true value; return it, or fail after timeout.

    Like conftest.poll, but the timeout counts both monotonic time and the time
    actually slept, so a jump of the test process's clock (seen in loaded
    sandboxes) cannot end the wait early."""
    start = time.monotonic()
    slept = 0.0
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() - start > timeout and slept > timeout:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)
        slept += interval


# ---------------------------------------------------------------------------
# DNS
# ---------------------------------------------------------------------------

def _norm(name):
    return str(name).rstrip(".").lower()


class _ZoneResolver:
    def __init__(self, dns):
        self.dns = dns

    def resolve(self, request, handler):
        q = request.q
        name, qtype = _norm(q.qname), QTYPE.get(q.qtype)
        with self.dns.lock:
            self.dns.queries.append((name, qtype))
            if name in self.dns.silent:
                # No reply at all: the resolver times out.
                raise DNSError("silent name %s" % name)
            reply = request.reply()
            if name in self.dns.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            seen = set()
            cur = name
            while True:
                rrs = self.dns.zone.get(cur)
                if rrs is None:
                    if cur == name:
                        reply.header.rcode = RCODE.NXDOMAIN
                    self._soa(reply)
                    return reply
                cname = [r for r in rrs if r[0] == "CNAME"]
                if cname and qtype != "CNAME" and cur not in seen:
                    seen.add(cur)
                    target = cname[0][1]
                    reply.add_answer(RR(cur, QTYPE.CNAME, ttl=TTL, rdata=CNAME(target)))
                    cur = _norm(target)
                    continue
                found = False
                for r in rrs:
                    if r[0] == qtype or qtype == "ANY":
                        reply.add_answer(RR(cur, getattr(QTYPE, r[0]), ttl=TTL,
                                            rdata=self._rdata(r)))
                        found = True
                if not found:
                    self._soa(reply)
                return reply

    @staticmethod
    def _rdata(r):
        kind = r[0]
        if kind == "A":
            return A(r[1])
        if kind == "AAAA":
            return AAAA(r[1])
        if kind == "MX":
            return MX(r[1], r[2])
        if kind == "TXT":
            # A character-string holds at most 255 octets (RFC 1035 3.3.14): a
            # long value (a DKIM RSA key) is published as several strings.
            data = r[1].encode() if isinstance(r[1], str) else r[1]
            return TXT([data[i:i + 255] for i in range(0, len(data), 255)] or [b""])
        if kind == "CNAME":
            return CNAME(r[1])
        raise ValueError(kind)

    @staticmethod
    def _soa(reply):
        reply.add_auth(RR("test", QTYPE.SOA, ttl=TTL,
                          rdata=SOA("ns.test", "hostmaster.test", (1, 60, 60, 60, TTL))))


class _QuietLogger(DNSLogger):
    def __init__(self):
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data",
                         prefix=False, logf=lambda s: None)


class FakeDNS:
    """The zone is a dict: name -> list of ("A", ip) / ("AAAA", ip) /
    ("MX", host, pref) / ("TXT", text) / ("CNAME", target)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.zone = {}
        self.silent = set()
        self.servfail = set()
        self.queries = []
        self.servers = []
        for _ in range(20):
            udp = DNSServer(_ZoneResolver(self), address="127.0.0.1", port=0,
                            logger=_QuietLogger())
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(_ZoneResolver(self), address="127.0.0.1", port=port, tcp=True,
                                logger=_QuietLogger())
            except OSError:
                udp.server.server_close()
                continue
            self.servers = [udp, tcp]
            self.port = port
            break
        else:
            raise RuntimeError("no free port for the fake DNS (UDP and TCP)")
        for s in self.servers:
            s.start_thread()

    @property
    def resolver(self):
        return "127.0.0.1@%d" % self.port

    def _add(self, name, rr):
        with self.lock:
            self.zone.setdefault(_norm(name), []).append(rr)

    def a(self, name, ip):
        self._add(name, ("A", ip))

    def aaaa(self, name, ip):
        self._add(name, ("AAAA", ip))

    def mx(self, domain, host, pref=10):
        self._add(domain, ("MX", host, pref))

    def null_mx(self, domain):
        """RFC 7505: one MX record, preference 0, exchange "."."""
        self._add(domain, ("MX", ".", 0))

    def txt(self, name, text):
        self._add(name, ("TXT", text))

    def cname(self, name, target):
        self._add(name, ("CNAME", target))

    def never_answer(self, name):
        with self.lock:
            self.silent.add(_norm(name))

    def fail(self, name):
        with self.lock:
            self.servfail.add(_norm(name))

    def queried(self, name):
        with self.lock:
            return [t for n, t in self.queries if n == _norm(name)]

    def close(self):
        for s in self.servers:
            s.server.shutdown()
            s.server.server_close()


# ---------------------------------------------------------------------------
# MX servers
# ---------------------------------------------------------------------------

class Conn:
    """One inbound connection at a FakeMX (after its start-up probe)."""
    _ids = itertools.count(1)

    def __init__(self, peer):
        self.id = next(self._ids)
        self.peer = peer
        self.tls = False
        self.helo = None
        self.transactions = []      # Msg, accepted ones only
        self.commands = []          # command verbs in order (MAIL, RCPT, DATA, ...)
        self.closed = False

    def __repr__(self):
        return "Conn(%d tls=%s txns=%d cmds=%s)" % (self.id, self.tls, len(self.transactions),
                                                    self.commands)


class Msg:
    def __init__(self, conn, mail_from, mail_options, rcpt_tos, content):
        self.conn = conn
        self.tls = conn.tls
        self.mail_from = "" if mail_from == "<>" else mail_from     # the null path: ""
        self.mail_options = list(mail_options)
        self.rcpt_tos = list(rcpt_tos)
        self.content = bytes(content)

    def __repr__(self):
        return "Msg(from=<%s> to=%s %d bytes conn=%d)" % (self.mail_from, self.rcpt_tos,
                                                          len(self.content), self.conn.id)

    def parsed(self):
        return email.message_from_bytes(self.content, policy=email.policy.compat32)


class _ScriptedSMTP(SMTP):
    def __init__(self, handler, mx, **kw):
        super().__init__(handler, **kw)
        self.mx = mx
        self.conn = None

    def connection_made(self, transport):
        again = self.transport is not None      # the TLS layer after STARTTLS
        super().connection_made(transport)
        if not again:
            self.conn = self.mx._new_conn(self.session.peer)
        elif self.conn is not None:
            self.conn.tls = True

    def connection_lost(self, error):
        if self.conn is not None:
            self.conn.closed = True
        super().connection_lost(error)

    async def _handle_client(self):
        greeting = self.mx._take("greeting") if self.conn is not None else None
        if greeting:
            await self.push(greeting)
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_DATA(self, arg):
        if self.conn is not None:
            self.conn.commands.append("DATA")
        if self.conn is not None and self.envelope.rcpt_tos and self.mx._take_drop():
            # Read part of the message, then drop the connection without a reply.
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                await asyncio.wait_for(self._reader.readuntil(b"\r\n"), 5)
                await asyncio.wait_for(self._reader.readuntil(b"\r\n"), 5)
            except Exception:
                pass
            self.mx.dropped += 1
            self.transport.abort()
            return
        await super().smtp_DATA(arg)


class _Handler:
    def __init__(self, mx):
        self.mx = mx

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        if server.conn is not None:
            server.conn.helo = hostname
            server.conn.commands.append("EHLO")
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if server.conn is not None:
            server.conn.commands.append("MAIL")
        envelope.mail_from = address        # "<>" for the null path (must stay truthy)
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if server.conn is not None:
            server.conn.commands.append("RCPT")
        reply = self.mx._rcpt_reply(address)
        self.mx.rcpt_log.append((address, reply or "250"))
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self.mx._take("data")
        if reply:
            return reply
        conn = server.conn
        m = Msg(conn, envelope.mail_from, envelope.mail_options, envelope.rcpt_tos,
                envelope.original_content)
        if conn is not None:
            conn.transactions.append(m)
            self.mx.messages.append(m)
        n = len(self.mx.messages)
        return "250 2.0.0 OK queued as %s-%d" % (self.mx.name, n)


class _MXController(Controller):
    def __init__(self, mx, **kw):
        self.mx = mx
        super().__init__(_Handler(mx), **kw)

    def factory(self):
        return _ScriptedSMTP(self.handler, self.mx, **self.SMTP_kwargs)


class FakeMX:
    """An SMTP server on addr:port. Scripts (all consumed in order, then accept):

      greeting        list of replies sent instead of 220 (then the connection closes)
      rcpt[addr]      list of replies to RCPT TO:<addr> (None: accept that time)
      rcpt_always     addr -> reply given to every RCPT of addr
      data            list of replies to the end of DATA (None: accept)
      drop_data       number of DATA phases to cut off (connection aborted, no reply)
    """

    def __init__(self, name, addr, port, tls_context=None):
        self.name = name
        self.addr = addr
        self.port = port
        self.tls_context = tls_context
        self.lock = threading.Lock()
        self.greeting = []
        self.rcpt = {}
        self.rcpt_always = {}
        self.data = []
        self.drop_data = 0
        self.dropped = 0
        self.connections = []
        self.messages = []
        self.rcpt_log = []
        self.controller = None
        self._started = False

    # -- scripts (called from the server thread) ------------------------------------
    def _take(self, what):
        with self.lock:
            lst = getattr(self, what)
            return lst.pop(0) if lst else None

    def _take_drop(self):
        with self.lock:
            if self.drop_data > 0:
                self.drop_data -= 1
                return True
            return False

    def _rcpt_reply(self, address):
        key = address.lower()
        with self.lock:
            if key in self.rcpt_always:
                return self.rcpt_always[key]
            lst = self.rcpt.get(key)
            return lst.pop(0) if lst else None

    def _new_conn(self, peer):
        if not self._started:
            return None             # the controller's own start-up probe
        c = Conn(peer)
        self.connections.append(c)
        return c

    # -- control ----------------------------------------------------------------------
    def start(self):
        kw = {}
        if self.tls_context is not None:
            kw = {"tls_context": self.tls_context, "require_starttls": False}
        self.controller = _MXController(self, hostname=self.addr, port=self.port,
                                        server_hostname=self.name, ready_timeout=10,
                                        **kw)
        self.controller.start()
        self._started = True
        return self

    def stop(self):
        if self.controller is not None:
            self._started = False
            try:
                self.controller.stop()
            finally:
                self.controller = None

    @property
    def running(self):
        return self.controller is not None

    def wait_messages(self, n, timeout=15):
        wait_for(lambda: len(self.messages) >= n, timeout=timeout,
             what="%d message(s) at %s (have %r)" % (n, self.name, self.messages))
        return self.messages

    def messages_to(self, rcpt):
        return [m for m in self.messages if rcpt.lower() in (r.lower() for r in m.rcpt_tos)]

    def __repr__(self):
        return "FakeMX(%s %s:%d conns=%d msgs=%d)" % (self.name, self.addr, self.port,
                                                        len(self.connections), len(self.messages))


class MXFarm:
    """FakeMX servers of one test: 127.0.0.2, 127.0.0.3, ... all on one port."""

    def __init__(self, tls_material):
        self.tls_material = tls_material
        self.port = pick_ports(1)[0]
        # Hold 127.0.0.1:port while the farm lives: another pytest run's probe of
        # 127.0.0.1 then cannot hand the same port to its own farm on 127.0.0.N.
        self.reservation = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.reservation.bind(("127.0.0.1", self.port))
        self.next_octet = 2
        self.mxs = []

    def server_tls_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.tls_material.cert, self.tls_material.key)
        return ctx

    def address(self):
        """A fresh loopback address (nothing listens there until a FakeMX starts)."""
        a = "127.0.0.%d" % self.next_octet
        self.next_octet += 1
        return a

    def add(self, name, addr=None, starttls=False, start=True):
        mx = FakeMX(name, addr or self.address(), self.port,
                    self.server_tls_context() if starttls else None)
        self.mxs.append(mx)
        if start:
            mx.start()
        return mx

    def connections(self):
        return sum(len(m.connections) for m in self.mxs)

    def close(self):
        for m in self.mxs:
            try:
                m.stop()
            except Exception:
                pass
        self.reservation.close()


@pytest.fixture
def dns():
    d = FakeDNS()
    yield d
    d.close()


@pytest.fixture
def mxs(tls_ca):
    farm = MXFarm(tls_ca)
    yield farm
    farm.close()


# ---------------------------------------------------------------------------
# relevo configured for delivery
# ---------------------------------------------------------------------------

def delivering_relevo(make_relevo, dns, mxs, start=True, routes=None, dns_timeout=2,
                      **delivery):
    """A relevo that resolves through the fake DNS and delivers to port mxs.port.

    The harness's default route to its 421 MX is removed (routes=None) or replaced."""
    r = make_relevo(start=False)
    d = {"port": mxs.port, "retry_schedule": [1], "allow_networks": ["127.0.0.0/8"]}
    d.update(delivery)
    if routes:
        d["routes"] = routes
    r.config["delivery"] = d
    r.config["dns"] = {"resolver": dns.resolver, "timeout": dns_timeout}
    r.write_config()
    if start:
        r.start()
    return r


# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------

_KV_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_log_line(line):
    out = {}
    for k, v in _KV_RE.findall(line):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = v[1:-1]
        out.setdefault(k, v)
    return out


def log_events(relevo, event=None, **match):
    """Parsed log lines of every run of relevo, filtered by event and exact fields."""
    out = []
    for i in range(len(relevo.runs)):
        for line in relevo.stderr(i).splitlines():
            f = parse_log_line(line)
            if event is not None and f.get("event") != event:
                continue
            if all(f.get(k) == v for k, v in match.items()):
                f["_line"] = line
                out.append(f)
    return out


def wait_event(relevo, event, n=1, timeout=15, **match):
    return wait_for(lambda: (lambda ev: ev if len(ev) >= n else None)(
        log_events(relevo, event, **match)), timeout=timeout,
        what="%d x event=%s %s in the log" % (n, event, match))


def rcpt_field(addr):
    return "<%s>" % addr


# ---------------------------------------------------------------------------
# Submitting and the queue
# ---------------------------------------------------------------------------

def relay_submit(relevo, sender, rcpts, message=None, subject="test"):
    """Submit over the relay listener (no AUTH); returns the queue id."""
    if message is None:
        message = make_message(sender=sender or "nobody@sender.test", to=rcpts[0],
                               subject=subject,
                               message_id="<%s@sender.test>" % os.urandom(6).hex(),
                               date="Thu, 01 Jan 2026 00:00:00 +0000")
    qid, _ = submit(relevo, sender=sender, rcpts=tuple(rcpts), message=message, mode="relay")
    return qid


def queue(relevo, *args):
    return relevo.cli(["queue", *args])


def queue_ok(relevo, *args):
    r = queue(relevo, *args)
    assert r.rc == 0, "expected exit 0: %r" % r
    return r


def wait_queue_empty(relevo, timeout=15):
    wait_for(lambda: relevo.queue_list() == [], timeout=timeout,
         what="an empty queue (have %s)" % "; ".join(e.line for e in relevo.queue_list()))


def rcpt_lines(show_out):
    """`queue show` recipient lines: addr -> the line."""
    out = {}
    for line in show_out.splitlines():
        m = re.match(r"^\s+<([^>]*)>\s", line)
        if m:
            out[m.group(1).lower()] = line
    return out


# ---------------------------------------------------------------------------
# DSNs
# ---------------------------------------------------------------------------

class DSN:
    """A delivery status notification (RFC 3464 in RFC 6522 multipart/report)."""

    def __init__(self, msg_bytes):
        self.raw = msg_bytes
        self.msg = email.message_from_bytes(msg_bytes, policy=email.policy.compat32)
        assert self.msg.get_content_type() == "multipart/report", \
            "DSN is %s, not multipart/report:\n%r" % (self.msg.get_content_type(), msg_bytes)
        assert self.msg.get_param("report-type") == "delivery-status", self.msg["Content-Type"]
        parts = self.msg.get_payload()
        self.parts = parts
        ds = [p for p in parts if p.get_content_type() == "message/delivery-status"]
        assert len(ds) == 1, "expected one message/delivery-status part: %r" % msg_bytes
        blocks = ds[0].get_payload()
        assert isinstance(blocks, list) and len(blocks) >= 2, \
            "delivery-status needs per-message and per-recipient fields: %r" % msg_bytes
        self.per_message = blocks[0]
        self.per_rcpt = blocks[1:]

    def recipient(self, addr):
        """The per-recipient block whose Final-Recipient is addr (None if absent)."""
        for b in self.per_rcpt:
            fr = b.get("Final-Recipient", "")
            if fr.split(";", 1)[-1].strip().strip("<>").lower() == addr.lower():
                return b
        return None

    def final_recipients(self):
        return [b.get("Final-Recipient", "").split(";", 1)[-1].strip().strip("<>").lower()
                for b in self.per_rcpt]

    def human_part(self):
        return self.parts[0]

    def returned_part(self):
        return self.parts[2] if len(self.parts) > 2 else None


def unfold(v):
    return re.sub(r"\r?\n[ \t]+", " ", v or "")
