"""
test_events.py - the event history, suppression and webhooks (issue 7), end to end.

Mail is submitted over SMTP (the API's own tests are in test_api.py) and
delivered to fake MX servers; what a customer sees is checked where they see it:
GET /v1/events and /v1/suppressions over HTTP with an API key, and the JSON
documents a webhook receiver gets, with their X-Relevo-Signature verified
independently (hmac + hashlib).
"""

import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import expect, expect_status, make_message, pick_ports
from fakes import delivering_relevo, log_events, wait_for, wait_queue_empty
from fakes import dns, mxs  # noqa: F401  (fixtures)

SECRET = "whsec-test-0123456789"


# ---------------------------------------------------------------------------
# Helpers: a webhook receiver, the API
# ---------------------------------------------------------------------------

def _handler_for(rec):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            with rec.lock:
                status = rec.script.pop(0) if rec.script else 204
                rec.posts.append({"headers": dict(self.headers), "body": body,
                                  "status": status, "time": time.time()})
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass
    return Handler


class Receiver:
    """An HTTP server on 127.0.0.1 (port 0: the kernel picks) recording every POST;
    answers from `script` (a list of status codes consumed in order), then 204."""

    def __init__(self, port=0):
        self.posts = []
        self.script = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/hook" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, status=None):
        with self.lock:
            return [json.loads(p["body"]) for p in self.posts
                    if status is None or p["status"] == status]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def verify_signature(post, secret=SECRET):
    """X-Relevo-Signature: t=UNIXTIME,v1=HEX, HEX = HMAC-SHA256(secret, t.body)."""
    sig = post["headers"].get("X-Relevo-Signature")
    assert sig, "no X-Relevo-Signature header: %r" % post["headers"]
    parts = dict(p.split("=", 1) for p in sig.split(","))
    t = parts["t"]
    assert abs(int(t) - post["time"]) < 120, sig
    want = hmac.new(secret.encode(), t.encode() + b"." + post["body"],
                    hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], want), "bad signature %s for %r" % (sig, post)


def events_relevo(make_relevo, make_api_relevo, dns, mxs, webhooks=(), http=None,
                  **delivery):
    """A delivering relevo with the HTTP API (r.api acts as alice) and the given
    config webhooks ({url, secret[, events]})."""
    r = delivering_relevo(make_relevo, dns, mxs, start=False, **delivery)
    if webhooks:
        r.config["webhooks"] = list(webhooks)
    return make_api_relevo(relevo=r, http=http)


def api_events(r, key=None, **filters):
    resp = r.api.get("/v1/events?" + urllib.parse.urlencode(filters),
                     **({"key": key} if key else {}))
    return expect_status(resp, 200)["events"]


def wait_api_events(r, n, timeout=15, **filters):
    """Wait until GET /v1/events with filters returns at least n events."""
    got = []

    def enough():
        got[:] = api_events(r, **filters)
        return len(got) >= n
    wait_for(enough, timeout=timeout, what="%d events for %r (have %r)" % (n, filters, got))
    return got


# The event types whose log line names the recipient (rcpt=<...>); "accepted" is
# logged once per message.
PER_RECIPIENT = {"delivered", "deferred", "bounced", "expired", "suppressed"}
# Names the log used before 0.3 for steps the API already named otherwise.
OLD_LOG_NAMES = ("event=queued ", "event=api_rejected ", "event=suppressed_added ",
                 "event=reject ")


def assert_logged_as_in_api(r, evs):
    """One vocabulary: every event the API shows has a log line of the same name
    (for the same message, and recipient where the line names one), and none of
    the old log names is used."""
    for e in evs:
        match = {"id": e["message_id"]} if e.get("message_id") else {"source": e["source"]}
        if e["type"] in PER_RECIPIENT:
            match["rcpt"] = "<%s>" % e["recipient"]
        wait_for(lambda: log_events(r, e["type"], **match), timeout=10,
                 what="a log line event=%s %r for %r" % (e["type"], match, e))
    log = r.all_stderr()
    for old in OLD_LOG_NAMES:
        assert old not in log, old


def domain_mx(dns, mxs, domain):
    mx = mxs.add("mx1.%s" % domain)
    dns.mx(domain, mx.name)
    dns.a(mx.name, mx.addr)
    return mx


def smtp_send(r, rcpts, sender="alice@example.com", headers=(), user="alice"):
    """Submit one message as alice over submissions; returns the queue id."""
    message = make_message(sender=sender, to=rcpts[0], extra_headers=headers)
    with r.client("submissions") as c:
        c.login(user)
        rep = c.mail_transaction(sender, rcpts, message)
        expect(rep, 250, "2.0.0")
        return rep.queued_id


# ---------------------------------------------------------------------------
# Events for SMTP mail
# ---------------------------------------------------------------------------

def test_smtp_mail_has_accepted_and_delivered_events(make_relevo, make_api_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs)
    qid = smtp_send(r, ["carol@dest.test", "dave@dest.test"])
    mx.wait_messages(1)
    evs = wait_api_events(r, 4, message_id=qid)
    kinds = sorted((e["type"], e["recipient"]) for e in evs)
    assert kinds == [("accepted", "carol@dest.test"), ("accepted", "dave@dest.test"),
                     ("delivered", "carol@dest.test"), ("delivered", "dave@dest.test")], evs
    for e in evs:
        assert e["message_id"] == qid and e["user"] == "alice" and e["source"] == "smtp"
        assert e["stream"] == "transactional" and e["sender"] == "alice@example.com"
    d = [e for e in evs if e["type"] == "delivered"][0]
    assert d["status"] == "2.0.0" and d["remote"].startswith("mx1.dest.test["), d
    assert d["reply"].startswith("250"), d
    assert_logged_as_in_api(r, evs)
    # filters: by recipient and by type
    only = api_events(r, message_id=qid, recipient="CAROL@dest.test", type="delivered")
    assert [(e["type"], e["recipient"]) for e in only] == [("delivered", "carol@dest.test")]


def test_bulk_header_puts_mail_in_the_bulk_stream(make_relevo, make_api_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs)
    qid = smtp_send(r, ["news@dest.test"], headers=["X-Relevo-Stream: bulk"])
    mx.wait_messages(1)
    evs = wait_api_events(r, 2, message_id=qid)
    assert {e["stream"] for e in evs} == {"bulk"}, evs


def test_refused_sender_is_a_rejected_event(make_relevo, make_api_relevo, dns, mxs):
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs)
    message = make_message(sender="alice@example.com", to="x@dest.test")
    bad = message.replace(b"From: <alice@example.com>", b"From: <ceo@bank.test>")
    with r.client("submissions") as c:
        c.login("alice")
        rep = c.mail_transaction("alice@example.com", ["x@dest.test"], bad)
        expect(rep, 553, "5.7.1")
    evs = wait_api_events(r, 1, type="rejected")
    assert "bank.test" in evs[0]["reply"] and evs[0]["reply"].startswith("553 5.7.1"), evs
    assert evs[0]["user"] == "alice" and evs[0]["source"] == "smtp"
    assert log_events(r, "rejected", reason="from_not_owned", user="alice")
    assert_logged_as_in_api(r, [])


def test_events_of_other_accounts_are_not_visible(make_relevo, make_api_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs)
    qid = smtp_send(r, ["carol@dest.test"])
    mx.wait_messages(1)
    wait_api_events(r, 2, message_id=qid)
    assert api_events(r, key=r.keys["carol"], message_id=qid) == []


def test_events_written_before_a_clean_stop_are_kept(make_relevo, make_api_relevo, dns, mxs):
    domain_mx(dns, mxs, "dest.test")
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs)
    qid = smtp_send(r, ["carol@dest.test"])
    r.stop()                                    # SIGTERM right after the 250
    r.start()
    evs = wait_api_events(r, 1, message_id=qid, type="accepted")
    assert evs[0]["recipient"] == "carol@dest.test"


# ---------------------------------------------------------------------------
# Bounces and the suppression list
# ---------------------------------------------------------------------------

def test_hard_bounce_suppresses_the_address_and_the_next_message(make_relevo, make_api_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    mx.rcpt_always["gone@dest.test"] = "550 5.1.1 <gone@dest.test>: no such user"
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs)
    first = smtp_send(r, ["gone@dest.test", "ok@dest.test"])
    b = wait_api_events(r, 1, message_id=first, type="bounced")[0]
    assert b["recipient"] == "gone@dest.test" and b["status"] == "5.1.1", b
    assert b["classification"] == "hard" and "no such user" in b["reply"], b

    def listed():
        doc = expect_status(r.api.get("/v1/suppressions"), 200)
        return [s["address"] for s in doc["suppressions"]]
    wait_for(lambda: "gone@dest.test" in listed(), what="gone@ on the suppression list")
    # the log names the step as the API does: suppression_added, whoever adds
    assert log_events(r, "suppression_added", user="alice", address="<gone@dest.test>",
                      source="bounce")

    before = len(mx.rcpt_log)
    second = smtp_send(r, ["Gone@dest.test", "ok2@dest.test"])   # still 250 over SMTP
    s = wait_api_events(r, 1, message_id=second, type="suppressed")[0]
    assert s["recipient"] == "Gone@dest.test", s
    wait_api_events(r, 1, message_id=second, type="delivered")
    wait_queue_empty(r)
    tried = [a for a, _ in mx.rcpt_log[before:]]
    assert "ok2@dest.test" in tried and "Gone@dest.test" not in tried, tried

    # every recipient suppressed: 250 still, nothing queued, nothing sent
    third = smtp_send(r, ["gone@dest.test"])
    wait_api_events(r, 1, message_id=third, type="suppressed")
    assert not api_events(r, message_id=third, type="accepted")
    assert_logged_as_in_api(r, [e for q in (first, second, third)
                                for e in api_events(r, message_id=q)])

    # removing it from the list lets mail through again (and the MX bounces it again)
    resp = r.api.delete("/v1/suppressions/gone@dest.test")
    assert resp.status in (200, 204), resp
    fourth = smtp_send(r, ["gone@dest.test"])
    wait_api_events(r, 1, message_id=fourth, type="bounced")


def test_soft_bounce_does_not_suppress(make_relevo, make_api_relevo, dns, mxs):
    mx = domain_mx(dns, mxs, "dest.test")
    mx.rcpt_always["full@dest.test"] = "552 5.2.2 mailbox full"
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs)
    qid = smtp_send(r, ["full@dest.test"])
    b = wait_api_events(r, 1, message_id=qid, type="bounced")[0]
    assert b["classification"] == "soft" and b["status"] == "5.2.2", b
    time.sleep(0.5)
    assert expect_status(r.api.get("/v1/suppressions"), 200)["suppressions"] == []


# ---------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------

def test_webhook_posts_signed_events_and_retries_after_a_500(make_relevo, make_api_relevo, dns, mxs,
                                                               receiver, monkeypatch):
    monkeypatch.setenv("RELEVO_WEBHOOK_RETRY_MS", "300")
    mx = domain_mx(dns, mxs, "dest.test")
    receiver.script = [500]                     # the first POST fails
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs,
                      webhooks=[{"url": receiver.url, "secret": SECRET}])
    qid = smtp_send(r, ["carol@dest.test"])
    mx.wait_messages(1)

    def have_both():
        return {(e["type"], e.get("message_id")) for e in receiver.events(204)} >= {
            ("accepted", qid), ("delivered", qid)}
    wait_for(have_both, timeout=20, what="accepted and delivered POSTed")
    posts = list(receiver.posts)
    for p in posts:
        verify_signature(p)
        assert p["headers"]["Content-Type"].startswith("application/json")
    failed = [p for p in posts if p["status"] == 500]
    assert len(failed) == 1
    retried = [p for p in posts if p["status"] == 204 and p["body"] == failed[0]["body"]]
    assert retried, "the event refused with 500 was not retried: %r" % posts
    assert retried[0]["time"] > failed[0]["time"]
    # each event went out once successfully
    ok = [(e["type"], e["recipient"]) for e in receiver.events(204)
          if e.get("message_id") == qid]
    assert sorted(ok) == [("accepted", "carol@dest.test"), ("delivered", "carol@dest.test")]


def test_webhook_event_filter_and_bad_signature_secret(make_relevo, make_api_relevo, dns, mxs, receiver,
                                                       monkeypatch):
    monkeypatch.setenv("RELEVO_WEBHOOK_RETRY_MS", "300")
    mx = domain_mx(dns, mxs, "dest.test")
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs, webhooks=[
        {"url": receiver.url, "secret": SECRET, "events": ["delivered"]}])
    qid = smtp_send(r, ["carol@dest.test"])
    mx.wait_messages(1)
    wait_for(lambda: receiver.events(), what="a webhook POST")
    time.sleep(1.0)
    assert [e["type"] for e in receiver.events()] == ["delivered"], receiver.events()
    post = receiver.posts[0]
    verify_signature(post)
    with pytest.raises(AssertionError):
        verify_signature(post, secret="another-secret")
    assert json.loads(post["body"])["message_id"] == qid


def test_account_webhook_from_the_api_gets_its_own_events(make_relevo, make_api_relevo,
                                                          dns, mxs, receiver):
    mx = domain_mx(dns, mxs, "dest.test")
    # the receiver is on loopback: this relay's operator allows that
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs,
                      http={"webhooks_allow_private": True})
    secret = "account-secret-0123456789"
    w = expect_status(r.api.post("/v1/webhooks", {"url": receiver.url, "secret": secret,
                                                  "events": ["delivered"]}), 201)
    assert w["events"] == ["delivered"]
    mine = smtp_send(r, ["carol@dest.test"])
    smtp_send(r, ["dave@dest.test"], sender="x@example.net", user="carol")
    mx.wait_messages(2)
    wait_for(lambda: receiver.events(), what="a webhook POST")
    wait_api_events(r, 1, message_id=mine, type="delivered")
    time.sleep(1.0)                              # room for a wrong POST to show up
    got = [(e["type"], e["message_id"]) for e in receiver.events()]
    assert got == [("delivered", mine)], got     # not carol's mail, not "accepted"
    verify_signature(receiver.posts[0], secret=secret)


def test_webhook_jobs_survive_a_restart(make_relevo, make_api_relevo, dns, mxs, monkeypatch):
    monkeypatch.setenv("RELEVO_WEBHOOK_RETRY_MS", "300")
    mx = domain_mx(dns, mxs, "dest.test")
    port = pick_ports(1)[0]                      # nothing listens there yet
    url = "http://127.0.0.1:%d/hook" % port
    r = events_relevo(make_relevo, make_api_relevo, dns, mxs,
                      webhooks=[{"url": url, "secret": SECRET, "events": ["delivered"]}])
    qid = smtp_send(r, ["carol@dest.test"])
    mx.wait_messages(1)
    wait_api_events(r, 1, message_id=qid, type="delivered")
    time.sleep(0.5)                              # at least one failed attempt
    r.stop()
    srv = Receiver(port)                         # the endpoint comes up while relevo is down
    try:
        r.start()
        wait_for(lambda: srv.events(), timeout=20, what="the stored webhook job sent")
        ev = srv.events()[0]
        assert ev["type"] == "delivered" and ev["message_id"] == qid, ev
        verify_signature(srv.posts[0])
    finally:
        srv.close()
