"""
test_hardening_privilege.py - least privilege, TLS policy and secrets in logs
(issue 5, "Least privilege").

  run_as     started as root with `run_as: nobody`, the daemon binds, hands data_dir
             over, and drops to that user in every thread (/proc/PID/task/*/status:
             Uid, Gid, supplementary groups, capabilities); data_dir, everything in
             it and the control socket are owner-only and owned by that user; mail
             still flows (submission, queue, delivery attempts, queue control).
  TLS        TLS 1.0 and 1.1 refused (the client really offers them: SECLEVEL=0),
             1.2 and 1.3 accepted, on the implicit-TLS port and after STARTTLS;
             no CBC or static-RSA suites; no compression (a hand-made ClientHello
             offering DEFLATE gets a ServerHello choosing "null").
  secrets    with debug logging on, neither the AUTH passwords of clients (PLAIN,
             LOGIN, right or wrong) nor the smarthost password relevo itself sends
             appear in the log, in clear or in base64.
"""

import base64
import glob
import os
import pwd
import socket
import ssl
import stat
import struct
import subprocess
import warnings

import pytest

from conftest import HOSTNAME, RELEVO_BIN, USERS, expect, sanitizer_env, submit
from fakes import log_events, wait_for
from test_hardening_helpers import HostileMX, server_tls_context, start_with_env, wait_settled

RUN_AS = "nobody"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="run_as needs a daemon started as root")


def thread_status(pid):
    """Uid/Gid/Groups/CapEff of every thread of pid."""
    out = {}
    for d in glob.glob("/proc/%d/task/*" % pid):
        with open(os.path.join(d, "status")) as f:
            st = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
        out[os.path.basename(d)] = {k: st.get(k, "").split() for k in
                                    ("Uid", "Gid", "Groups", "CapEff", "CapPrm")}
    return out


def make_run_as_relevo(make_relevo):
    r = make_relevo(start=False, users=False, run_as=RUN_AS)
    # Let relevo create data_dir itself (the harness made an empty one), as on a
    # fresh installation; the workdir (mkdtemp, 0700) must be traversable.
    os.rmdir(r.data_dir)
    os.chmod(r.workdir, 0o711)
    for name, (pw, domains) in USERS.items():
        r.add_user(name, pw, domains)
    return r


def owner_only_problems(top, uid, gid):
    """Paths under top (top included) not owned by uid:gid or open to group/other."""
    bad = []
    for root, dirs, files in os.walk(top):
        for p in [root] + [os.path.join(root, f) for f in files]:
            st = os.lstat(p)
            if st.st_uid != uid or st.st_gid != gid:
                bad.append("%s owned by %d:%d" % (p, st.st_uid, st.st_gid))
            if stat.S_IMODE(st.st_mode) & 0o077:
                bad.append("%s mode %o" % (p, stat.S_IMODE(st.st_mode)))
    return bad


@needs_root
def test_run_as_drops_root_in_every_thread_and_mail_flows(make_relevo):
    pw = pwd.getpwnam(RUN_AS)
    r = make_run_as_relevo(make_relevo)
    r.start()
    wait_for(lambda: log_events(r, "privileges_dropped"), timeout=10,
             what="event=privileges_dropped")
    threads = thread_status(r.proc.pid)
    assert len(threads) >= 3, threads
    for tid, st in threads.items():
        assert st["Uid"] == [str(pw.pw_uid)] * 4, (tid, st)
        assert st["Gid"] == [str(pw.pw_gid)] * 4, (tid, st)
        assert st["Groups"] == [], (tid, st)
        assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0, (tid, st)

    # mail flows: AUTH (the store), commit (the spool), a delivery attempt (the
    # harness's 421 MX), then queue control through the socket
    qid, _ = submit(r)
    wait_for(lambda: log_events(r, "deferred", id=qid), timeout=15,
             what="a delivery attempt as %s" % RUN_AS)
    assert r.queue_ids() == [qid]
    r.cli_ok(["queue", "hold", qid])
    assert [e.state for e in r.queue_list()] == ["held"]

    sock = os.path.join(r.data_dir, "control.sock")
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid)
    assert stat.S_IMODE(os.stat(r.data_dir).st_mode) == 0o700
    bad = owner_only_problems(r.data_dir, pw.pw_uid, pw.pw_gid)
    assert not bad, "not owner-only or not owned by %s: %s" % (RUN_AS, bad)

    # a restart (as root again) finds everything, still owner-only
    assert r.stop() == 0
    r.start()
    assert r.queue_ids() == [qid]
    assert not owner_only_problems(r.data_dir, pw.pw_uid, pw.pw_gid)


@needs_root
def test_run_as_tightens_a_preexisting_world_readable_data_dir(make_relevo):
    """data_dir created beforehand by an installer (`install -d`, mode 0755): relevo
    must not leave the queue's directory listing and database open to every local
    user. Issue 5: "data_dir ... owner-only"."""
    pw = pwd.getpwnam(RUN_AS)
    r = make_relevo(start=False, users=False, run_as=RUN_AS)
    os.chmod(r.data_dir, 0o755)
    os.chmod(r.workdir, 0o711)
    # (the CLI, run as root, becomes run_as before it opens data_dir: the
    # workdir must be traversable first)
    for name, (pw_, domains) in USERS.items():
        r.add_user(name, pw_, domains)
    os.chmod(r.data_dir, 0o755)
    r.start()
    submit(r)
    wait_settled(r)
    mode = stat.S_IMODE(os.stat(r.data_dir).st_mode)
    bad = owner_only_problems(r.data_dir, pw.pw_uid, pw.pw_gid)
    assert mode & 0o077 == 0 and not bad, \
        "data_dir is %o after start; problems: %s" % (mode, bad)


@needs_root
def test_run_as_unknown_user_refuses_to_start(make_relevo):
    """A run_as naming no user is a config error: check-config says so, and serve
    exits before it binds anything (nothing here depends on timing)."""
    r = make_relevo(start=False, users=False, run_as="no-such-relevo-user")
    res = r.cli(["check-config"])
    assert res.rc == 1, res
    assert 'run_as: no such user "no-such-relevo-user"' in res.err, res
    p = subprocess.run([RELEVO_BIN, "serve", "-c", r.conf_path], capture_output=True,
                       timeout=60, env=sanitizer_env())
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 1, err
    assert 'run_as: no such user "no-such-relevo-user"' in err, err
    assert "event=listening" not in err, err
    assert not os.path.exists(os.path.join(r.data_dir, "control.sock"))


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------

def tls_client(version, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # SECLEVEL=0 so that this OpenSSL really offers the old versions and suites.
    ctx.set_ciphers(ciphers or "ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def handshake(r, where, ctx):
    """TLS on the implicit port, or after STARTTLS on the submission port."""
    s = socket.create_connection(("127.0.0.1", r.ports[where]), timeout=10)
    if where == "submission":
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        s.sendall(b"EHLO tls.probe\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"STARTTLS\r\n")
        assert f.readline().startswith(b"220")
    return ctx.wrap_socket(s, server_hostname=HOSTNAME)


OLD = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1}
CURRENT = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@pytest.mark.parametrize("where", ["submissions", "submission"])
def test_tls_versions(relevo, where):
    for name, v in OLD.items():
        with pytest.raises(ssl.SSLError) as e:
            handshake(relevo, where, tls_client(v)).close()
        # the server's protocol_version alert, not a client that could not offer it
        assert "PROTOCOL_VERSION" in str(e.value) or "UNSUPPORTED_PROTOCOL" in str(e.value), \
            "%s via %s: %s" % (name, where, e.value)
    for name, v in CURRENT.items():
        t = handshake(relevo, where, tls_client(v, "DEFAULT"))
        try:
            assert t.version() == name
            assert t.compression() is None
            f = t.makefile("rb")
            if where == "submissions":
                assert f.readline().startswith(b"220")
            t.sendall(b"EHLO tls.probe\r\n")
            assert f.readline().startswith(b"250")
        finally:
            t.close()


WEAK_TLS12_SUITES = ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA",
                     "ECDHE-RSA-AES256-SHA384")


def test_tls12_weak_or_static_rsa_suites_refused(relevo):
    """TLS 1.2 with only a CBC suite or only static-RSA key exchange (no forward
    secrecy) on offer: no handshake. (This OpenSSL cannot even offer 3DES or RC4.)"""
    for suite in WEAK_TLS12_SUITES:
        ctx = tls_client(ssl.TLSVersion.TLSv1_2, suite + ":@SECLEVEL=0")
        with pytest.raises(ssl.SSLError) as e:
            handshake(relevo, "submissions", ctx).close()
        assert "HANDSHAKE_FAILURE" in str(e.value) or "NO_SHARED_CIPHER" in str(e.value), \
            "%s: %s" % (suite, e.value)
    t = handshake(relevo, "submissions", tls_client(ssl.TLSVersion.TLSv1_2,
                                                    "ECDHE-RSA-AES128-GCM-SHA256"))
    t.close()                               # the probe itself works


def client_hello_offering_deflate():
    """A TLS 1.2 ClientHello whose compression methods are DEFLATE (1) and null (0)."""
    def ext(t, body):
        return struct.pack("!HH", t, len(body)) + body
    suites = [0xC02F, 0xC030, 0xCCA8]               # ECDHE-RSA AES-GCM, CHACHA20
    exts = (ext(0x000A, struct.pack("!HHH", 4, 0x001D, 0x0017)) +   # groups
            ext(0x000B, b"\x01\x00") +                              # point formats
            ext(0x000D, struct.pack("!HHHH", 6, 0x0804, 0x0401, 0x0403)) +  # sig algs
            ext(0xFF01, b"\x00"))                                   # renegotiation_info
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" +
            struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites) +
            b"\x02\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_tls_compression_never_chosen(relevo):
    s = socket.create_connection(("127.0.0.1", relevo.ports["submissions"]), timeout=10)
    try:
        s.sendall(client_hello_offering_deflate())
        data = b""
        while len(data) < 5 + 4 + 2 + 32 + 1:
            d = s.recv(4096)
            assert d, "server closed the connection instead of answering: %r" % data
            data += d
    finally:
        s.close()
    assert data[0] == 0x16, "not a handshake record: %r" % data[:16]
    assert data[5] == 0x02, "not a ServerHello: %r" % data[:16]
    p = 5 + 4
    assert data[p:p + 2] == b"\x03\x03", data[p:p + 2]
    p += 2 + 32
    sid_len = data[p]
    p += 1 + sid_len + 2            # session id, cipher suite
    assert len(data) > p, "ServerHello cut short: %r" % data
    assert data[p] == 0, "ServerHello chose compression method %d" % data[p]


# ---------------------------------------------------------------------------
# Secrets in logs
# ---------------------------------------------------------------------------

SMARTHOST_USER = "relay-e2e"
SMARTHOST_PASS = "Sm4rtHost-Pa55-Marker"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def smarthost_script(tls_ca, seen):
    ctx = server_tls_context(tls_ca)

    def script(c):
        c.send("220 smarthost.test ESMTP\r\n")
        if c.readline() is None:
            return
        c.send("250-smarthost.test\r\n250 STARTTLS\r\n")
        if c.readline() != "STARTTLS":
            return
        c.send("220 2.0.0 go\r\n")
        c.starttls(ctx)
        c.readline()
        c.send("250-smarthost.test\r\n250 AUTH PLAIN LOGIN\r\n")
        line = c.readline() or ""
        seen.append(line)
        c.send("235 2.7.0 ok\r\n")
        for reply in ("250 2.1.0 ok", "250 2.1.5 ok", "354 go"):
            if c.readline() is None:
                return
            c.send(reply + "\r\n")
        if c.read_data() is None:
            return
        c.send("250 2.0.0 smarthost took it\r\n")
        c.readline()
        c.send("221 bye\r\n")
    return script


def test_no_password_in_debug_log(make_relevo, tls_ca):
    seen = []
    mx = HostileMX(smarthost_script(tls_ca, seen))
    try:
        r = make_relevo(start=False, delivery={"routes": {"*": {
            "host": mx.route, "auth_user": SMARTHOST_USER, "auth_password": SMARTHOST_PASS,
            "tls": "required"}}})
        start_with_env(r, {"RELEVO_DEBUG": "1"})
        wrong = "Wr0ng-Debug-Marker"
        alice_pw = USERS["alice"][0]
        with r.client("submissions") as c:
            c.ehlo()
            expect(c.auth_plain("alice", wrong), 535)
            expect(c.auth_login("alice", wrong), 535)
            expect(c.auth_login("alice", alice_pw), 235)
        qid, _ = submit(r)                  # AUTH PLAIN, right password
        wait_for(lambda: log_events(r, "delivered", id=qid), timeout=20,
                 what="delivery through the smarthost")
    finally:
        mx.close()
    assert seen and seen[0].startswith("AUTH"), seen
    assert SMARTHOST_PASS.encode() in base64.b64decode(seen[0].split()[-1] + "=="), seen
    r.stop()
    log = r.all_stderr()
    assert "level=debug" in log or " debug " in log, "debug logging was not on"
    secrets = {
        "smarthost password": SMARTHOST_PASS,
        "smarthost AUTH PLAIN token": b64("\0%s\0%s" % (SMARTHOST_USER, SMARTHOST_PASS)),
        "smarthost password, base64": b64(SMARTHOST_PASS),
        "wrong password": wrong,
        "wrong password, base64": b64(wrong),
        "alice's password": alice_pw,
        "alice's password, base64": b64(alice_pw),
        "alice's AUTH PLAIN token": b64("\0alice\0" + alice_pw),
        "wrong AUTH PLAIN token": b64("\0alice\0" + wrong),
    }
    leaked = [what for what, s in secrets.items() if s in log]
    assert not leaked, "in the log: %s" % leaked
