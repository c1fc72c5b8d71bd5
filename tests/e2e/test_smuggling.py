"""
test_smuggling.py - framing attacks.

SMTP smuggling (CVE-2023-51764 and friends): only CRLF "." CRLF ends DATA, and only
CRLF ends a command line. A message containing "\\n.\\n" or "\\r\\n.\\n" followed by
command text must yield exactly one outcome for the whole transaction (relevo
refuses bare CR/LF in content: 550 5.6.0), never a second message.

STARTTLS command injection (CVE-2011-0411, RFC 3207 4.2): bytes pipelined after
STARTTLS in the same packet must be discarded, not executed inside TLS.
"""

import pytest

from conftest import expect, make_message, open_transaction, USERS

SMUGGLED_SENDER = "smuggled@example.com"
SMUGGLED_RCPT = "victim@example.net"

# Things that look like end-of-data to a lax parser but are not CRLF.CRLF.
FAKE_ENDS = {
    "lf-dot-lf": b"\n.\n",
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-cr": b"\r.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
}


def smuggling_payload(fake_end):
    first = make_message(sender="alice@example.com", subject="innocent",
                         body=b"hello").rstrip(b"\r\n")
    smuggled = (b"MAIL FROM:<" + SMUGGLED_SENDER.encode() + b">\r\n"
                b"RCPT TO:<" + SMUGGLED_RCPT.encode() + b">\r\n"
                b"DATA\r\n" +
                make_message(sender=SMUGGLED_SENDER, to=SMUGGLED_RCPT,
                             subject="smuggled", body=b"smuggled body\r\n"))
    return first + fake_end + smuggled, first


def assert_nothing_smuggled(relevo):
    entries = relevo.queue_list()
    assert entries == [], "message(s) queued: %r" % entries
    assert SMUGGLED_SENDER not in relevo.cli_ok(["queue", "list"]).out


@pytest.mark.parametrize("mode", ["submissions", "relay"])
@pytest.mark.parametrize("name", list(FAKE_ENDS))
def test_fake_end_of_data_does_not_split_message(relevo, mode, name):
    payload, _ = smuggling_payload(FAKE_ENDS[name])
    with open_transaction(relevo, mode) as c:
        c.send(payload + b"\r\n.\r\n")
        r = c.reply()
        # exactly one outcome for the whole transaction: a refusal
        assert r.code // 100 == 5, "expected 5xx (550 5.6.0), got %r\n%s" % (r, c.dump())
        assert r.enh and r.enh.startswith("5."), r
        # and nothing else was said: the next reply answers our NOOP
        expect(c.cmd("NOOP"), 250, "2.0.0")
        assert c.pending() == b"", c.dump()
    assert_nothing_smuggled(relevo)


@pytest.mark.parametrize("name", ["lf-dot-lf", "crlf-dot-lf"])
def test_fake_end_split_across_writes(relevo, name):
    """The fake terminator arriving at a packet boundary changes nothing."""
    payload, first = smuggling_payload(FAKE_ENDS[name])
    with open_transaction(relevo, "relay") as c:
        c.send(first + FAKE_ENDS[name])
        # a lax server would answer here; a correct one waits for more data
        assert c.pending(0.5) == b"", "server replied to a fake end of data:\n" + c.dump()
        c.send(payload[len(first) + len(FAKE_ENDS[name]):])
        assert c.pending(0.3) == b"", c.dump()
        c.send(b"\r\n.\r\n")
        r = c.reply()
        assert r.code // 100 == 5, r
        expect(c.cmd("NOOP"), 250)
    assert_nothing_smuggled(relevo)


def test_bare_lf_content_refused_with_550_5_6_0(relevo):
    with open_transaction(relevo, "submissions") as c:
        c.send(make_message(body=b"line one\nline two\r\n") + b".\r\n")
        expect(c.reply(), 550, "5.6.0")
    assert relevo.queue_list() == []


def test_dot_crlf_inside_line_is_content(relevo):
    """'.\\r\\n' not at the start of a line is content; only CRLF.CRLF ends DATA."""
    body = b"a line ending in a dot.\r\n. leading dot-space (stuffed)\r\nend\r\n"
    with open_transaction(relevo, "submissions") as c:
        from conftest import dot_stuff
        c.send(dot_stuff(make_message(body=body)) + b".\r\n")
        r = expect(c.reply(), 250, "2.0.0")
    show = relevo.queue_show(r.queued_id).replace("\r\n", "\n")
    assert body.decode().replace("\r\n", "\n") in show


# -- bare LF / CR in command lines -------------------------------------------------------

def test_bare_lf_does_not_end_command_line(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        c.send(b"NOOP\nNOOP\r\n")
        r = c.reply()
        assert r.code // 100 == 5, "bare LF treated as a line end? %r\n%s" % (r, c.dump())
        expect(c.cmd("NOOP"), 250)
        assert c.pending() == b"", c.dump()


def test_bare_lf_smuggled_rcpt_not_executed(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        c.send(b"MAIL FROM:<alice@example.com>\nRCPT TO:<rcpt@example.net>\r\n")
        r = c.reply()
        assert r.code // 100 == 5, r
        assert c.pending() == b"", c.dump()
        # neither command took effect
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 503, "5.5.1")


def test_bare_cr_does_not_end_command_line(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        c.send(b"RSET\rNOOP\r\n")
        r = c.reply()
        assert r.code // 100 == 5, r
        expect(c.cmd("NOOP"), 250)
        assert c.pending() == b"", c.dump()


# -- STARTTLS command injection ------------------------------------------------------------

@pytest.mark.parametrize("injected", [b"RSET\r\n", b"NOOP\r\nNOOP\r\n",
                                      b"EHLO injected.example\r\n"],
                         ids=["rset", "noop-noop", "ehlo"])
def test_starttls_pipelined_data_discarded(relevo, injected):
    c = relevo.client("submission")
    try:
        c.ehlo()
        c.send(b"STARTTLS\r\n" + injected)
        r = c.reply()
        expect(r, 220)
        # nothing answered in plaintext either
        assert c.pending(0.3) == b"", "plaintext after 220:\n" + c.dump()
        c._wrap()
        c.send(b"EHLO client.example\r\n")
        r = c.reply()
        # the first reply inside TLS is the answer to our EHLO (multi-line,
        # naming the server, offering AUTH), not to the injected command
        assert r.code == 250 and len(r.lines) > 1, \
            "first reply after the handshake is not our EHLO's: %r\n%s" % (r, c.dump())
        assert r.lines[0].split()[0] == "relay.test", r
        assert any(l.upper().startswith("AUTH") for l in r.lines[1:]), r
        expect(c.cmd("NOOP"), 250)
        assert c.pending() == b"", c.dump()
        expect(c.auth_plain("alice", USERS["alice"][0]), 235, "2.7.0")
    finally:
        c.close()


# -- BDAT content goes through the same checks -------------------------------------------

@pytest.mark.parametrize("name", ["lf-dot-lf", "crlf-dot-lf"])
def test_bdat_with_bare_lf_is_refused(relevo, name):
    payload, _ = smuggling_payload(FAKE_ENDS[name])
    payload += b"\r\n"
    with open_transaction(relevo, data=False) as c:
        c.send(b"BDAT %d LAST\r\n" % len(payload) + payload)
        r = c.reply()
        assert r.code == 550 and r.enh == "5.6.0", r
        expect(c.cmd("NOOP"), 250)
        assert c.pending() == b"", c.dump()
    assert_nothing_smuggled(relevo)


def test_nul_in_message_refused(relevo):
    with open_transaction(relevo, "submissions") as c:
        c.send(make_message(body=b"nul here:\0 end\r\n") + b".\r\n")
        expect(c.reply(), 550, "5.6.0")
    assert relevo.queue_list() == []


def test_nul_in_command_refused(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        c.send(b"NO\0OP\r\n")
        r = c.reply()
        assert r.code == 500 and r.enh and r.enh.startswith("5.5."), r
        expect(c.cmd("NOOP"), 250)


def test_starttls_forgets_pre_tls_ehlo(relevo):
    """RFC 3207 4.2: after the handshake the server discards what the client told it
    before, such as the EHLO argument: the trace header names the post-TLS EHLO."""
    with relevo.client("submission") as c:
        c.ehlo("before-tls.example")
        c.starttls()
        c.ehlo("after-tls.example")
        expect(c.auth_plain("alice", USERS["alice"][0]), 235, "2.7.0")
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"], make_message())
        expect(r, 250, "2.0.0")
    show = relevo.queue_show(r.queued_id)
    assert "after-tls.example" in show, show
    assert "before-tls.example" not in show, show
