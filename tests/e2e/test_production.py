"""
test_production.py - the README's "Running it for real", followed step by step in a
scratch directory (issue 11, "README").

The configuration is the shipped sample (packaging/relevo.yaml.example) filled in
as the README says: hostname, the certificate and a key owned by the daemon's user
(mode 0600). Only what a test machine needs differs: data_dir in a temporary
directory (relevo creates it), loopback listeners on free ports, `run_as` naming
an unprivileged user the test creates (useradd; removed afterwards), and a static
route to a fake MX so that delivered mail can be read.

Then, as the README's non-systemd path says: `check-config`, `serve` started as
root (it binds, hands data_dir to run_as and drops privileges), and while it runs,
as root: `domain add`, `domain rotate`, `user add`. Everything under data_dir stays
owned by run_as. A first message is accepted (250), delivered, and DKIM-signed by
the keys `domain add` made (the rotated ones are only pending), verified with
dkimpy against the records `domain records --zone` prints. `relevo status` answers
while it runs (its first line names the daemon's pid), and SIGTERM stops it with
status 0.
"""

import os
import pwd
import re
import shutil
import signal
import subprocess
import time

import dkim
import pytest

from conftest import (RELEVO_BIN, SMTPClient, _listening_ports, expect, make_message,
                      pick_ports, sanitizer_env, sanitizer_findings)
from fakes import FakeMX

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SAMPLE = os.path.join(ROOT, "packaging", "relevo.yaml.example")
PASSWORD = "acme-Password-1"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="run_as needs a daemon started as root")


@pytest.fixture
def run_as_user():
    name = "rlv-e2e-%d" % os.getpid()
    subprocess.run(["userdel", name], capture_output=True)
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def cli(conf, *args, stdin=None):
    r = subprocess.run([RELEVO_BIN, *args, "-c", conf], input=stdin, capture_output=True,
                       text=True, timeout=120, env=sanitizer_env())
    assert not sanitizer_findings(r.stderr), r.stderr
    return r


def cli_ok(conf, *args, stdin=None):
    r = cli(conf, *args, stdin=stdin)
    assert r.returncode == 0, "relevo %s: exit %d\n%s%s" % (" ".join(args), r.returncode,
                                                             r.stdout, r.stderr)
    return r


def production_config(workdir, tls, user, ports, mx_port):
    """The sample, filled in as the README says, on loopback."""
    etc = os.path.join(workdir, "etc")
    os.makedirs(etc)
    cert, key = os.path.join(etc, "fullchain.pem"), os.path.join(etc, "privkey.pem")
    shutil.copy(tls.cert, cert)
    os.chmod(cert, 0o644)
    shutil.copy(tls.key, key)
    os.chown(key, user.pw_uid, user.pw_gid)      # install -o relevo -g relevo -m 600
    os.chmod(key, 0o600)
    with open(SAMPLE) as f:
        text = f.read()
    subs = [
        ("hostname: relay.example.net", "hostname: relay.test"),
        ("/etc/relevo/fullchain.pem", cert),
        ("/etc/relevo/privkey.pem", key),
        ("data_dir: /var/lib/relevo", "data_dir: " + os.path.join(workdir, "data")),
        ("run_as: relevo", "run_as: " + user.pw_name),
        ("  - {address: 0.0.0.0:587, mode: submission}",
         "  - {address: 127.0.0.1:%d, mode: submission}" % ports[0]),
        ("  - {address: 0.0.0.0:465, mode: submissions}",
         "  - {address: 127.0.0.1:%d, mode: submissions}" % ports[1]),
        ("\ndelivery:\n", '\ndelivery:\n  routes:\n    "*": "[127.0.0.1]:%d"\n' % mx_port),
    ]
    for old, new in subs:
        assert old in text, old
        text = text.replace(old, new)
    conf = os.path.join(etc, "relevo.yaml")
    with open(conf, "w") as f:
        f.write(text)
    return conf


def zone_records(conf, domain):
    recs = {}
    for line in cli_ok(conf, "domain", "records", domain, "--zone").stdout.splitlines():
        m = re.match(r'^(\S+)\. 3600 IN TXT ((?:"[^"]*" ?)+)$', line)
        if m:
            recs.setdefault(m.group(1), []).append("".join(re.findall(r'"([^"]*)"', m.group(2))))
    return recs


def dkim_verdicts(message, recs):
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        vals = recs.get(name.rstrip("."), [])
        return vals[0].encode() if vals else None
    n = len(re.findall(rb"^DKIM-Signature:", message, re.M | re.I))
    out = []
    for i in range(n):
        try:
            out.append(dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc))
        except dkim.ValidationError:
            out.append(False)
    return out


def not_owned_by(top, uid):
    bad = []
    for d, dirs, files in os.walk(top):
        for p in [d] + [os.path.join(d, f) for f in files]:
            st = os.lstat(p)
            if st.st_uid != uid:
                bad.append("%s (uid %d, mode %o)" % (p, st.st_uid, st.st_mode & 0o7777))
    return bad


def wait_started(proc, errpath, ports, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        log = open(errpath, errors="replace").read()
        assert proc.poll() is None, "relevo serve exited (%s):\n%s" % (proc.returncode, log)
        if "event=started" in log and set(ports) <= _listening_ports():
            return log
        assert time.monotonic() < deadline, "not started:\n" + log
        time.sleep(0.05)


@needs_root
def test_running_it_for_real(workdir, tls_ca, run_as_user):
    os.chmod(workdir, 0o711)               # run_as must reach data_dir and its key
    ports = pick_ports(3)
    mx = FakeMX("mx.example.org", "127.0.0.1", ports[2]).start()
    proc = None
    errpath = os.path.join(workdir, "serve.stderr")
    try:
        conf = production_config(workdir, tls_ca, run_as_user, ports, ports[2])
        data = os.path.join(workdir, "data")

        # check-config
        r = cli_ok(conf, "check-config")
        assert "configuration is valid" in r.stdout + r.stderr

        # the daemon, started as root, dropping to run_as (the README's non-systemd path)
        with open(errpath, "wb") as err:
            proc = subprocess.Popen([RELEVO_BIN, "serve", "-c", conf], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, env=sanitizer_env(),
                                    start_new_session=True)
        log = wait_started(proc, errpath, ports[:2])
        assert "event=privileges_dropped user=%s" % run_as_user.pw_name in log, log

        # domain add, domain rotate, user add: as root, while it runs
        added = cli_ok(conf, "domain", "add", "example.com").stdout
        first = set(re.findall(r"\b((?:rsa|ed)-\d{8}(?:-\d+)?)\._domainkey", added))
        assert len(first) == 2, added
        cli_ok(conf, "domain", "rotate", "example.com")
        r = cli_ok(conf, "user", "add", "acme", "--domain", "example.com", stdin=PASSWORD + "\n")
        assert "user acme added" in r.stdout + r.stderr
        bad = not_owned_by(data, run_as_user.pw_uid)
        assert not bad, "root's CLI left files run_as cannot own: %s" % bad

        # a first message, as a customer's mail client sends it
        msg = make_message(sender="someone@example.com", to="you@example.org",
                           subject="first message")
        with SMTPClient(ports[0], tlsmat=tls_ca) as c:
            c.login("acme", PASSWORD)
            reply = c.mail_transaction("someone@example.com", ["you@example.org"], msg)
            expect(reply, 250, "2.0.0")
            assert reply.queued_id, reply
            c.quit()
        got = mx.wait_messages(1, timeout=30)[0].content
        recs = zone_records(conf, "example.com")
        verdicts = dkim_verdicts(got, recs)
        assert verdicts and all(verdicts), (verdicts, got[:2000])
        used = set(re.findall(rb"\bs=([A-Za-z0-9._-]+);", got))
        assert {s.decode() for s in used} == first, (used, first)

        # relevo status, while it runs (the README's last step)
        r = cli_ok(conf, "status")
        assert re.match(r"relevo \d+\.\d+\.\d+, pid %d, up " % proc.pid, r.stdout), r.stdout

        bad = not_owned_by(data, run_as_user.pw_uid)
        assert not bad, bad
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, open(errpath).read()
        proc = None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        mx.stop()
        log = open(errpath, errors="replace").read() if os.path.exists(errpath) else ""
        assert not sanitizer_findings(log), log
