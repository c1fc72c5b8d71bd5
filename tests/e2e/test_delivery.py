"""
test_delivery.py - delivery to MX servers (issue 3), end to end.

relevo resolves recipient domains through a fake DNS server (fakes.FakeDNS) and
delivers to fake MX servers (fakes.FakeMX, aiosmtpd) on 127.0.0.N, all on one port
(delivery.port). Each test asserts what a user sees: the bytes and envelope an MX
received, the DSN the sender's MX received (parsed with the email package), the log
events, `relevo queue list/show`.

Names are under .test; senders use the relay listener (no AUTH) unless the test is
about submission. retry_schedule is [1] unless a test needs attempts not to repeat.
"""

import os
import re
import time

import pytest

from conftest import expect, make_message, submit
from fakes import (DSN, delivering_relevo, log_events, queue, queue_ok, rcpt_lines,
                   relay_submit, unfold, wait_event, wait_for, wait_queue_empty)
from fakes import dns, mxs  # noqa: F401  (fixtures)
from test_hardening_helpers import HostileMX, greet_and_ehlo

SENDER = "bob@sender.test"


def domain_mx(dns, mxs, domain, prefix="mx1", pref=10, **kw):
    """A running FakeMX named PREFIX.DOMAIN, published as domain's MX."""
    mx = mxs.add("%s.%s" % (prefix, domain), **kw)
    dns.mx(domain, mx.name, pref)
    dns.a(mx.name, mx.addr)
    return mx


def sender_mx(dns, mxs):
    """The MX of sender.test: where DSNs to bob@sender.test arrive."""
    return domain_mx(dns, mxs, "sender.test")


def msg(to, subject="test", body=b"Hello.\r\n", sender=SENDER):
    return make_message(sender=sender, to=to, subject=subject, body=body,
                        message_id="<%s@sender.test>" % os.urandom(6).hex(),
                        date="Thu, 01 Jan 2026 00:00:00 +0000")


def split_prepended(delivered, original):
    """delivered == prefix + original, where prefix is relevo's own header fields
    (a Received: field, folded; later perhaps a DKIM-Signature). Returns the prefix."""
    assert delivered.endswith(original), \
        "delivered content does not end with the submitted message:\n%r\n---\n%r" % (
            delivered, original)
    prefix = delivered[:len(delivered) - len(original)]
    assert re.search(rb"(^|\r\n)Received: ", prefix), "no Received: prepended: %r" % prefix
    for line in prefix.split(b"\r\n")[:-1]:
        assert line[:1] in (b" ", b"\t") or re.match(rb"^[A-Za-z-]+:", line), \
            "not a header line in what relevo prepended: %r" % line
    assert prefix.endswith(b"\r\n")
    return prefix


# ---------------------------------------------------------------------------
# 1-4: where mail goes
# ---------------------------------------------------------------------------

TRICKY_BODY = (b"First line.\r\n"
               b".a line that starts with a dot\r\n"
               b"..two dots\r\n"
               b".\r\n"                              # a lone dot: must be stuffed again
               b"trailing spaces   \r\n"
               b"\ttab first\r\n"
               b"\r\n" +
               b"x" * 990 + b"\r\n" +                # long, but under 998
               b"last line\r\n")


def test_delivered_to_mx_with_identical_bytes(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    r = delivering_relevo(make_relevo, dns, mxs)
    original = msg("carol@dest.test", subject="byte for byte", body=TRICKY_BODY,
                   sender="alice@example.com")
    qid, _ = submit(r, sender="alice@example.com", rcpts=("carol@dest.test",),
                    message=original, user="alice", mode="submissions")

    mx.wait_messages(1)
    wait_queue_empty(r)
    assert len(mx.messages) == 1, mx.messages
    m = mx.messages[0]
    assert m.mail_from == "alice@example.com"
    assert m.rcpt_tos == ["carol@dest.test"]
    prefix = split_prepended(m.content, original)
    assert qid.encode() in prefix.upper()               # Received: ... id <qid>
    assert m.conn.helo == "relay.test"                  # EHLO with the configured hostname
    assert not m.tls                                    # no STARTTLS offered: plaintext
    ev = wait_event(r, "delivered", id=qid, rcpt="<carol@dest.test>")[0]
    assert ev["status"] == "2.0.0", ev["_line"]
    assert ev["remote"] == "mx1.dest.test[%s]" % mx.addr, ev["_line"]
    assert ev["reply"].startswith("250 2.0.0 OK queued as mx1.dest.test"), ev["_line"]


def test_two_domains_each_mx_gets_only_its_recipients(make_relevo, dns, mxs):
    one = domain_mx(dns, mxs, "one.test")
    two = domain_mx(dns, mxs, "two.test")
    r = delivering_relevo(make_relevo, dns, mxs)
    original = msg("a1@one.test", subject="two domains")
    qid = relay_submit(r, SENDER, ["a1@one.test", "b1@two.test", "a2@one.test"], original)

    one.wait_messages(1)
    two.wait_messages(1)
    wait_queue_empty(r)
    assert len(one.messages) == 1 and len(two.messages) == 1, (one.messages, two.messages)
    assert sorted(one.messages[0].rcpt_tos) == ["a1@one.test", "a2@one.test"]
    assert two.messages[0].rcpt_tos == ["b1@two.test"]
    for m in one.messages + two.messages:
        assert m.mail_from == SENDER
        split_prepended(m.content, original)
    assert len(log_events(r, "delivered", id=qid)) == 3


def test_a_record_fallback_without_mx(make_relevo, dns, mxs):
    host = mxs.add("amail.test")
    dns.a("amail.test", host.addr)              # no MX record at all: RFC 5321 5.1
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["x@amail.test"])

    host.wait_messages(1)
    wait_queue_empty(r)
    assert host.messages[0].rcpt_tos == ["x@amail.test"]
    ev = wait_event(r, "delivered", id=qid)[0]
    assert ev["remote"].endswith("[%s]" % host.addr), ev["_line"]


def test_cname_domain_uses_the_targets_mx(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "real.test")
    dns.cname("alias.test", "real.test")         # RFC 5321 5.1: processed as the target
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["c@alias.test"])

    mx.wait_messages(1)
    wait_queue_empty(r)
    assert mx.messages[0].rcpt_tos == ["c@alias.test"]     # the address is not rewritten
    assert len(log_events(r, "delivered", id=qid)) == 1


def test_next_mx_when_first_refuses_connections(make_relevo, dns, mxs):
    dead = mxs.address()                                  # nothing listens there
    dns.mx("dest.test", "mx1.dest.test", 10)
    dns.a("mx1.dest.test", dead)
    second = domain_mx(dns, mxs, "dest.test", prefix="mx2", pref=20)
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["y@dest.test"])

    second.wait_messages(1)
    wait_queue_empty(r)
    assert len(second.messages) == 1
    ev = wait_event(r, "delivered", id=qid)[0]
    assert ev["remote"] == "mx2.dest.test[%s]" % second.addr, ev["_line"]
    assert ev["attempts"] == "1", ev["_line"]              # same attempt, next MX
    assert not log_events(r, "deferred", id=qid)


def test_next_address_of_the_same_mx(make_relevo, dns, mxs):
    dead = mxs.address()                                  # nothing listens there
    live = mxs.add("mx1.dest.test")
    dns.mx("dest.test", "mx1.dest.test")
    dns.a("mx1.dest.test", dead)
    dns.a("mx1.dest.test", live.addr)
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["y@dest.test"])

    live.wait_messages(1)
    wait_queue_empty(r)
    ev = wait_event(r, "delivered", id=qid)[0]
    assert ev["remote"] == "mx1.dest.test[%s]" % live.addr and ev["attempts"] == "1", ev


def test_next_mx_when_first_greets_421(make_relevo, dns, mxs):
    first = domain_mx(dns, mxs, "dest.test", prefix="mx1", pref=10)
    first.greeting = ["421 4.3.2 mx1 busy, go away"] * 10
    second = domain_mx(dns, mxs, "dest.test", prefix="mx2", pref=20)
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["y@dest.test"])

    second.wait_messages(1)
    wait_queue_empty(r)
    assert len(first.connections) >= 1 and first.messages == []
    ev = wait_event(r, "delivered", id=qid)[0]
    assert ev["remote"] == "mx2.dest.test[%s]" % second.addr, ev["_line"]


def test_static_route_overrides_mx(make_relevo, dns, mxs):
    trap = domain_mx(dns, mxs, "dest.test")             # the MX, which must not be used
    smarthost = mxs.add("smarthost", addr="127.0.0.5")
    r = delivering_relevo(make_relevo, dns, mxs,
                          routes={"*": "[%s]:%d" % (smarthost.addr, mxs.port)})
    original = msg("z@dest.test")
    qid = relay_submit(r, SENDER, ["z@dest.test", "w@elsewhere.test"], original)

    smarthost.wait_messages(1)
    wait_queue_empty(r)
    got = sorted(rc for m in smarthost.messages for rc in m.rcpt_tos)
    assert got == ["w@elsewhere.test", "z@dest.test"]
    for m in smarthost.messages:
        split_prepended(m.content, original)
    assert trap.connections == []
    assert dns.queried("dest.test") == [] and dns.queried("elsewhere.test") == []
    ev = log_events(r, "delivered", id=qid)
    assert len(ev) == 2 and all(e["remote"].endswith("[127.0.0.5]") for e in ev), ev


# ---------------------------------------------------------------------------
# 5-6: temporary failures, then success
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("phase", ["rcpt", "data"])
def test_4xx_then_success_delivers_exactly_once(make_relevo, dns, mxs, phase):
    mx = domain_mx(dns, mxs, "dest.test")
    if phase == "rcpt":
        mx.rcpt["t@dest.test"] = ["451 4.3.0 greylisted, try again"]
    else:
        mx.data = ["451 4.3.0 greylisted, try again"]
    r = delivering_relevo(make_relevo, dns, mxs, retry_schedule=[1])
    original = msg("t@dest.test")
    qid = relay_submit(r, SENDER, ["t@dest.test"], original)

    ev = wait_event(r, "deferred", id=qid)[0]
    assert ev["status"] == "4.3.0" and "451" in ev["reply"], ev["_line"]
    mx.wait_messages(1)
    wait_queue_empty(r)
    assert len(mx.messages) == 1, mx.messages
    split_prepended(mx.messages[0].content, original)
    delivered = log_events(r, "delivered", id=qid)
    assert len(delivered) == 1 and delivered[0]["attempts"] == "2", delivered


def test_4xx_for_one_recipient_retries_only_that_one(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    mx.rcpt["later@dest.test"] = ["450 4.2.0 mailbox busy"]
    r = delivering_relevo(make_relevo, dns, mxs, retry_schedule=[1])
    original = msg("now@dest.test")
    qid = relay_submit(r, SENDER, ["now@dest.test", "later@dest.test"], original)

    mx.wait_messages(2)
    wait_queue_empty(r)
    assert [m.rcpt_tos for m in mx.messages] == [["now@dest.test"], ["later@dest.test"]]
    for m in mx.messages:
        split_prepended(m.content, original)
    assert len(log_events(r, "delivered", id=qid, rcpt="<now@dest.test>")) == 1
    assert len(log_events(r, "deferred", id=qid, rcpt="<later@dest.test>")) == 1
    assert len(log_events(r, "delivered", id=qid, rcpt="<later@dest.test>")) == 1
    assert not log_events(r, "deferred", rcpt="<now@dest.test>")


def test_connection_dropped_mid_data_then_success(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    mx.drop_data = 1
    r = delivering_relevo(make_relevo, dns, mxs, retry_schedule=[1])
    original = msg("d@dest.test", body=b"line\r\n" * 2000)
    qid = relay_submit(r, SENDER, ["d@dest.test"], original)

    mx.wait_messages(1)
    wait_queue_empty(r)
    assert mx.dropped == 1
    assert len(mx.messages) == 1, mx.messages
    split_prepended(mx.messages[0].content, original)
    deferred = log_events(r, "deferred", id=qid)
    assert len(deferred) == 1 and deferred[0]["status"].startswith("4."), deferred
    assert len(log_events(r, "delivered", id=qid)) == 1


# ---------------------------------------------------------------------------
# 7-9, 16: permanent failures and DSNs
# ---------------------------------------------------------------------------

def wait_dsn(bounce_mx, to=SENDER):
    bounce_mx.wait_messages(1)
    m = bounce_mx.messages[0]
    assert m.mail_from == "", "a DSN must be sent from <>, got <%s>" % m.mail_from
    assert m.rcpt_tos == [to]
    return DSN(m.content)


def assert_failed(dsn, rcpt, status_re, diag_contains=None):
    b = dsn.recipient(rcpt)
    assert b is not None, "%s not in the DSN: %s" % (rcpt, dsn.final_recipients())
    assert b.get("Final-Recipient", "").lower().startswith("rfc822;"), b.items()
    assert b.get("Action", "").strip().lower() == "failed", b.items()
    assert re.fullmatch(status_re, b.get("Status", "").strip()), b.items()
    if diag_contains is not None:
        diag = unfold(b.get("Diagnostic-Code", ""))
        assert diag.lower().startswith("smtp;"), b.items()
        assert diag_contains in diag, (diag, diag_contains)
    return b


def test_5xx_bounces_with_dsn_to_sender(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    mx.rcpt_always["bad@dest.test"] = "550 5.1.1 <bad@dest.test>: no such user here"
    home = sender_mx(dns, mxs)
    r = delivering_relevo(make_relevo, dns, mxs)
    original = msg("good@dest.test", subject="will half bounce")
    qid = relay_submit(r, SENDER, ["good@dest.test", "bad@dest.test"], original)

    mx.wait_messages(1)
    assert mx.messages[0].rcpt_tos == ["good@dest.test"]
    dsn = wait_dsn(home)
    assert_failed(dsn, "bad@dest.test", r"5\.1\.1",
                  "550 5.1.1 <bad@dest.test>: no such user here")
    assert "good@dest.test" not in dsn.final_recipients(), dsn.raw
    assert dsn.msg["Subject"] and dsn.msg["From"]
    assert b"Subject: will half bounce" in dsn.raw            # the original comes back
    wait_queue_empty(r)
    assert len(log_events(r, "bounced", id=qid, rcpt="<bad@dest.test>")) == 1
    assert len(log_events(r, "dsn_queued", id=qid)) == 1
    assert len(home.messages) == 1 and len(mx.messages) == 1


def test_5xx_at_data_bounces_every_recipient(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    mx.data = ["554 5.7.1 message content rejected"]
    home = sender_mx(dns, mxs)
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["p@dest.test", "q@dest.test"], msg("p@dest.test"))

    dsn = wait_dsn(home)
    for rcpt in ("p@dest.test", "q@dest.test"):
        assert_failed(dsn, rcpt, r"5\.7\.1", "554 5.7.1 message content rejected")
    wait_queue_empty(r)
    assert mx.messages == []
    assert len(log_events(r, "bounced", id=qid)) == 2
    assert len(home.messages) == 1                      # one DSN for both


def test_null_mx_bounces_without_connecting(make_relevo, dns, mxs):
    trap = mxs.add("trap")
    dns.null_mx("nomail.test")
    dns.a("nomail.test", trap.addr)          # an A fallback would find the trap
    home = sender_mx(dns, mxs)
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["n@nomail.test"])

    dsn = wait_dsn(home)
    assert_failed(dsn, "n@nomail.test", r"5\.1\.10")
    wait_queue_empty(r)
    assert trap.connections == []
    assert not log_events(r, "ready", host="nomail.test")          # no connection
    assert not log_events(r, "open_failed", host="nomail.test")    # nor an attempt
    assert len(log_events(r, "bounced", id=qid)) == 1


def test_nxdomain_bounces_with_5_1_2(make_relevo, dns, mxs):
    home = sender_mx(dns, mxs)
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["x@nowhere.test"])

    dsn = wait_dsn(home)
    assert_failed(dsn, "x@nowhere.test", r"5\.1\.2")
    wait_queue_empty(r)
    ev = log_events(r, "bounced", id=qid)
    assert len(ev) == 1 and ev[0]["status"] == "5.1.2", ev


def test_null_sender_failure_makes_no_dsn(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    mx.rcpt_always["bad@dest.test"] = "550 5.1.1 no such user"
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, "", ["bad@dest.test"], msg("bad@dest.test", sender="mailer@x.test"))

    wait_event(r, "bounced", id=qid)
    wait_queue_empty(r)
    time.sleep(0.5)      # a DSN would be queued right after the bounce
    assert not log_events(r, "dsn_queued")
    assert mx.messages == []
    assert r.queue_list() == []


# ---------------------------------------------------------------------------
# 10-11: DNS failures and crashes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("failure", ["timeout", "servfail"])
def test_dns_failure_defers_never_bounces(make_relevo, dns, mxs, failure):
    if failure == "timeout":
        dns.never_answer("slow.test")           # no reply at all; dns.timeout is 1 s
    else:
        dns.fail("slow.test")                   # SERVFAIL
    home = sender_mx(dns, mxs)
    r = delivering_relevo(make_relevo, dns, mxs, dns_timeout=1, retry_schedule=[1])
    qid = relay_submit(r, SENDER, ["s@slow.test"])

    wait_event(r, "deferred", n=2, id=qid, timeout=20)
    ev = log_events(r, "deferred", id=qid)
    assert all(e["status"].startswith("4.") for e in ev), ev
    assert not log_events(r, "bounced") and not log_events(r, "dsn_queued")
    assert home.messages == []
    [entry] = r.queue_list()
    assert entry.id.upper() == qid and entry.state == "deferred", entry
    line = rcpt_lines(r.queue_show(qid))["s@slow.test"]
    assert "state=queued" in line, line
    assert re.search(r"status=4\.\d+\.\d+", line), line       # the last outcome, temporary
    reply = re.search(r'reply="(.*)"', line)
    assert reply, line
    assert "slow.test" in reply.group(1) and re.search(r"fail|time", reply.group(1), re.I), line
    if failure == "timeout":
        assert log_events(r, "dns_timeout", name="slow.test")


def test_pending_retry_survives_kill9(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    mx.rcpt_always["k@dest.test"] = "451 4.3.0 not now"
    r = delivering_relevo(make_relevo, dns, mxs, retry_schedule=[1])
    original = msg("k@dest.test")
    qid = relay_submit(r, SENDER, ["k@dest.test"], original)

    wait_event(r, "deferred", id=qid)
    r.kill9()
    assert mx.messages == []
    del mx.rcpt_always["k@dest.test"]           # the MX is fixed
    r.start()
    mx.wait_messages(1)
    wait_queue_empty(r)
    assert len(mx.messages) == 1
    split_prepended(mx.messages[0].content, original)
    assert len(log_events(r, "delivered", id=qid)) == 1


# ---------------------------------------------------------------------------
# 12-13: connections
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("per_conn,expect_txns", [(None, [3]), (2, [2, 1])],
                         ids=["default", "max_messages_per_connection=2"])
def test_connection_reuse_after_flush(make_relevo, dns, mxs, per_conn, expect_txns):
    mx = domain_mx(dns, mxs, "dest.test", start=False)        # down for now
    extra = {} if per_conn is None else {"max_messages_per_connection": per_conn}
    r = delivering_relevo(make_relevo, dns, mxs, retry_schedule=[300], **extra)
    ids = [relay_submit(r, SENDER, ["r%d@dest.test" % i], msg("r%d@dest.test" % i))
           for i in range(3)]
    for qid in ids:
        wait_event(r, "deferred", id=qid)
    mx.start()
    queue_ok(r, "flush")

    mx.wait_messages(3)
    wait_queue_empty(r)
    assert [len(c.transactions) for c in mx.connections] == expect_txns, mx.connections
    assert sorted(m.rcpt_tos[0] for m in mx.messages) == ["r0@dest.test", "r1@dest.test",
                                                          "r2@dest.test"]


def test_burst_reuses_few_connections(make_relevo, dns, mxs):
    """A burst of messages, each submitted on its own, goes out over far fewer
    connections than messages: an attempt goes on with what became due meanwhile,
    and a healthy connection waits (delivery.idle_timeout) for the next attempt.
    A second burst within the idle timeout opens no connection at all; after it,
    the idle connections are closed."""
    mx = domain_mx(dns, mxs, "dest.test")
    r = delivering_relevo(make_relevo, dns, mxs)
    sent = {}
    for i in range(40):
        rcpt = "burst%d@dest.test" % i
        original = msg(rcpt, subject="burst %d" % i)
        sent[rcpt] = (relay_submit(r, SENDER, [rcpt], original), original)
    mx.wait_messages(40)
    first = len(mx.connections)
    for i in range(10):                     # well within the 5 s idle timeout
        rcpt = "again%d@dest.test" % i
        relay_submit(r, SENDER, [rcpt], msg(rcpt, subject="again %d" % i))
    mx.wait_messages(50)
    second = len(mx.connections)
    wait_queue_empty(r)

    assert first <= 10, "%d connections for 40 messages: %r" % (first, mx.connections)
    assert second == first, "the second burst opened connections: %r" % mx.connections
    for rcpt, (qid, original) in sent.items():
        got = mx.messages_to(rcpt)
        assert len(got) == 1, (rcpt, got)
        split_prepended(got[0].content, original)
    delivered = log_events(r, "delivered")
    assert len(delivered) == 50 and all(e["attempts"] == "1" for e in delivered)
    assert not log_events(r, "deferred")
    wait_for(lambda: all(c.closed for c in mx.connections), timeout=15,
             what="idle connections closed after delivery.idle_timeout")


def test_idle_timeout_zero_closes_after_each_attempt(make_relevo, dns, mxs):
    """delivery.idle_timeout: 0 keeps nothing: every connection ends with its attempt."""
    mx = domain_mx(dns, mxs, "dest.test")
    r = delivering_relevo(make_relevo, dns, mxs, idle_timeout=0)
    for i in range(3):
        rcpt = "z%d@dest.test" % i
        relay_submit(r, SENDER, [rcpt], msg(rcpt))
        mx.wait_messages(i + 1)
        wait_for(lambda: all(c.closed for c in mx.connections), timeout=10,
                 what="the connection closed after its attempt")
    assert len(mx.connections) == 3, mx.connections


def serving_mx(c, after_first=None):
    """A plain SMTP server for one connection (PIPELINING): every transaction is
    accepted and kept in c.messages. after_first: "close" hangs up while idle,
    1 s after the first message; "close-on-next" reads the next command (the
    MAIL of a second transaction on the same connection) and hangs up without
    a reply."""
    c.messages = []
    if not greet_and_ehlo(c):
        return
    while True:
        line = c.readline(timeout=60)
        if line is None:
            return
        verb = line.split(" ", 1)[0].upper()
        if c.messages and after_first == "close-on-next":
            return
        if verb == "QUIT":
            c.send("221 2.0.0 bye\r\n")
            return
        if verb != "DATA":
            c.send("250 2.0.0 ok\r\n")
            continue
        c.send("354 go ahead\r\n")
        data = c.read_data()
        if data is None:
            return
        c.messages.append(data)
        c.send("250 2.0.0 queued as %d\r\n" % len(c.messages))
        if after_first == "close":
            time.sleep(1)
            return


@pytest.mark.parametrize("how", ["close", "close-on-next"])
def test_mail_arrives_when_the_mx_drops_an_idle_connection(make_relevo, dns, mxs, how):
    """The MX hangs up a connection relevo keeps for reuse: while it is idle
    (relevo notices and closes its side), or just as relevo starts the next
    transaction on it (no reply at all: nothing can have been delivered, so the
    message goes again at once over a new connection). Either way the second
    message arrives once, on the first try, with no deferral."""
    n = [0]

    def script(c):
        n[0] += 1
        serving_mx(c, after_first=how if n[0] == 1 else None)

    mx = HostileMX(script)
    try:
        r = delivering_relevo(make_relevo, dns, mxs, routes={"*": mx.route})
        q1 = relay_submit(r, SENDER, ["one@dest.test"], msg("one@dest.test", subject="one"))
        wait_event(r, "delivered", id=q1)
        if how == "close":
            wait_for(lambda: mx.finished(), timeout=10, what="the MX to hang up")
            time.sleep(0.5)
        q2 = relay_submit(r, SENDER, ["two@dest.test"], msg("two@dest.test", subject="two"))
        ev = wait_event(r, "delivered", id=q2)[0]
        assert ev["attempts"] == "1", ev["_line"]
        assert not log_events(r, "deferred")
        assert len(mx.conns) == 2, mx.conns
        first, second = mx.conns
        assert [b"Subject: one" in m for m in first.messages] == [True]
        assert [b"Subject: two" in m for m in second.messages] == [True]
        if how == "close-on-next":
            assert first.commands()[-1] == "MAIL", first.lines   # it was reused
        wait_queue_empty(r)
    finally:
        mx.close()


def test_8bitmime_kept_dsn_parameters_not_sent_to_non_dsn_server(make_relevo, dns, mxs):
    """The fake MX advertises 8BITMIME but not DSN (aiosmtpd answers 555 to any
    parameter it does not know): BODY=8BITMIME goes on (RFC 6152), RET/ENVID/NOTIFY/
    ORCPT do not (RFC 3461 4.1), and the 8-bit body arrives unchanged."""
    mx = domain_mx(dns, mxs, "dest.test")
    r = delivering_relevo(make_relevo, dns, mxs)
    original = msg("u@dest.test", body="Grüße, ça va?\r\n".encode("utf-8"))
    with r.client("relay") as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<%s> BODY=8BITMIME RET=HDRS ENVID=env-1" % SENDER), 250)
        expect(c.cmd("RCPT TO:<u@dest.test> NOTIFY=FAILURE ORCPT=rfc822;u@dest.test"), 250)
        reply = c.data(original)
        expect(reply, 250)
        qid = reply.queued_id
        c.quit()

    mx.wait_messages(1)
    wait_queue_empty(r)
    m = mx.messages[0]
    split_prepended(m.content, original)
    assert "BODY=8BITMIME" in m.mail_options, m.mail_options
    assert not [o for o in m.mail_options if o.startswith(("RET=", "ENVID="))]
    assert len(log_events(r, "delivered", id=qid)) == 1


def test_starttls_used_when_offered(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test", starttls=True)
    r = delivering_relevo(make_relevo, dns, mxs)
    original = msg("tls@dest.test")
    qid = relay_submit(r, SENDER, ["tls@dest.test"], original)

    mx.wait_messages(1)
    wait_queue_empty(r)
    m = mx.messages[0]
    assert m.tls, "the message was not sent over TLS: %r" % m.conn
    split_prepended(m.content, original)
    assert len(log_events(r, "delivered", id=qid)) == 1
    tls = log_events(r, "tls")
    assert any(e.get("addr", "").startswith(mx.addr) for e in tls), tls
    ready = log_events(r, "ready")
    assert ready and ready[-1]["tls"] not in ("", "none"), ready


# ---------------------------------------------------------------------------
# 14: queue commands
# ---------------------------------------------------------------------------

def state_of(relevo, qid):
    for e in relevo.queue_list():
        if e.id.upper() == qid:
            return e.state
    return None


def test_queue_hold_release_flush_delete_running(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    mx.rcpt_always["a@dest.test"] = "451 4.3.0 later"
    mx.rcpt_always["w@dest.test"] = "451 4.3.0 later"
    r = delivering_relevo(make_relevo, dns, mxs, retry_schedule=[300])
    held = relay_submit(r, SENDER, ["a@dest.test"], msg("a@dest.test"))
    witness = relay_submit(r, SENDER, ["w@dest.test"], msg("w@dest.test"))
    wait_event(r, "deferred", id=held)
    wait_event(r, "deferred", id=witness)

    # hold: not attempted by a flush (the witness is, in the same pass)
    queue_ok(r, "hold", held)
    assert state_of(r, held) == "held"
    queue_ok(r, "flush")
    wait_event(r, "deferred", n=2, id=witness)
    assert len(log_events(r, "deferred", id=held)) == 1
    assert [a for a, _ in mx.rcpt_log].count("a@dest.test") == 1

    # release, then flush that message: attempted now, not in 300 s
    queue_ok(r, "release", held)
    assert state_of(r, held) == "deferred"
    del mx.rcpt_always["a@dest.test"]
    queue_ok(r, "flush", held)
    wait_event(r, "delivered", id=held, timeout=10)
    assert [m.rcpt_tos for m in mx.messages] == [["a@dest.test"]]
    assert state_of(r, witness) == "deferred"          # only the one flushed

    # delete: gone, and never attempted again
    del mx.rcpt_always["w@dest.test"]
    queue_ok(r, "delete", witness)
    assert r.queue_list() == []
    assert queue(r, "show", witness).rc != 0
    queue_ok(r, "flush")
    time.sleep(1.0)
    assert len(log_events(r, "deferred", id=witness)) == 2
    assert not log_events(r, "delivered", id=witness)
    assert mx.messages_to("w@dest.test") == []


def test_queue_list_show_delete_offline(make_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    mx.rcpt_always["keep@dest.test"] = "451 4.3.0 come back later"
    mx.rcpt_always["gone@dest.test"] = "451 4.3.0 come back later"
    r = delivering_relevo(make_relevo, dns, mxs, retry_schedule=[2])
    keep = relay_submit(r, SENDER, ["keep@dest.test"], msg("keep@dest.test"))
    gone = relay_submit(r, SENDER, ["gone@dest.test"], msg("gone@dest.test"))
    wait_event(r, "deferred", id=keep)
    wait_event(r, "deferred", id=gone)
    r.stop()

    entries = {e.id.upper(): e for e in r.queue_list()}
    assert set(entries) == {keep, gone}
    assert entries[keep].state == "deferred" and entries[gone].state == "deferred"
    line = rcpt_lines(r.queue_show(keep))["keep@dest.test"]
    assert "state=queued" in line and "451 4.3.0 come back later" in line, line
    assert re.search(r"attempts=[1-9]", line), line
    out = queue_ok(r, "delete", gone)
    assert gone in out.out.upper()
    assert r.queue_ids() == [keep]

    mx.rcpt_always.clear()
    r.start()
    mx.wait_messages(1)
    wait_queue_empty(r)
    assert [m.rcpt_tos for m in mx.messages] == [["keep@dest.test"]]


# ---------------------------------------------------------------------------
# 15: sandbox
# ---------------------------------------------------------------------------

def test_sandbox_writes_files_and_connects_nowhere(make_relevo, dns, mxs):
    trap = domain_mx(dns, mxs, "dest.test")
    trap2 = domain_mx(dns, mxs, "other.test")
    r = delivering_relevo(make_relevo, dns, mxs, mode="sandbox")
    original = msg("s1@dest.test", subject="sandboxed", body=TRICKY_BODY)
    qid = relay_submit(r, SENDER, ["s1@dest.test", "s2@dest.test", "o@other.test"], original)

    wait_queue_empty(r)
    d = os.path.join(r.data_dir, "sandbox")
    files = sorted(f for f in os.listdir(d) if not f.endswith(".tmp"))
    assert files == sorted(["%s-dest.test.eml" % qid, "%s-other.test.eml" % qid]), files
    with open(os.path.join(d, "%s-dest.test.eml" % qid), "rb") as f:
        data = f.read()
    head, sep, rest = data.partition(b"\r\nReceived:")
    assert sep, data[:500]
    env_lines = head.split(b"\r\n")
    assert env_lines[0] == b"X-Relevo-Envelope-From: <%s>" % SENDER.encode()
    assert sorted(env_lines[1:]) == [b"X-Relevo-Envelope-To: <s1@dest.test>",
                                     b"X-Relevo-Envelope-To: <s2@dest.test>"]
    split_prepended(b"Received:" + rest, original)
    with open(os.path.join(d, "%s-other.test.eml" % qid), "rb") as f:
        other = f.read()
    assert other.split(b"\r\nReceived:")[0].split(b"\r\n") == [
        b"X-Relevo-Envelope-From: <%s>" % SENDER.encode(),
        b"X-Relevo-Envelope-To: <o@other.test>"]
    assert trap.connections == [] and trap2.connections == []
    assert mxs.connections() == 0
    assert not log_events(r, "ready", host="mx1.dest.test")
    assert not log_events(r, "open_failed", host="mx1.dest.test")


def test_delay_warning_sent_once_while_retries_go_on(make_relevo, dns, mxs):
    """delivery.delay_warning: one DSN with Action: delayed, then retries go on."""
    mx = domain_mx(dns, mxs, "dest.test")
    mx.rcpt_always["slow@dest.test"] = "451 4.2.1 mailbox busy, try later"
    home = sender_mx(dns, mxs)
    r = delivering_relevo(make_relevo, dns, mxs, delay_warning=2)
    qid = relay_submit(r, SENDER, ["slow@dest.test"], msg("slow@dest.test", subject="slowly"))

    home.wait_messages(1, timeout=20)
    m = home.messages[0]
    assert m.mail_from == "" and m.rcpt_tos == [SENDER]
    dsn = DSN(m.content)
    b = dsn.recipient("slow@dest.test")
    assert b is not None, dsn.final_recipients()
    assert b.get("Action", "").strip().lower() == "delayed", b.items()
    assert b.get("Status", "").strip().startswith("4."), b.items()
    assert "451 4.2.1 mailbox busy" in unfold(b.get("Diagnostic-Code", ""))
    # Retries go on after the warning, and no second warning is sent.
    n = len(log_events(r, "deferred", id=qid))
    wait_for(lambda: len(log_events(r, "deferred", id=qid)) >= n + 2, timeout=20,
             what="more retries after the warning")
    assert len(log_events(r, "delay_dsn_queued", id=qid)) == 1
    assert len(home.messages) == 1
    assert "slow@dest.test" in r.cli_ok(["queue", "list"]).out


def test_sandbox_account_mail_is_written_not_sent(make_relevo, dns, mxs):
    """relevo user sandbox NAME on: that account's mail goes to data_dir/sandbox/,
    everyone else's still goes to the MX."""
    mx = domain_mx(dns, mxs, "dest.test")
    r = delivering_relevo(make_relevo, dns, mxs)
    r.cli_ok(["user", "sandbox", "alice", "on"])
    assert "sandbox" in r.cli_ok(["user", "list"]).out
    qid, _ = submit(r, sender="alice@example.com", rcpts=("carol@dest.test",),
                    message=msg("carol@dest.test", sender="alice@example.com"),
                    user="alice", mode="submissions")
    other = relay_submit(r, SENDER, ["dave@dest.test"])

    mx.wait_messages(1)
    wait_queue_empty(r)
    assert [m.rcpt_tos for m in mx.messages] == [["dave@dest.test"]]
    path = os.path.join(r.data_dir, "sandbox", "%s-dest.test.eml" % qid)
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(b"X-Relevo-Envelope-From: <alice@example.com>\r\n"
                           b"X-Relevo-Envelope-To: <carol@dest.test>\r\n"), data[:200]
    assert not os.path.exists(os.path.join(r.data_dir, "sandbox", "%s-dest.test.eml" % other))


def test_source_address_is_used_for_outbound_connections(make_relevo, dns, mxs):
    """delivery.source_address: outbound connections come from that address."""
    mx = domain_mx(dns, mxs, "dest.test")
    r = delivering_relevo(make_relevo, dns, mxs, source_address="127.0.0.9")
    relay_submit(r, SENDER, ["s@dest.test"])
    mx.wait_messages(1)
    assert mx.messages[0].conn.peer[0] == "127.0.0.9", mx.messages[0].conn.peer
