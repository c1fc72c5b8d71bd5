"""
test_intake.py - the three rules every intake keeps (issue 13, docs/decisions.md),
each checked through SMTP (submissions, AUTH), the HTTP API and `relevo sendmail`
(the local submission socket):

- a store error is a temporary failure: SMTP 451 4.3.0, HTTP 503, sendmail 75,
  and nothing is queued;
- events follow the durable commit: a failed commit leaves no "accepted" and no
  "suppressed" event;
- nothing is signed for a message that will not be queued: every recipient
  suppressed is still accepted (250, 202, exit 0) and relevo_dkim_signatures_total
  does not move, while one queued message does move it.

The store error comes from the RELEVO_FAULT seam "suppression" (the intake's one
batched suppression lookup fails as a SQLite I/O error would); the failed commit
from the "fsync" seam on the spool's first batch.
"""

import time

import pytest

from conftest import expect, expect_status, make_message
from fakes import delivering_relevo, log_events, wait_event, wait_for
from fakes import dns, mxs  # noqa: F401  (fixtures)
from test_api import all_events, send
from signing import publish, zone_records
from test_hardening_helpers import FSYNC_AT_START, start_with_env
from test_sendmail import EX_OK, EX_TEMPFAIL, local_submit, sendmail
from test_status_metrics import scrape, val, with_metrics

GONE = "gone@dest.test"      # on alice's suppression list
OK = "ok@dest.test"


@pytest.fixture
def intakes(make_relevo, make_api_relevo, dns, mxs):
    """Factory: a relevo with SMTP, the API, local submission, /metrics and a
    signing key for example.com, started with env (RELEVO_FAULT); GONE is on
    alice's suppression list (the seams do not touch adding to it)."""

    def make(env=None):
        mx = mxs.add("mx1.dest.test")
        dns.mx("dest.test", mx.name)
        dns.a(mx.name, mx.addr)
        r = delivering_relevo(make_relevo, dns, mxs, start=False)
        r.config["dkim"] = {"missing_key": "tempfail"}
        local_submit(r)
        make_api_relevo(r, start=False)
        with_metrics(r)
        r.cli_ok(["domain", "add", "example.com"])
        publish(dns, zone_records(r, "example.com"))
        n = len(log_events(r, "listening", mode="local"))
        start_with_env(r, env or {})
        wait_event(r, "listening", n=n + 1, mode="local")
        expect_status(r.api.post("/v1/suppressions", {"address": GONE}), 201)
        return r

    return make


def smtp_submit(r, rcpts, subject):
    """alice over submissions; the reply to the end of DATA."""
    msg = make_message(sender="alice@example.com", to=rcpts[0], subject=subject)
    with r.client("submissions") as c:
        c.login("alice")
        rep = c.mail_transaction("alice@example.com", rcpts, msg)
        c.quit()
    return rep


def submit_via(r, via, rcpts):
    """Submit one message from alice to rcpts through that intake; returns
    ("ok" | "tempfail" | other, what the client saw)."""
    if via == "smtp":
        rep = smtp_submit(r, rcpts, "via smtp")
        kind = {250: "ok", 451: "tempfail"}.get(rep.code, rep.code)
        if kind == "tempfail":
            expect(rep, 451, "4.3.0")
        return kind, " ".join(rep.lines)
    if via == "api":
        resp = send(r, to=list(rcpts))
        kind = {202: "ok", 503: "tempfail"}.get(resp.status, resp.status)
        if kind == "tempfail":
            assert resp.json["error"]["code"] == "unavailable", resp.json
            return kind, resp.json["error"]["message"]
        return kind, resp.json
    msg = "From: alice@example.com\nTo: %s\nSubject: via sendmail\n\nHello.\n" % rcpts[0]
    res = sendmail(r, list(rcpts), msg)
    kind = {EX_OK: "ok", EX_TEMPFAIL: "tempfail"}.get(res.rc, res.rc)
    if kind == "tempfail":
        assert "451" in res.err, res
    return kind, res.err


def settle_events(r):
    """The sink stores events in batches (up to 50 ms later): give it time."""
    time.sleep(1.0)
    return all_events(r)


def signatures(r):
    return val(scrape(r), "relevo_dkim_signatures_total")


VIAS = ["api"]


@pytest.mark.parametrize("via", VIAS)
def test_store_error_is_a_temporary_failure(intakes, via):
    r = intakes({"RELEVO_FAULT": "suppression:1+"})
    kind, said = submit_via(r, via, [OK])
    assert kind == "tempfail", said
    if via != "sendmail":
        assert "suppression list" in said, said
    assert r.queue_list() == []
    evs = settle_events(r)
    assert not [e for e in evs if e["type"] in ("accepted", "suppressed")], evs


@pytest.mark.parametrize("via", VIAS)
def test_failed_commit_leaves_no_events(intakes, via):
    """The spool's first fsync fails: a temporary failure, and no event names the
    message that does not exist (its suppressed recipient included)."""
    r = intakes({"RELEVO_FAULT": "fsync:%d" % (FSYNC_AT_START + 1)})
    kind, said = submit_via(r, via, [GONE, OK])
    assert kind == "tempfail", said
    assert r.queue_list() == []
    evs = settle_events(r)
    assert not [e for e in evs if e["type"] in ("accepted", "suppressed")], evs
    assert "event=commit_failed" in r.stderr()
    # the next one is committed: then both kinds of event are there
    kind, said = submit_via(r, via, [GONE, OK])
    assert kind == "ok", said
    wait_for(lambda: {e["type"] for e in all_events(r)} >= {"accepted", "suppressed"},
             what="accepted and suppressed events")


@pytest.mark.parametrize("via", VIAS)
def test_all_suppressed_is_accepted_and_never_signed(intakes, via):
    r = intakes()
    assert signatures(r) == 0
    kind, said = submit_via(r, via, [GONE])
    assert kind == "ok", said
    if via == "api":
        assert said["accepted"] == [] and said["suppressed"] == [GONE], said
    ev = wait_for(lambda: [e for e in all_events(r) if e["type"] == "suppressed"],
                  what="a suppressed event")
    assert [e["recipient"] for e in ev] == [GONE], ev
    assert signatures(r) == 0
    assert r.queue_list() == []
    assert not [e for e in all_events(r) if e["type"] == "accepted"]
    # with a recipient left it is signed (rsa-sha256 and ed25519-sha256), so the
    # counter above could have moved
    kind, said = submit_via(r, via, [GONE, OK])
    assert kind == "ok", said
    wait_for(lambda: signatures(r) == 2, what="one message signed")
