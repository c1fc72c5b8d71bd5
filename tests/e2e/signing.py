"""
signing.py - DKIM seen from the receiving side, for every test of signed mail:
what `relevo domain records --zone` says to publish, the fake DNS serving it, and
an independent verifier (dkimpy, Debian's python3-dkim) checking the delivered
message. Holds no tests.

  zone_records    {name: [TXT values]} of `relevo domain records DOMAIN --zone`
  publish         those records into the fake DNS
  signatures      the DKIM-Signature fields of a message
  verify_all      dkimpy's verdict on each signature, against given records only
  dest_mx         a FakeMX for dest.test, found through its MX and A records
  signing_relevo  a delivering relevo signing for example.com (keys made by
                  `relevo domain add`, records published; unknown domains 451)
"""

import re

import dkim

from fakes import delivering_relevo


def zone_records(relevo, domain):
    """The TXT records of `relevo domain records DOMAIN --zone`, as {name: value}."""
    out = relevo.cli_ok(["domain", "records", domain, "--zone"]).out
    recs = {}
    for line in out.splitlines():
        m = re.match(r'^(\S+)\. 3600 IN TXT ((?:"[^"]*" ?)+)$', line)
        assert m, "not a zone line: %r" % line
        value = "".join(re.findall(r'"([^"]*)"', m.group(2)))
        assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', m.group(2)))
        recs.setdefault(m.group(1), []).append(value)
    return recs


def publish(dns, recs):
    """Serve every record of recs ({name: [TXT values]}) from the fake DNS."""
    for name, values in recs.items():
        for v in values:
            dns.txt(name, v)


def signatures(message):
    """The values of the DKIM-Signature fields of message (bytes), unfolded not."""
    return re.findall(rb"^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", message, re.M)


def verify_all(message, recs):
    """(dkimpy's verdict for every DKIM-Signature of message: a list of bools, None).
    Keys are looked up in recs only, never in the real DNS."""
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        vals = recs.get(name.rstrip("."), [])
        return vals[0].encode() if vals else None

    def one(i):
        try:
            return dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc)
        except dkim.ValidationError:
            return False          # e.g. "body hash mismatch": a failed verification

    n = len(signatures(message))
    return [one(i) for i in range(n)], None


def dest_mx(dns, mxs, domain="dest.test"):
    """A started FakeMX "mx1.DOMAIN" that DOMAIN's MX record points to."""
    mx = mxs.add("mx1." + domain)
    dns.mx(domain, mx.name)
    dns.a(mx.name, mx.addr)
    return mx


def signing_relevo(make_relevo, dns, mxs, domain="example.com", start=True, **dkim_conf):
    """A delivering relevo (fakes.delivering_relevo) with dkim.missing_key tempfail
    (and dkim_conf), DOMAIN added and its records published: (relevo, records).
    With start=False the caller may change more before starting it."""
    r = delivering_relevo(make_relevo, dns, mxs, start=False)
    r.config["dkim"] = {"missing_key": "tempfail", **dkim_conf}
    r.write_config()
    r.cli_ok(["domain", "add", domain])
    recs = zone_records(r, domain)
    publish(dns, recs)
    if start:
        r.start()
    return r, recs
