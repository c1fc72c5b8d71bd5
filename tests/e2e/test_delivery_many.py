"""
test_delivery_many.py - one message to 1,000 recipients (issue 13, "Outcomes as
data"): every recipient delivered or bounced and recorded once, one DSN for the
refused ones, and the cost linear in the recipients.

Completing one recipient must not copy the whole envelope (the cost of a message
grew with the square of its recipients). This is checked structurally, not by a
timing: relevo_spool_envelope_copies_total (GET /metrics) counts the deep copies
of envelopes the daemon makes; a 1,000-recipient message may take a few (one per
delivery attempt and its bounce), never one per recipient. The wall and CPU time
are printed (pytest -s) for the record, not asserted.
"""

import os
import time

from fakes import DSN, delivering_relevo, log_events, relay_submit, wait_for, wait_queue_empty
from fakes import dns, mxs  # noqa: F401  (fixtures)
from test_status_metrics import domain_mx, scrape, val, with_metrics

SENDER = "bob@sender.test"
N = int(os.environ.get("RELEVO_TEST_RECIPIENTS", "1000"))   # more: a measurement
REFUSED = 10            # every 100th recipient is refused: one DSN lists them all


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_thousand_recipients_delivered_recorded_and_linear(make_relevo, dns, mxs):
    dest = domain_mx(dns, mxs, "dest.test")
    back = domain_mx(dns, mxs, "sender.test")
    rcpts = ["r%04d@dest.test" % i for i in range(N)]
    refused = rcpts[::N // REFUSED]
    for a in refused:
        dest.rcpt_always[a] = "550 5.1.1 no such user"
    r = delivering_relevo(make_relevo, dns, mxs, start=False)
    r.config["smtp"]["max_recipients"] = N
    r = with_metrics(r)
    r.start()
    before = scrape(r)
    cpu0, t0 = cpu_seconds(r.proc.pid), time.monotonic()

    qid = relay_submit(r, SENDER, rcpts)
    wait_for(lambda: sum(len(m.rcpt_tos) for m in dest.messages) == N - REFUSED,
             timeout=120, what="%d recipients at the MX" % (N - REFUSED))
    back.wait_messages(1, timeout=60)
    wait_queue_empty(r, timeout=60)
    elapsed, cpu = time.monotonic() - t0, cpu_seconds(r.proc.pid) - cpu0
    after = scrape(r)
    copies = val(after, "relevo_spool_envelope_copies_total") - \
        val(before, "relevo_spool_envelope_copies_total")
    print("\n%d recipients: %.2f s from submission to an empty queue, %.2f s CPU of "
          "relevo, %d envelope copies" % (N, elapsed, cpu, copies))

    # every recipient at the MX exactly once, the refused ones never
    got = [a for m in dest.messages for a in m.rcpt_tos]
    assert sorted(got) == sorted(set(rcpts) - set(refused))
    # every outcome recorded once: delivered or bounced, with its reply
    delivered = log_events(r, "delivered", id=qid)
    bounced = log_events(r, "bounced", id=qid)
    assert len(delivered) == N - REFUSED and len(bounced) == REFUSED, \
        (len(delivered), len(bounced))
    assert {e["rcpt"] for e in bounced} == {"<%s>" % a for a in refused}
    assert all(e["status"] == "5.1.1" and e["reply"] == "550 5.1.1 no such user"
               for e in bounced), bounced[0]
    assert all(e["status"] == "2.0.0" for e in delivered), delivered[0]
    # one DSN, naming exactly the refused recipients
    assert len(back.messages) == 1, back.messages
    dsn = DSN(back.messages[0].content)
    assert sorted(dsn.final_recipients()) == sorted(refused)
    assert dsn.recipient(refused[0])["Status"] == "5.1.1"
    assert val(after, "relevo_delivery_attempts_total", result="delivered") - \
        val(before, "relevo_delivery_attempts_total", result="delivered") == N - REFUSED + 1     # and the DSN
    # linear: a handful of envelope copies (attempts of up to 256 recipients, the
    # bounce), not one per recipient
    assert 0 < copies <= 40, copies
