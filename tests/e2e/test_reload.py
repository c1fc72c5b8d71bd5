"""
test_reload.py - SIGHUP and `relevo reload`: the running daemon re-reads its
config (issue 11), and tells systemd about it through $NOTIFY_SOCKET.

  sighup           SIGHUP no longer kills the daemon: it reloads and goes on serving
  invalid          an invalid config keeps the old one: `relevo reload` exits 1 and
                   prints the errors, the log has event=reload_failed key=... error=...
  restart keys     data_dir and friends keep their value and are named
  tls              a new certificate (written over the old files, as certbot does)
                   is what new connections see; a session opened before goes on
  listeners        a listener added to `listen` opens, one removed closes, the
                   others never stop answering
  delivery         delivery.mode: sandbox takes effect for the next message
  concurrent       messages sent while the daemon reloads again and again are all
                   accepted, and all queued
  notify           $NOTIFY_SOCKET (a path, or an abstract "@name") gets READY=1,
                   RELOADING=1 then READY=1, and STOPPING=1
"""

import glob
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import (HOSTNAME, RELEVO_BIN, SMTPClient, expect, make_message, pick_ports,
                      render_yaml, sanitizer_env, submit)
from fakes import wait_for


def reload_ok(r):
    res = r.cli(["reload"])
    assert res.rc == 0, res
    return res


def count(r, text):
    return r.stderr().count(text)


def make_cert(tls, d, cn):
    """A new key and certificate for HOSTNAME signed by the test CA, written to
    d/cert.pem and d/key.pem (overwriting them, as a certbot renewal does)."""
    os.makedirs(d, exist_ok=True)
    key, csr, cert = (os.path.join(d, n) for n in ("key.new", "req.csr", "cert.new"))
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" % HOSTNAME)
    for args in (["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                  "-subj", "/CN=" + cn],
                 ["x509", "-req", "-in", csr, "-CA", tls.ca,
                  "-CAkey", os.path.join(tls.dir, "ca.key"), "-set_serial",
                  str(int(time.time() * 1000)), "-out", cert, "-days", "2", "-extfile", ext]):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    os.chmod(key, 0o600)
    os.replace(key, os.path.join(d, "key.pem"))
    os.replace(cert, os.path.join(d, "cert.pem"))


def peer_cn(tls, port):
    """The CN of the certificate the implicit-TLS listener presents now."""
    with SMTPClient(port, tls=True, tlsmat=tls) as c:
        cert = c.sock.getpeercert()
        c.quit()
    return dict(x[0] for x in cert["subject"])["commonName"]


def test_sighup_reloads_instead_of_killing(relevo):
    relevo.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: count(relevo, "event=reloaded") == 1, what="event=reloaded")
    assert relevo.is_running()
    assert "event=signal signal=Hangup" in relevo.stderr()
    with relevo.client("relay") as c:
        expect(c.greeting, 220)
    submit(relevo)


def test_invalid_config_keeps_serving(relevo):
    good = render_yaml(relevo.config)
    relevo.write_config(good.replace("mode: relay", "mode: smtp") + "smtp_typo: 1\n")
    res = relevo.cli(["reload"])
    assert res.rc == 1, res
    out = res.out + res.err
    assert "still running on the previous configuration" in out
    assert 'listen[2].mode: must be one of submission, submissions, relay, not "smtp"' in out
    assert "smtp_typo: unknown key" in out
    log = relevo.stderr()
    assert 'event=reload_failed key=listen[2].mode error="must be one of' in log
    assert 'event=reload_failed key=smtp_typo error="unknown key"' in log
    assert "event=reloaded" not in log
    # Still serving on the old config (the relay listener is still a relay).
    assert relevo.is_running()
    submit(relevo, mode="relay")
    # SIGHUP with the same broken file: logged, not fatal.
    relevo.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: count(relevo, "event=reload_failed key=smtp_typo") == 2,
             what="the second reload_failed")
    assert relevo.is_running()
    # Fixed: the next reload works.
    relevo.write_config(good)
    res = reload_ok(relevo)
    assert "reloaded " + relevo.conf_path in res.out


def test_reload_reports_keys_needing_restart(relevo, workdir):
    cfg = dict(relevo.config)
    cfg["data_dir"] = os.path.join(workdir, "elsewhere")
    cfg["server"] = {"workers": 3}
    relevo.write_config(render_yaml(cfg))
    # The client finds the running daemon through the data_dir in the file: keep
    # the old one for it, the change is what is under test.
    res = relevo.cli(["reload"])
    assert res.rc == 1 and "does not answer" in res.err, res
    cfg["data_dir"] = relevo.config["data_dir"]
    cfg["server"] = {"workers": 3}
    cfg["dns"] = {"timeout": 3}
    relevo.write_config(render_yaml(cfg))
    res = reload_ok(relevo)
    assert "server.workers changed: needs a restart" in res.out
    assert "dns.timeout changed: needs a restart" in res.out
    assert "event=reload_restart_needed key=server.workers" in relevo.stderr()


def test_reload_swaps_tls_certificate(make_relevo, tls_ca, workdir):
    d = os.path.join(workdir, "tls")
    os.makedirs(d)
    shutil.copy(tls_ca.cert, os.path.join(d, "cert.pem"))
    shutil.copy(tls_ca.key, os.path.join(d, "key.pem"))
    r = make_relevo(tls={"cert": os.path.join(d, "cert.pem"), "key": os.path.join(d, "key.pem")})
    port = r.ports["submissions"]
    assert peer_cn(tls_ca, port) == HOSTNAME
    # A session opened before the renewal, in the middle of a transaction.
    old = r.client("submissions")
    old.login("alice")
    expect(old.cmd("MAIL FROM:<alice@example.com>"), 250)
    make_cert(tls_ca, d, "renewed.relay.test")
    reload_ok(r)
    assert peer_cn(tls_ca, port) == "renewed.relay.test"
    # STARTTLS on the submission port uses the new one too.
    with r.client("submission") as c:
        c.ehlo()
        c.starttls()
        assert dict(x[0] for x in c.sock.getpeercert()["subject"])["commonName"] == \
            "renewed.relay.test"
        c.quit()
    # The old session finishes on what it started with.
    expect(old.cmd("RCPT TO:<rcpt@example.net>"), 250)
    reply = old.data(make_message())
    expect(reply, 250, "2.0.0")
    assert dict(x[0] for x in old.sock.getpeercert()["subject"])["commonName"] == HOSTNAME
    old.quit()
    assert reply.queued_id in r.queue_ids()
    # A key that does not match its certificate is refused, and the old pair stays.
    shutil.copy(tls_ca.key, os.path.join(d, "key.pem"))
    res = r.cli(["reload"])
    assert res.rc == 1 and "tls:" in res.out + res.err, res
    assert "event=reload_failed key=tls" in r.stderr()
    assert peer_cn(tls_ca, port) == "renewed.relay.test"


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def test_reload_opens_and_closes_listeners(relevo):
    extra = pick_ports(1)[0]
    cfg = dict(relevo.config)
    cfg["listen"] = [l for l in relevo.config["listen"] if l["mode"] != "submission"]
    cfg["listen"].append({"address": "127.0.0.1:%d" % extra, "mode": "relay"})
    # A client connected to a listener that stays is not disturbed.
    kept = relevo.client("relay")
    relevo.write_config(render_yaml(cfg))
    reload_ok(relevo)
    with SMTPClient(extra) as c:
        expect(c.greeting, 220)
        c.ehlo()
        expect(c.mail_transaction("x@example.com", ["rcpt@example.net"], make_message(
            sender="x@example.com")), 250)
        c.quit()
    assert not listening(relevo.ports["submission"])
    assert "event=listener_closed address=127.0.0.1:%d" % relevo.ports["submission"] \
        in relevo.stderr()
    kept.ehlo()
    kept.quit()
    submit(relevo, mode="submissions")
    # A listener that cannot be bound fails the whole reload: nothing changes.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = blocker.getsockname()[1]
    cfg["listen"] = cfg["listen"] + [{"address": "127.0.0.1:%d" % busy, "mode": "relay"}]
    cfg["listen"] = [l for l in cfg["listen"] if l["address"] != "127.0.0.1:%d" % extra]
    relevo.write_config(render_yaml(cfg))
    res = relevo.cli(["reload"])
    blocker.close()
    assert res.rc == 1, res
    assert "listen[2].address: 127.0.0.1:%d: Address already in use" % busy in res.out + res.err
    assert listening(extra)


def test_reload_delivery_mode_takes_effect(relevo):
    sandbox = os.path.join(relevo.data_dir, "sandbox")
    first, _ = submit(relevo)
    cfg = dict(relevo.config)
    cfg["delivery"] = dict(cfg["delivery"], mode="sandbox")
    relevo.write_config(render_yaml(cfg))
    reload_ok(relevo)
    wait_for(lambda: "event=delivery_reloaded mode=sandbox" in relevo.stderr(),
             what="the delivery thread's reload")
    second, _ = submit(relevo)
    wait_for(lambda: glob.glob(os.path.join(sandbox, second + "-*.eml")),
             what="the next message in the sandbox")
    # The message queued before the reload is still in the queue (deferred by the
    # fake MX); the reload lost nothing.
    assert first in relevo.queue_ids()


def test_messages_during_repeated_reloads_are_all_queued(relevo):
    accepted, errors = [], []
    stop = threading.Event()

    def sender():
        while not stop.is_set():
            try:
                mid, reply = submit(relevo, mode="relay")
                accepted.append(mid)
            except Exception as e:  # reported below: any failure fails the test
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(8):
            cfg = dict(relevo.config)
            cfg["smtp"] = dict(cfg["smtp"], max_recipients=5 + i % 2)
            relevo.write_config(render_yaml(cfg))
            if i % 2:
                relevo.proc.send_signal(signal.SIGHUP)
            else:
                reload_ok(relevo)
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert len(accepted) >= 6, accepted
    wait_for(lambda: count(relevo, "event=reloaded") >= 8, what="eight reloads")
    queued = set(relevo.queue_ids())
    missing = [m for m in accepted if m not in queued]
    assert not missing, "accepted but not queued: %s" % missing


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_socket(make_relevo, workdir, monkeypatch, abstract):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = "relevo-e2e-%d-%d" % (os.getpid(), time.monotonic_ns())
        sock.bind("\0" + name)
        env = "@" + name
    else:
        env = os.path.join(workdir, "notify.sock")
        sock.bind(env)
    sock.settimeout(20)
    r = make_relevo(start=False)
    monkeypatch.setenv("NOTIFY_SOCKET", env)
    r.start()

    def receive():
        return sock.recv(4096).decode()

    assert receive() == "READY=1"
    r.proc.send_signal(signal.SIGHUP)
    msg = receive()
    assert msg.startswith("RELOADING=1\nMONOTONIC_USEC="), msg
    assert int(msg.split("=")[-1]) > 0
    assert receive() == "READY=1"
    assert "event=reloaded" in r.stderr()
    # A failed reload also ends with READY=1: the daemon is serving.
    r.write_config(render_yaml(r.config) + "bogus: 1\n")
    res = r.cli(["reload"])
    assert res.rc == 1 and "bogus: unknown key" in res.err, res
    assert receive().startswith("RELOADING=1")
    assert receive() == "READY=1"
    r.stop()
    assert receive() == "STOPPING=1"
    sock.close()


def test_reload_http_settings_and_listeners(make_api_relevo):
    r = make_api_relevo()
    big = {"from": "alice@example.com", "to": ["rcpt@example.net"], "subject": "big",
           "text": "z" * 100000}
    assert r.api.post("/v1/messages", big).status == 202
    cfg = dict(r.config)
    new_port = pick_ports(1)[0]
    cfg["http"] = dict(cfg["http"], max_request_size=65536,
                       listen=["127.0.0.1:%d" % new_port])
    r.write_config(render_yaml(cfg))
    reload_ok(r)
    assert not listening(r.ports["http"])
    r.api.port = new_port
    resp = r.api.post("/v1/messages", big)
    assert resp.status == 413, resp
    assert r.api.post("/v1/messages", dict(big, text="small")).status == 202
    assert "event=http_reloaded listeners=1" in r.stderr()


def test_http_listen_failure_names_the_reason(make_api_relevo):
    r = make_api_relevo(start=False)
    port = int(r.config["http"]["listen"][0].rsplit(":", 1)[1])
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen(1)
    try:
        # Run to its exit: the harness's start() could see the blocker listening.
        p = subprocess.run([RELEVO_BIN, "serve", "-c", r.conf_path], capture_output=True,
                           timeout=60, env=sanitizer_env())
    finally:
        blocker.close()
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 1, err
    assert ('event=listen_failed address=127.0.0.1:%d what=http error="Address already in use"'
            % port) in err, err
