"""
test_durability.py - "250 queued" means on stable storage: a message acknowledged
survives kill -9; a message not acknowledged (DATA cut off) is not queued; SIGTERM
stops the daemon gracefully (421 to sessions in progress, exit 0).
"""

import threading

from conftest import expect, make_message, submit, poll, Closed


def message_part(show):
    """The stored message in `queue show` output (from the Received: we added);
    the envelope part above it changes with each delivery attempt."""
    i = show.find("Received:")
    assert i >= 0, show
    return show[i:]


def test_queued_message_survives_kill9(relevo):
    body = b"Durable body line 1.\r\n\r\n  indented line\r\n.dot line\r\nend\r\n"
    msg = make_message(subject="durable", body=body, message_id="<d1@client.example>",
                       date="Tue, 01 Jul 2025 10:00:00 +0000")
    qid, _ = submit(relevo, message=msg)
    before = message_part(relevo.queue_show(qid))
    relevo.kill9()

    # the queue can be read while the daemon is down (after a crash)
    assert relevo.queue_ids() == [qid]

    relevo.start()
    assert relevo.queue_ids() == [qid]
    after = message_part(relevo.queue_show(qid))
    assert after == before
    assert body.decode().replace("\r\n", "\n") in after.replace("\r\n", "\n")
    assert "Subject: durable" in after
    assert "rcpt@example.net" in after


def test_kill9_immediately_after_ack(relevo):
    """kill -9 right after reading the 250: the message must be there."""
    with relevo.client("submissions") as c:
        c.login("alice")
        r = c.mail_transaction("alice@example.com", ["rcpt@example.net"],
                               make_message(subject="ack then crash"))
        expect(r, 250, "2.0.0")
        relevo.kill9()
    relevo.start()
    assert relevo.queue_ids() == [r.queued_id]
    assert "Subject: ack then crash" in relevo.queue_show(r.queued_id)


def test_acknowledged_messages_survive_kill9_under_load(relevo):
    """Several clients submit concurrently; kill -9 mid-stream. Every ID that was
    acknowledged is in the queue afterwards with its own subject."""
    acked = {}                  # id -> subject
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def client(n):
        try:
            with relevo.client("submissions") as c:
                c.login("alice")
                i = 0
                while not stop.is_set():
                    subj = "load %d-%d" % (n, i)
                    c.send(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<r@example.net>\r\n"
                           b"DATA\r\n")
                    for code in (250, 250, 354):
                        expect(c.reply(), code)
                    c.send(make_message(subject=subj, body=(b"x" * 70 + b"\r\n") * 30) +
                           b".\r\n")
                    r = c.reply()
                    expect(r, 250, "2.0.0")
                    with lock:
                        acked[r.queued_id] = subj
                    i += 1
        except (Closed, OSError, TimeoutError):
            pass                # the daemon was killed under us
        except AssertionError as e:
            if not stop.is_set():
                errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    poll(lambda: len(acked) >= 20 or errors or not any(t.is_alive() for t in threads),
         timeout=60, what="20 acknowledged messages")
    assert not errors, errors
    relevo.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    with lock:
        snapshot = dict(acked)

    relevo.start()
    queued = set(relevo.queue_ids())
    missing = set(snapshot) - queued
    assert not missing, "acknowledged but lost after kill -9: %s" % sorted(missing)
    for qid in list(snapshot)[:5]:
        assert "Subject: " + snapshot[qid] in relevo.queue_show(qid)


def test_data_cut_off_queues_nothing(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(make_message(subject="cut off", body=b"partial\r\n" * 100))
        # no CRLF.CRLF: close mid-transfer
    # the daemon carries on: a complete message afterwards is the only one queued
    qid, _ = submit(relevo, message=make_message(subject="complete"))
    assert relevo.queue_ids() == [qid]
    relevo.stop()
    assert relevo.queue_ids() == [qid]
    assert "cut off" not in relevo.cli_ok(["queue", "show", qid]).out


def test_data_cut_off_right_before_final_dot(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(make_message(subject="almost") + b"\r\n.")     # no final CRLF
    qid, _ = submit(relevo, message=make_message(subject="complete"))
    assert relevo.queue_ids() == [qid]


def test_bdat_cut_off_queues_nothing(relevo):
    with relevo.client("submissions") as c:
        c.login("alice")
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
        chunk = make_message(subject="bdat cut")
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        expect(c.reply(), 250)
        c.send(b"BDAT 1000 LAST\r\n" + b"y" * 500)       # 500 of 1000 octets
    qid, _ = submit(relevo, message=make_message(subject="complete"))
    assert relevo.queue_ids() == [qid]


def test_sigterm_idle_daemon_exits_0(relevo):
    rc = relevo.stop()
    assert rc == 0, "exit status %s after SIGTERM" % rc


def test_sigterm_during_session_sends_421_and_exits_0(relevo):
    c = relevo.client("submissions")
    c.login("alice")
    expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
    expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
    idle = relevo.client("submission")
    idle.ehlo()
    relevo.terminate()
    for s in (c, idle):
        try:
            r = s.reply(timeout=15)
            expect(r, 421)
            assert r.enh is None or r.enh.startswith("4."), r
        except Closed:
            pass                # closing without a word is allowed too
        assert s.wait_closed(15), "session still open after SIGTERM:\n" + s.dump()
        s.close()
    rc = relevo.wait()
    assert rc == 0, "exit status %s after SIGTERM" % rc
    relevo.start()
    assert relevo.queue_list() == []


def test_sigterm_during_data_then_restart(relevo):
    """SIGTERM while a client is mid-DATA: that message is not acknowledged and not
    queued; earlier acknowledged mail is kept; the daemon exits 0."""
    qid, _ = submit(relevo, message=make_message(subject="before sigterm"))
    c = relevo.client("submissions")
    c.login("alice")
    expect(c.cmd("MAIL FROM:<alice@example.com>"), 250)
    expect(c.cmd("RCPT TO:<rcpt@example.net>"), 250)
    expect(c.cmd("DATA"), 354)
    c.send(make_message(subject="in flight", body=b"partial\r\n"))
    relevo.terminate()
    try:
        r = c.reply(timeout=15)
        expect(r, 421)
    except Closed:
        pass
    c.close()
    assert relevo.wait() == 0
    relevo.start()
    assert relevo.queue_ids() == [qid]


def test_restart_keeps_queue_and_ids_unique(relevo):
    q1, _ = submit(relevo, message=make_message(subject="one"))
    relevo.restart()
    q2, _ = submit(relevo, message=make_message(subject="two"))
    relevo.kill9()
    relevo.start()
    q3, _ = submit(relevo, message=make_message(subject="three"))
    assert len({q1, q2, q3}) == 3
    assert sorted(relevo.queue_ids()) == sorted([q1, q2, q3])
    for q, s in ((q1, "one"), (q2, "two"), (q3, "three")):
        assert "Subject: " + s in relevo.queue_show(q)


def test_sigterm_races_with_client_close(make_relevo):
    """SIGTERM just as a TLS client goes away: the daemon's 421 cannot be written,
    and it must still exit 0 promptly (not wait forever for that session)."""
    import subprocess
    relevo = make_relevo(start=False)
    for i in range(20):
        relevo.start()
        c = relevo.client("submissions")
        c.login("alice")
        c.close()
        relevo.terminate()
        try:
            rc = relevo.wait(5)
        except subprocess.TimeoutExpired:
            relevo.kill9()
            raise AssertionError("iteration %d: daemon still running 5s after SIGTERM "
                                 "(a session whose client had just closed)" % i)
        assert rc == 0, "iteration %d: exit status %s" % (i, rc)
