"""
test_submission.py - the submission service as a mail client sees it: greeting,
EHLO, STARTTLS, AUTH (RFC 4954, 4616), sender-domain policy, the 250 "queued as
ID" reply and the message as queued (RFC 6409 8.2/8.3: Message-ID, Date added),
the relay listener, swaks and Python's smtplib.
"""

import re
import smtplib
import socket
import subprocess

import pytest

from conftest import HOSTNAME, USERS, expect, make_message, submit, header_lines

GREETING_RE = re.compile(r"^%s ESMTP( |$)" % re.escape(HOSTNAME))
BASE_EXTENSIONS = ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                   "CHUNKING", "DSN")


def auth_mechs(c):
    return set(c.extensions.get("AUTH", "").upper().split())


# -- greeting and EHLO ---------------------------------------------------------

@pytest.mark.parametrize("mode", ["submission", "submissions", "relay"])
def test_greeting_names_hostname(relevo, mode):
    with relevo.client(mode) as c:
        assert c.greeting.code == 220, c.greeting
        assert len(c.greeting.lines) == 1, c.greeting
        assert GREETING_RE.match(c.greeting.lines[0]), c.greeting
        c.quit()


def test_ehlo_before_tls_advertises_starttls_not_auth(relevo):
    with relevo.client("submission") as c:
        r = c.ehlo("client.example")
        assert r.lines[0].split()[0] == HOSTNAME, r
        for ext in BASE_EXTENSIONS + ("STARTTLS",):
            assert ext in c.extensions, "%s not advertised: %r" % (ext, r)
        assert c.extensions["SIZE"] == "1048576", r
        assert "AUTH" not in c.extensions, "AUTH offered before TLS: %r" % r


def test_ehlo_after_starttls_advertises_auth_not_starttls(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        c.starttls()
        r = c.ehlo()
        for ext in BASE_EXTENSIONS:
            assert ext in c.extensions, "%s not advertised after TLS: %r" % (ext, r)
        assert c.extensions["SIZE"] == "1048576", r
        assert {"PLAIN", "LOGIN"} <= auth_mechs(c), r
        # RFC 3207 4.2: STARTTLS must not be offered once TLS is active.
        assert "STARTTLS" not in c.extensions, r


def test_ehlo_on_submissions_offers_auth(relevo):
    with relevo.client("submissions") as c:
        assert c.sock.version() is not None
        r = c.ehlo()
        for ext in BASE_EXTENSIONS:
            assert ext in c.extensions, "%s not advertised: %r" % (ext, r)
        assert {"PLAIN", "LOGIN"} <= auth_mechs(c), r
        assert "STARTTLS" not in c.extensions, r


def test_starttls_certificate_verifies_for_hostname(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        c.starttls()
        cert = c.sock.getpeercert()
        sans = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
        assert HOSTNAME in sans
        c.ehlo()
        c.quit()


def test_second_starttls_is_refused(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("STARTTLS")
        assert r.code in (503, 454, 500), r
        assert r.enh and r.enh[0] in "45", r
        expect(c.cmd("NOOP"), 250, "2.0.0")


def test_helo_is_accepted(relevo):
    with relevo.client("submission") as c:
        r = c.cmd("HELO client.example")
        expect(r, 250)
        c.quit()


# -- authentication --------------------------------------------------------------

def test_mail_without_auth_after_tls_is_530(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 530, "5.7.0")
        # The session goes on: authenticating now works.
        expect(c.auth_plain("alice", USERS["alice"][0]), 235, "2.7.0")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)


def test_mail_before_tls_on_submission_is_530(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 530, "5.7.0")


def test_mail_without_auth_on_submissions_is_530(relevo):
    with relevo.client("submissions") as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 530, "5.7.0")


def test_auth_before_starttls_is_refused(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        r = c.auth_plain("alice", USERS["alice"][0])
        assert r.code in (538, 530), r
        assert r.enh and r.enh.startswith("5.7."), r
        # and the credentials did not authenticate the session
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 530, "5.7.0")


def test_auth_plain_succeeds(relevo):
    with relevo.client("submission") as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        expect(c.auth_plain("alice", USERS["alice"][0]), 235, "2.7.0")
        # RFC 4954 4: a second AUTH in the same session is 503
        r = c.auth_plain("alice", USERS["alice"][0])
        expect(r, 503, "5.5.1")
        c.quit()


def test_auth_plain_initial_response_via_continuation(relevo):
    import base64
    with relevo.client("submissions") as c:
        c.ehlo()
        c.send(b"AUTH PLAIN\r\n")
        raw = c.read_line()
        # RFC 4954 4: continue-req = "334" SP [base64] CRLF: an empty challenge
        # is "334 " (with the space); clients such as Net::SMTP rely on it.
        assert raw == "334 ", "bad empty challenge %r" % raw
        tok = base64.b64encode(b"\0alice\0" + USERS["alice"][0].encode()).decode()
        expect(c.cmd(tok), 235, "2.7.0")


def test_auth_login_succeeds(relevo):
    with relevo.client("submissions") as c:
        c.ehlo()
        r = c.cmd("AUTH LOGIN")
        assert r.code == 334, r
        import base64
        assert base64.b64decode(r.lines[0]).lower().startswith(b"username"), r
        r = c.cmd(base64.b64encode(b"alice").decode())
        assert r.code == 334, r
        assert base64.b64decode(r.lines[0]).lower().startswith(b"password"), r
        expect(c.cmd(base64.b64encode(USERS["alice"][0].encode()).decode()), 235, "2.7.0")


def test_auth_cancelled_with_star(relevo):
    with relevo.client("submissions") as c:
        c.ehlo()
        r = c.cmd("AUTH LOGIN")
        assert r.code == 334, r
        # RFC 4954 4: "*" cancels the exchange: 501
        expect(c.cmd("*"), 501, "5.x.x")
        expect(c.auth_plain("alice", USERS["alice"][0]), 235, "2.7.0")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_wrong_password_is_535(relevo, mech):
    with relevo.client("submissions") as c:
        c.ehlo()
        if mech == "PLAIN":
            r = c.auth_plain("alice", "not-the-password")
        else:
            r = c.auth_login("alice", "not-the-password")
        expect(r, 535, "5.7.8")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 530, "5.7.0")


def test_unknown_user_is_535(relevo):
    with relevo.client("submissions") as c:
        c.ehlo()
        expect(c.auth_plain("mallory", "whatever"), 535, "5.7.8")


def test_unknown_mechanism_is_504(relevo):
    with relevo.client("submissions") as c:
        c.ehlo()
        expect(c.cmd("AUTH CRAM-MD5"), 504, "5.5.4")


def test_auth_failures_limit_closes_connection(relevo):
    # max_auth_failures: 3
    with relevo.client("submissions") as c:
        c.ehlo()
        expect(c.auth_plain("alice", "wrong-1"), 535, "5.7.8")
        expect(c.auth_plain("alice", "wrong-2"), 535, "5.7.8")
        r = c.auth_plain("alice", "wrong-3")
        if r.code == 535:
            r = c.reply()
        expect(r, 421, "4.7.0")
        assert c.wait_closed(), "connection still open after 421:\n" + c.dump()


def test_password_never_logged(relevo):
    with relevo.client("submissions") as c:
        c.ehlo()
        c.auth_plain("alice", "Wr0ng-Pa55word-Marker")
        c.cmd("RSET")
        c.auth_login("alice", USERS["alice"][0])
        c.quit()
    relevo.stop()
    log = relevo.stderr()
    assert "Wr0ng-Pa55word-Marker" not in log
    assert USERS["alice"][0] not in log


# -- sender policy ------------------------------------------------------------------

def test_foreign_envelope_sender_is_553(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 553, "5.7.1")
        # a subdomain is not the same domain
        expect(c.cmd("MAIL FROM:<alice@sub.example.com>"), 553, "5.7.1")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
    assert relevo.queue_list() == []


def test_own_domain_sender_is_case_insensitive(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<Alice@EXAMPLE.com>"), 250)


def test_foreign_from_header_is_refused_at_end_of_data(relevo):
    msg = make_message(sender="boss@bank.example", to="rcpt@example.net")
    with relevo.client("submissions") as c:
        c.login("alice")
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg)
        assert r.code in (550, 553), r
        assert r.enh == "5.7.1", r
        assert r.queued_id is None
        # the session survives and the next transaction works
        msg2 = make_message(sender="alice@example.com")
        expect(c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg2),
               250, "2.0.0")
    ids = relevo.queue_ids()
    assert len(ids) == 1, ids
    assert "bank.example" not in relevo.queue_show(ids[0])


def test_from_header_with_display_name_in_own_domain_is_accepted(relevo):
    msg = make_message(extra_headers=())
    msg = msg.replace(b"From: <alice@example.com>",
                      b'From: "Alice, at Example (really)" <alice@example.com>')
    with relevo.client("submissions") as c:
        c.login("alice")
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg)
        expect(r, 250, "2.0.0")


def test_user_with_two_domains_may_use_both(relevo):
    for dom in ("example.net", "example.org"):
        sender = "carol@" + dom
        qid, _ = submit(relevo, sender=sender, rcpts=("x@example.com",),
                        message=make_message(sender=sender, to="x@example.com"),
                        user="carol")
        assert qid in relevo.queue_ids()
    with relevo.client("submissions") as c:
        c.login("carol")
        expect(c.cmd("MAIL FROM:<carol@example.com>"), 553, "5.7.1")


# -- a successful submission and what was queued ------------------------------------

def test_submission_queues_message_with_added_headers(relevo):
    body = b"First line.\r\n.Leading dot line.\r\n..two dots\r\nLast line.\r\n"
    msg = make_message(subject="added headers", body=body)
    with relevo.client("submission") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250, "2.1.5")
        expect(c.cmd("RCPT TO:<second@example.org>"), 250, "2.1.5")
        r = c.data(msg)
        expect(r, 250, "2.0.0")
        assert re.search(r"^2\.0\.0 queued as [0-9A-F]{16}$", r.lines[-1]), r
        qid = r.queued_id
        c.quit()

    entries = relevo.queue_list()
    assert [e.id.upper() for e in entries] == [qid], entries
    e = entries[0]
    assert e.sender == "alice@example.com", e
    assert "rcpt@example.net" in e.line and "second@example.org" in e.line, e

    show = relevo.queue_show(qid)
    assert "alice@example.com" in show
    assert "rcpt@example.net" in show and "second@example.org" in show
    assert "Subject: added headers" in show
    # dot-stuffing undone, body unchanged
    assert body.decode().replace("\r\n", "\n") in show.replace("\r\n", "\n")
    assert len(header_lines(show, "Received")) == 1, show
    received = re.search(r"^Received:.*?(?=^\S)", show, re.M | re.S | re.I)
    assert received and HOSTNAME in received.group(0), show
    # RFC 6409 8.2, 8.3: added because the client left them out
    assert len(header_lines(show, "Message-ID")) == 1, show
    assert len(header_lines(show, "Date")) == 1, show


def test_existing_message_id_and_date_are_kept_not_duplicated(relevo):
    mid = "<unique-1234@client.example>"
    date = "Tue, 01 Jul 2025 10:00:00 +0000"
    msg = make_message(message_id=mid, date=date)
    qid, _ = submit(relevo, message=msg)
    show = relevo.queue_show(qid)
    assert len(header_lines(show, "Message-ID")) == 1, show
    assert len(header_lines(show, "Date")) == 1, show
    assert "Message-ID: " + mid in show, show
    assert "Date: " + date in show, show


def test_received_header_is_first(relevo):
    qid, _ = submit(relevo)
    show = relevo.queue_show(qid).replace("\r\n", "\n")
    # The stored message starts with the trace header the relay prepended
    # (RFC 5321 4.4): Received comes before the client's own From:.
    r = show.find("Received:")
    f = show.find("From: <alice@example.com>")
    assert 0 <= r < f, show


def test_two_transactions_in_one_session_get_distinct_ids(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        r1 = c.mail_transaction("alice@example.com", ["a@example.net"],
                                make_message(subject="one"))
        expect(r1, 250, "2.0.0")
        r2 = c.mail_transaction("alice@example.com", ["b@example.net"],
                                make_message(subject="two"))
        expect(r2, 250, "2.0.0")
        c.quit()
    assert r1.queued_id != r2.queued_id
    assert sorted(relevo.queue_ids()) == sorted([r1.queued_id, r2.queued_id])
    assert "Subject: one" in relevo.queue_show(r1.queued_id)
    assert "Subject: two" in relevo.queue_show(r2.queued_id)


def test_pipelined_transaction(relevo):
    msg = make_message(subject="pipelined")
    with relevo.client("submissions") as c:
        c.login("alice")
        c.send(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<a@example.net>\r\n"
               b"RCPT TO:<b@example.net>\r\nDATA\r\n")
        expect(c.reply(), 250)
        expect(c.reply(), 250)
        expect(c.reply(), 250)
        expect(c.reply(), 354)
        c.send(msg + b"\r\n.\r\nQUIT\r\n")
        r = expect(c.reply(), 250, "2.0.0")
        expect(c.reply(), 221)
        assert c.wait_closed()
    assert relevo.queue_ids() == [r.queued_id]


def test_8bitmime_body_bytes_kept(relevo):
    body = "Grüße aus Köln – ünïcödé.\r\n".encode("utf-8")
    msg = make_message(subject="8bit", body=body,
                       extra_headers=["MIME-Version: 1.0",
                                      "Content-Type: text/plain; charset=utf-8",
                                      "Content-Transfer-Encoding: 8bit"])
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com> BODY=8BITMIME"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        r = expect(c.data(msg), 250, "2.0.0")
    show = relevo.cli_ok(["queue", "show", r.queued_id, "--body"]).out
    assert body.decode("utf-8").rstrip("\r\n") in show


def test_smtputf8_recipient(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        # without SMTPUTF8 a UTF-8 address is refused (RFC 6531 3.4)
        r = c.cmd("MAIL FROM:<alice@example.com>")
        expect(r, 250)
        r = c.cmd("RCPT TO:<jörg@example.net>".encode())
        expect(r, 553, "5.6.7")
        expect(c.cmd("RSET"), 250)
        expect(c.cmd("MAIL FROM:<alice@example.com> SMTPUTF8"), 250)
        expect(c.cmd("RCPT TO:<jörg@example.net>".encode()), 250)
        r = expect(c.data(make_message(to="jörg@example.net")), 250, "2.0.0")
    assert "jörg@example.net" in relevo.queue_show(r.queued_id)


def test_dsn_parameters_accepted(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com> RET=HDRS ENVID=abc+2Bdef"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net> NOTIFY=SUCCESS,FAILURE "
                     "ORCPT=rfc822;rcpt@example.net"), 250)
        expect(c.cmd("RCPT TO:<other@example.net> NOTIFY=NEVER"), 250)
        expect(c.data(make_message()), 250, "2.0.0")


def test_size_parameter_within_limit_is_accepted(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com> SIZE=1048576"), 250)


# -- relay listener -------------------------------------------------------------------

def test_relay_listener_accepts_trusted_client_without_auth(relevo):
    msg = make_message(sender="app@anything.example", subject="relay")
    with relevo.client("relay") as c:
        c.ehlo()
        r = c.mail_transaction("app@anything.example", ["rcpt@example.net"], msg)
        expect(r, 250, "2.0.0")
        c.quit()
    entries = relevo.queue_list()
    assert [e.id.upper() for e in entries] == [r.queued_id]
    assert entries[0].sender == "app@anything.example"


def test_relay_listener_refuses_untrusted_network(make_relevo):
    relevo = make_relevo(trusted_networks=["10.0.0.0/8"])
    with relevo.client("relay") as c:
        # 554 at greeting, or 5xx for MAIL / RCPT: never a queued message
        if c.greeting.code == 554:
            return
        c.ehlo()
        r = c.cmd("MAIL FROM:<app@anything.example>")
        if r.code == 250:
            r = c.cmd("RCPT TO:<rcpt@example.net>")
        assert r.code // 100 == 5 and r.enh and r.enh.startswith("5.7."), r
    assert relevo.queue_list() == []


# -- real clients ---------------------------------------------------------------------

def test_swaks_starttls_auth_first_message(relevo):
    r = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % relevo.ports["submission"],
         "--ehlo", "swaks.example", "-tls", "--tls-verify", "--tls-ca-path", relevo.tls.ca,
         "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", USERS["alice"][0],
         "--from", "alice@example.com", "--to", "friend@example.net",
         "--header", "Subject: first message via swaks",
         "--body", "Hello from swaks.", "--timeout", "20"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"<~\s+250 2\.0\.0 queued as ([0-9A-F]{16})", r.stdout)
    assert m, r.stdout
    qid = m.group(1)
    assert relevo.queue_ids() == [qid]
    show = relevo.queue_show(qid)
    assert "Subject: first message via swaks" in show
    assert "Hello from swaks." in show
    assert "friend@example.net" in show


class _SMTP_SSL(smtplib.SMTP_SSL):
    """SMTP_SSL that connects to 127.0.0.1 and verifies the name relay.test."""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection(("127.0.0.1", port), timeout)
        return self.context.wrap_socket(sock, server_hostname=HOSTNAME)


def test_smtplib_smtp_ssl_on_submissions(relevo):
    ctx = relevo.tls.client_context()
    body = "Hello from smtplib.\r\n"
    with _SMTP_SSL(HOSTNAME, relevo.ports["submissions"], context=ctx, timeout=20) as s:
        s.ehlo("smtplib.example")
        assert s.has_extn("auth")
        s.login("alice", USERS["alice"][0])
        msg = "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: smtplib\r\n\r\n" + body
        s.mail("alice@example.com")
        s.rcpt("bob@example.net")
        code, resp = s.data(msg)
        assert code == 250, resp
        m = re.search(rb"queued as ([0-9A-F]{16})", resp)
        assert m, resp
    qid = m.group(1).decode()
    assert relevo.queue_ids() == [qid]
    show = relevo.queue_show(qid)
    assert "Subject: smtplib" in show and "Hello from smtplib." in show


def test_smtplib_starttls_and_send_message(relevo):
    import email.message
    ctx = relevo.tls.client_context()
    s = smtplib.SMTP(timeout=20)
    s.connect("127.0.0.1", relevo.ports["submission"])
    s._host = HOSTNAME          # verify the certificate against relay.test
    try:
        s.ehlo("smtplib.example")
        s.starttls(context=ctx)
        s.ehlo("smtplib.example")
        s.login("carol", USERS["carol"][0])
        m = email.message.EmailMessage()
        m["From"] = "carol@example.org"
        m["To"] = "x@example.com, y@example.net"
        m["Subject"] = "send_message"
        m.set_content("Body via send_message.\n")
        refused = s.send_message(m)
        assert refused == {}
    finally:
        s.quit()
    entries = relevo.queue_list()
    assert len(entries) == 1
    assert entries[0].sender == "carol@example.org"
    show = relevo.queue_show(entries[0].id)
    assert "x@example.com" in show and "y@example.net" in show


# -- From: header spoofing attempts (RFC 5322 3.6.2) ------------------------------------

SPOOFED_FROM = {
    "display-name-looks-like-own": b'From: "alice@example.com" <boss@bank.example>',
    "second-address-foreign": b"From: alice@example.com, boss@bank.example",
    "group-with-foreign": b"From: team: alice@example.com, boss@bank.example;",
    "lowercase-name": b"from: boss@bank.example",
    "folded": b"From: Boss\r\n <boss@bank.example>",
    "comment-hides-domain": b"From: boss@bank.example (alice@example.com)",
    "subdomain": b"From: alice@evil.example.com",
}


@pytest.mark.parametrize("name", list(SPOOFED_FROM))
def test_spoofed_from_header_refused(relevo, name):
    msg = make_message().replace(b"From: <alice@example.com>", SPOOFED_FROM[name])
    with relevo.client("submissions") as c:
        c.login("alice")
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg)
        assert r.code in (550, 553) and r.enh == "5.7.1", r
    assert relevo.queue_list() == []


def test_two_from_headers_refused(relevo):
    msg = make_message(extra_headers=["From: <boss@bank.example>"])
    with relevo.client("submissions") as c:
        c.login("alice")
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg)
        assert r.code in (550, 553) and r.enh and r.enh.startswith("5."), r
    assert relevo.queue_list() == []


def test_authzid_other_user_does_not_authenticate(relevo):
    import base64
    with relevo.client("submissions") as c:
        c.ehlo()
        tok = base64.b64encode(b"carol\0alice\0" + USERS["alice"][0].encode()).decode()
        r = c.cmd("AUTH PLAIN " + tok)
        assert r.code in (535, 501, 504, 550) and r.enh and r.enh.startswith("5."), r
        expect(c.cmd("MAIL FROM:<carol@example.net>"), 530, "5.7.0")


def test_auth_invalid_base64_is_501(relevo):
    with relevo.client("submissions") as c:
        c.ehlo()
        expect(c.cmd("AUTH PLAIN !!!not-base64!!!"), 501, "5.5.2")
        expect(c.auth_plain("alice", USERS["alice"][0]), 235, "2.7.0")


def test_address_literal_sender_is_553(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@[127.0.0.1]>"), 553, "5.7.1")


# -- added headers land in the header section --------------------------------------------

def stored_message(show):
    """The message part of `queue show` output (it starts with our Received:)."""
    i = show.find("Received:")
    assert i >= 0, show
    return show[i:].replace("\r\n", "\n")


@pytest.mark.parametrize("case", ["normal", "no-body", "lowercase-names"])
def test_added_headers_are_in_header_section(relevo, case):
    if case == "normal":
        msg = make_message(body=b"Body mentions nothing.\r\n")
    elif case == "no-body":
        msg = b"From: <alice@example.com>\r\nTo: <rcpt@example.net>\r\nSubject: headers only\r\n"
    else:
        msg = make_message(extra_headers=["message-id: <lc@client.example>",
                                          "date: Tue, 01 Jul 2025 10:00:00 +0000"])
    qid, _ = submit(relevo, message=msg)
    m = stored_message(relevo.queue_show(qid))
    head = m.split("\n\n", 1)[0] + "\n"
    assert len(header_lines(head, "Message-ID")) == 1, m
    assert len(header_lines(head, "Date")) == 1, m
    assert len(header_lines(m, "Message-ID")) == 1, m
    assert len(header_lines(m, "Date")) == 1, m
    assert "From: <alice@example.com>" in head, m
    if case == "lowercase-names":
        assert "message-id: <lc@client.example>" in head


# -- CHUNKING (RFC 3030) --------------------------------------------------------------------

def test_bdat_100_then_bdat_0_last_queues(relevo):
    msg = make_message(subject="chunked", body=b"")
    msg += b"b" * (100 - len(msg) - 2) + b"\r\n"
    assert len(msg) == 100
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        c.send(b"BDAT 100\r\n" + msg)
        r = expect(c.reply(), 250)
        assert r.enh and r.enh.startswith("2."), r
        assert r.queued_id is None, r
        c.send(b"BDAT 0 LAST\r\n")
        r = expect(c.reply(), 250, "2.0.0")
        assert r.queued_id, r
        c.quit()
    assert relevo.queue_ids() == [r.queued_id]
    m = stored_message(relevo.queue_show(r.queued_id))
    assert m.endswith(msg.decode().replace("\r\n", "\n").split("\n\n", 1)[1]), m
    assert "Subject: chunked" in m


def test_bdat_size_is_exact_and_content_not_parsed(relevo):
    """The octets of a chunk are data, even if they look like commands or an end of
    DATA; no dot-unstuffing; the command after the chunk is read as a command."""
    msg = (b"From: <alice@example.com>\r\nTo: <rcpt@example.net>\r\nSubject: bdat exact\r\n"
           b"\r\nNOOP\r\n.\r\n..two dots stay two\r\nQUIT\r\n")
    cut = msg.index(b"NOOP") + 6            # chunk 1 ends right after "NOOP\r\n"
    c1, c2 = msg[:cut], msg[cut:]
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        c.send(b"BDAT %d\r\n" % len(c1) + c1 + b"NOOP\r\n")
        expect(c.reply(), 250)                          # the chunk
        expect(c.reply(), 250, "2.0.0")                 # our NOOP
        c.send(b"BDAT %d LAST\r\n" % len(c2) + c2)
        r = expect(c.reply(), 250, "2.0.0")
        assert r.queued_id, r
        assert c.pending() == b"", c.dump()
    m = stored_message(relevo.queue_show(r.queued_id))
    assert m.endswith("\nNOOP\n.\n..two dots stay two\nQUIT\n"), m


def test_bdat_pipelined_with_quit(relevo):
    msg = make_message(subject="bdat pipelined")
    with relevo.client("submissions") as c:
        c.login("alice")
        c.send(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<rcpt@example.net>\r\n"
               b"BDAT %d LAST\r\n" % len(msg) + msg + b"QUIT\r\n")
        expect(c.reply(), 250)
        expect(c.reply(), 250)
        r = expect(c.reply(), 250, "2.0.0")
        expect(c.reply(), 221)
        assert c.wait_closed()
    assert relevo.queue_ids() == [r.queued_id]


def test_data_after_bdat_is_503(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        c.send(b"BDAT 5\r\nFrom:")
        expect(c.reply(), 250)
        # RFC 3030 3: DATA may not be mixed with BDAT in one transaction
        expect(c.cmd("DATA"), 503, "5.5.1")


# -- logs ----------------------------------------------------------------------------------

def test_log_lines_are_key_value_and_name_the_message(relevo):
    qid, _ = submit(relevo)
    relevo.stop()
    lines = [l for l in relevo.stderr().splitlines() if l.strip()]
    assert lines, "no log output"
    kv = re.compile(r"\b[a-z_]+=\S")
    bad = [l for l in lines if not kv.search(l)]
    assert not bad, "log lines without key=value: %r" % bad[:5]
    assert any(qid in l for l in lines), "queue id %s never logged" % qid


# -- trace header protocol names (RFC 3848) ------------------------------------------------

@pytest.mark.parametrize("mode,proto", [("relay", "ESMTP"), ("submissions", "ESMTPSA"),
                                        ("submission", "ESMTPSA")])
def test_received_with_protocol(relevo, mode, proto):
    qid, _ = submit(relevo, mode=mode)
    m = stored_message(relevo.queue_show(qid))
    received = m.split("\n")[0]
    for line in m.split("\n")[1:]:
        if not line[:1].isspace():
            break
        received += " " + line.strip()
    assert re.search(r"\bwith %s\b" % proto, received), received
    assert "from client.example" in received, received
