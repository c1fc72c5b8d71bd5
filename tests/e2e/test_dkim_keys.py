"""
test_dkim_keys.py - DKIM key rotation in the safe order, and the domain and
user commands around it (issue 11).

  rotate      `domain rotate` makes the next pair pending: `domain records`
              publishes it beside the active keys, `domain list` says so, and
              mail is still signed by the old selectors only (dkimpy checks the
              delivered message against the fake DNS).
  activate    without --force it looks in DNS first (the fake DNS): refused while
              the record is missing, done once it is published; the new key
              signs the next message at once (the CLI tells the daemon), the old
              one is retiring, still published.
  watch       the daemon activates a published pending key by itself
              (dkim.pending_check_interval: 1 s here).
  retire      a retiring key cannot be retired before dkim.retire_after (the
              message says when); with retire_after 0 it can; a pending key can
              be removed at once; an active one never.
  del         `domain del` refuses while accounts send as the domain (naming
              them), --force deletes it; the key directory goes with it.
  user add    `user add NAME --domain D` registers an unknown D and prints the
              records to publish.
"""

import os
import re

import pytest

from fakes import log_events, wait_event, wait_for
from fakes import dns, mxs  # noqa: F401  (fixtures)
from signing import dest_mx, publish, signatures, signing_relevo, verify_all, zone_records
from test_dkim import FROM, send


def selectors_of(message):
    return {re.search(rb"s=([A-Za-z0-9._-]+)", s).group(1).decode()
            for s in signatures(message)}


def dkim_names(recs):
    return {n.split("._domainkey.")[0] for n in recs if "._domainkey." in n}


def states(r, domain="example.com"):
    """{selector: state} from `relevo domain list`."""
    out = r.cli_ok(["domain", "list"]).out
    line = [l for l in out.splitlines() if l.split("\t")[0] == domain]
    assert line, out
    return dict(re.findall(r"(\S+)\([a-z0-9-]+,([a-z]+)\)", line[0]))


@pytest.fixture
def signing(make_relevo, dns, mxs):
    """A delivering relevo with example.com added and published, running."""
    mx = dest_mx(dns, mxs)

    def make(**dkim):
        r, recs = signing_relevo(make_relevo, dns, mxs, **dkim)
        return r, mx, recs
    return make


def delivered_selectors(r, mx, n, subject):
    send(r, body=b"%s\r\n" % subject.encode(), subject=subject)
    mx.wait_messages(n)
    return mx.messages[n - 1].content


def test_rotate_is_pending_then_activate_checks_dns(signing, dns):
    r, mx, recs = signing()
    old = dkim_names(recs)
    res = r.cli_ok(["domain", "rotate", "example.com"])
    assert "pending" in res.out and "domain activate" in res.out, res.out
    recs2 = zone_records(r, "example.com")
    new = dkim_names(recs2) - old
    assert len(new) == 2 and old < dkim_names(recs2), recs2      # both published
    st = states(r)
    assert {st[s] for s in old} == {"active"} and {st[s] for s in new} == {"pending"}, st
    plain = r.cli_ok(["domain", "records", "example.com"]).out
    assert plain.count("pending: publish it") == 2, plain

    # nothing signs with the pending keys
    got = delivered_selectors(r, mx, 1, "after rotate")
    assert selectors_of(got) == old, selectors_of(got)
    assert verify_all(got, recs)[0] == [True, True]

    # activate without --force: refused while DNS does not show it
    rsa_new = [s for s in new if s.startswith("rsa-")][0]
    res = r.cli(["domain", "activate", "example.com", rsa_new])
    assert res.rc == 1, res
    assert "not published" in res.err and "--force" in res.err, res.err
    assert states(r)[rsa_new] == "pending"

    # a record with another key is a mismatch, still refused
    name = "%s._domainkey.example.com" % rsa_new
    ed_new = [s for s in new if s.startswith("ed-")][0]
    dns.txt(name, recs2["%s._domainkey.example.com" % ed_new][0])
    res = r.cli(["domain", "activate", "example.com", rsa_new])
    assert res.rc == 1 and "mismatch" in res.err, res

    # published: activated; the RSA key it replaces is retiring, Ed25519 untouched
    publish(dns, {name: recs2[name]})
    res = r.cli_ok(["domain", "activate", "example.com", rsa_new])
    rsa_old = [s for s in old if s.startswith("rsa-")][0]
    ed_old = [s for s in old if s.startswith("ed-")][0]
    assert "retiring" in res.out and rsa_old in res.out, res.out
    st = states(r)
    assert (st[rsa_new], st[rsa_old], st[ed_old], st[ed_new]) == \
        ("active", "retiring", "active", "pending"), st
    assert dkim_names(zone_records(r, "example.com")) == old | new   # all still published

    # the running daemon signs with the new RSA key at once
    got = delivered_selectors(r, mx, 2, "after activate")
    assert selectors_of(got) == {rsa_new, ed_old}, selectors_of(got)
    assert verify_all(got, recs2)[0] == [True, True]
    assert log_events(r, "dkim_keys_changed"), "the CLI did not tell the daemon"

    # --force activates without looking (the Ed25519 record is not published)
    res = r.cli_ok(["domain", "activate", "example.com", ed_new, "--force"])
    assert states(r)[ed_old] == "retiring"
    # activating again: it is not pending any more
    res = r.cli(["domain", "activate", "example.com", rsa_old])
    assert res.rc == 1 and "retiring" in res.err, res


def test_daemon_activates_published_pending_keys(signing, dns):
    r, mx, recs = signing(pending_check_interval=1)
    old = dkim_names(recs)
    r.cli_ok(["domain", "rotate", "example.com"])
    recs2 = zone_records(r, "example.com")
    new = dkim_names(recs2) - old
    # not published yet: the daemon looks and leaves them pending
    wait_event(r, "dkim_key_pending", n=2)
    assert set(states(r).values()) == {"active", "pending"}
    publish(dns, {n: v for n, v in recs2.items() if n not in recs})
    for sel in new:
        wait_event(r, "dkim_key_activated", selector=sel, by="dns")
    st = states(r)
    assert {st[s] for s in new} == {"active"} and {st[s] for s in old} == {"retiring"}, st
    got = delivered_selectors(r, mx, 1, "after the daemon activated")
    assert selectors_of(got) == new, selectors_of(got)
    assert verify_all(got, recs2)[0] == [True, True]


def test_retire_waits_for_retire_after(signing, dns):
    r, mx, recs = signing()
    old = dkim_names(recs)
    r.cli_ok(["domain", "rotate", "example.com"])
    new = dkim_names(zone_records(r, "example.com")) - old
    for sel in new:
        r.cli_ok(["domain", "activate", "example.com", sel, "--force"])
    victim = sorted(old)[0]
    res = r.cli(["domain", "retire-key", "example.com", victim])
    assert res.rc == 1, res
    assert "can be retired from 20" in res.err and "dkim.retire_after" in res.err, res.err
    assert victim in states(r)
    # an active key never
    res = r.cli(["domain", "retire-key", "example.com", sorted(new)[0]])
    assert res.rc == 1 and "still signs" in res.err, res
    # with retire_after 0 the retiring keys go, record and file
    r.config["dkim"]["retire_after"] = "0"
    r.write_config()
    key_file = os.path.join(r.data_dir, "keys", "example.com", victim + ".pem")
    assert os.path.exists(key_file)
    r.cli_ok(["domain", "retire-key", "example.com", victim])
    assert victim not in states(r)
    assert victim not in dkim_names(zone_records(r, "example.com"))
    assert not os.path.exists(key_file)
    # a pending key (never signed) can be removed at once; a second rotate
    # is refused while keys are pending
    r.config["dkim"]["retire_after"] = "7d"
    r.write_config()
    r.cli_ok(["domain", "rotate", "example.com"])
    res = r.cli(["domain", "rotate", "example.com"])
    assert res.rc == 1 and "already has pending keys" in res.err, res
    pending = [s for s, v in states(r).items() if v == "pending"]
    assert len(pending) == 2
    for sel in pending:
        res = r.cli_ok(["domain", "retire-key", "example.com", sel])
        assert "never signed" in res.out
    assert "pending" not in states(r).values()


def test_domain_del_refuses_while_accounts_use_it(make_relevo):
    r = make_relevo(start=False)                # alice sends as example.com
    r.cli_ok(["user", "add", "bob", "--domain", "example.com"], stdin="pw-bob\n")
    keydir = os.path.join(r.data_dir, "keys", "example.com")
    assert os.path.isdir(keydir)                 # registered by user add (see below)
    res = r.cli(["domain", "del", "example.com"])
    assert res.rc == 1, res
    assert "alice" in res.err and "bob" in res.err and "--force" in res.err, res.err
    assert "example.com" in r.cli_ok(["domain", "list"]).out
    res = r.cli_ok(["domain", "del", "example.com", "--force"])
    assert "example.com" not in r.cli_ok(["domain", "list"]).out
    assert not os.path.exists(keydir), os.listdir(keydir)
    # a domain nobody uses goes at once, directory included
    r.cli_ok(["domain", "add", "spare.test"])
    spare = os.path.join(r.data_dir, "keys", "spare.test")
    assert len(os.listdir(spare)) == 2
    r.cli_ok(["domain", "del", "spare.test"])
    assert not os.path.exists(spare)
    res = r.cli(["domain", "del", "spare.test"])
    assert res.rc == 1 and "not registered" in res.err, res


def test_user_add_registers_its_domain(make_relevo):
    r = make_relevo(start=False, users=False)
    res = r.cli_ok(["user", "add", "dave", "--domain", "new.test"], stdin="pw-dave\n")
    assert "domain new.test added" in res.out, res.out
    assert re.search(r"rsa-\d{8}\._domainkey\.new\.test  TXT", res.out), res.out
    assert re.search(r"ed-\d{8}\._domainkey\.new\.test  TXT", res.out), res.out
    assert "_dmarc.new.test" in res.out
    assert set(states(r, "new.test").values()) == {"active"}
    # a registered domain is left as it is
    before = states(r, "new.test")
    res = r.cli_ok(["user", "add", "erin", "--domain", "new.test"], stdin="pw-erin\n")
    assert "_domainkey" not in res.out, res.out
    assert states(r, "new.test") == before
