"""
test_hardening_crash.py - kill -9 at random moments under load, many times over
(issue 5, "Crashes").

Several clients submit continuously over the relay listener while relevo delivers
to a fake MX (fakes.FakeMX, aiosmtpd on 127.0.0.2) through a static route; the
daemon is killed with SIGKILL at a random moment, restarted, killed again ... At
the end, with one last daemon left running until the queue is empty:

  - every message that got a 250 has been delivered at least once;
  - every delivered message is one a client sent, complete: the delivered bytes are
    relevo's Received: header followed by exactly the bytes submitted;
  - duplicates (a delivery in flight at the crash, repeated after restart) are
    allowed and reported, not failed on.

A second run does the same with 64 KiB spool segments (RELEVO_SPOOL_SEGMENT_MAX,
a variable for tests only; the daemon's default is 64 MiB, which a test never
fills): nearly every commit then starts a new segment and delivered segments are
deleted (or compacted) all the time, so the kills land during rotations and
deletions too. The logs prove that both happened.

The seed is printed; RELEVO_CRASH_SEED=N replays a run.
"""

import os
import random
import re
import threading
import time

from conftest import Closed, expect
from fakes import mxs, wait_for  # noqa: F401  (fixture)
from test_hardening_helpers import relay_message, start_with_env

ROUNDS = 8
BUDGET = 45.0                   # seconds for the kill rounds (the drain comes on top)
CLIENTS = 4
MID_RE = re.compile(rb"^Message-ID: <([^>]+)>\r$", re.M | re.I)


class Load:
    """Client threads submitting until stopped; records what was sent and acked."""

    def __init__(self, relevo, rnd, tag):
        self.relevo = relevo
        self.rnd = rnd
        self.tag = tag
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = {}          # mid -> message bytes (every transaction started)
        self.acked = {}         # mid -> queue id (got 250)
        self.other = []         # unexpected final replies (not 250, not a crash)
        self.threads = [threading.Thread(target=self._client, args=(n, rnd.random()))
                        for n in range(CLIENTS)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "a client thread hangs"

    def _client(self, n, seed):
        rnd = random.Random(seed)
        i = 0
        try:
            with self.relevo.client("relay", timeout=10) as c:
                c.ehlo()
                while not self.stop.is_set():
                    mid = "%s-c%d-%d@load.test" % (self.tag, n, i)
                    i += 1
                    m = relay_message(mid, size=rnd.choice((300, 3000, 30000, 120000)))
                    with self.lock:
                        self.sent[mid] = m
                    c.send(b"MAIL FROM:<load@sender.test>\r\nRCPT TO:<rcpt@dest.test>\r\n"
                           b"DATA\r\n")
                    for code in (250, 250, 354):
                        expect(c.reply(), code)
                    c.send(m + b".\r\n")
                    r = c.reply()
                    if r.code == 250 and r.queued_id:
                        with self.lock:
                            self.acked[mid] = r.queued_id
                    else:
                        self.other.append((mid, repr(r)))
        except (Closed, OSError, TimeoutError):
            pass                # the daemon was killed under us
        except AssertionError as e:
            if "connection closed" not in str(e):
                self.other.append(("assert", str(e)[:300]))


def kill9_rounds(make_relevo, mxs, env=None):
    """Kill rounds under load, then drain and check (see the file comment).
    Returns the daemon (stopped runs' logs are in its stderr)."""
    env = env or {}
    seed = int(os.environ.get("RELEVO_CRASH_SEED", random.randrange(1 << 30)))
    print("RELEVO_CRASH_SEED=%d" % seed)
    rnd = random.Random(seed)
    mx = mxs.add("mx.dest.test")
    r = make_relevo(start=False, delivery={
        "port": mxs.port, "routes": {"*": "[%s]:%d" % (mx.addr, mxs.port)},
        "retry_schedule": [1], "max_messages_per_connection": 20})

    sent, acked, other = {}, {}, []
    t0 = time.monotonic()
    rounds = 0
    while rounds < ROUNDS and time.monotonic() - t0 < BUDGET:
        start_with_env(r, env)
        load = Load(r, rnd, "r%d" % rounds)
        load.start()
        time.sleep(rnd.uniform(0.2, 3.0))
        r.kill9()
        load.finish()
        sent.update(load.sent)
        acked.update(load.acked)
        other += load.other
        rounds += 1
        print("round %d: %d sent, %d acked, %d delivered so far"
              % (rounds, len(load.sent), len(load.acked), len(mx.messages)))
    assert rounds >= 3, "only %d kill rounds within the budget" % rounds
    assert not other, "clients saw replies other than 250 or a crash: %r" % other[:5]
    assert len(acked) >= 20, "too little load to prove anything: %d acked" % len(acked)

    # The last daemon delivers whatever is left.
    start_with_env(r, env)

    def delivered_mids():
        out = {}
        for m in list(mx.messages):
            found = MID_RE.search(m.content)
            key = found.group(1).decode() if found else None
            out.setdefault(key, []).append(m)
        return out
    wait_for(lambda: set(acked) <= set(delivered_mids()), timeout=90,
             what="every acknowledged message at the MX (missing: %s)"
             % sorted(set(acked) - set(delivered_mids()))[:10])
    wait_for(lambda: r.queue_list() == [], timeout=30, what="an empty queue")

    got = delivered_mids()
    assert None not in got, "delivered without a Message-ID: %r" % got.get(None)[:2]
    strangers = set(got) - set(sent)
    assert not strangers, "delivered messages nobody sent: %s" % sorted(strangers)[:5]
    for mid, copies in got.items():
        for m in copies:
            assert m.rcpt_tos == ["rcpt@dest.test"], (mid, m.rcpt_tos)
            assert m.mail_from == "load@sender.test", (mid, m.mail_from)
            assert m.content.endswith(sent[mid]), \
                "%s delivered incomplete or altered (%d bytes, sent %d)" % (
                    mid, len(m.content), len(sent[mid]))
            prefix = m.content[:len(m.content) - len(sent[mid])]
            assert prefix.startswith(b"Received: ") and b"\r\n\r\n" not in prefix, \
                "%s: unexpected bytes before the message: %r" % (mid, prefix[:300])
    dups = {mid: len(c) for mid, c in got.items() if len(c) > 1}
    unacked = set(got) - set(acked)
    print("kill -9 rounds=%d sent=%d acked=%d delivered=%d duplicates=%d "
          "delivered-without-250=%d seed=%d"
          % (rounds, len(sent), len(acked), len(got), sum(dups.values()) - len(dups),
             len(unacked), seed))
    return r


def test_kill9_rounds_under_load_lose_nothing_acknowledged(make_relevo, mxs):
    kill9_rounds(make_relevo, mxs)


def test_kill9_rounds_during_segment_rotation_lose_nothing_acknowledged(make_relevo, mxs):
    r = kill9_rounds(make_relevo, mxs, env={"RELEVO_SPOOL_SEGMENT_MAX": str(64 * 1024)})
    logs = [r.stderr(i) for i in range(len(r.runs))]
    new = sum(l.count("event=spool_segment_new") for l in logs)
    gone = sum(l.count("event=spool_segment_reclaimed") + l.count("event=spool_compacted")
               for l in logs)
    killed_busy = sum(1 for l in logs[:-1] if "event=spool_segment_new" in l)
    print("segments started %d, reclaimed or compacted %d; %d of %d killed runs had "
          "rotated" % (new, gone, killed_busy, len(logs) - 1))
    assert new >= 20, "too few rotations to prove anything: %d" % new
    assert gone >= 5, "too few segment deletions to prove anything: %d" % gone
    assert killed_busy >= 3
    # Once drained, the spool does not keep the dead segments (each restart
    # starts a segment of its own; the old ones go as their mail is delivered).
    def segments():
        return sorted(f for f in os.listdir(os.path.join(r.data_dir, "spool"))
                      if f.startswith("seg-") and f.endswith(".log"))
    wait_for(lambda: len(segments()) <= 2, timeout=20,
             what="dead segments deleted after the drain (left: %s)" % segments()[:10])
