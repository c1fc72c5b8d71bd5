"""DKIM signing and domain onboarding, end to end: `relevo domain add` makes the
keys, `relevo domain records --zone` says what to publish, the fake DNS serves
exactly that, and an independent verifier (dkimpy, Debian's python3-dkim) checks
both signatures (rsa-sha256 and ed25519-sha256) on the mail the fake MX received.
"""
import json
import re

import pytest

from conftest import expect, make_message, submit
from fakes import delivering_relevo, wait_for
from fakes import dns, mxs  # noqa: F401  (fixtures)
# (other test files import these from here too)
from signing import dest_mx, publish, signatures, signing_relevo, verify_all, zone_records  # noqa: F401

FROM = "alice@example.com"


AWKWARD = (b"Line one.\r\n"
           b".leading dot\r\n"
           b"..two dots\r\n"
           b"trailing spaces   \r\n"
           b"\ttab and trailing tab\t\r\n"
           b"\r\n\r\n"
           b"8-bit: caf\xc3\xa9 \xe2\x82\xac\r\n"
           b"long " + b"x" * 900 + b"\r\n"
           b"last line without newline")


@pytest.fixture(name="signing_relevo")
def signing_relevo_fixture(make_relevo, dns, mxs):
    mx = dest_mx(dns, mxs)
    r, recs = signing_relevo(make_relevo, dns, mxs)
    return r, mx, recs


def send(r, body=AWKWARD, subject="=?UTF-8?B?w6lsw6k=?= signed"):
    msg = make_message(sender=FROM, to="carol@dest.test", subject=subject, body=body,
                       extra_headers=["Content-Type: text/plain; charset=utf-8",
                                      "Content-Transfer-Encoding: 8bit"])
    qid, _ = submit(r, sender=FROM, rcpts=("carol@dest.test",), message=msg, user="alice",
                    mode="submissions")
    return qid


def test_both_signatures_verify_and_tampering_breaks_them(signing_relevo):
    r, mx, recs = signing_relevo
    send(r)
    mx.wait_messages(1)
    got = mx.messages[0].content
    sigs = signatures(got)
    assert len(sigs) == 2, got[:2000]
    algs = sorted(re.search(rb"a=([a-z0-9-]+)", s).group(1) for s in sigs)
    assert algs == [b"ed25519-sha256", b"rsa-sha256"]
    for s in sigs:
        assert b"d=example.com" in s and b"c=relaxed/relaxed" in s
        assert not re.search(rb";\s*l=", s), s
        h = re.search(rb"h=([^;]*)", s).group(1).replace(b" ", b"").replace(b"\r\n", b"")
        h = re.sub(rb"\s", b"", h).lower().split(b":")
        assert h.count(b"from") == 2, h          # From over-signed
        for name in (b"to", b"subject", b"date", b"message-id", b"content-type"):
            assert name in h, (name, h)
    ok, _ = verify_all(got, recs)
    assert ok == [True, True], ok

    tampered = got.replace(b"Line one.", b"Line 0ne.")
    assert verify_all(tampered, recs)[0] == [False, False]
    tampered = re.sub(rb"(?m)^Subject: ", b"Subject: Re: ", got, count=1)
    assert verify_all(tampered, recs)[0] == [False, False]


@pytest.mark.parametrize("body", [
    b"",
    b".\r\n..\r\n.x\r\n",
    b"no final newline",
    b"trailing whitespace \t \r\n\r\n\r\n",
    b"a" * 990 + b"\r\n" + b"b" * 990,
])
def test_awkward_bodies_verify(signing_relevo, body):
    r, mx, recs = signing_relevo
    send(r, body=body, subject="plain subject")
    mx.wait_messages(1)
    ok, _ = verify_all(mx.messages[0].content, recs)
    assert ok == [True, True], (ok, mx.messages[0].content[-300:])


def test_missing_key_is_a_temporary_failure(make_relevo, dns, mxs):
    r = delivering_relevo(make_relevo, dns, mxs, start=False)
    r.config["dkim"] = {"missing_key": "tempfail"}
    r.write_config()
    r.start()
    msg = make_message(sender=FROM, to="carol@dest.test")
    with r.client("submissions") as c:
        c.login("alice")
        reply = c.mail_transaction(FROM, ["carol@dest.test"], msg)
        expect(reply, 451, "4.7.5")
        assert "relevo domain add example.com" in str(reply), reply
    assert r.queue_list() == []
    with open(r.stderr_path, encoding="utf-8", errors="replace") as f:
        assert "event=dkim_no_key domain=example.com" in f.read()


def test_rotation_signs_with_new_selectors_once_active(signing_relevo, dns):
    """rotate -> pending (still published, not signing; test_dkim_keys.py), then
    activate: the new selectors sign, the old ones stay published (retiring)."""
    r, mx, recs = signing_relevo
    old = {n for n in recs if "._domainkey." in n}
    r.cli_ok(["domain", "rotate", "example.com"])
    recs2 = zone_records(r, "example.com")
    keys2 = {n for n in recs2 if "._domainkey." in n}
    assert old < keys2 and len(keys2) == 4          # old selectors still listed
    publish(dns, {n: v for n, v in recs2.items() if n not in recs})
    new = {n.split("._domainkey.")[0] for n in keys2 - old}
    for sel in sorted(new):
        r.cli_ok(["domain", "activate", "example.com", sel])
    send(r, body=b"after rotation\r\n", subject="rotated")
    mx.wait_messages(1)
    got = mx.messages[-1].content
    sels = {re.search(rb"s=([A-Za-z0-9._-]+)", s).group(1).decode() for s in signatures(got)}
    assert sels == new, (sels, new)
    assert verify_all(got, recs2)[0] == [True, True]
    assert {n for n in zone_records(r, "example.com") if "._domainkey." in n} == keys2
    # an active key cannot be retired
    res = r.cli(["domain", "retire-key", "example.com", sorted(new)[0]])
    assert res.rc == 1 and "rotate" in res.err


# ---------------------------------------------------------------------------
# relevo domain check, relevo spf eval
# ---------------------------------------------------------------------------

@pytest.fixture
def onboarded(make_relevo, dns, mxs):
    """A relevo sending from 127.0.0.9 with example.com added (not yet published)."""
    r = delivering_relevo(make_relevo, dns, mxs, start=False, source_address="127.0.0.9")
    r.write_config()
    r.cli_ok(["domain", "add", "example.com"])
    return r, zone_records(r, "example.com")


def check(r, *extra):
    res = r.cli(["domain", "check", "example.com"] + list(extra))
    return res


def test_domain_check_all_right(onboarded, dns):
    r, recs = onboarded
    assert recs["example.com"] == ["v=spf1 ip4:127.0.0.9 ~all"]
    assert recs["_dmarc.example.com"][0].startswith("v=DMARC1; p=none")
    publish(dns, recs)
    res = check(r)
    assert res.rc == 0, res
    lines = res.out.splitlines()
    assert sum(1 for l in lines if l.startswith("dkim  ok")) == 2, res.out
    assert any(l.startswith("spf   pass") and "127.0.0.9" in l for l in lines), res.out
    assert any(l.startswith("dmarc ok") for l in lines), res.out
    js = json.loads(check(r, "--json").out)
    assert js["ok"] is True and js["domain"] == "example.com"
    assert sorted(c["check"] for c in js["checks"]) == ["dkim", "dkim", "dmarc", "spf"]


@pytest.mark.parametrize("breakage,expect_line", [
    ("no_dkim", r"^dkim  missing"),
    ("wrong_dkim", r"^dkim  mismatch"),
    ("spf_fail", r"^spf   fail\s+127\.0\.0\.9"),
    ("two_spf", r"^spf   permerror"),
    ("no_dmarc", r"^dmarc missing"),
    ("spf_include_loop", r"^spf   permerror"),
])
def test_domain_check_finds_broken_zones(onboarded, dns, breakage, expect_line):
    r, recs = onboarded
    recs = dict(recs)
    dkim_names = sorted(n for n in recs if "._domainkey." in n)
    if breakage == "no_dkim":
        del recs[dkim_names[0]]
    elif breakage == "wrong_dkim":
        other = recs[dkim_names[0]][0]
        recs[dkim_names[0]] = [re.sub(r"p=([A-Za-z0-9+/]{8})", "p=AAAAAAAA", other)]
    elif breakage == "spf_fail":
        recs["example.com"] = ["v=spf1 ip4:192.0.2.1 -all"]
    elif breakage == "two_spf":
        recs["example.com"] = ["v=spf1 ip4:127.0.0.9 ~all", "v=spf1 -all"]
    elif breakage == "no_dmarc":
        del recs["_dmarc.example.com"]
    elif breakage == "spf_include_loop":
        recs["example.com"] = ["v=spf1 include:example.com ~all"]
    publish(dns, recs)
    res = check(r)
    assert res.rc == 1, res
    assert re.search(expect_line, res.out, re.M), res.out
    assert json.loads(check(r, "--json").out)["ok"] is False


@pytest.mark.parametrize("ip,sender,result", [
    ("192.0.2.10", "someone@spf.test", "pass"),
    ("198.51.100.7", "someone@spf.test", "pass"),        # through the include
    ("203.0.113.5", "someone@spf.test", "softfail"),     # include fails: no match, ~all
    ("192.0.2.10", "x@hard.test", "fail"),
    ("192.0.2.10", "x@none.test", "none"),
])
def test_spf_eval_cli(make_relevo, dns, mxs, ip, sender, result):
    dns.txt("spf.test", "v=spf1 ip4:192.0.2.10 include:_inc.spf.test ~all")
    dns.txt("_inc.spf.test", "v=spf1 ip4:198.51.100.0/24 -all")
    dns.txt("hard.test", "v=spf1 -all")
    dns.a("none.test", "192.0.2.1")
    r = delivering_relevo(make_relevo, dns, mxs, start=False)
    r.write_config()
    res = r.cli_ok(["spf", "eval", ip, sender, "mail.example.net"])
    assert res.out.splitlines()[0] == result, res.out
