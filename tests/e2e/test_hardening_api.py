"""
test_hardening_api.py - the HTTP API's guard in front of evhttp (issue 12, items 2
and 3), over real sockets: a large body without a valid key is refused before it
is read, request bodies in flight share http.memory_budget, a request head and a
body have total deadlines that trickling cannot stretch, connections are limited
in total and per client address, an idle keep-alive connection is closed, and
every refusal is the API's JSON error document, never libevent's HTML page.
Also: /v1/health probes the disk at most once a second, and `relevo status` names
the API and metrics listeners.
"""

import json
import os
import select
import socket
import time

import pytest

from conftest import expect_status
from test_hardening_helpers import rss_kb, start_measured
from test_status_metrics import immutable

HEAD = b"Host: relevo.test\r\n"


def connect(port, source="127.0.0.1", timeout=15):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        ctype = headers.get("content-type", "")
        self.json = json.loads(body) if ctype.startswith("application/json") else None

    def __repr__(self):
        return "<%d %r %r>" % (self.status, self.headers, self.body[:300])


def read_response(f):
    """One HTTP response from the file f (head, then Content-Length bytes); None
    when the connection closes (or is reset) first."""
    try:
        line = f.readline()
        if not line:
            return None
        status = int(line.split()[1])
        headers = {}
        while True:
            h = f.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, v = h.decode("latin-1").split(":", 1)
            headers[k.strip().lower()] = v.strip()
        body = f.read(int(headers.get("content-length", "0")))
    except (ConnectionResetError, BrokenPipeError):
        return None
    return Resp(status, headers, body)


def expect_error(resp, status, code):
    """The API's JSON error document (as conftest.expect_status checks it)."""
    assert resp is not None, "the connection closed without an answer"
    assert b"<HTML" not in resp.body.upper(), resp
    resp.headers.setdefault("content-type", "")
    expect_status(resp, status, code)


def closed_within(s, secs):
    """Seconds until the server closes s (reading and dropping what it sends),
    or None if it is still open after secs."""
    t0 = time.monotonic()
    s.settimeout(0.2)
    while time.monotonic() - t0 < secs:
        try:
            if s.recv(65536) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t0
    return None


def trickle_until_answer(s, data, interval=0.25, give_up=30):
    """Send data a byte every interval until the server answers or closes;
    seconds from the first byte to then."""
    t0 = time.monotonic()
    for b in data:
        try:
            s.sendall(bytes([b]))
        except OSError:
            break
        r, _, _ = select.select([s], [], [], interval)
        if r or time.monotonic() - t0 > give_up:
            break
    else:
        select.select([s], [], [], give_up)
    return time.monotonic() - t0


# ---------------------------------------------------------------------------
# item 3: total deadlines, the idle limit, connection limits
# ---------------------------------------------------------------------------

def test_a_trickled_head_is_cut_at_its_total_deadline(make_api_relevo):
    r = make_api_relevo(http={"timeout_headers": 2, "timeout": 30})
    s = connect(r.ports["http"])
    s.sendall(b"GET /v1/health HTTP/1.1\r\n" + HEAD)
    took = trickle_until_answer(s, b"X-Slow: " + b"a" * 400)
    # each byte arrives well within http.timeout (30 s): only the total counts
    assert 1.5 <= took < 8, took
    expect_error(read_response(s.makefile("rb")), 408, "request_timeout")
    assert closed_within(s, 5) is not None
    assert "event=http_refused" in r.stderr() and "status=408" in r.stderr()


def test_a_trickled_body_is_cut_at_its_total_deadline(make_api_relevo):
    r = make_api_relevo(http={"timeout_body": 2, "timeout": 30})
    s = connect(r.ports["http"])
    s.sendall(b"POST /v1/messages HTTP/1.1\r\n" + HEAD +
              b"Authorization: Bearer " + r.keys["alice"].encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: 3000\r\n\r\n")
    took = trickle_until_answer(s, b"{" + b" " * 2999)
    assert 1.5 <= took < 8, took
    expect_error(read_response(s.makefile("rb")), 408, "request_timeout")
    assert r.queue_list() == []


def test_an_idle_keepalive_connection_is_closed(make_api_relevo):
    r = make_api_relevo(http={"idle_timeout": 1})
    s = connect(r.ports["http"])
    f = s.makefile("rb")
    # keep-alive works: two requests in turn on one connection...
    for _ in range(2):
        s.sendall(b"GET /v1/health HTTP/1.1\r\n" + HEAD + b"\r\n")
        resp = read_response(f)
        assert resp is not None and resp.status == 200, resp
    # ...then, with nothing more to do, the server closes it
    took = closed_within(s, 8)
    assert took is not None and took < 6, took
    # a connection that never sends anything is closed the same way
    quiet = connect(r.ports["http"])
    took = closed_within(quiet, 8)
    assert took is not None and 0.5 <= took < 6, took
    assert "event=http_idle_closed" in r.stderr()


def test_pipelined_requests_are_answered_in_order(make_api_relevo):
    r = make_api_relevo()
    s = connect(r.ports["http"])
    f = s.makefile("rb")
    s.sendall(b"GET /v1/health HTTP/1.1\r\n" + HEAD + b"\r\n" +
              b"GET /v1/nope HTTP/1.1\r\n" + HEAD + b"\r\n" +
              b"GET /v1/ HTTP/1.1\r\n" + HEAD + b"\r\n")
    first, second, third = read_response(f), read_response(f), read_response(f)
    assert first.status == 200 and first.json["status"] == "ok", first
    expect_error(second, 404, "not_found")
    assert third.status == 200 and third.json["name"] == "relevo", third


def test_connections_per_client_address_are_limited(make_api_relevo):
    r = make_api_relevo(http={"max_connections_per_ip": 3})
    port = r.ports["http"]
    held = [connect(port) for _ in range(3)]
    time.sleep(0.3)
    over = connect(port)
    resp = read_response(over.makefile("rb"))
    expect_error(resp, 503, "too_many_connections")
    assert "too many connections from 127.0.0.1" in resp.json["error"]["message"], resp
    assert closed_within(over, 5) is not None
    # another address is not affected
    other = connect(port, source="127.0.0.2")
    other.sendall(b"GET /v1/health HTTP/1.1\r\n" + HEAD + b"\r\n")
    assert read_response(other.makefile("rb")).status == 200
    # and once one of the three goes, the first address gets in again
    held.pop().close()
    time.sleep(0.5)
    again = connect(port)
    again.sendall(b"GET /v1/health HTTP/1.1\r\n" + HEAD + b"\r\n")
    assert read_response(again.makefile("rb")).status == 200


def test_connections_in_total_are_limited(make_api_relevo):
    r = make_api_relevo(http={"max_connections": 4, "max_connections_per_ip": 100})
    port = r.ports["http"]
    held = [connect(port, source="127.0.0.%d" % (i + 1)) for i in range(4)]
    time.sleep(0.3)
    over = connect(port, source="127.0.0.9")
    expect_error(read_response(over.makefile("rb")), 503, "too_many_connections")
    for s in held:
        s.close()
    time.sleep(0.5)
    s = connect(port, source="127.0.0.9")
    s.sendall(b"GET /v1/health HTTP/1.1\r\n" + HEAD + b"\r\n")
    assert read_response(s.makefile("rb")).status == 200


# ---------------------------------------------------------------------------
# item 2: the key before the body, the memory budget
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("auth,says", [
    (b"", "an API key is required"),
    (b"Authorization: Bearer rlv_not_a_real_key_0000000000000000\r\n",
     "the API key is not valid"),
], ids=["no key", "a bad key"])
def test_a_large_body_without_a_valid_key_is_refused_before_it_is_read(make_api_relevo,
                                                                        auth, says):
    r = make_api_relevo()
    s = connect(r.ports["http"])
    # only the head: the answer cannot depend on reading 30 MB that never come
    s.sendall(b"POST /v1/messages HTTP/1.1\r\n" + HEAD + auth +
              b"Content-Type: application/json\r\nContent-Length: 30000000\r\n\r\n")
    resp = read_response(s.makefile("rb"))
    expect_error(resp, 401, "unauthorized")
    assert says in resp.json["error"]["message"], resp
    assert resp.headers.get("www-authenticate", "").startswith("Bearer"), resp
    assert closed_within(s, 6) is not None
    # a small body without a key still gets the dispatcher's ordinary 401
    resp = r.api.post("/v1/messages", {"x": 1}, key=None)
    expect_status(resp, 401, "unauthorized")


def test_keyless_bodies_do_not_grow_memory(make_api_relevo):
    r = make_api_relevo(start=False)
    start_measured(r)
    port = r.ports["http"]
    before = rss_kb(r)
    chunk = b"x" * (1 << 20)
    socks = []
    for _ in range(20):
        s = connect(port)
        s.sendall(b"POST /v1/messages HTTP/1.1\r\n" + HEAD +
                  b"Content-Type: application/json\r\nContent-Length: 39000000\r\n\r\n")
        try:
            for _ in range(4):
                s.sendall(chunk)
        except OSError:
            pass          # refused and closed: what we want
        socks.append(s)
    time.sleep(1)
    grown = rss_kb(r) - before
    for s in socks:
        s.close()
    # 80 MiB offered (the defect held ~39 MiB per connection); nothing is kept
    assert grown < 24 * 1024, "RSS grew by %d KiB" % grown


def test_a_body_over_max_request_size_is_413_before_it_is_read(make_api_relevo):
    r = make_api_relevo(http={"max_request_size": 65536})
    s = connect(r.ports["http"])
    s.sendall(b"POST /v1/messages HTTP/1.1\r\n" + HEAD +
              b"Authorization: Bearer " + r.keys["alice"].encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")
    resp = read_response(s.makefile("rb"))
    expect_error(resp, 413, "too_large")
    assert "the limit is 65536" in resp.json["error"]["message"], resp


def test_bodies_in_flight_share_the_memory_budget(make_api_relevo):
    r = make_api_relevo(http={"max_request_size": 65536, "memory_budget": 100000})
    port = r.ports["http"]
    key = r.keys["alice"].encode()

    def head(n):
        return (b"POST /v1/messages HTTP/1.1\r\n" + HEAD + b"Authorization: Bearer " + key +
                b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % n)

    a = connect(port)
    a.sendall(head(60000) + b"{")            # 60000 bytes announced, held open
    time.sleep(0.3)
    b = connect(port)
    b.sendall(head(60000))
    resp = read_response(b.makefile("rb"))
    expect_error(resp, 503, "busy")
    assert resp.headers.get("retry-after") == "1", resp
    assert "event=http_memory_budget_full" in r.stderr()
    # a small body still fits beside the held one
    resp = r.api.post("/v1/messages", {"x": 1})
    expect_status(resp, 400)
    # once the first goes, its share is free again
    a.close()
    time.sleep(0.5)
    c = connect(port)
    c.sendall(head(60000) + b"x" * 60000)
    expect_error(read_response(c.makefile("rb")), 400, "invalid_json")


def test_the_memory_budget_is_checked_against_max_request_size(make_relevo):
    r = make_relevo(start=False)
    r.config["http"] = {"max_request_size": 100000, "memory_budget": 50000}
    r.write_config()
    res = r.cli(["check-config"])
    assert res.rc != 0, res
    assert "http.memory_budget" in res.err and "max_request_size" in res.err, res


# ---------------------------------------------------------------------------
# JSON, never HTML
# ---------------------------------------------------------------------------

REFUSALS = [
    ("no request line", b"GARBAGE\r\n\r\n", 400, "bad_request"),
    ("a header without a colon", b"GET /v1/health HTTP/1.1\r\nBad Header\r\n\r\n", 400,
     "bad_request"),
    ("a folded header", b"GET /v1/health HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", 400,
     "bad_request"),
    ("HTTP/2 on the wire", b"GET /v1/health HTTP/2.0\r\n\r\n", 400, "bad_request"),
    ("a bad Content-Length", b"POST /v1/messages HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
     400, "bad_request"),
    ("two Content-Lengths", b"POST /v1/messages HTTP/1.1\r\nContent-Length: 5\r\n"
     b"Content-Length: 6\r\n\r\nhello", 400, "bad_request"),
    ("an unknown method", b"BREW /v1/health HTTP/1.1\r\n\r\n", 501, "not_implemented"),
    ("CONNECT", b"CONNECT example.org:443 HTTP/1.1\r\n\r\n", 501, "not_implemented"),
    ("a HEAD with a body", b"HEAD /v1/health HTTP/1.1\r\nContent-Length: 20\r\n\r\n"
     b"GET /v1/ HTTP/1.1\r\n\r\n", 400, "bad_request"),
    ("chunked", b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 411, "length_required"),
    ("a head over 64 KiB", b"GET /v1/health HTTP/1.1\r\nX-Big: " + b"a" * 70000 +
     b"\r\n\r\n", 431, "headers_too_large"),
]


@pytest.mark.parametrize("label,raw,status,code", REFUSALS, ids=[x[0] for x in REFUSALS])
def test_refusals_are_json_not_html(api_relevo, label, raw, status, code):
    s = connect(api_relevo.ports["http"])
    try:
        s.sendall(raw)
    except OSError:
        pass
    expect_error(read_response(s.makefile("rb")), status, code)


# ---------------------------------------------------------------------------
# /v1/health and relevo status
# ---------------------------------------------------------------------------

def test_health_probes_the_disk_at_most_once_a_second(make_api_relevo):
    r = make_api_relevo()
    spool = os.path.join(r.data_dir, "spool")
    if not immutable(spool, True):
        pytest.skip("chattr +i is not available here")
    try:
        time.sleep(1.2)
        t0 = time.monotonic()
        statuses = [r.api.get("/v1/health", key=None).status for _ in range(40)]
        took = time.monotonic() - t0
    finally:
        immutable(spool, False)
    assert set(statuses) == {503}, statuses
    probes = r.stderr().count("event=health_failed")
    # one probe (and one logged problem) per second at most, not one per request
    assert 1 <= probes <= int(took) + 2, (probes, took)


def test_status_names_the_api_and_metrics_listeners(make_api_relevo):
    r = make_api_relevo()
    addr = r.config["http"]["listen"][0]
    held = connect(r.ports["http"])
    time.sleep(0.3)
    text = r.cli_ok(["status"]).out
    assert any(addr in l and "http api" in l for l in text.splitlines()), text
    assert "api connections: " in text, text
    j = json.loads(r.cli_ok(["status", "--json"]).out)
    assert j["api"]["listeners"] == [addr], j
    assert j["api"]["connections"] >= 1, j
    assert isinstance(j["metrics"]["listeners"], list), j
    if "event=listening address=127.0.0.1:9025 mode=metrics" in r.stderr():
        assert j["metrics"]["listeners"] == ["127.0.0.1:9025"], j
        assert "metrics" in text
    held.close()
