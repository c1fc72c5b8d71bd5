"""
test_sendmail.py - `relevo sendmail` and the local submission socket.

The daemon runs as root with local_submit.users mapping the system user
www-data to the account alice; the client runs as www-data (or as nobody, who
is not mapped), exactly as PHP's mail() or cron would. Mail goes through the
real daemon to a fake MX and is checked there: envelope, bytes, DKIM.
"""

import os
import pwd
import re
import subprocess

import pytest

from conftest import RELEVO_BIN, sanitizer_env, sanitizer_findings
from fakes import log_events, wait_event, wait_for
from fakes import dns, mxs  # noqa: F401  (fixtures)
from signing import dest_mx, signing_relevo, verify_all

MAPPED = "www-data"        # -> alice (example.com)
UNMAPPED = "nobody"

EX_OK, EX_USAGE, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 0, 64, 75, 77, 78


class Result:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def __repr__(self):
        return "exit %s\n--- stdout ---\n%s--- stderr ---\n%s" % (self.rc, self.out, self.err)


def sendmail(r, args, stdin=b"", user=MAPPED, argv=None):
    """Run `relevo sendmail ARGS -c CONF` (or argv ARGS -c CONF) as user."""
    if isinstance(stdin, str):
        stdin = stdin.encode()
    cmd = (argv or [RELEVO_BIN, "sendmail"]) + list(args) + ["-c", r.conf_path]
    kw = {}
    if user is not None:
        pw = pwd.getpwnam(user)
        kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=60, env=sanitizer_env(),
                       cwd="/", **kw)
    res = Result(p.returncode, p.stdout.decode("utf-8", "replace"),
                 p.stderr.decode("utf-8", "replace"))
    assert not sanitizer_findings(res.err), "sanitizer report: %r" % res
    return res


def local_submit(r, users=None):
    """Turn local submission on (before start) and let other users reach data_dir."""
    r.config["local_submit"] = {"users": users or {MAPPED: "alice"}}
    r.write_config()
    os.chmod(r.workdir, 0o711)
    os.chmod(r.conf_path, 0o644)


def start(r):
    """Start the daemon and wait for its local socket too (wait_listening sees TCP only)."""
    n = len(log_events(r, "listening", mode="local"))
    r.start()
    wait_event(r, "listening", n=n + 1, mode="local")


@pytest.fixture
def signing(make_relevo, dns, mxs):
    """A delivering, signing relevo with local submission; (relevo, mx, records)."""
    mx = dest_mx(dns, mxs)
    r, recs = signing_relevo(make_relevo, dns, mxs, start=False)
    local_submit(r)
    start(r)
    return r, mx, recs


@pytest.fixture
def queueing(make_relevo):
    """A relevo whose MX always defers (mail stays queued), with local submission."""
    r = make_relevo(start=False)
    local_submit(r)
    start(r)
    return r


def data_files(r):
    """Every file under data_dir with its size: what a failed submission must not change."""
    out = {}
    for root, _, files in os.walk(r.data_dir):
        for f in files:
            p = os.path.join(root, f)
            if not p.endswith(".sock"):
                out[p] = os.path.getsize(p)
    return out


def headers_of(content):
    return content.split(b"\r\n\r\n", 1)[0]


def test_piped_message_is_delivered_signed(signing):
    r, mx, recs = signing
    msg = ("From: Alice <alice@example.com>\n"
           "To: carol@dest.test\n"
           "Subject: from a PHP script\n"
           "\n"
           "Hello from mail().\n"
           ".\n"
           "not part of the message\n")
    res = sendmail(r, ["carol@dest.test"], msg)
    assert res.rc == EX_OK, res
    assert res.out == ""
    m = mx.wait_messages(1)[0]
    assert m.mail_from == "alice@example.com"          # from the From: header
    assert m.rcpt_tos == ["carol@dest.test"]
    assert b"\r\n\r\nHello from mail().\r\n" in m.content
    assert b"not part of the message" not in m.content  # "." ended the input (no -i)
    assert b"\n" not in m.content.replace(b"\r\n", b"")  # every line end is CRLF
    hdrs = headers_of(m.content).decode()
    # honest trace: a local user, no network peer, no SMTP AUTH protocol keyword
    assert re.search(r"^Received: by relay\.test \(relevo, from userid %d\)\r\n\tid [0-9A-F]{16}"
                     % pwd.getpwnam(MAPPED).pw_uid, hdrs, re.M), hdrs
    assert re.search(r"^Date: ", hdrs, re.M) and re.search(r"^Message-ID: <", hdrs, re.M)
    ok, _ = verify_all(m.content, recs)
    assert ok and all(ok), "DKIM signatures do not verify: %r" % ok


def test_t_takes_recipients_from_headers_and_removes_bcc(signing):
    r, mx, recs = signing
    msg = ("From: alice@example.com\n"
           "To: Carol <carol@dest.test>\n"
           "Cc: erin@dest.test (Erin)\n"
           "Bcc: dave@dest.test,\n"
           "  frank@dest.test\n"
           "Subject: -t\n"
           "\n"
           "Body.\n"
           ".\n"
           "kept with -i\n")
    res = sendmail(r, ["-t", "-i", "-f", "alice@example.com"], msg)
    assert res.rc == EX_OK, res
    wait_for(lambda: sum(len(m.rcpt_tos) for m in mx.messages) >= 4, what="4 recipients")
    got = sorted(a for m in mx.messages for a in m.rcpt_tos)
    assert got == ["carol@dest.test", "dave@dest.test", "erin@dest.test", "frank@dest.test"]
    for m in mx.messages:
        assert not re.search(rb"^Bcc:", m.content, re.M | re.I), m.content
        assert b"frank@dest.test" not in headers_of(m.content)
        assert b"\r\n.\r\nkept with -i\r\n" in m.content
        ok, _ = verify_all(m.content, recs)
        assert ok and all(ok)


def test_mail1_style_bare_lf_without_from(signing):
    """mail(1) pipes LF text with Subject and To but no From: -r gives the sender, -F
    the name of the From: that sendmail writes; dots at line starts survive."""
    r, mx, recs = signing
    msg = b"Subject: cron output\nTo: carol@dest.test\n\nline one\n.leading dot\n..two\nlast"
    res = sendmail(r, ["-i", "-r", "alice@example.com", "-F", 'Cron "Daemon"',
                       "carol@dest.test"], msg)
    assert res.rc == EX_OK, res
    m = mx.wait_messages(1)[0]
    assert m.mail_from == "alice@example.com"
    assert re.search(rb'^From: "Cron \\"Daemon\\"" <alice@example\.com>\r\n', m.content, re.M)
    assert m.content.endswith(b"\r\n\r\nline one\r\n.leading dot\r\n..two\r\nlast\r\n")
    ok, _ = verify_all(m.content, recs)
    assert ok and all(ok)


def test_sender_domain_not_owned_is_refused(queueing):
    r = queueing
    before = data_files(r)
    res = sendmail(r, ["-f", "mallory@evil.test", "rcpt@example.net"],
                   "From: alice@example.com\n\nhi\n")
    assert res.rc == EX_NOPERM, res
    assert "553" in res.err and "not yours to use" in res.err, res
    # and a From: header of another domain, with an owned envelope sender
    res = sendmail(r, ["-f", "alice@example.com", "rcpt@example.net"],
                   "From: ceo@evil.test\n\nhi\n")
    assert res.rc == EX_NOPERM, res
    assert "evil.test is not yours to use" in res.err, res
    assert r.queue_list() == []
    assert data_files(r).keys() == before.keys()


def test_unmapped_uid_is_refused(queueing):
    r = queueing
    res = sendmail(r, ["-f", "alice@example.com", "rcpt@example.net"],
                   "From: alice@example.com\n\nhi\n", user=UNMAPPED)
    assert res.rc == EX_NOPERM, res
    assert "554" in res.err and "uid %d (nobody) is not in local_submit.users" \
        % pwd.getpwnam(UNMAPPED).pw_uid in res.err, res
    assert r.queue_list() == []
    assert any("event=rejected reason=local_submit_refused" in l for l in r.stderr().splitlines())


def test_mapped_account_missing_is_a_config_error(make_relevo):
    r = make_relevo(start=False)
    local_submit(r, {MAPPED: "nosuchaccount"})
    start(r)
    res = sendmail(r, ["-f", "alice@example.com", "rcpt@example.net"], "hi\n")
    assert res.rc == EX_CONFIG, res
    assert "account nosuchaccount, which does not exist" in res.err, res


def test_daemon_down_tempfails_and_writes_nothing(queueing):
    r = queueing
    sock = os.path.join(r.data_dir, "public", "submit.sock")
    msg = "From: alice@example.com\n\nhi\n"
    wait_event(r, "started")            # its SIGTERM handler is in place
    r.stop()
    assert not os.path.exists(sock)     # a clean stop removes the socket: ENOENT
    before = data_files(r)
    res = sendmail(r, ["-f", "alice@example.com", "rcpt@example.net"], msg)
    assert res.rc == EX_TEMPFAIL, res
    assert "cannot reach the relevo daemon" in res.err, res
    assert data_files(r) == before
    # after a crash the socket file stays, nobody listens: ECONNREFUSED, same answer
    r.start()
    wait_event(r, "started", n=2)
    r.kill9()
    assert os.path.exists(sock)
    before = data_files(r)
    res = sendmail(r, ["-f", "alice@example.com", "rcpt@example.net"], msg)
    assert res.rc == EX_TEMPFAIL, res
    assert "Connection refused" in res.err, res
    assert data_files(r) == before
    assert r.queue_list() == []
    start(r)                            # the stale socket is replaced
    res = sendmail(r, ["-f", "alice@example.com", "rcpt@example.net"], msg)
    assert res.rc == EX_OK, res
    assert len(r.queue_list()) == 1


def test_invoked_as_sendmail_with_legacy_options(queueing, workdir):
    r = queueing
    link = os.path.join(workdir, "sendmail")
    os.symlink(os.path.abspath(RELEVO_BIN), link)
    res = sendmail(r, ["-oi", "-odb", "-oem", "-f", "alice@example.com", "-N", "failure,delay",
                       "-R", "hdrs", "-V", "env+1", "--", "rcpt@example.net"],
                   "From: alice@example.com\nSubject: legacy\n\nhi\n", argv=[link])
    assert res.rc == EX_OK, res
    q = r.queue_list()
    assert len(q) == 1 and q[0].sender == "alice@example.com" and q[0].recipients == \
        "rcpt@example.net", q
    show = r.queue_show(q[0].id)
    # -V, -R and -N reached the envelope; the account is the uid's mapping
    assert re.search(r"^envid:\s+env\+1$", show, re.M), show
    assert "RET=HDRS" in show and "notify=FAILURE,DELAY" in show, show
    assert re.search(r"^user:\s+alice$", show, re.M), show


def test_bp_lists_the_queue_and_q_flushes(queueing):
    r = queueing
    res = sendmail(r, ["-f", "alice@example.com", "a@example.net", "b@example.org"],
                   "From: alice@example.com\n\nhi\n")
    assert res.rc == EX_OK, res
    qid = r.queue_list()[0].id
    bp = sendmail(r, ["-bp"], user=None)             # mailq: the operator, as root
    assert bp.rc == 0, bp
    assert qid in bp.out and "<alice@example.com>" in bp.out and "a@example.net" in bp.out, bp
    q = sendmail(r, ["-q"], user=None)
    assert q.rc == 0, q
    assert "attempted" in q.out, q


@pytest.mark.parametrize("args,stdin,want", [
    ([], "From: alice@example.com\n\nhi\n", EX_USAGE),              # no recipient
    (["-t"], "From: alice@example.com\n\nhi\n", EX_USAGE),          # -t, none in headers
    (["-Z", "x@example.net"], "hi\n", EX_USAGE),                    # unknown option
    (["-N", "never,success", "x@example.net"], "hi\n", EX_USAGE),   # NEVER is alone
    (["-bs"], "", EX_USAGE),                                        # SMTP on stdin
])
def test_usage_errors(queueing, args, stdin, want):
    r = queueing
    res = sendmail(r, args, stdin)
    assert res.rc == want, res
    assert r.queue_list() == []


def test_socket_layout(queueing):
    """data_dir 0711 (passable, not listable), public/ 0755, the socket 0666."""
    r = queueing
    assert os.stat(r.data_dir).st_mode & 0o777 == 0o711
    assert os.stat(os.path.join(r.data_dir, "public")).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(r.data_dir, "public", "submit.sock")).st_mode & 0o777 == 0o666
    r.stop()
    r.config.pop("local_submit")
    r.write_config()
    r.start()
    assert os.stat(r.data_dir).st_mode & 0o777 == 0o700


def test_grouped_flags_and_mbox_from_line(queueing):
    """PHP's sendmail_path is often "sendmail -ti"; an mbox "From " first line is dropped."""
    r = queueing
    msg = ("From alice@example.com Mon Dec  7 10:00:00 2026\n"
           "From: alice@example.com\nTo: x@example.net\nSubject: grouped\n\nhi\n.\nmore\n")
    res = sendmail(r, ["-ti"], msg)
    assert res.rc == EX_OK, res
    q = r.queue_list()
    assert len(q) == 1 and q[0].recipients == "x@example.net", q
    show = r.queue_show(q[0].id)
    assert "Subject: grouped" in show and "From alice@example.com Mon" not in show, show


def test_t_address_list_forms(queueing):
    """Display names with commas, comments, groups and quoted local parts in To:/Cc:."""
    r = queueing
    msg = ('From: alice@example.com\n'
           'To: "Doe, John" <john@example.net>, (a comment) jane@example.net (Jane),\n'
           '  team: a@example.org, "q b"@example.org;\n'
           'Cc: undisclosed-recipients:;\n'
           '\nhi\n')
    res = sendmail(r, ["-t"], msg)
    assert res.rc == EX_OK, res
    q = r.queue_list()
    assert len(q) == 1, q
    show = r.queue_show(q[0].id)
    for rcpt in ("<john@example.net>", "<jane@example.net>", "<a@example.org>",
                 '<"q b"@example.org>'):
        assert re.search(r"^\s+%s\s" % re.escape(rcpt), show, re.M), (rcpt, show)
    assert "recipients:  4" in show, show


def test_refusals_map_to_sysexits_and_queue_nothing(queueing):
    r = queueing
    # a recipient the relay cannot take (no local mailboxes): EX_NOUSER, all or nothing
    res = sendmail(r, ["-f", "alice@example.com", "ok@example.net", "root"],
                   "From: alice@example.com\n\nhi\n")
    assert res.rc == 67, res
    assert "recipient refused: 501 5.1.3" in res.err, res
    # content the daemon refuses (larger than smtp.max_message_size): EX_DATAERR
    big = "From: alice@example.com\n\n" + ("x" * 70 + "\n") * 16000
    res = sendmail(r, ["-f", "alice@example.com", "ok@example.net"], big)
    assert res.rc == 65, res
    assert "552 5.3.4" in res.err, res
    assert r.queue_list() == []


def test_default_sender_is_login_at_hostname(queueing):
    """No -f and no From:/Sender: sendmail's user@host, which alice does not own: 77,
    and -v shows the dialogue that says so."""
    r = queueing
    res = sendmail(r, ["-v", "rcpt@example.net"], "Subject: no sender\n\nhi\n")
    assert res.rc == EX_NOPERM, res
    assert ">>> MAIL FROM:<www-data@relay.test>" in res.err, res
    assert "<<< 553 5.7.1 Sender address <www-data@relay.test> is not yours to use" in res.err
    assert r.queue_list() == []
