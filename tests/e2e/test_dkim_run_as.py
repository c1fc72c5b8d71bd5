"""
test_dkim_run_as.py - the CLI under run_as (issue 11, "A CLI that works under
run_as"), with an unprivileged user this test creates (useradd) and removes.

  root CLI    the daemon runs as root with run_as; `domain add`, `domain rotate`,
              `user add` (registering a new domain) run as root while it runs:
              every file they leave in data_dir (store, WAL/SHM, key directories
              and PEM files) belongs to run_as and is owner-only, and the next
              message from each domain is signed (dkimpy), never a 451.
  as run_as   the CLI run as that user works although tls.key (and its whole
              directory) is root's alone: no command but serve and check-config
              opens the TLS files.
  unreadable  a key the daemon cannot read (a PEM file left owned by root) is
              logged with its path and errno, and the client's 451 says the key
              cannot be read, not to run `relevo domain add`.
"""

import os
import pwd
import subprocess
import uuid

import pytest

from conftest import RELEVO_BIN, expect, make_message, sanitizer_env, sanitizer_findings, submit
from fakes import delivering_relevo, log_events, wait_for
from fakes import dns, mxs  # noqa: F401  (fixtures)
from signing import dest_mx, publish, signatures, verify_all, zone_records
from test_hardening_privilege import owner_only_problems

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="run_as needs root")


@pytest.fixture
def run_as_user():
    name = "rlvk" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                    "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


@pytest.fixture
def run_as_relevo(make_relevo, dns, mxs, run_as_user):
    mx = dest_mx(dns, mxs)
    r = delivering_relevo(make_relevo, dns, mxs, start=False)
    r.config["run_as"] = run_as_user.pw_name
    r.config["dkim"] = {"missing_key": "tempfail"}
    r.write_config()
    os.chmod(r.workdir, 0o711)          # data_dir must be reachable by run_as
    r.start()
    wait_for(lambda: log_events(r, "privileges_dropped"), timeout=10,
             what="event=privileges_dropped")
    return r, mx, run_as_user


def cli_as(r, user, args, stdin=b""):
    """relevo ARGS -c CONF run as user (not root)."""
    def become():
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    p = subprocess.run([RELEVO_BIN, *args, "-c", r.conf_path], input=stdin,
                       capture_output=True, timeout=60, env=sanitizer_env(), preexec_fn=become)
    err = p.stderr.decode("utf-8", "replace")
    assert not sanitizer_findings(err), err
    return p.returncode, p.stdout.decode("utf-8", "replace"), err


def send_as(r, user, password, sender, subject):
    msg = make_message(sender=sender, to="carol@dest.test", subject=subject)
    with r.client("submissions") as c:
        c.login(user, password)
        return c.mail_transaction(sender, ["carol@dest.test"], msg)


@needs_root
def test_root_cli_under_run_as_leaves_files_the_daemon_can_use(run_as_relevo, dns):
    r, mx, user = run_as_relevo
    r.cli_ok(["domain", "add", "example.com"])
    r.cli_ok(["domain", "rotate", "example.com"])
    res = r.cli_ok(["user", "add", "dave", "--domain", "fresh.test"], stdin="pw-dave-1\n")
    assert "domain fresh.test added" in res.out, res.out
    recs = {**zone_records(r, "example.com"), **zone_records(r, "fresh.test")}
    publish(dns, recs)
    bad = owner_only_problems(r.data_dir, user.pw_uid, user.pw_gid)
    assert not bad, "left by the CLI run as root: %s" % bad

    # alice (example.com) and dave (fresh.test): signed, no 451
    for n, (login, pw, sender) in enumerate([("alice", "alice-Secret-1", "alice@example.com"),
                                             ("dave", "pw-dave-1", "dave@fresh.test")], 1):
        expect(send_as(r, login, pw, sender, "run_as %d" % n), 250)
        mx.wait_messages(n)
        got = mx.messages[n - 1].content
        assert len(signatures(got)) == 2, got[:1500]
        assert verify_all(got, recs)[0] == [True, True]
    assert not log_events(r, "dkim_key_unreadable")
    assert not log_events(r, "dkim_no_key")


@needs_root
def test_cli_as_run_as_user_with_root_only_tls_key(run_as_relevo):
    r, mx, user = run_as_relevo
    key = r.config["tls"]["key"]
    assert os.stat(key).st_uid == 0 and os.stat(key).st_mode & 0o077 == 0
    rc, out, err = cli_as(r, user, ["domain", "add", "example.com"])
    assert rc == 0, err
    rc, out, err = cli_as(r, user, ["domain", "list"])
    assert rc == 0 and "example.com" in out, err
    rc, out, err = cli_as(r, user, ["user", "list"])
    assert rc == 0 and "alice" in out, err
    rc, out, err = cli_as(r, user, ["queue", "list"])
    assert rc == 0, err
    # check-config is the one that does read them (with serve)
    rc, out, err = cli_as(r, user, ["check-config"])
    assert rc == 1 and "tls." in err, (rc, err)
    assert not owner_only_problems(r.data_dir, user.pw_uid, user.pw_gid)


@needs_root
def test_unreadable_key_is_logged_and_answered_as_such(run_as_relevo):
    r, mx, user = run_as_relevo
    r.cli_ok(["domain", "add", "example.com"])
    keydir = os.path.join(r.data_dir, "keys", "example.com")
    pems = sorted(os.path.join(keydir, f) for f in os.listdir(keydir))
    for p in pems:                       # what an older relevo run as root left
        os.chown(p, 0, 0)
    reply = send_as(r, "alice", "alice-Secret-1", "alice@example.com", "unreadable")
    expect(reply, 451, "4.7.5")
    assert "cannot be read" in str(reply), reply
    assert "domain add" not in str(reply), reply
    ev = log_events(r, "dkim_key_unreadable", domain="example.com")
    assert {e["path"] for e in ev} == set(pems), ev
    assert {e["error"] for e in ev} == {"Permission denied"}, ev
    # handed back, the next message is signed (the failure is retried within a second)
    for p in pems:
        os.chown(p, user.pw_uid, user.pw_gid)
    def signed():
        rep = send_as(r, "alice", "alice-Secret-1", "alice@example.com", "readable")
        return rep.code == 250
    wait_for(signed, timeout=10, interval=0.5, what="a signed message once readable")
    mx.wait_messages(1)
    assert len(signatures(mx.messages[0].content)) == 2
