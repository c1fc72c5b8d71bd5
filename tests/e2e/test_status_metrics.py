"""
test_status_metrics.py - `relevo status`, GET /v1/health and GET /metrics (issue 11).

The real daemon delivers to fake MX servers found through the fake DNS (fakes.py):
one accepts, one defers every recipient. /metrics is scraped over HTTP and parsed
with the Prometheus project's own parser (python3-prometheus-client); the values
must move exactly as the mail did. The health endpoint's failure is real: the
spool directory is made immutable (chattr +i), so that even root cannot create a
file in it.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import enable_http, pick_ports, submit
from fakes import delivering_relevo, relay_submit, wait_for
from fakes import dns, mxs  # noqa: F401  (fixtures)
from test_api import conforms
from test_hardening_helpers import FSYNC_AT_START, start_with_env

SENDER = "app@sender.test"


def http_get(port, path, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def scrape(r):
    """{(sample name, frozenset(labels)): value} of one GET /metrics, parsed."""
    status, headers, body = http_get(r.ports["metrics"], "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    out, families = {}, {}
    for fam in text_string_to_metric_families(body.decode()):
        families[fam.name] = fam.type
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    out["_families"] = families
    return out


def val(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0.0)


def with_metrics(r):
    """Give a not yet started relevo its own metrics port."""
    port = pick_ports(1)[0]
    r.ports["metrics"] = port
    http_cfg = dict(r.config.get("http") or {})
    http_cfg["metrics_listen"] = "127.0.0.1:%d" % port
    r.config["http"] = http_cfg
    r.write_config()
    return r


def domain_mx(dns, mxs, domain):
    mx = mxs.add("mx." + domain)
    dns.mx(domain, mx.name)
    dns.a(mx.name, mx.addr)
    return mx


@pytest.fixture
def delivering(make_relevo, dns, mxs):
    """A relevo with metrics that delivers good.test and defers slow.test."""
    good = domain_mx(dns, mxs, "good.test")
    slow = domain_mx(dns, mxs, "slow.test")
    slow.rcpt_always["x@slow.test"] = "451 4.3.0 try again later"
    r = with_metrics(delivering_relevo(make_relevo, dns, mxs, start=False,
                                       retry_schedule=[3600]))
    r.start()
    return r, good, slow


def test_metrics_move_with_the_mail(delivering):
    r, good, slow = delivering
    before = scrape(r)
    assert val(before, "relevo_build_info", version=r.cli_ok(["--version"]).out.split()[1]) == 1
    lst = "127.0.0.1:%d" % r.ports["relay"]
    for i in range(3):
        relay_submit(r, SENDER, ["a%d@good.test" % i])
    relay_submit(r, SENDER, ["x@slow.test"])
    # A refusal: alice may not send as a domain she does not own (553).
    with r.client("submissions") as c:
        c.login("alice")
        assert c.cmd("MAIL FROM:<someone@not-hers.test>").code == 553
        c.quit()
    # A failed AUTH.
    with r.client("submissions") as c:
        c.ehlo()
        assert c.auth_plain("alice", "wrong-password").code == 535
    good.wait_messages(3)

    def settled():
        m = scrape(r)
        return m if (val(m, "relevo_delivery_attempts_total", result="delivered") == 3 and
                     val(m, "relevo_delivery_attempts_total", result="deferred") == 1) else None
    m = wait_for(settled, what="3 deliveries and 1 deferral in /metrics")

    assert val(m, "relevo_messages_received_total", source="smtp") == 4
    assert val(m, "relevo_messages_received_total", source="api") == 0
    assert val(m, "relevo_messages_rejected_total", source="smtp", code="553") == 1
    assert val(m, "relevo_smtp_auth_failures_total") == 1
    assert val(m, "relevo_smtp_connections_total", listener=lst) == 4
    assert val(m, "relevo_delivery_attempts_total", result="bounced") == 0
    assert val(m, "relevo_outbound_connections_total") >= 2
    # The deferred recipient is the queue: one message, deferred, transactional.
    assert val(m, "relevo_queue_messages") == 1
    assert val(m, "relevo_queue_recipients", state="deferred", stream="transactional") == 1
    assert val(m, "relevo_queue_recipients", state="active", stream="transactional") == 0
    assert val(m, "relevo_queue_oldest_message_age_seconds") >= 0
    # Histograms: one observation per spool batch and per delivery stage.
    assert val(m, "relevo_spool_commit_duration_seconds_count") >= 4
    assert val(m, "relevo_spool_batch_records_sum") >= 4
    for stage in ("dns", "connect", "transaction"):
        n = val(m, "relevo_delivery_stage_duration_seconds_count", stage=stage)
        assert n >= 2, (stage, n)
        assert val(m, "relevo_delivery_stage_duration_seconds_bucket", stage=stage,
                   le="+Inf") == n
    fams = m["_families"]
    assert fams["relevo_spool_commit_duration_seconds"] == "histogram"
    assert fams["relevo_delivery_attempts"] == "counter"     # the parser drops _total
    assert fams["relevo_queue_recipients"] == "gauge"
    assert "relevo_events_dropped" in fams and "relevo_webhook_posts" in fams
    assert "relevo_dkim_signatures" in fams
    # Only bounded labels: no domain, no account anywhere in the exposition.
    _, _, body = http_get(r.ports["metrics"], "/metrics")
    for secret in (b"good.test", b"slow.test", b"alice", b"sender.test"):
        assert secret not in body, secret


def test_metrics_listener_is_get_only_and_small(delivering):
    r, _, _ = delivering
    port = r.ports["metrics"]
    assert http_get(port, "/metrics", "HEAD")[0] == 200
    assert http_get(port, "/metrics", "POST")[0] in (405, 501)
    assert http_get(port, "/")[0] == 404
    assert http_get(port, "/v1/health")[0] == 404


def test_metrics_listen_empty_disables_it_and_a_busy_address_is_fatal(make_relevo):
    r = make_relevo(start=False)
    r.config["http"] = {"metrics_listen": ""}
    r.write_config()
    r.start()
    assert "mode=metrics" not in r.stderr()
    r.stop()
    # A configured address that cannot be bound stops the start, naming why.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        r.config["http"] = {"metrics_listen": "127.0.0.1:%d" % s.getsockname()[1]}
        r.write_config()
        r.start(wait=False)
        assert r.wait(20) == 1
        assert "what=metrics" in r.stderr() and "Address already in use" in r.stderr()
    finally:
        s.close()


def test_metrics_listen_bad_value_is_a_config_error(make_relevo):
    r = make_relevo(start=False, users=False)
    r.config["http"] = {"metrics_listen": "localhost:9025"}
    r.write_config()
    res = r.cli(["check-config"])
    assert res.rc == 1 and "http.metrics_listen" in res.err, res


def test_status_text_and_json(delivering):
    r, good, slow = delivering
    relay_submit(r, SENDER, ["a@good.test"])
    relay_submit(r, SENDER, ["x@slow.test"])
    relay_submit(r, SENDER, ["x@slow.test"])
    good.wait_messages(1)
    wait_for(lambda: json.loads(r.cli_ok(["status", "--json"]).out)
             ["queue"]["recipients"]["deferred"]["transactional"] == 2,
             what="two deferred recipients in status")
    j = json.loads(r.cli_ok(["status", "--json"]).out)
    assert j["version"] == r.cli_ok(["--version"]).out.split()[1]
    assert j["uptime"] >= 0 and j["started"].endswith("Z")
    assert {"address": "127.0.0.1:%d" % r.ports["relay"], "sessions": 0} in j["listeners"]
    assert j["sessions"] == 0
    assert j["queue"]["messages"] == 2
    assert j["queue"]["top_destinations"] == [{"domain": "slow.test", "recipients": 2}]
    assert j["queue"]["oldest_age"] >= 0
    assert j["deliveries_last_minute"] == 1
    assert set(j["last_errors"]) == {"smtp", "spool", "mta", "store", "http", "webhooks"}

    out = r.cli_ok(["status"]).out
    assert out.startswith("relevo %s, pid " % j["version"]), out
    assert "queue: 2 messages; recipients: 0 active, 2 deferred, 0 held" in out
    assert "slow.test" in out and "2 recipients" in out
    assert "deliveries in the last minute: 1" in out
    assert "127.0.0.1:%d" % r.ports["relay"] in out


def test_status_shows_an_open_session(delivering):
    r, _, _ = delivering
    with r.client("relay") as c:
        c.ehlo()
        j = json.loads(r.cli_ok(["status", "--json"]).out)
        assert j["sessions"] == 1
        assert {"address": "127.0.0.1:%d" % r.ports["relay"], "sessions": 1} in j["listeners"]
        c.quit()
    wait_for(lambda: json.loads(r.cli_ok(["status", "--json"]).out)["sessions"] == 0,
             what="the session closed in status")


def test_status_shows_the_spools_last_error(make_relevo):
    """A failed fsync (the fault seam) is logged; status names it under spool."""
    r = make_relevo(start=False)
    start_with_env(r, {"RELEVO_FAULT": "fsync:%d" % (FSYNC_AT_START + 1)})
    j = json.loads(r.cli_ok(["status", "--json"]).out)
    assert j["last_errors"]["spool"] is None, j
    with r.client("relay") as c:
        c.ehlo()
        reply = c.mail_transaction(SENDER, ["a@good.test"],
                                   b"From: <%s>\r\nSubject: x\r\n\r\nx\r\n" % SENDER.encode())
        assert reply.code == 451, reply
        c.quit()
    err = json.loads(r.cli_ok(["status", "--json"]).out)["last_errors"]["spool"]
    assert err is not None and "event=spool_append_failed" in err["message"], err
    assert err["time"].endswith("Z")
    assert "spool_append_failed" in r.cli_ok(["status"]).out
    assert json.loads(r.cli_ok(["status", "--json"]).out)["last_errors"]["mta"] is None


HEALTH_CACHE_S = 1.2     # /v1/health keeps its spool and store results for 1 s


def immutable(path, on):
    """chattr +i / -i path: even root cannot create files in it. False if impossible."""
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i" if on else "-i", path],
                          capture_output=True).returncode == 0


def test_status_without_a_daemon_exits_69(make_relevo):
    r = make_relevo(start=False, users=False)
    res = r.cli(["status"])
    assert res.rc == 69, res
    assert "the daemon is not running" in res.err and "control.sock" in res.err, res
    assert res.out == ""
    assert r.cli(["status", "--json"]).rc == 69
    assert r.cli(["status", "--bogus"]).rc == 2
    assert r.cli(["status", "--help"]).rc == 0


def test_health_ok_then_503_when_the_spool_cannot_be_written(make_relevo):
    r = make_relevo(start=False)
    port = enable_http(r)
    r.start()
    status, headers, body = http_get(port, "/v1/health")      # no API key
    assert status == 200, body
    j = conforms(json.loads(body), "Health")       # as openapi.json documents it
    assert j["status"] == "ok" and j["checks"] == {"spool": "ok", "store": "ok",
                                                   "delivery": "ok"}, j
    spool = os.path.join(r.data_dir, "spool")
    if not immutable(spool, True):
        pytest.skip("chattr +i is not available here")
    try:
        time.sleep(HEALTH_CACHE_S)      # the last probe's result is kept this long
        status, _, body = http_get(port, "/v1/health")
    finally:
        immutable(spool, False)
    assert status == 503, body
    j = conforms(json.loads(body), "Health")
    assert j["status"] == "fail" and j["checks"]["spool"] == "fail", j
    assert j["problems"] == ["spool: not writable: Operation not permitted"], j
    # Fixed: healthy again.
    time.sleep(HEALTH_CACHE_S)
    status, _, body = http_get(port, "/v1/health")
    assert status == 200, body
