"""
test_hardening_faults.py - storage failures injected through the daemon's seam
(RELEVO_FAULT, core/core_util.c fault_hit; used by spool_writer.c and friends).

What a client must see when the disk fails (issue 5, "Crashes"; README
"Durability"): 451 4.3.0, never 250; nothing from the failed batch is ever
queued, not even after a crash and recovery; once the fault is gone, the same
message sent again is accepted and queued exactly once.

  fsync:N    the Nth fsync/fdatasync fails (N+ : that one and every later one)
  write:N    the Nth spool write fails after writing half of its bytes (a full disk)
  truncate:N the Nth ftruncate (the writer cutting a failed batch back) fails

Counting starts at the daemon's start-up (see test_hardening_helpers.FSYNC_AT_START).
Mail is routed to the harness's 421 MX, so accepted mail stays queued. Its
deferrals are written to the spool too (and counted), so a one-shot fault is only
ever aimed at the first message's batch, which no deferral can precede.
"""

import glob
import os

import pytest

from conftest import expect, make_message
from test_hardening_helpers import FSYNC_AT_START, WRITE_AT_START, start_with_env

FIRST_FSYNC = FSYNC_AT_START + 1        # the first message's batch
FIRST_WRITE = WRITE_AT_START + 1


def msg(subject):
    return make_message(subject=subject, body=b"body of %s\r\n" % subject.encode(),
                        message_id="<%s@client.example>" % subject.replace(" ", "-"),
                        date="Thu, 01 Jan 2026 00:00:00 +0000")


def send(c, subject):
    """One MAIL/RCPT/DATA on an authenticated session; the final reply."""
    return c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg(subject))


def segments(relevo):
    return sorted(glob.glob(os.path.join(relevo.data_dir, "spool", "seg-*.log")))


def spool_bytes(relevo):
    return sum(os.path.getsize(p) for p in segments(relevo))


@pytest.fixture
def start_faulty(make_relevo):
    """start_faulty(fault): a relevo started with RELEVO_FAULT=fault."""
    def start(fault):
        r = make_relevo(start=False)
        start_with_env(r, {"RELEVO_FAULT": fault})
        return r
    return start


def test_fault_seam_counts_startup_calls(make_relevo):
    """The call numbers the other tests use: the 4th fsync is still start-up (the
    daemon refuses to start), the 5th is the first message's."""
    r = make_relevo(start=False)
    with pytest.raises(AssertionError, match="exited with status"):
        start_with_env(r, {"RELEVO_FAULT": "fsync:%d" % FSYNC_AT_START})
    assert "startup_failed what=spool" in r.stderr()
    start_with_env(r, {"RELEVO_FAULT": "fsync:%d" % FIRST_FSYNC})
    with r.client("submissions") as c:
        c.login("alice")
        expect(send(c, "first"), 451, "4.3.0")


def test_fsync_failure_is_451_nothing_queued_even_after_crash(start_faulty):
    """Every fsync fails from the first message on (a dying disk): each attempt is
    451 4.3.0, the session goes on, nothing is queued; after kill -9 and a restart
    without the fault nothing from those batches appears, and a resend is accepted."""
    r = start_faulty("fsync:%d+" % FIRST_FSYNC)
    with r.client("submissions") as c:
        c.login("alice")
        for i in range(3):
            expect(send(c, "doomed %d" % i), 451, "4.3.0")
        expect(c.cmd("NOOP"), 250)          # a storage failure is not the client's
    assert r.queue_list() == []
    assert "event=commit_failed" in r.stderr()
    r.kill9()

    r.start()                               # no fault any more
    assert r.queue_list() == []
    assert "messages=0" in r.stderr()
    with r.client("submissions") as c:
        c.login("alice")
        rep = expect(send(c, "doomed 0"), 250, "2.0.0")
    assert r.queue_ids() == [rep.queued_id]
    show = r.queue_show(rep.queued_id)
    assert "Subject: doomed 0" in show
    r.kill9()
    r.start()
    assert r.queue_ids() == [rep.queued_id]


def test_one_failed_fsync_then_next_message_accepted(start_faulty):
    """A single failed fsync: that message gets 451, the next one in the same
    session 250; after kill -9 only the second one is queued."""
    r = start_faulty("fsync:%d" % FIRST_FSYNC)
    with r.client("submissions") as c:
        c.login("alice")
        expect(send(c, "lost one"), 451, "4.3.0")
        ok = expect(send(c, "kept one"), 250, "2.0.0")
    assert r.queue_ids() == [ok.queued_id]
    r.kill9()
    r.start()
    assert r.queue_ids() == [ok.queued_id]
    show = r.queue_show(ok.queued_id)
    assert "Subject: kept one" in show and "lost one" not in show


def test_disk_full_write_is_451_and_spool_is_cut_back(start_faulty):
    """Every spool write fails after half its bytes (ENOSPC): 451 4.3.0, the segment
    is cut back to where it was, nothing queued; a graceful stop still works; with
    room on the disk again the message is accepted."""
    r = start_faulty("write:%d+" % FIRST_WRITE)
    before = spool_bytes(r)
    with r.client("submissions") as c:
        c.login("alice")
        expect(send(c, "disk full 1"), 451, "4.3.0")
        expect(send(c, "disk full 2"), 451, "4.3.0")
    assert r.queue_list() == []
    assert spool_bytes(r) == before, "a failed batch was left in the segment"
    assert r.stop() == 0, r.stderr()

    r.start()
    assert r.queue_list() == []
    with r.client("submissions") as c:
        c.login("alice")
        rep = expect(send(c, "disk full 1"), 250, "2.0.0")
    assert r.queue_ids() == [rep.queued_id]


def test_half_written_batch_never_recovered(start_faulty):
    """The worst case: the write fails half-way AND cutting the segment back fails
    (and so does starting a new segment), so half a record stays at the end of the
    segment. The client got 451; after kill -9 and recovery that half record must be
    set aside (quarantined as a torn tail), never queued; a resend is accepted once."""
    r = start_faulty("write:%d+,truncate:1+" % FIRST_WRITE)
    before = spool_bytes(r)
    with r.client("submissions") as c:
        c.login("alice")
        expect(send(c, "torn"), 451, "4.3.0")
    assert spool_bytes(r) > before, "no half-written bytes on disk: the test proves nothing"
    assert r.queue_list() == []
    r.kill9()
    assert r.queue_list() == []             # offline reader, before any recovery

    r.start()
    assert r.queue_list() == []
    log = r.stderr()
    assert "messages=0" in log, log
    with r.client("submissions") as c:
        c.login("alice")
        rep = expect(send(c, "torn"), 250, "2.0.0")
    r.kill9()
    r.start()
    assert r.queue_ids() == [rep.queued_id]
    assert "Subject: torn" in r.queue_show(rep.queued_id)


def test_failed_write_and_truncate_then_rotation_keeps_next_message(start_faulty):
    """One write fails half-way and its truncate fails too: the writer moves to a
    new segment (whose SEG record states the old one's valid length). The next
    message is accepted there; after kill -9 exactly that one is recovered."""
    r = start_faulty("write:%d,truncate:1" % FIRST_WRITE)
    with r.client("submissions") as c:
        c.login("alice")
        expect(send(c, "half"), 451, "4.3.0")
        ok = expect(send(c, "whole"), 250, "2.0.0")
    log = r.stderr()
    assert "event=spool_truncate_failed" in log and log.count("event=spool_segment_new") >= 2, \
        "expected a rotation after the failed truncate:\n" + log
    r.kill9()
    r.start()
    assert r.queue_ids() == [ok.queued_id]
    show = r.queue_show(ok.queued_id)
    assert "Subject: whole" in show and "Subject: half" not in show


def test_pipelined_bdat_transactions_around_a_failed_commit(start_faulty):
    """Three BDAT transactions pipelined in one write (RFC 3030 allows it), the
    first one's commit fails: its 451 comes in order, the two behind it are still
    answered 250 each, and exactly those two are queued, with their own bytes."""
    r = start_faulty("fsync:%d" % FIRST_FSYNC)
    subjects = ("pipe one", "pipe two", "pipe three")
    with r.client("relay") as c:
        c.ehlo()
        assert "CHUNKING" in c.extensions, c.extensions
        out = b""
        for subj in subjects:
            m = msg(subj)
            out += (b"MAIL FROM:<p@sender.test>\r\nRCPT TO:<r@dest.test>\r\n"
                    b"BDAT %d LAST\r\n" % len(m) + m)
        c.send(out)
        finals = []
        for _ in subjects:
            expect(c.reply(), 250)
            expect(c.reply(), 250)
            finals.append(c.reply())
        assert [x.code for x in finals] == [451, 250, 250], finals
        assert finals[0].enh == "4.3.0", finals
        expect(c.cmd("NOOP"), 250)
    r.kill9()
    r.start()
    assert sorted(r.queue_ids()) == sorted(x.queued_id for x in finals[1:])
    for x, subj in zip(finals[1:], subjects[1:]):
        assert "Subject: " + subj in r.queue_show(x.queued_id)
