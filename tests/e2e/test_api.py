"""
test_api.py - the HTTP API (JSON under /v1), end to end.

The real daemon with http.listen on loopback, keys made with `relevo apikey
create`, driven with http.client. Mail is delivered to fake MX servers found
through the fake DNS (fakes.py); what arrives is parsed with Python's email
package and DKIM is checked with dkimpy. Each test asserts what an API user
sees: the status, the JSON (errors included), the bytes delivered, the events
and the queue.
"""

import base64
import email
import email.policy
import http.client
import json
import os
import re
import time
import urllib.parse

import pytest

from conftest import ID_RE, expect_status
from fakes import delivering_relevo, queue_ok, wait_for
from fakes import dns, mxs  # noqa: F401  (fixtures)
from signing import dest_mx, signing_relevo, verify_all
from test_events import assert_logged_as_in_api
from test_hardening_helpers import FSYNC_AT_START, start_with_env

FROM = "alice@example.com"

# GET /v1/messages/ID: the same members whether the message is queued or finished
# (README, "API changes in 0.3").
MESSAGE_KEYS = {"id", "status", "sender", "created", "size", "stream", "source", "held",
                "sandbox", "recipients"}
RECIPIENT_KEYS = {"address", "state", "attempts", "next_attempt", "time", "status",
                  "last_reply"}
REPLY_KEYS = {"status", "remote", "reply", "code"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def is_time(v):
    return isinstance(v, str) and RFC3339.match(v) is not None


with open(os.path.join(os.path.dirname(__file__), "..", "..", "src", "http",
                       "openapi.json"), "rb") as _f:
    OPENAPI = json.loads(_f.read())
_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}


def conforms(value, name=None, schema=None, path="$"):
    """Check value against a schema of src/http/openapi.json (by name, or a schema
    object): types, nullable, enum, date-time, required members, and no member
    the schema does not document. Returns value."""
    if name is not None:
        schema = {"$ref": "#/components/schemas/" + name}
    while "$ref" in schema:
        node = OPENAPI
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        schema = node
    if value is None:
        assert schema.get("nullable"), "%s: null, but not nullable" % path
        return value
    t = schema.get("type")
    if t:
        assert isinstance(value, _TYPES[t]) and not (t != "boolean" and isinstance(value, bool)), \
            "%s: %r is not %s" % (path, value, t)
    if "enum" in schema:
        assert value in schema["enum"], "%s: %r not in %r" % (path, value, schema["enum"])
    if schema.get("format") == "date-time":
        assert is_time(value), "%s: %r is not RFC 3339" % (path, value)
    if t == "object":
        for k in schema.get("required", []):
            assert k in value, "%s: %s missing" % (path, k)
        props = schema.get("properties")
        if props is not None:
            for k, v in value.items():
                assert k in props, "%s.%s: not in the schema" % (path, k)
                conforms(v, schema=props[k], path=path + "." + k)
    if t == "array":
        for i, v in enumerate(value):
            conforms(v, schema=schema.get("items", {}), path="%s[%d]" % (path, i))
    return value


def check_message_shape(m):
    """Every member there, every time an RFC 3339 string (or null where allowed),
    every last_reply an object or null, never a log-style string; as documented."""
    conforms(m, "Message")
    assert set(m) == MESSAGE_KEYS, m
    assert is_time(m["created"]), m
    for x in m["recipients"]:
        assert set(x) == RECIPIENT_KEYS, x
        assert x["time"] is None or is_time(x["time"]), x
        assert x["next_attempt"] is None or is_time(x["next_attempt"]), x
        assert isinstance(x["attempts"], int), x
        lr = x["last_reply"]
        assert lr is None or (isinstance(lr, dict) and set(lr) == REPLY_KEYS), x
        if lr is not None:
            assert x["status"] == lr["status"], x
            assert "status=" not in (lr["reply"] or "") and "remote=" not in (lr["reply"] or "")
    return m


def send(r, key=None, **fields):
    """POST /v1/messages with sensible defaults; returns the response."""
    body = {"from": FROM, "to": "carol@dest.test", "subject": "test", "text": "Hello.\n"}
    body.update(fields)
    return r.api.post("/v1/messages", body, **({"key": key} if key else {}))


def send_ok(r, **fields):
    """send() and assert 202; returns the JSON answer."""
    j = conforms(expect_status(send(r, **fields), 202), "MessageAccepted")
    assert ID_RE.match(j["id"]), j
    return j


@pytest.fixture
def delivering(make_relevo, make_api_relevo, dns, mxs):
    """A relevo with the API that delivers to the fake MX of dest.test."""
    mx = dest_mx(dns, mxs)
    r = make_api_relevo(delivering_relevo(make_relevo, dns, mxs, start=False))
    return r, mx


def events(r, key=None, **params):
    """GET /v1/events with params; the JSON answer."""
    q = urllib.parse.urlencode(params)
    return conforms(expect_status(r.api.get("/v1/events" + ("?" + q if q else ""),
                                            **({"key": key} if key else {})), 200),
                    "EventPage")


def all_events(r, **params):
    """Every page of GET /v1/events, following the cursors."""
    out, cursor = [], None
    for _ in range(1000):
        p = dict(params)
        if cursor:
            p["cursor"] = cursor
        page = events(r, **p)
        out += page["events"]
        cursor = page["next"]
        if cursor is None:
            return out
    raise AssertionError("pagination does not end")


def wait_events(r, n, **params):
    return wait_for(lambda: (lambda ev: ev if len(ev) >= n else None)(all_events(r, **params)),
                    what="%d event(s) %r" % (n, params))


def header(msg, name):
    return str(msg[name]) if msg[name] is not None else None


# ---------------------------------------------------------------------------
# sending and what arrives
# ---------------------------------------------------------------------------

PNG = bytes(range(256)) * 40 + os.urandom(3001)
CSV = "name,amount\r\nJörg,3\r\n".encode()


def test_sent_mail_arrives_signed_and_intact(make_relevo, make_api_relevo, dns, mxs):
    mx = dest_mx(dns, mxs)
    r, recs = signing_relevo(make_relevo, dns, mxs, start=False)
    make_api_relevo(r)
    j = send_ok(r, **{
        "from": "Alice Example <alice@example.com>",
        "to": ["carol@dest.test", "Dave Ü <dave@dest.test>"],
        "cc": "erin@dest.test",
        "bcc": ["hidden@dest.test"],
        "reply_to": "help@example.com",
        "subject": "Your order ☃ — #42",
        "text": "Hello Carol,\nyour order is on its way: café €3.\n.\nFrom here on, " + "x" * 120,
        "html": "<p>Hello <b>Carol</b>, café</p>",
        "headers": {"X-Campaign": "spring", "List-Unsubscribe": "<https://example.com/u/1>"},
        "attachments": [
            {"filename": "pixel.png", "content_type": "image/png",
             "content": base64.b64encode(PNG).decode()},
            {"filename": "résumé.csv", "content_type": "text/csv",
             "content": base64.b64encode(CSV).decode()},
        ],
    })
    assert sorted(j["accepted"]) == sorted(["carol@dest.test", "dave@dest.test",
                                            "erin@dest.test", "hidden@dest.test"])
    assert j["suppressed"] == []
    msgs = mx.wait_messages(1)
    m = msgs[0]
    assert m.mail_from == FROM
    assert sorted(a.lower() for a in m.rcpt_tos) == sorted(j["accepted"])
    raw = m.content
    # the wire format: CRLF only, no line over 998, 7-bit
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(l) for l in raw.split(b"\r\n")) <= 998
    assert all(b < 0x80 for b in raw)
    # DKIM: both signatures verify with the published keys
    ok, _ = verify_all(raw, recs)
    assert ok == [True, True], ok
    p = email.message_from_bytes(raw, policy=email.policy.default)
    assert re.match(r"from api \(\[127\.0\.0\.1\]\)\s+by relay\.test \(relevo\) with HTTP id "
                    + j["id"], " ".join(p.get_all("Received")[0].split())), p["Received"]
    assert str(p["From"]) == "Alice Example <alice@example.com>"
    assert str(p["To"]) == "carol@dest.test, Dave Ü <dave@dest.test>"
    assert str(p["Cc"]) == "erin@dest.test"
    assert p["Bcc"] is None and b"hidden" not in raw.split(b"\r\n\r\n")[0]
    assert str(p["Reply-To"]) == "help@example.com"
    assert str(p["Subject"]) == "Your order ☃ — #42"
    assert str(p["Message-ID"]) == "<%s@relay.test>" % j["id"]
    assert p["Date"] is not None
    assert str(p["X-Campaign"]) == "spring"
    assert p.get_content_type() == "multipart/mixed"
    parts = list(p.iter_parts())
    assert [x.get_content_type() for x in parts] == ["multipart/alternative", "image/png",
                                                     "text/csv"]
    alt = list(parts[0].iter_parts())
    assert [x.get_content_type() for x in alt] == ["text/plain", "text/html"]
    assert alt[0].get_content().replace("\r\n", "\n") == \
        "Hello Carol,\nyour order is on its way: café €3.\n.\nFrom here on, " + "x" * 120 + "\n"
    assert "<b>Carol</b>, café" in alt[1].get_content()
    assert parts[1].get_content() == PNG
    assert parts[1].get_filename() == "pixel.png"
    assert parts[2].get_filename() == "résumé.csv"
    assert parts[2].get_payload(decode=True) == CSV
    # the message as the API shows it, once delivered
    def delivered():
        m = check_message_shape(expect_status(r.api.get("/v1/messages/" + j["id"]), 200))
        states = [x["state"] for x in m["recipients"]]
        return len(states) == 4 and set(states) == {"delivered"}
    wait_for(delivered, what="every recipient delivered in GET /v1/messages/ID")


def test_bulk_stream_and_single_strings(delivering):
    r, mx = delivering
    j = send_ok(r, to="carol@dest.test", text=None, html="<p>only html</p>", stream="bulk",
                subject="plain ascii subject")
    m = mx.wait_messages(1)[0]
    p = email.message_from_bytes(m.content, policy=email.policy.default)
    assert p.get_content_type() == "text/html"
    assert p.get_content().strip() == "<p>only html</p>"
    ev = wait_events(r, 2, message_id=j["id"])
    assert {e["stream"] for e in ev} == {"bulk"}
    assert {e["source"] for e in ev} == {"api"}


def test_missing_dkim_key_is_503(make_api_relevo, make_relevo):
    r = make_relevo(start=False)
    r.config["dkim"] = {"missing_key": "tempfail"}
    make_api_relevo(r)
    resp = send(r)
    expect_status(resp, 503, "dkim_key_missing")
    assert "relevo domain add example.com" in resp.json["error"]["message"]
    assert r.queue_list() == []


def test_disk_failure_is_503_and_nothing_queued(make_api_relevo):
    """202 only once durable: a failed fsync of the message's batch is a 503, the
    message is never queued (not even after a restart), and the next one works."""
    r = make_api_relevo(start=False)
    start_with_env(r, {"RELEVO_FAULT": "fsync:%d" % (FSYNC_AT_START + 1)})
    expect_status(send(r, subject="lost"), 503, "unavailable")
    assert r.queue_list() == []
    j = send_ok(r, subject="kept")
    assert r.queue_ids() == [j["id"]]
    r.restart()
    assert r.queue_ids() == [j["id"]]
    wait_events(r, 1, type="accepted")
    assert {e.get("message_id") for e in all_events(r)} == {j["id"]}


# ---------------------------------------------------------------------------
# refusals: 401, 403, 400, 413, 404, 405
# ---------------------------------------------------------------------------

def test_unauthorized(api_relevo):
    r = api_relevo
    for key in (None, "", "rlv_0000000000000000_" + "0" * 40, r.keys["alice"] + "x",
                r.keys["alice"][:-1] + ("0" if r.keys["alice"][-1] != "0" else "1")):
        resp = r.api.post("/v1/messages", {"from": FROM, "to": "x@dest.test", "text": "x"},
                          key=key)
        expect_status(resp, 401, "unauthorized")
        assert resp.headers.get("www-authenticate", "").startswith("Bearer")
    for path in ("/v1/events", "/v1/stats", "/v1/suppressions", "/v1/webhooks",
                 "/v1/messages/0123456789ABCDEF"):
        expect_status(r.api.get(path, key=None), 401, "unauthorized")
    # a scheme other than Bearer
    resp = r.api.get("/v1/events", key=None,
                     headers={"Authorization": "Basic " + r.keys["alice"]})
    expect_status(resp, 401, "unauthorized")
    # a revoked key stops working at once
    key_id = r.keys["carol"].split("_")[1]
    expect_status(r.api.get("/v1/events", key=r.keys["carol"]), 200)
    r.cli_ok(["apikey", "revoke", key_id])
    expect_status(r.api.get("/v1/events", key=r.keys["carol"]), 401, "unauthorized")
    assert r.queue_list() == []


def test_foreign_sender_domain_is_403(api_relevo):
    r = api_relevo
    for sender in ("carol@example.net", "Alice <alice@example.org>", "alice@sub.example.com"):
        resp = send(r, **{"from": sender})
        expect_status(resp, 403, "sender_domain_not_allowed")
        assert sender.split("@")[1].rstrip(">") in resp.json["error"]["message"]
    # carol's key may send as carol's domains
    j = expect_status(send(r, key=r.keys["carol"], **{"from": "carol@example.net"}), 202)
    assert ID_RE.match(j["id"])
    assert len(r.queue_list()) == 1
    rejected = wait_events(r, 3, type="rejected")
    assert all(e["user"] == "alice" and e["source"] == "api" for e in rejected)
    assert any("example.net" in e["reply"] for e in rejected)


MSG = {"from": FROM, "to": "carol@dest.test", "text": "x"}

BAD_REQUESTS = [
    ("CRLF in subject", dict(MSG, subject="hi\r\nBcc: victim@dest.test"), "header_injection",
     "subject"),
    ("LF in subject", dict(MSG, subject="hi\nX-Injected: 1"), "header_injection", "subject"),
    ("CRLF in a header value", dict(MSG, headers={"X-Tag": "a\r\nBcc: victim@dest.test"}),
     "header_injection", "X-Tag"),
    ("CRLF in a header name", dict(MSG, headers={"X-Tag\r\nBcc": "victim@dest.test"}),
     "header_injection", "header name"),
    ("colon in a header name", dict(MSG, headers={"Bcc: victim@dest.test\nX": "1"}),
     "header_injection", "header name"),
    ("space in a header name", dict(MSG, headers={"X Tag": "1"}), "invalid_header",
     "field name"),
    ("overriding Bcc", dict(MSG, headers={"Bcc": "victim@dest.test"}), "reserved_header",
     "Bcc"),
    ("overriding From", dict(MSG, headers={"From": "ceo@example.com"}), "reserved_header",
     "From"),
    ("overriding Content-Type", dict(MSG, headers={"Content-Type": "text/html"}),
     "reserved_header", "Content-Type"),
    ("CRLF in from", dict(MSG, **{"from": "alice@example.com\r\nBcc: victim@dest.test"}),
     "header_injection", "from"),
    ("CRLF in to", dict(MSG, to=["carol@dest.test\r\nX: 1"]), "header_injection", "to"),
    ("CRLF in a filename", dict(MSG, attachments=[{"filename": "a\r\nX: 1",
                                                   "content": "aGk="}]),
     "header_injection", "filename"),
    ("invalid base64", dict(MSG, attachments=[{"filename": "a", "content": "@@@"}]),
     "invalid_attachment", "base64"),
    ("missing from", {"to": "carol@dest.test", "text": "x"}, "missing_field", "from"),
    ("missing to", {"from": FROM, "text": "x"}, "missing_field", "recipient"),
    ("missing body", {"from": FROM, "to": "carol@dest.test"}, "missing_field", "text"),
    ("bad address", dict(MSG, to="carol at dest.test"), "invalid_address", "to"),
    ("unknown field", dict(MSG, bbc="x@dest.test"), "unknown_field", "bbc"),
    ("wrong type", dict(MSG, to=42), "invalid_field", "to"),
    ("too many recipients", dict(MSG, to=["r%d@dest.test" % i for i in range(6)]),
     "too_many_recipients", "at most 5"),
    # issue 12: results of checks nobody made, and a second name for an attachment
    ("Authentication-Results", dict(MSG, headers={"Authentication-Results":
                                                  "relay.test; dkim=pass"}),
     "reserved_header", "Authentication-Results"),
    ("ARC-Seal", dict(MSG, headers={"ARC-Seal": "i=1; a=rsa-sha256; d=example.com"}),
     "reserved_header", "ARC-Seal"),
    ("arc-authentication-results", dict(MSG, headers={"arc-authentication-results":
                                                      "i=1; relay.test; spf=pass"}),
     "reserved_header", "arc-authentication-results"),
    ("name= in content_type", dict(MSG, attachments=[{
        "filename": "invoice.pdf", "content_type": "application/pdf; name=\"evil.exe\"",
        "content": "aGk="}]), "invalid_attachment", "name parameter"),
    ("NAME*0= in content_type", dict(MSG, attachments=[{
        "filename": "invoice.pdf", "content_type": "application/pdf;NAME*0*=UTF-8''e.exe",
        "content": "aGk="}]), "invalid_attachment", "name parameter"),
]


@pytest.mark.parametrize("label,body,code,says", BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_are_400(api_relevo, label, body, code, says):
    r = api_relevo
    resp = r.api.post("/v1/messages", body)
    expect_status(resp, 400, code)
    assert says in resp.json["error"]["message"], resp
    assert r.queue_list() == []


@pytest.mark.parametrize("raw,says", [
    (b'{"from": "alice@example.com", "to": [', "malformed JSON"),
    (b"", "malformed JSON"),
    (b"not json at all", "malformed JSON"),
    (b'["a list"]', "object"),
    (b'{"from":"alice@example.com","from":"x@example.com","to":"c@dest.test","text":"x"}',
     "duplicate"),
    (b'{"from":"alice@example.com","to":"c@dest.test","text":"\xff\xfe"}', "malformed JSON"),
], ids=["truncated", "empty", "not json", "not an object", "duplicate key", "not utf-8"])
def test_malformed_json_is_400(api_relevo, raw, says):
    r = api_relevo
    resp = r.api.request("POST", "/v1/messages", raw=raw,
                         headers={"Content-Type": "application/json"})
    expect_status(resp, 400, "invalid_json")
    assert says in resp.json["error"]["message"], resp
    rejected = wait_events(r, 1, type="rejected")
    assert rejected[0]["user"] == "alice"


def test_oversized_message_is_413(api_relevo):
    r = api_relevo            # smtp.max_message_size is 1 MiB in the harness
    resp = send(r, text="y" * (1024 * 1024 + 10))
    expect_status(resp, 413, "too_large")
    assert "limit is 1048576" in resp.json["error"]["message"]
    resp = send(r, attachments=[{"filename": "big.bin",
                                 "content": base64.b64encode(b"\0" * 800000).decode()}])
    expect_status(resp, 413, "too_large")
    assert r.queue_list() == []
    ev = wait_events(r, 2, type="rejected")
    assert all(e.get("status") == "5.3.4" for e in ev)


def test_oversized_request_is_413(make_api_relevo):
    r = make_api_relevo(http={"max_request_size": 65536})
    resp = r.api.post("/v1/messages", dict(MSG, text="z" * 100000))
    assert resp.status == 413, resp
    # the server is fine afterwards
    expect_status(send(r), 202)


def test_unknown_paths_and_methods(api_relevo):
    r = api_relevo
    for path in ("/", "/v1", "/v1/nope", "/v2/messages", "/v1/events/x", "/v1/messages/"):
        resp = r.api.get(path)
        expect_status(resp, 404, "not_found")
    for method, path, allow in (("DELETE", "/v1/messages", "POST"),
                                ("GET", "/v1/messages", "POST"),
                                ("PUT", "/v1/events", "GET"),
                                ("POST", "/v1/stats", "GET"),
                                ("PATCH", "/v1/webhooks", "POST"),
                                ("POST", "/v1/messages/0123456789ABCDEF", "GET"),
                                ("GET", "/v1/suppressions/x@dest.test", "DELETE")):
        resp = r.api.request(method, path)
        expect_status(resp, 405, "method_not_allowed")
        assert allow in resp.headers.get("allow", ""), resp
    resp = r.api.get("/v1/events?bogus=1")
    expect_status(resp, 400, "unknown_parameter")


# ---------------------------------------------------------------------------
# events, messages, stats
# ---------------------------------------------------------------------------

def test_events_accepted_then_delivered(delivering):
    r, mx = delivering
    j = send_ok(r, to=["carol@dest.test", "dave@dest.test", "erin@dest.test"])
    mx.wait_messages(1)
    ev = wait_events(r, 6, message_id=j["id"])
    assert len(ev) == 6, ev
    for rcpt in j["accepted"]:
        mine = [e for e in ev if e["recipient"] == rcpt]
        assert [e["type"] for e in mine] == ["accepted", "delivered"], mine
        assert mine[0]["timestamp"] <= mine[1]["timestamp"]
        assert all(e["message_id"] == j["id"] and e["sender"] == FROM and
                   e["user"] == "alice" and e["source"] == "api" and
                   e["stream"] == "transactional" for e in mine)
    assert [e["id"] for e in ev] == sorted(e["id"] for e in ev)
    # filters
    d = all_events(r, message_id=j["id"], type="delivered")
    assert sorted(e["recipient"] for e in d) == sorted(j["accepted"])
    d = all_events(r, recipient="DAVE@dest.test")
    assert [e["type"] for e in d] == ["accepted", "delivered"]
    first = ev[0]["timestamp"]
    assert len(all_events(r, since=str(first // 1000 - 60))) == 6
    assert all_events(r, until=str(first // 1000 - 60)) == []
    assert len(all_events(r, since="2020-01-01T00:00:00Z", until="2999-01-01T00:00:00+01:00")) == 6
    assert all_events(r, since="2999-01-01T00:00:00Z") == []
    # pagination: pages of 4 then 2, the cursor continues without overlap
    p1 = events(r, message_id=j["id"], limit=4)
    assert len(p1["events"]) == 4 and p1["next"]
    p2 = events(r, message_id=j["id"], limit=4, cursor=p1["next"])
    assert len(p2["events"]) == 2 and p2["next"] is None
    assert [e["id"] for e in p1["events"] + p2["events"]] == [e["id"] for e in ev]
    assert [e["id"] for e in all_events(r, message_id=j["id"], limit=1)] == \
        [e["id"] for e in ev]
    # newest first: order=desc, and its cursor continues newest first
    assert [e["id"] for e in events(r, message_id=j["id"], order="asc")["events"]] == \
        [e["id"] for e in ev]
    d1 = events(r, message_id=j["id"], order="desc", limit=4)
    assert [e["id"] for e in d1["events"]] == [e["id"] for e in ev][::-1][:4] and d1["next"]
    d2 = events(r, message_id=j["id"], order="desc", limit=4, cursor=d1["next"])
    assert [e["id"] for e in d2["events"]] == [e["id"] for e in ev][::-1][4:]
    assert d2["next"] is None
    assert [e["id"] for e in all_events(r, message_id=j["id"], order="desc", limit=1)] == \
        [e["id"] for e in ev][::-1]
    assert [e["type"] for e in events(r, recipient="dave@dest.test", order="desc")["events"]] \
        == ["delivered", "accepted"]
    assert all(is_time(e["time"]) for e in ev)
    # another account sees none of it
    assert events(r, key=r.keys["carol"])["events"] == []
    # bad parameters
    for q in ("limit=0", "limit=1001", "limit=x", "type=nope", "since=yesterday",
              "message_id=xyz", "cursor=abc", "until=2026-13-01T00:00:00Z", "order=newest",
              "order=DESC", "order="):
        expect_status(r.api.get("/v1/events?" + q), 400, "invalid_parameter")
    # the message, finished: rebuilt from its events
    def finished():
        m = r.api.get("/v1/messages/" + j["id"]).json
        return m if m and m.get("status") == "finished" else None
    m = check_message_shape(wait_for(finished, what="the message to leave the queue"))
    assert m["id"] == j["id"] and m["sender"] == FROM and m["source"] == "api"
    assert m["held"] is False and m["size"] is None and m["sandbox"] is None
    assert sorted(x["address"] for x in m["recipients"]) == sorted(j["accepted"])
    assert all(x["state"] == "delivered" and x["attempts"] == 1 for x in m["recipients"])
    for x in m["recipients"]:
        assert x["next_attempt"] is None and is_time(x["time"]) and x["status"] == "2.0.0"
        assert x["last_reply"]["code"] == 250 and x["last_reply"]["reply"].startswith("250 ")
        assert x["last_reply"]["remote"].startswith("mx1.dest.test["), x
    expect_status(r.api.get("/v1/messages/" + j["id"], key=r.keys["carol"]), 404, "not_found")
    assert_logged_as_in_api(r, ev)


def test_message_while_queued(api_relevo):
    r = api_relevo            # every domain goes to a fake MX that answers 421
    j = send_ok(r, to=["carol@dest.test", "dave@dest.test"], bcc="erin@dest.test")
    m = check_message_shape(expect_status(r.api.get("/v1/messages/" + j["id"]), 200))
    assert m["status"] == "queued" and m["id"] == j["id"]
    assert m["sender"] == FROM and m["source"] == "api" and m["stream"] == "transactional"
    assert m["size"] > 0 and m["created"].endswith("Z")
    assert m["held"] is False and m["sandbox"] is False
    assert [x["address"] for x in m["recipients"]] == ["carol@dest.test", "dave@dest.test",
                                                       "erin@dest.test"]
    # not tried yet, or already deferred once (the fake MX answers 421 at once)
    assert all(x["state"] in ("queued", "deferred") for x in m["recipients"]), m
    m = wait_for(lambda: (lambda m: m if all(x["attempts"] >= 1 for x in m["recipients"])
                          else None)(r.api.get("/v1/messages/" + j["id"]).json),
                 what="a first (deferred) attempt")
    check_message_shape(m)
    for x in m["recipients"]:
        lr = x["last_reply"]
        assert x["state"] == "deferred" and is_time(x["next_attempt"]), x
        assert lr["code"] == 421 and lr["reply"].startswith("421 ") and lr["status"][0] == "4"
        assert lr["remote"] and "[127." in lr["remote"], x
    # the lower-case id works too; other accounts and unknown ids are 404
    expect_status(r.api.get("/v1/messages/" + j["id"].lower()), 200)
    expect_status(r.api.get("/v1/messages/" + j["id"], key=r.keys["carol"]), 404, "not_found")
    expect_status(r.api.get("/v1/messages/0000000000000001"), 404, "not_found")
    expect_status(r.api.get("/v1/messages/not-an-id"), 404, "not_found")
    # the queue shows what the API queued
    q = r.queue_list()
    assert [e.id for e in q] == [j["id"]]
    assert re.search(r"(?m)^helo:\s+api$", r.queue_show(j["id"]))


def test_message_same_members_deferred_then_finished(make_relevo, make_api_relevo, dns, mxs):
    """One message seen deferred (queued), then delivered (finished): the same
    members at every level, last_reply an object both times, never the log text."""
    mx = dest_mx(dns, mxs)
    mx.rcpt["carol@dest.test"] = ["421 4.2.0 carol is busy"]     # once, then accept
    r = make_api_relevo(delivering_relevo(make_relevo, dns, mxs, start=False,
                                          retry_schedule=[300]))
    j = send_ok(r, to=["carol@dest.test"])
    url = "/v1/messages/" + j["id"]
    q = wait_for(lambda: (lambda m: m if m["recipients"][0]["state"] == "deferred" and
                          m["recipients"][0]["time"] else None)(
                              expect_status(r.api.get(url), 200)),
                 what="the deferred recipient")
    check_message_shape(q)
    qr = q["recipients"][0]
    assert q["status"] == "queued" and qr["attempts"] == 1 and is_time(qr["next_attempt"])
    assert qr["last_reply"] == {"status": "4.2.0", "remote": qr["last_reply"]["remote"],
                                "reply": "421 4.2.0 carol is busy", "code": 421}, qr
    assert qr["last_reply"]["remote"].startswith("mx1.dest.test["), qr
    queue_ok(r, "flush", j["id"])
    f = wait_for(lambda: (lambda m: m if m["status"] == "finished" else None)(
        expect_status(r.api.get(url), 200)), what="the message to finish")
    check_message_shape(f)
    fr = f["recipients"][0]
    assert set(f) == set(q) and set(fr) == set(qr) and \
        set(fr["last_reply"]) == set(qr["last_reply"])
    assert fr["state"] == "delivered" and fr["attempts"] == 2 and fr["next_attempt"] is None
    assert fr["last_reply"]["code"] == 250 and fr["last_reply"]["status"] == "2.0.0"
    assert f["created"] == q["created"] and f["sender"] == q["sender"] == FROM


def test_finished_message_shows_its_final_outcome_before_its_events_are_stored(
        make_relevo, make_api_relevo, dns, mxs):
    """The spool finishes a message before its last events reach the store (here
    a second later: the evlog_slow seam). The finished view never lags: each
    recipient's state and last reply are the spool's final ones at once."""
    mx = dest_mx(dns, mxs)
    mx.rcpt_always["dave@dest.test"] = "550 5.1.1 no such user"
    r = make_api_relevo(delivering_relevo(make_relevo, dns, mxs, start=False), start=False)
    start_with_env(r, {"RELEVO_FAULT": "evlog_slow:1+"})
    j = send_ok(r, to=["carol@dest.test", "dave@dest.test"])
    url = "/v1/messages/" + j["id"]
    wait_for(lambda: r.queue_ids() == [] or None, what="the message to leave the queue")
    f = expect_status(r.api.get(url), 200)
    check_message_shape(f)
    assert f["status"] == "finished", f
    got = {x["address"]: x for x in f["recipients"]}
    assert got["carol@dest.test"]["state"] == "delivered", f
    assert got["carol@dest.test"]["last_reply"]["code"] == 250, f
    assert got["carol@dest.test"]["attempts"] == 1, f
    assert got["dave@dest.test"]["state"] == "bounced", f
    assert got["dave@dest.test"]["last_reply"] == {
        "status": "5.1.1", "remote": "mx1.dest.test[%s]" % mx.addr,
        "reply": "550 5.1.1 no such user", "code": 550}, f
    # and once the events are stored, the same answer
    g = wait_for(lambda: (lambda m: m if all(x["time"] for x in m["recipients"]) and
                          len(m["recipients"]) == 2 and
                          {x["state"] for x in m["recipients"]} == {"delivered", "bounced"}
                          else None)(expect_status(r.api.get(url), 200)),
                 what="the events to be stored")
    assert {x["address"]: (x["state"], x["last_reply"]) for x in g["recipients"]} == \
        {a: (x["state"], x["last_reply"]) for a, x in got.items()}


def test_stats(delivering):
    r, mx = delivering
    send_ok(r, to=["carol@dest.test", "dave@dest.test"])
    send_ok(r, to="erin@other.test")        # no such domain in the fake DNS: bounced
    send(r, **{"from": "carol@example.net"})     # 403: rejected
    mx.wait_messages(1)

    def total():
        s = expect_status(r.api.get("/v1/stats"), 200)
        row = s["stats"][0] if s["stats"] else {}
        return s if row.get("delivered") == 2 and row.get("rejected") == 1 and \
            row.get("accepted") == 3 and row.get("bounced", 0) + row.get("deferred", 0) >= 1 \
            else None
    s = conforms(wait_for(total, what="stats to count everything", timeout=30), "Stats")
    assert s["group"] == "total" and s["stats"][0]["key"] == "total"
    assert set(s["stats"][0]) >= {"accepted", "delivered", "deferred", "bounced", "expired",
                                  "suppressed", "rejected"}
    day = expect_status(r.api.get("/v1/stats?group=day"), 200)
    assert day["group"] == "day" and len(day["stats"]) == 1
    assert day["stats"][0]["key"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert day["stats"][0]["delivered"] == 2
    hour = expect_status(r.api.get("/v1/stats?group=hour"), 200)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d$", hour["stats"][0]["key"])
    dom = expect_status(r.api.get("/v1/stats?group=domain"), 200)
    rows = {x["key"]: x for x in dom["stats"]}
    assert rows["dest.test"]["delivered"] == 2 and rows["dest.test"]["accepted"] == 2
    assert rows["other.test"]["accepted"] == 1
    later = expect_status(r.api.get("/v1/stats?since=2999-01-01T00:00:00Z"), 200)
    assert all(v == 0 for row in later["stats"] for k, v in row.items() if k != "key")
    carol = expect_status(r.api.get("/v1/stats", key=r.keys["carol"]), 200)
    assert all(v == 0 for row in carol["stats"] for k, v in row.items() if k != "key")
    expect_status(r.api.get("/v1/stats?group=week"), 400, "invalid_parameter")


# ---------------------------------------------------------------------------
# suppressions
# ---------------------------------------------------------------------------

def test_suppressions(delivering):
    r, mx = delivering
    api = r.api
    j = expect_status(api.post("/v1/suppressions", {"address": "Dave@Dest.test",
                                                    "reason": "asked us to stop"}), 201)
    conforms(j, "SuppressionResult")
    assert j["address"] == "dave@dest.test" and j["added"] is True
    assert j["reason"] == "asked us to stop" and is_time(j["created"])
    # there already: 200, the entry as it was (its reason and time), added false
    again = expect_status(api.post("/v1/suppressions", {"address": "dave@dest.test",
                                                        "reason": "other"}), 200)
    assert again == dict(j, added=False), again
    expect_status(api.post("/v1/suppressions", {"address": "erin+news@dest.test"}), 201)
    expect_status(api.post("/v1/suppressions", {"address": "not an address"}), 400,
                  "invalid_address")
    expect_status(api.post("/v1/suppressions", {}), 400, "missing_field")
    expect_status(api.post("/v1/suppressions", {"address": "a@dest.test", "x": 1}), 400,
                  "unknown_field")
    expect_status(api.request("POST", "/v1/suppressions", raw=b"{"), 400, "invalid_json")
    lst = conforms(expect_status(api.get("/v1/suppressions"), 200), "SuppressionPage")
    assert [s["address"] for s in lst["suppressions"]] == ["dave@dest.test",
                                                           "erin+news@dest.test"]
    assert lst["suppressions"][0]["reason"] == "asked us to stop"
    assert lst["suppressions"][1]["reason"] == "manual"
    assert lst["next"] is None
    # one name, one meaning: a list entry is the POST answer without "added"
    assert lst["suppressions"][0] == {k: v for k, v in j.items() if k != "added"}
    # pagination, one at a time
    p1 = expect_status(api.get("/v1/suppressions?limit=1"), 200)
    assert [s["address"] for s in p1["suppressions"]] == ["dave@dest.test"] and p1["next"]
    p2 = expect_status(api.get("/v1/suppressions?limit=1&cursor=" + p1["next"]), 200)
    assert [s["address"] for s in p2["suppressions"]] == ["erin+news@dest.test"]
    assert p2["next"] is None
    # carol's list is her own
    assert expect_status(api.get("/v1/suppressions", key=r.keys["carol"]),
                         200)["suppressions"] == []
    # a message to a suppressed and a normal address: only the normal one is sent
    j = send_ok(r, to=["carol@dest.test", "DAVE@dest.test"])
    assert j["accepted"] == ["carol@dest.test"] and j["suppressed"] == ["DAVE@dest.test"]
    m = mx.wait_messages(1)[0]
    assert [a.lower() for a in m.rcpt_tos] == ["carol@dest.test"]
    assert b"DAVE@dest.test" in m.content           # still in To:, as written
    ev = wait_events(r, 1, message_id=j["id"], type="suppressed")
    assert ev[0]["recipient"] == "DAVE@dest.test" and ev[0]["user"] == "alice"
    wait_events(r, 1, message_id=j["id"], type="delivered")
    # every recipient suppressed: 202, nothing queued
    j2 = send_ok(r, to="dave@dest.test", cc="erin+news@dest.test")
    assert j2["accepted"] == [] and sorted(j2["suppressed"]) == ["dave@dest.test",
                                                                  "erin+news@dest.test"]
    wait_events(r, 2, message_id=j2["id"], type="suppressed")
    time.sleep(0.5)
    assert len(mx.messages) == 1 and r.queue_list() == []
    # a message never queued still reads with the same members
    m2 = check_message_shape(expect_status(r.api.get("/v1/messages/" + j2["id"]), 200))
    assert m2["status"] == "finished"
    assert sorted(x["state"] for x in m2["recipients"]) == ["suppressed", "suppressed"]
    assert_logged_as_in_api(r, all_events(r, message_id=j["id"]) +
                            all_events(r, message_id=j2["id"]))
    # removing: 200, then 404; the address is reachable again
    conforms(expect_status(api.delete("/v1/suppressions/" +
                                      urllib.parse.quote("erin+news@dest.test")), 200),
             "Deleted")
    expect_status(api.delete("/v1/suppressions/erin%2Bnews%40dest.test"), 404, "not_found")
    expect_status(api.delete("/v1/suppressions/dave@dest.test", key=r.keys["carol"]), 404)
    j3 = send_ok(r, to="erin+news@dest.test")
    assert j3["accepted"] == ["erin+news@dest.test"]
    mx.wait_messages(2)


# ---------------------------------------------------------------------------
# webhooks, openapi
# ---------------------------------------------------------------------------

def test_webhooks(api_relevo):
    r = api_relevo
    api = r.api
    w1 = expect_status(api.post("/v1/webhooks", {"url": "https://hooks.example.com/relevo"}),
                       201)
    assert re.match(r"^[0-9a-f]{64}$", w1["secret"]) and w1["events"] == []
    w2 = expect_status(api.post("/v1/webhooks", {"url": "http://203.0.113.9:9/h",
                                                 "secret": "s3cret-s3cret-s3cret",
                                                 "events": ["delivered", "bounced"]}), 201)
    assert "secret" not in w2 and w2["events"] == ["delivered", "bounced"]
    for bad, code in (({"url": "ftp://x"}, "invalid_field"), ({}, "missing_field"),
                      ({"url": "https://x", "events": ["nope"]}, "invalid_field"),
                      ({"url": "https://x", "secret": "short"}, "invalid_field"),
                      ({"url": "https://x", "hmm": 1}, "unknown_field"),
                      # the operator's network is out of bounds for accounts' webhooks
                      ({"url": "http://127.0.0.1:9/h"}, "invalid_field"),
                      ({"url": "http://localhost/h"}, "invalid_field"),
                      ({"url": "https://user:pw@10.1.2.3/h"}, "invalid_field"),
                      ({"url": "http://[::1]:8080/h"}, "invalid_field"),
                      ({"url": "http://[fd00::1]/h"}, "invalid_field"),
                      ({"url": "http://192.168.1.1/h"}, "invalid_field"),
                      ({"url": "http://169.254.169.254/latest"}, "invalid_field")):
        expect_status(api.post("/v1/webhooks", bad), 400, code)
    conforms(w1, "Webhook")
    lst = conforms(expect_status(api.get("/v1/webhooks"), 200), "WebhookList")["webhooks"]
    # the answer to POST is the list entry (created included), plus a made secret
    assert lst[0] == {k: v for k, v in w1.items() if k != "secret"} and is_time(w1["created"])
    assert lst[1] == w2, (lst, w2)
    assert [w["id"] for w in lst] == [w1["id"], w2["id"]]
    assert all("secret" not in w for w in lst)
    assert lst[1]["events"] == ["delivered", "bounced"] and lst[1]["url"] == "http://203.0.113.9:9/h"
    assert expect_status(api.get("/v1/webhooks", key=r.keys["carol"]), 200)["webhooks"] == []
    expect_status(api.delete("/v1/webhooks/%d" % w1["id"], key=r.keys["carol"]), 404)
    conforms(expect_status(api.delete("/v1/webhooks/%d" % w1["id"]), 200), "Deleted")
    expect_status(api.delete("/v1/webhooks/%d" % w1["id"]), 404, "not_found")
    expect_status(api.delete("/v1/webhooks/abc"), 404, "not_found")
    assert [w["id"] for w in expect_status(api.get("/v1/webhooks"), 200)["webhooks"]] == \
        [w2["id"]]


def test_openapi_document(api_relevo):
    r = api_relevo
    resp = r.api.get("/v1/openapi.json", key=None)
    doc = expect_status(resp, 200)
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "src", "http",
                           "openapi.json"), "rb") as f:
        assert json.loads(f.read()) == doc            # the embedded copy is the file
    assert doc["openapi"].startswith("3.")
    want = {"/v1/messages": {"post"}, "/v1/messages/{id}": {"get"}, "/v1/events": {"get"},
            "/v1/stats": {"get"}, "/v1/suppressions": {"get", "post"},
            "/v1/suppressions/{address}": {"delete"}, "/v1/webhooks": {"get", "post"},
            "/v1/webhooks/{id}": {"delete"}, "/v1/openapi.json": {"get"}, "/v1/": {"get"},
            "/v1/health": {"get"}}
    assert set(doc["paths"]) == set(want)
    for path, methods in want.items():
        assert set(doc["paths"][path]) == methods, path
    # every $ref resolves
    refs = re.findall(r'"\$ref": "#/([^"]+)"', json.dumps(doc))
    for ref in refs:
        node = doc
        for part in ref.split("/"):
            node = node[part]
    # every operation's parameters are what the handler accepts: order is known
    assert [p for p in doc["paths"]["/v1/events"]["get"]["parameters"]
            if p["name"] == "order"][0]["schema"]["enum"] == ["asc", "desc"]
    # a documented error is the shape every error has
    conforms(expect_status(r.api.get("/v1/events?order=newest"), 400, "invalid_parameter"),
             "Error")


def test_index(api_relevo):
    """GET /v1/ (the URL the demo's banner shows): a small JSON index, no key."""
    r = api_relevo
    version = r.cli_ok(["--version"]).out.split()[-1]
    j = conforms(expect_status(r.api.get("/v1/", key=None), 200), "Index")
    assert j == {"name": "relevo", "version": version, "api": "v1",
                 "openapi": "/v1/openapi.json"}, j
    expect_status(r.api.get(j["openapi"], key=None), 200)
    # with a key (even a wrong one) it is the same index
    assert expect_status(r.api.get("/v1/", key="rlv_nope"), 200) == j
    head = r.api.request("HEAD", "/v1/", key=None)
    assert head.status == 200, head
    expect_status(r.api.post("/v1/", {}, key=None), 405, "method_not_allowed")
    expect_status(r.api.get("/v1/?x=1", key=None), 400, "unknown_parameter")
    expect_status(r.api.get("/v2/", key=None), 404, "not_found")


def test_stop_while_idle_connections_are_open(api_relevo):
    r = api_relevo
    conn = http.client.HTTPConnection("127.0.0.1", r.ports["http"], timeout=5)
    conn.request("GET", "/v1/stats", headers={"Authorization": "Bearer " + r.keys["alice"]})
    assert conn.getresponse().read()
    # a keep-alive connection stays open; the daemon still stops promptly and cleanly
    t = time.monotonic()
    assert r.stop() == 0
    assert time.monotonic() - t < 8
    conn.close()
