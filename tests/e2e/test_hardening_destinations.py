"""
test_hardening_destinations.py - issue 12, the delivery side: internal
destinations (loopback, private, link-local... after DNS resolution; one-label and
localhost MX names), delivery.allow_networks, mail loops back to this relay, and a
null MX among ordinary ones (RFC 7505).

The fake DNS (fakes.FakeDNS) publishes the records; fake MXs listen on 127.0.0.N,
which is internal: the harness's delivering_relevo allows 127.0.0.0/8, and these
tests take that away (allow_networks=[]) to see the refusal. A refusal is a bounce
(permanent, status 5.4.4; a loop 5.4.6; null MX 5.1.10) with no connection made.
"""

import pytest

from conftest import make_message
from fakes import delivering_relevo, log_events, relay_submit, wait_event, wait_queue_empty
from fakes import dns, mxs  # noqa: F401  (fixtures)

SENDER = "bob@sender.test"


def bounced(r, qid):
    ev = wait_event(r, "bounced", id=qid, timeout=20)
    return ev[0]


INTERNAL = [
    ("A 127.0.0.x", "a", None),
    ("A 10.0.0.1", "a", "10.0.0.1"),
    ("A 169.254.169.254", "a", "169.254.169.254"),
    ("A 0.0.0.0", "a", "0.0.0.0"),
    ("A 100.64.0.1", "a", "100.64.0.1"),
    ("A 224.0.0.1", "a", "224.0.0.1"),
    ("AAAA ::1", "aaaa", "::1"),
    ("AAAA ::ffff:127.0.0.x", "aaaa", "mapped"),
    ("AAAA fe80::1", "aaaa", "fe80::1"),
    ("AAAA fd00::1", "aaaa", "fd00::1"),
]


@pytest.mark.parametrize("label,rtype,ip", INTERNAL, ids=[c[0] for c in INTERNAL])
def test_mx_at_internal_address_bounces_without_connecting(make_relevo, dns, mxs, label,
                                                           rtype, ip):
    mx = mxs.add("mx.dest.test")
    dns.mx("dest.test", "mx.dest.test")
    if ip == "mapped":      # ::ffff:127.0.0.N, written in hex for dnslib
        a, b, c, d = (int(x) for x in mx.addr.split("."))
        addr = "::ffff:%x:%x" % (a << 8 | b, c << 8 | d)
    else:
        addr = mx.addr if ip is None else ip
    (dns.a if rtype == "a" else dns.aaaa)("mx.dest.test", addr)
    r = delivering_relevo(make_relevo, dns, mxs, allow_networks=[])
    qid = relay_submit(r, SENDER, ["x@dest.test"])
    ev = bounced(r, qid)
    assert ev["status"] == "5.4.4", ev["_line"]
    assert "internal address" in ev["_line"], ev["_line"]
    assert mx.connections == [] and mx.messages == []
    assert not log_events(r, "deferred", id=qid)


@pytest.mark.parametrize("name", ["localhost.", "localhost", "mailhub", "mx.localhost"])
def test_localhost_and_one_label_mx_names_bounce(make_relevo, dns, mxs, name):
    """Refused by name, even with 127.0.0.0/8 allowed."""
    mx = mxs.add(name.rstrip(".") or "localhost")
    dns.mx("dest.test", name)
    dns.a(name, mx.addr)
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["x@dest.test"])
    ev = bounced(r, qid)
    assert ev["status"] == "5.4.4", ev["_line"]
    assert "not a public host name" in ev["_line"], ev["_line"]
    assert mx.connections == [] and mx.messages == []


def test_internal_mx_skipped_for_an_allowed_one(make_relevo, dns, mxs):
    """Per address, not all or nothing: the preferred MX is internal and not
    allowed, the backup is in delivery.allow_networks and gets the mail."""
    best = mxs.add("mx1.dest.test")
    backup = mxs.add("mx2.dest.test")
    dns.mx("dest.test", "mx1.dest.test", 10)
    dns.mx("dest.test", "mx2.dest.test", 20)
    dns.a("mx1.dest.test", best.addr)
    dns.a("mx2.dest.test", backup.addr)
    r = delivering_relevo(make_relevo, dns, mxs, allow_networks=[backup.addr + "/32"])
    qid = relay_submit(r, SENDER, ["x@dest.test"])
    backup.wait_messages(1)
    wait_queue_empty(r)
    assert best.connections == [] and best.messages == []
    assert wait_event(r, "delivered", id=qid)[0]["remote"] == "mx2.dest.test[%s]" % backup.addr


def test_address_literal_recipient_from_relay_is_refused_at_delivery(make_relevo, dns, mxs):
    """The relay listener may take x@[127.0.0.N] (trusted clients); delivery still
    refuses the internal address unless allowed."""
    mx = mxs.add("literal")
    r = delivering_relevo(make_relevo, dns, mxs, allow_networks=[])
    qid = relay_submit(r, SENDER, ["x@[%s]" % mx.addr])
    ev = bounced(r, qid)
    assert ev["status"] == "5.4.4", ev["_line"]
    assert mx.connections == []


def test_address_literal_recipient_delivered_when_allowed(make_relevo, dns, mxs):
    mx = mxs.add("literal")
    r = delivering_relevo(make_relevo, dns, mxs)
    relay_submit(r, SENDER, ["x@[%s]" % mx.addr])
    mx.wait_messages(1)
    assert mx.messages[0].rcpt_tos == ["x@[%s]" % mx.addr]


def test_static_route_to_internal_host_is_not_restricted(make_relevo, dns, mxs):
    """A static route is the operator's own choice: no allow_networks needed."""
    mx = mxs.add("smarthost")
    r = delivering_relevo(make_relevo, dns, mxs, allow_networks=[],
                          routes={"dest.test": "[%s]:%d" % (mx.addr, mxs.port)})
    relay_submit(r, SENDER, ["x@dest.test"])
    mx.wait_messages(1)


# ---------------------------------------------------------------------------
# 5. Mail loops back to this relay
# ---------------------------------------------------------------------------

def test_mx_pointing_back_at_relevo_bounces_5_4_6_after_one_hop(make_relevo, dns, mxs):
    """dest.test's MX is this relevo's own relay listener: the greeting names our
    hostname, so delivery bounces at once (5.4.6) instead of going round."""
    r = delivering_relevo(make_relevo, dns, mxs, start=False)
    r.config["delivery"]["port"] = r.ports["relay"]
    r.write_config()
    r.start()
    dns.mx("dest.test", "mx.dest.test")
    dns.a("mx.dest.test", "127.0.0.1")
    qid = relay_submit(r, SENDER, ["x@dest.test"])
    ev = bounced(r, qid)
    assert ev["status"] == "5.4.6", ev["_line"]
    assert "loops back to myself" in ev["_line"], ev["_line"]
    # no second copy was accepted from ourselves
    assert len(log_events(r, "queued")) <= 2, log_events(r, "queued")   # ours + the DSN


def test_mx_greeting_with_our_hostname_bounces_5_4_6(make_relevo, dns, mxs):
    """Another host that greets as relay.test (our hostname) is taken for us."""
    mx = mxs.add("relay.test")
    dns.mx("dest.test", "relay.test")
    dns.a("relay.test", mx.addr)
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["x@dest.test"])
    ev = bounced(r, qid)
    assert ev["status"] == "5.4.6", ev["_line"]
    assert mx.messages == []


# ---------------------------------------------------------------------------
# 9. Null MX among ordinary MX records
# ---------------------------------------------------------------------------

def test_null_mx_among_ordinary_ones_bounces_5_1_10(make_relevo, dns, mxs):
    mx = mxs.add("mx.mixed.test")
    dns.null_mx("mixed.test")
    dns.mx("mixed.test", "mx.mixed.test", 10)
    dns.a("mx.mixed.test", mx.addr)
    r = delivering_relevo(make_relevo, dns, mxs)
    qid = relay_submit(r, SENDER, ["x@mixed.test"])
    ev = bounced(r, qid)
    assert ev["status"] == "5.1.10", ev["_line"]
    assert mx.connections == [] and mx.messages == []
