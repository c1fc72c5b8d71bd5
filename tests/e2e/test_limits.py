"""
test_limits.py - size, recipient, line-length and error limits, and the basic
commands and their ordering (RFC 5321 4.1, 4.3.2, 4.5.3; RFC 1870; RFC 3463).
"""

import pytest

from conftest import expect, make_message


def auth_client(relevo):
    c = relevo.client("submissions")
    c.login("alice")
    return c


# -- message size (RFC 1870) --------------------------------------------------------

def test_size_parameter_over_limit_is_552(relevo):
    with auth_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com> SIZE=1048577"), 552, "5.3.4")
        # the transaction did not start
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 503, "5.5.1")
        expect(c.cmd("MAIL FROM:<alice@example.com> SIZE=1000"), 250)


def test_body_over_limit_is_552_and_nothing_queued(relevo):
    line = b"x" * 76 + b"\r\n"
    body = line * (1048576 // len(line) + 100)      # > 1 MiB of body alone
    msg = make_message(subject="too big", body=body)
    assert len(msg) > 1048576
    with auth_client(relevo) as c:
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg)
        expect(r, 552, "5.3.4")
        # the session is usable afterwards and the next small message is accepted
        expect(c.cmd("NOOP"), 250)
        r2 = c.mail_transaction("alice@example.com", ["rcpt@example.net"],
                                make_message(subject="small"))
        expect(r2, 250, "2.0.0")
    assert relevo.queue_ids() == [r2.queued_id]


def test_message_just_under_limit_is_accepted(relevo):
    # The stored message gains a Received header (and Message-ID, Date), so stay
    # comfortably below the limit; the point is that big messages pass intact.
    line = b"y" * 76 + b"\r\n"
    body = line * ((1048576 - 8192) // len(line))
    msg = make_message(subject="big but fine", body=body,
                       message_id="<big@client.example>",
                       date="Tue, 01 Jul 2025 10:00:00 +0000")
    with auth_client(relevo) as c:
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg)
        expect(r, 250, "2.0.0")
    show = relevo.queue_show(r.queued_id).replace("\r\n", "\n")
    assert body.decode().replace("\r\n", "\n") in show


def test_bdat_over_limit_is_552_and_nothing_queued(relevo):
    chunk = make_message(subject="big bdat", body=b"z" * 600000 + b"\r\n")
    with auth_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        r1 = c.reply()
        r = r1
        if r1.code == 250:
            c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
            r = c.reply()
        expect(r, 552, "5.3.4")
        expect(c.cmd("NOOP"), 250)
    assert relevo.queue_list() == []


# -- recipients -------------------------------------------------------------------------

def test_too_many_recipients_is_452(relevo):
    # max_recipients: 5
    with auth_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        for i in range(5):
            expect(c.cmd("RCPT TO:<r%d@example.net>" % i), 250)
        expect(c.cmd("RCPT TO:<r5@example.net>"), 452, "4.5.3")
        expect(c.cmd("RCPT TO:<r6@example.net>"), 452, "4.5.3")
        r = c.data(make_message())
        expect(r, 250, "2.0.0")
    show = relevo.queue_show(r.queued_id)
    for i in range(5):
        assert "r%d@example.net" % i in show
    assert "r5@example.net" not in show and "r6@example.net" not in show


# -- command lines -----------------------------------------------------------------------

def test_command_line_over_2048_bytes_is_500(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        c.send(b"NOOP " + b"a" * 3000 + b"\r\n")
        expect(c.reply(), 500, "5.5.x")
        # exactly one reply for that line, and the session goes on
        expect(c.cmd("NOOP"), 250, "2.0.0")
        assert c.pending() == b""


def test_long_mail_from_line_is_500_not_executed(relevo):
    with auth_client(relevo) as c:
        c.send(b"MAIL FROM:<alice@example.com> " + b"X-PAD=" + b"p" * 2100 + b"\r\n")
        r = c.reply()
        assert r.code == 500 and r.enh and r.enh.startswith("5.5."), r
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 503, "5.5.1")


def test_command_line_at_limit_is_not_cut(relevo):
    # 2046 characters + CRLF = 2048 bytes: within the limit, parsed as one line.
    with relevo.client("submission") as c:
        c.ehlo()
        line = b"NOOP " + b"b" * (2046 - 5)
        assert len(line) + 2 == 2048
        expect(c.cmd(line), 250)
        assert c.pending() == b""


# -- errors ---------------------------------------------------------------------------------

def test_too_many_errors_is_421_and_close(relevo):
    # max_errors: 10
    with relevo.client("submission") as c:
        c.ehlo()
        for i in range(9):
            expect(c.cmd("BOGUS%d" % i), 500, "5.5.1")
        c.send(b"BOGUS9\r\n")
        r = c.reply()
        if r.code == 500:
            r = c.reply()
        expect(r, 421, "4.7.0")
        assert c.wait_closed(), "connection still open after 421:\n" + c.dump()


def test_errors_below_limit_keep_session(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        for i in range(8):
            expect(c.cmd("BOGUS%d" % i), 500, "5.5.1")
        expect(c.cmd("NOOP"), 250)
        expect(c.cmd("QUIT"), 221)
        assert c.wait_closed()


# -- simple commands ------------------------------------------------------------------------

def test_vrfy_is_252(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        r = c.cmd("VRFY alice")
        expect(r, 252)
        assert r.enh and r.enh.startswith("2."), r


def test_help_is_214(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        r = c.cmd("HELP")
        expect(r, 214)
        assert r.enh and r.enh.startswith("2."), r


def test_noop_rset_quit(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        expect(c.cmd("NOOP"), 250, "2.0.0")
        expect(c.cmd("RSET"), 250, "2.0.0")
        expect(c.cmd("QUIT"), 221, "2.0.0")
        assert c.wait_closed(), "connection still open after 221:\n" + c.dump()


def test_rset_clears_transaction(relevo):
    with auth_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        expect(c.cmd("RSET"), 250, "2.0.0")
        expect(c.cmd("DATA"), 503, "5.5.1")
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 503, "5.5.1")
        # still authenticated after RSET
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)


def test_unknown_command_is_500_5_5_1(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        expect(c.cmd("FROB the widgets"), 500, "5.5.1")
        expect(c.cmd("NOOP"), 250)


def test_expn_is_refused(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        r = c.cmd("EXPN staff")
        assert r.code in (252, 502, 550), r


def test_rcpt_before_mail_is_503(relevo):
    with auth_client(relevo) as c:
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 503, "5.5.1")


def test_data_before_rcpt_is_503(relevo):
    with auth_client(relevo) as c:
        expect(c.cmd("DATA"), 503, "5.5.1")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("DATA"), 503, "5.5.1")
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        expect(c.data(make_message()), 250, "2.0.0")


def test_nested_mail_is_503(relevo):
    with auth_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 503, "5.5.1")


def test_bdat_without_transaction_is_503(relevo):
    with auth_client(relevo) as c:
        c.send(b"BDAT 5 LAST\r\nhello")
        r = c.reply()
        expect(r, 503, "5.5.1")
        # the 5 octets were consumed as chunk data, not read as a command
        expect(c.cmd("NOOP"), 250)
        assert c.pending() == b""


@pytest.mark.parametrize("arg", ["FROM:alice@example.com", "FROM:<alice@example.com",
                                 "FROM:<alice@@example.com>", "TO:<alice@example.com>"])
def test_bad_mail_syntax_is_501(relevo, arg):
    with auth_client(relevo) as c:
        r = c.cmd("MAIL " + arg)
        assert r.code == 501 and r.enh and r.enh.startswith("5."), r
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)


def test_unknown_mail_parameter_is_555(relevo):
    with auth_client(relevo) as c:
        expect(c.cmd("MAIL FROM:<alice@example.com> FROBNICATE=yes"), 555, "5.5.4")


def test_recipient_limit_is_per_transaction(relevo):
    with auth_client(relevo) as c:
        for t in range(2):
            expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
            for i in range(5):
                expect(c.cmd("RCPT TO:<t%dr%d@example.net>" % (t, i)), 250)
            expect(c.cmd("RCPT TO:<extra@example.net>"), 452, "4.5.3")
            expect(c.cmd("RSET"), 250)


def test_many_pipelined_commands(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        c.send(b"NOOP\r\n" * 200)
        for _ in range(200):
            expect(c.reply(), 250)
        assert c.pending() == b""


# -- connection handling ----------------------------------------------------------------------

def test_connections_per_ip_limit(make_relevo):
    relevo = make_relevo(smtp={"max_connections_per_ip": 2})
    a, b = relevo.client("relay"), relevo.client("submissions")
    try:
        x = relevo.client("submission")
        expect(x.greeting, 421, "4.7.0")
        assert x.wait_closed(), x.dump()
        x.close()
        a.quit()
        # a slot is free again (the server has to notice the close: poll)
        from conftest import poll

        def try_connect():
            y = relevo.client("relay")
            ok = y.greeting.code == 220
            y.close()
            return ok
        poll(try_connect, timeout=10, what="a free connection slot")
    finally:
        a.close()
        b.close()


def test_connection_limit_on_implicit_tls_port(make_relevo):
    """Over the limit on the submissions port: the client speaks TLS first, so the
    421 must come inside TLS (or the connection is simply closed). Plaintext there
    is a TLS protocol error for every client (RFC 8314 3.3)."""
    import ssl
    from conftest import Closed
    relevo = make_relevo(smtp={"max_connections_per_ip": 1})
    a = relevo.client("relay")
    try:
        try:
            x = relevo.client("submissions")
        except ssl.SSLError as e:
            if "WRONG_VERSION_NUMBER" in str(e) or "record layer" in str(e).lower():
                raise AssertionError("server answered in plaintext on the implicit-TLS "
                                     "port: %s" % e)
            return              # closed during the handshake: acceptable
        except (Closed, ConnectionError):
            return
        expect(x.greeting, 421, "4.7.0")
        x.close()
    finally:
        a.close()


def test_connections_total_limit(make_relevo):
    relevo = make_relevo(smtp={"max_connections": 2})
    a, b = relevo.client("relay"), relevo.client("relay")
    try:
        x = relevo.client("relay")
        assert x.greeting.code == 421 and x.greeting.enh.startswith("4."), x.greeting
        assert x.wait_closed(), x.dump()
    finally:
        a.close()
        b.close()


def test_early_talker_is_cut(make_relevo):
    from conftest import SMTPClient
    relevo = make_relevo(smtp={"greeting_delay_ms": 500})
    c = SMTPClient(relevo.ports["relay"], read_greeting=False)
    try:
        c.send(b"EHLO early.example\r\n")
        # RFC 5321 4.3.1: the client must wait for the greeting; the server
        # answers the early command with 554 5.5.0 (never a greeting) and closes.
        r = c.reply()
        assert r.code == 554 and r.enh == "5.5.0", "early talker got %r\n%s" % (r, c.dump())
        assert c.wait_closed(), c.dump()
    finally:
        c.close()
    # a patient client is served
    with relevo.client("relay") as c:
        assert c.greeting.code == 220
        c.ehlo()


def test_command_timeout_is_421(make_relevo):
    relevo = make_relevo(smtp={"timeout_command": 1})
    with relevo.client("relay") as c:
        c.ehlo()
        r = c.reply(timeout=10)
        expect(r, 421, "4.4.2")
        assert c.wait_closed(), c.dump()


def test_garbage_and_dropped_connections_do_not_hurt(relevo):
    import socket
    # plain text to the implicit-TLS port
    s = socket.create_connection(("127.0.0.1", relevo.ports["submissions"]), timeout=5)
    s.sendall(b"EHLO not-tls.example\r\n" * 10)
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
    # connect and vanish, many times, on every port
    for _ in range(20):
        for p in relevo.ports.values():
            socket.create_connection(("127.0.0.1", p), timeout=5).close()
    # half a TLS handshake
    s = socket.create_connection(("127.0.0.1", relevo.ports["submissions"]), timeout=5)
    s.sendall(bytes.fromhex("160301"))
    s.close()
    # the daemon notices the closes (the per-IP slots come back) and serves again
    from conftest import submit, poll, Closed

    def healthy():
        try:
            with relevo.client("relay") as c:
                return c.greeting.code == 220
        except (Closed, OSError):
            return False
    poll(healthy, timeout=10, what="the daemon to serve again")
    qid, _ = submit(relevo)
    assert relevo.queue_ids() == [qid]
    assert relevo.is_running()


def test_pipelined_group_after_refused_mail(relevo):
    """RFC 2920 3.1: with MAIL refused, the pipelined RCPT and DATA fail too, and the
    server must not enter DATA mode: the following line is a command again."""
    with auth_client(relevo) as c:
        c.send(b"MAIL FROM:<boss@bank.example>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n")
        expect(c.reply(), 553, "5.7.1")
        expect(c.reply(), 503, "5.5.1")
        r = c.reply()
        assert r.code in (503, 554) and r.enh and r.enh.startswith("5.5."), r
        expect(c.cmd("NOOP"), 250)
        assert c.pending() == b""
    assert relevo.queue_list() == []


def test_pipelined_recipients_over_limit(relevo):
    with auth_client(relevo) as c:
        c.send(b"MAIL FROM:<alice@example.com>\r\n" +
               b"".join(b"RCPT TO:<p%d@example.net>\r\n" % i for i in range(7)) + b"DATA\r\n")
        expect(c.reply(), 250)
        for i in range(5):
            expect(c.reply(), 250)
        expect(c.reply(), 452, "4.5.3")
        expect(c.reply(), 452, "4.5.3")
        expect(c.reply(), 354)
        c.send(make_message() + b".\r\n")
        r = expect(c.reply(), 250, "2.0.0")
    show = relevo.queue_show(r.queued_id)
    assert "p4@example.net" in show and "p5@example.net" not in show


def _rst_close(c):
    import socket
    import struct
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def _connect_when_slot_free(relevo, mode, timeout=5.0):
    """A connection that got its 220, retrying while the only slot is still taken."""
    import ssl
    from conftest import poll, Closed
    got = []

    def attempt():
        try:
            c = relevo.client(mode)
        except (ssl.SSLError, Closed, OSError):
            return False
        if c.greeting.code == 220:
            got.append(c)
            return True
        c.close()
        return False
    poll(attempt, timeout=timeout, interval=0.1,
         what="a free connection slot (a closed session was never released?)")
    return got[0]


@pytest.mark.parametrize("ending", ["quit", "errors"])
def test_session_released_when_client_resets(make_relevo, ending):
    """A client that sends QUIT (or too many bad commands) and resets the connection
    without reading the answer: the server's last write fails, and the session must
    still be freed, releasing its connection slot (max_connections_per_ip: 1)."""
    relevo = make_relevo(smtp={"max_connections_per_ip": 1})
    for i in range(10):
        c = _connect_when_slot_free(relevo, "submissions")
        c.login("alice")
        c.send(b"QUIT\r\n" if ending == "quit" else b"BOGUS\r\n" * 10)
        _rst_close(c)
        probe = _connect_when_slot_free(relevo, "relay")
        probe.quit()
