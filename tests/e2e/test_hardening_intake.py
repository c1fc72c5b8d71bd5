"""
test_hardening_intake.py - issue 12, the SMTP intake side: BDAT memory, mail loops
by Received: count, headers that lie to the next hop, one From:, duplicate
recipients, address literals from customers, pipelining synchronisation, DATA
after BDAT, and an IPv4-mapped listener address.

Each test asserts what a client or operator sees: reply codes and texts, what was
queued (`relevo queue show`), the daemon's resident memory (VmRSS from /proc).
"""

import threading

import pytest

from conftest import expect, make_message, open_transaction
from test_hardening_helpers import rss_kb, start_measured, start_with_nofile


def auth_client(relevo, user="alice"):
    c = relevo.client("submissions")
    c.login(user)
    return c


def queued_text(relevo, qid):
    return relevo.queue_show(qid)


# ---------------------------------------------------------------------------
# 4. Tiny BDAT chunks and the memory budget
# ---------------------------------------------------------------------------

def _bdat_stream(c, nchunks, chunk=b"x", last=True):
    """Send nchunks BDAT chunks of `chunk` (and BDAT 0 LAST) from a thread while
    the replies are read here; returns the replies."""
    data = b"".join(b"BDAT %d\r\n" % len(chunk) + chunk for _ in range(nchunks))
    if last:
        data += b"BDAT 0 LAST\r\n"
    t = threading.Thread(target=c.sock.sendall, args=(data,), daemon=True)
    t.start()
    replies = [c.reply() for _ in range(nchunks + (1 if last else 0))]
    t.join(30)
    return replies


def relay_client(relevo):
    """A plaintext client (the relay listener): the BDAT tests write from a thread
    while reading, which an SSL socket does not allow."""
    c = relevo.client("relay")
    c.ehlo()
    return c


def test_too_many_bdat_chunks_are_552_and_nothing_queued(relevo):
    """SMTP_BDAT_CHUNKS_MAX (10,000) chunks per message: the 10,001st and the end
    are 552 5.3.4, the session goes on."""
    with relay_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        head = make_message()
        c.send(b"BDAT %d\r\n" % len(head) + head)
        expect(c.reply(), 250)
        replies = _bdat_stream(c, 10000)
        assert all(r.code == 250 for r in replies[:9999]), \
            [r for r in replies[:9999] if r.code != 250][:3]
        expect(replies[9999], 552, "5.3.4")
        assert "chunks" in replies[9999].text, replies[9999]
        expect(replies[10000], 552, "5.3.4")
        expect(c.cmd("NOOP"), 250)
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"], make_message())
        expect(r, 250, "2.0.0")
    assert relevo.queue_ids() == [r.queued_id]


def test_tiny_bdat_chunks_cost_what_they_hold(make_relevo):
    """10 sessions each hold a message of 9,000 BDAT chunks of 5 octets (45 KB):
    the body is kept in full blocks, so RSS grows by about what the messages
    hold, not by a kilobyte or more per chunk (~100 MB before the fix)."""
    relevo = make_relevo(smtp={"max_connections_per_ip": 20}, start=False)
    start_measured(relevo)
    clients = []
    try:
        for _ in range(2):      # warm up the allocator and the workers
            with auth_client(relevo) as c:
                c.mail_transaction("alice@example.com", ["rcpt@example.net"], make_message())
        base = rss_kb(relevo)
        for _ in range(10):
            c = relay_client(relevo)
            clients.append(c)
            expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
            expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
            head = make_message(body=b"")
            c.send(b"BDAT %d\r\n" % len(head) + head)
            expect(c.reply(), 250)
            replies = _bdat_stream(c, 9000, b"abc\r\n", last=False)
            assert all(r.code == 250 for r in replies), replies[-1]
        grown = rss_kb(relevo) - base
        assert grown < 30 * 1024, "RSS grew by %d KiB for 450 KB of content" % grown
        ids = []
        for c in clients:
            c.send(b"BDAT 0 LAST\r\n")
            ids.append(expect(c.reply(), 250, "2.0.0").queued_id)
        assert set(ids) <= set(relevo.queue_ids())
        assert "abc" in relevo.queue_show(ids[0])
    finally:
        for c in clients:
            c.close()


# ---------------------------------------------------------------------------
# 5. Mail loops: the Received: count
# ---------------------------------------------------------------------------

def _with_received(n):
    return make_message(extra_headers=["Received: from hop%d.example by hop%d.example; "
                                       "Thu, 1 Jan 2026 00:00:00 +0000" % (i, i + 1)
                                       for i in range(n)])


@pytest.mark.parametrize("mode", ["submissions", "relay"])
def test_more_than_50_received_headers_is_554_5_4_6(relevo, mode):
    with relevo.client(mode) as c:
        if mode == "relay":
            c.ehlo()
        else:
            c.login("alice")
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"], _with_received(51))
        expect(r, 554, "5.4.6")
        assert "Received" in r.text and "loop" in r.text, r
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"], _with_received(50))
        expect(r, 250, "2.0.0")
    assert len(relevo.queue_ids()) == 1


def test_max_received_headers_is_configurable(make_relevo):
    relevo = make_relevo(smtp={"max_received_headers": 3})
    with auth_client(relevo) as c:
        expect(c.mail_transaction("alice@example.com", ["rcpt@example.net"],
                                  _with_received(4)), 554, "5.4.6")
        expect(c.mail_transaction("alice@example.com", ["rcpt@example.net"],
                                  _with_received(3)), 250, "2.0.0")


# ---------------------------------------------------------------------------
# 8. Headers that lie to the next hop; one From:; duplicate recipients
# ---------------------------------------------------------------------------

LYING = ["Authentication-Results: relay.test; dkim=pass header.d=example.com",
         "Authentication-Results: mx.other.example; spf=pass",
         "ARC-Seal: i=1; a=rsa-sha256; d=other.example; s=x;\r\n\tb=abc",
         "ARC-Message-Signature: i=1; a=rsa-sha256; d=other.example; b=abc",
         "arc-authentication-results: i=1; relay.test; dkim=pass"]


def test_client_authentication_results_are_stripped_on_submission(relevo):
    """A customer's message loses every Authentication-Results and ARC-* field."""
    msg = make_message(subject="stripped", extra_headers=LYING)
    with auth_client(relevo) as c:
        r = expect(c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg),
                   250, "2.0.0")
    shown = queued_text(relevo, r.queued_id).lower()
    assert "subject: stripped" in shown
    for h in ("authentication-results", "arc-seal", "arc-message-signature"):
        assert h not in shown, shown


def test_relay_strips_only_results_claiming_our_authserv_id(relevo):
    """From a trusted forwarder (relay listener) an ARC set of someone else's stays;
    results claiming relay.test (our hostname) go."""
    msg = make_message(subject="forwarded", extra_headers=LYING)
    with relevo.client("relay") as c:
        c.ehlo()
        r = expect(c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg),
                   250, "2.0.0")
    shown = queued_text(relevo, r.queued_id).lower()
    assert "authentication-results: mx.other.example; spf=pass" in shown, shown
    assert "arc-seal: i=1" in shown and "arc-message-signature: i=1" in shown, shown
    assert "relay.test; dkim=pass" not in shown, shown


@pytest.mark.parametrize("mode", ["submissions", "relay"])
@pytest.mark.parametrize("case", ["none", "two", "empty"])
def test_message_without_exactly_one_from_is_550_5_6_0(relevo, mode, case):
    if case == "none":
        msg = b"To: <rcpt@example.net>\r\nSubject: no from\r\n\r\nHello.\r\n"
    elif case == "two":
        msg = make_message(extra_headers=["From: <alice@example.com>"])
    else:
        msg = b""
    with open_transaction(relevo, mode, data=False) as c:
        if case == "empty":
            c.send(b"BDAT 0 LAST\r\n")        # the empty message that went out signed
            r = c.reply()
        else:
            expect(c.cmd("DATA"), 354)
            c.send(msg + b".\r\n")
            r = c.reply()
        expect(r, 550, "5.6.0")
        assert "From:" in r.text and "exactly one" in r.text, r
        expect(c.cmd("NOOP"), 250)
    assert relevo.queue_list() == []


def test_duplicate_recipients_are_answered_250_and_kept_once(relevo):
    with auth_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        for rcpt in ["dup@example.net", "dup@EXAMPLE.net", "dup@Example.Net",
                     "dup@example.net", "Dup@example.net"]:
            expect(c.cmd("RCPT TO:<%s>" % rcpt), 250, "2.1.5")
        # 500 more of the same stay within smtp.max_recipients (5): all one
        c.send(b"RCPT TO:<dup@example.net>\r\n" * 500)
        for _ in range(500):
            expect(c.reply(), 250, "2.1.5")
        expect(c.cmd("DATA"), 354)
        c.send(make_message(to="dup@example.net") + b".\r\n")
        r = expect(c.reply(), 250, "2.0.0")
    shown = queued_text(relevo, r.queued_id)
    rcpts = [l.split()[0] for l in shown.splitlines() if l.startswith((" ", "\t")) and "@" in l
             and l.split()[0].startswith("<")]
    assert sorted(a.lower() for a in rcpts) == ["<dup@example.net>", "<dup@example.net>"], shown
    assert "<Dup@example.net>" in rcpts, shown     # the local part's case is the recipient's


# ---------------------------------------------------------------------------
# 6. Address literals from customers
# ---------------------------------------------------------------------------

LITERALS = ["x@[127.0.0.2]", "x@[10.0.0.1]", "x@[IPv6:::1]", "x@[192.0.2.1]"]


def test_address_literal_recipients_refused_on_submission(relevo):
    with auth_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        for rcpt in LITERALS:
            r = expect(c.cmd("RCPT TO:<%s>" % rcpt), 550, "5.7.1")
            assert "literal" in r.text, r
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
    with relevo.client("submission") as c:        # STARTTLS listener: the same
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<x@[127.0.0.2]>"), 550, "5.7.1")


def test_address_literals_allowed_by_config(make_relevo):
    relevo = make_relevo(smtp={"allow_address_literals": True})
    with auth_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<x@[192.0.2.1]>"), 250)


# ---------------------------------------------------------------------------
# 9. Pipelining synchronisation, DATA after BDAT, a mapped listener address
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("first", ["HELO client.example", "EHLO client.example"])
def test_command_pipelined_after_helo_is_not_executed(relevo, first):
    """RFC 2920 3.1: HELO/EHLO end a pipelined group; `HELO x\\r\\nMAIL ...` in
    one write gets 554 5.5.0 and the connection is closed: MAIL never runs."""
    with relevo.client("relay") as c:
        c.send(first.encode() + b"\r\nMAIL FROM:<alice@example.com>\r\n"
               b"RCPT TO:<rcpt@example.net>\r\nDATA\r\n")
        r = expect(c.reply(), 554, "5.5.0")
        assert "pipelining" in r.text, r
        assert c.wait_closed(), c.dump()
    assert relevo.queue_list() == []


def test_content_pipelined_after_data_is_not_taken(relevo):
    """DATA ends a group too: content sent before the 354 is refused, not queued."""
    with relevo.client("relay") as c:
        c.ehlo()
        c.send(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n" +
               make_message() + b".\r\n")
        expect(c.reply(), 250)
        expect(c.reply(), 250)
        expect(c.reply(), 554, "5.5.0")
        assert c.wait_closed(), c.dump()
    assert relevo.queue_list() == []


def test_ordinary_pipelining_still_works(relevo):
    with relevo.client("relay") as c:
        c.ehlo()
        c.send(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n")
        expect(c.reply(), 250)
        expect(c.reply(), 250)
        expect(c.reply(), 354)
        c.send(make_message() + b".\r\nNOOP\r\nQUIT\r\n")
        expect(c.reply(), 250, "2.0.0")
        expect(c.reply(), 250)
        expect(c.reply(), 221)


def test_data_after_bdat_says_what_is_wrong(relevo):
    with auth_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        c.send(b"BDAT 3\r\nabc")
        expect(c.reply(), 250)
        r = expect(c.cmd("DATA"), 503, "5.5.1")
        assert "BDAT" in r.text and "RCPT" not in r.text, r


def test_ipv4_mapped_listener_is_refused_by_check_config(make_relevo):
    relevo = make_relevo(start=False)
    relevo.config["listen"][2]["address"] = "[::ffff:127.0.0.1]:%d" % relevo.ports["relay"]
    relevo.write_config()
    r = relevo.cli(["check-config"])
    assert r.rc != 0, r
    assert "IPv4-mapped" in r.out + r.err, r


# ---------------------------------------------------------------------------
# 1 (the SMTP side). Descriptors: the soft limit raised, the limits checked
# ---------------------------------------------------------------------------

def _nofile_limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise AssertionError("no Max open files in /proc/%d/limits" % pid)


def test_soft_descriptor_limit_is_raised_to_the_hard_one(make_relevo):
    """Started with systemd's soft limit (1024), relevo raises it to the hard one."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip("hard limit %d leaves nothing to raise" % hard)
    relevo = make_relevo(start=False)
    start_with_nofile(relevo, 1024)
    got_soft, got_hard = _nofile_limits(relevo.proc.pid)
    assert got_soft == got_hard, (got_soft, got_hard)
    assert "event=fd_limit_raised from=1024" in relevo.stderr()


def test_connection_limits_over_the_descriptor_limit_are_warned_about(make_relevo):
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 900000:
        pytest.skip("hard limit too high for smtp.max_connections to pass it")
    relevo = make_relevo(smtp={"max_connections": 1000000})
    line = [l for l in relevo.stderr().splitlines() if "event=fd_limit_low" in l]
    assert line and "limit=%d" % hard in line[0] and "needed=1000228" in line[0], \
        relevo.stderr()
