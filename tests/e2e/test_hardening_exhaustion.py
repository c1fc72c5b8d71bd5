"""
test_hardening_exhaustion.py - resource exhaustion (issue 5, "Exhaustion"): the
daemon stays responsive to a well-behaved client and its memory stays bounded
while others hold a thousand idle connections, trickle one byte per second, send
megabytes without a line end, bomb it with headers, pipeline without reading, or
storm it with errors.

Memory is read from /proc/PID/status (VmRSS). Bounds are on growth during the
attack, generous enough for the sanitizer build (whose allocator keeps freed
memory in quarantine) yet far below what buffering the attack would cost.
"""

import socket
import threading
import time

import pytest

from conftest import Closed, expect, make_message, poll
from test_hardening_helpers import client_from, more_fds, rss_kb, start_measured, trickle

MB = 1024 * 1024
PROMPT = 5.0            # seconds a well-behaved client may wait for a whole submission
GREETING = 2.5          # ... and for its greeting


def timed_submission(relevo, mode="submissions", subject="well-behaved", timeout=10):
    """Connect, greet, (AUTH,) submit; returns (seconds to greeting, seconds in all, id)."""
    t0 = time.monotonic()
    with relevo.client(mode, timeout=timeout) as c:
        t_greet = time.monotonic() - t0
        expect(c.greeting, 220)
        if mode == "relay":
            c.ehlo()
            r = c.mail_transaction("ok@sender.test", ["rcpt@dest.test"],
                                   make_message(sender="ok@sender.test", subject=subject))
        else:
            c.login("alice")
            r = c.mail_transaction("alice@example.com", ["rcpt@example.net"],
                                   make_message(subject=subject))
        expect(r, 250, "2.0.0")
        c.quit()
    return t_greet, time.monotonic() - t0, r.queued_id


def assert_prompt(relevo, what, mode="submissions"):
    t_greet, t_all, qid = timed_submission(relevo, mode, subject=what)
    assert t_greet < GREETING, "greeting took %.2fs while %s" % (t_greet, what)
    assert t_all < PROMPT, "a whole submission took %.2fs while %s" % (t_all, what)
    return qid


@pytest.fixture(name="more_fds")
def more_fds_fixture():
    """Raise this process's open-file limit (inherited by the daemon started later)
    for 1000 connections."""
    yield from more_fds(2200)


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------

def test_thousand_idle_connections_do_not_starve_a_client(more_fds, make_relevo):
    r = start_measured(make_relevo(start=False, smtp={"max_connections": 1100,
                                                       "max_connections_per_ip": 1100}))
    base = rss_kb(r)
    socks = []
    try:
        # 800 plaintext sessions that read their greeting and then say nothing, and
        # 200 connections to the implicit-TLS port that never start the handshake.
        for i in range(1000):
            port = r.ports["relay"] if i < 800 else r.ports["submissions"]
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
        greeted = 0
        for s in socks[:800]:
            s.settimeout(10)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(512)
                if not chunk:
                    break
                data += chunk
            greeted += data.startswith(b"220 ")
        assert greeted == 800, "only %d of 800 idle sessions were greeted" % greeted

        for _ in range(3):
            assert_prompt(r, "1000 connections sit idle")
            assert_prompt(r, "1000 connections sit idle", mode="submission")
        grown = rss_kb(r) - base
        print("1000 idle connections: RSS +%d KiB" % grown)
        assert grown < 200 * 1024, "RSS grew by %d KiB for 1000 idle connections" % grown
    finally:
        for s in socks:
            s.close()
    # the slots come back
    poll(lambda: _greets(r), timeout=10, what="service after the idle flood")
    assert r.is_running()


def _greets(r):
    try:
        with r.client("relay", timeout=5) as c:
            return c.greeting.code == 220
    except (Closed, OSError, TimeoutError):
        return False


def test_one_byte_per_second_clients_do_not_block_others(make_relevo):
    """Twenty clients trickle a byte a second (in commands, and in DATA); all the
    while others are served promptly, and the tricklers' own commands still work."""
    r = make_relevo(smtp={"timeout_command": 30, "timeout_data": 30,
                          "max_connections_per_ip": 50})
    stop = threading.Event()
    results = []

    def trickle(n):
        try:
            with r.client("relay", timeout=30) as c:
                if n % 2:
                    # in DATA: trickles until the test ends
                    c.ehlo()
                    expect(c.cmd("MAIL FROM:<slow@sender.test>"), 250)
                    expect(c.cmd("RCPT TO:<rcpt@dest.test>"), 250)
                    expect(c.cmd("DATA"), 354)
                    payload = make_message(sender="slow@sender.test", subject="slow")
                else:
                    payload = b"NOOP\r\n"      # a command, 6 seconds long
                for b in payload:
                    if stop.is_set():
                        return
                    c.send(bytes([b]))
                    time.sleep(1.0)
                expect(c.reply(), 250)
                results.append("ok")
        except (Closed, OSError, TimeoutError, AssertionError) as e:
            results.append(e)

    threads = [threading.Thread(target=trickle, args=(n,), daemon=True) for n in range(20)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    try:
        deadline = time.monotonic() + 6
        n = 0
        while time.monotonic() < deadline:
            assert_prompt(r, "20 clients trickle one byte a second",
                          mode="relay" if n % 2 else "submissions")
            n += 1
        assert n >= 4
        for t in threads[::2]:
            t.join(10)              # the NOOP tricklers finish on their own
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    errors = [x for x in results if isinstance(x, Exception)]
    assert not errors, "a trickling client was cut off early: %r" % errors[:3]
    assert results.count("ok") == 10, "the tricklers' NOOPs were not all answered"


def test_password_guessing_flood_does_not_lock_out_a_real_user(make_relevo):
    """Thirty machines (127.0.0.2-31) guess alice's password as fast as relevo lets
    them (each connection is cut after max_auth_failures and comes right back; an
    address locked out by smtp.auth_lockout_failures stops): the real user, from
    her own address, is neither locked out (accounts never are) nor refused (no
    454 from a full hash queue) and still submits.

    How long the real login waits is printed, not asserted: password checks (argon2id)
    share one first-come first-served queue of two threads, so the wait grows with
    the number of guessers times the hash time and depends on the machine (see
    SECURITY.md, Known gaps). The tarpit (failures answered up to 5 s late) slows
    each guesser down, which shortens that queue."""
    r = make_relevo(smtp={"max_connections_per_ip": 100})
    baseline = max(timed_submission(r)[1] for _ in range(2))
    stop = threading.Event()
    tries = []

    def guesser(n):
        i = 0
        while not stop.is_set():
            try:
                # (a reply may wait for the whole hash queue: the guesser waits for
                # it, so that no check is left queued when the test ends)
                with client_from(r, "127.0.0.%d" % (n + 2), timeout=120) as c:
                    c.ehlo()
                    while not stop.is_set():
                        rep = c.auth_plain("alice", "guess-%d-%d" % (n, i))
                        i += 1
                        tries.append((rep.code, rep.text))
                        if rep.code != 535:
                            break
                    if rep.code == 454 and "from your address" in rep.text:
                        return              # this machine is locked out
            except (Closed, OSError, TimeoutError):
                pass
    threads = [threading.Thread(target=guesser, args=(n,), daemon=True) for n in range(30)]
    for t in threads:
        t.start()
    took = []
    try:
        # the flood is on once guesses are answered: wait for 30 (how long that
        # takes depends on the machine's load: argon2id is CPU-bound)
        poll(lambda: len(tries) >= 30, timeout=300, interval=0.2, what="30 guesses answered")
        for _ in range(2):
            took.append(timed_submission(r, timeout=60)[1])     # asserts 235 and 250
    finally:
        stop.set()
        for t in threads:
            t.join(130)
    codes = [code for code, _ in tries]
    print("password flood: %d guesses answered (%d x 535, %d x 421, %d x 454); real login "
          "+ submission took %s s (%.2f s before the flood)"
          % (len(tries), codes.count(535), codes.count(421), codes.count(454),
             ", ".join("%.2f" % t for t in took), baseline))
    assert codes.count(535) >= 30
    full = [t for code, t in tries if code == 454 and "from your address" not in t]
    assert not full, "the password-check queue overflowed: %r" % full[:3]
    assert max(took) < 60


# ---------------------------------------------------------------------------
# Big inputs
# ---------------------------------------------------------------------------

def test_megabytes_without_newline_get_one_500_and_memory_stays_bounded(make_relevo):
    """A 1 MB command line gets exactly one 500 5.5.2, the rest of the line is
    thrown away as it comes, and the session goes on after the CRLF. Eight clients
    sending 16 MB each without a line end do not grow the daemon's memory."""
    r = start_measured(make_relevo(start=False))
    with r.client("relay") as c:
        c.ehlo()
        c.send(b"NOOP " + b"A" * MB)
        expect(c.reply(), 500, "5.5.2")
        c.send(b"\r\nNOOP\r\n")
        expect(c.reply(), 250)
        assert c.pending(0.3) == b"", "more than one reply to one over-long line"

    base = rss_kb(r)
    errors = []

    def flood():
        try:
            with r.client("relay", timeout=30) as c:
                chunk = b"X" * (256 * 1024)
                for _ in range(64):          # 16 MiB, no CR, no LF
                    c.send(chunk)
                c.send(b"\r\n")
                expect(c.reply(), 500, "5.5.2")
                expect(c.cmd("NOOP"), 250)
        except Exception as e:
            errors.append(e)
    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    assert_prompt(r, "eight clients send 16 MB lines")
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    grown = rss_kb(r) - base
    print("8 x 16 MiB without newline: RSS +%d KiB" % grown)
    assert grown < 48 * 1024, "RSS grew by %d KiB while discarding 128 MiB" % grown


def test_hundred_megabyte_body_is_552_without_buffering_it(make_relevo):
    """max_message_size 10 MB; a 100 MB body is refused (552 5.3.4) at its end and
    the daemon did not keep it in memory; nothing is queued; the session goes on."""
    r = start_measured(make_relevo(start=False, smtp={"max_message_size": 10 * MB}))
    base = rss_kb(r)
    line = b"y" * 998 + b"\r\n"
    block = line * 1024                     # ~1 MiB
    with r.client("relay", timeout=60) as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<big@sender.test>"), 250)
        expect(c.cmd("RCPT TO:<rcpt@dest.test>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(make_message(sender="big@sender.test", body=b""))
        for _ in range(100):
            c.send(block)
        c.send(b".\r\n")
        expect(c.reply(timeout=60), 552, "5.3.4")
        expect(c.cmd("NOOP"), 250)
    grown = rss_kb(r) - base
    print("100 MiB body: RSS +%d KiB" % grown)
    assert grown < 48 * 1024, "RSS grew by %d KiB for a refused 100 MiB body" % grown
    assert r.queue_list() == []


HEADER_BOMBS = {
    # 100,000 header fields (1.6 MB, within max_message_size)
    "100k-fields": lambda: b"".join(b"X-Bomb-%06d: a\r\n" % i for i in range(100000)),
    # one field folded 100,000 times
    "100k-folds": lambda: b"X-Folded: a\r\n" + b" b\r\n" * 100000,
    # 100,000 empty-bodied fields: small lines, the most fields per byte
    "100k-tiny-fields": lambda: b"a:\r\n" * 100000,
}


@pytest.mark.parametrize("name", sorted(HEADER_BOMBS))
def test_header_bomb_is_refused_with_5xx_and_memory_bounded(make_relevo, name):
    r = start_measured(make_relevo(start=False, smtp={"max_message_size": 4 * MB}))
    bomb = HEADER_BOMBS[name]()
    msg = (b"From: <alice@example.com>\r\nTo: <rcpt@example.net>\r\nSubject: bomb\r\n" +
           bomb + b"\r\nbody\r\n")
    assert len(msg) < 4 * MB
    base = rss_kb(r)
    with r.client("submissions", timeout=30) as c:
        c.login("alice")
        t0 = time.monotonic()
        rep = c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg)
        took = time.monotonic() - t0
        # relevo keeps at most 256 KiB of header section: a larger one is 552 5.3.4.
        expect(rep, 552, "5.3.4")
        expect(c.cmd("RSET"), 250)
        ok = expect(c.mail_transaction("alice@example.com", ["rcpt@example.net"],
                                       make_message(subject="after the bomb")), 250)
    assert took < 10, "the header bomb took %.1fs to answer" % took
    grown = rss_kb(r) - base
    assert grown < 48 * 1024, "RSS grew by %d KiB for a header bomb" % grown
    assert r.queue_ids() == [ok.queued_id]


def folded(field):
    """A header field folded (CRLF SP) every 500 octets: lines stay under 998."""
    parts = [field[i:i + 500] for i in range(0, len(field), 500)]
    return b"\r\n ".join(parts) + b"\r\n"


FROM_BOMBS = {
    # 10,000 addresses in From (relevo looks at 16 at most): 553
    "10k-addresses": folded(b"From: " + b", ".join([b"a@example.com"] * 10000)),
    # comments nested 50,000 deep around a valid address
    "deep-comments": folded(b"From: " + b"(" * 50000 + b"x" + b")" * 50000 +
                            b" <alice@example.com>"),
    # an unterminated quoted string of 200 KB
    "endless-quote": folded(b"From: \"" + b"q" * 200000 + b" <alice@example.com>"),
    # 20,000 empty groups, then one address
    "empty-groups": folded(b"From: " + b"g:;, " * 20000 + b"<alice@example.com>"),
}


@pytest.mark.parametrize("name", sorted(FROM_BOMBS))
def test_hostile_from_header_is_answered_quickly(make_relevo, name):
    """From: fields built to make a parser slow or deep (within the 256 KiB header
    limit): each is answered within seconds, with 250 or a 5xx, never a crash."""
    r = make_relevo(smtp={"max_message_size": 4 * MB})
    msg = FROM_BOMBS[name] + b"To: <rcpt@example.net>\r\nSubject: from bomb\r\n\r\nbody\r\n"
    with r.client("submissions", timeout=30) as c:
        c.login("alice")
        t0 = time.monotonic()
        rep = c.mail_transaction("alice@example.com", ["rcpt@example.net"], msg)
        took = time.monotonic() - t0
        assert rep.code == 250 or rep.code // 100 == 5, rep
        if name in ("10k-addresses", "endless-quote"):
            # a From: policy cannot read, or more addresses than it looks at
            expect(rep, 553, "5.7.1")
        expect(c.cmd("NOOP"), 250)
    assert took < 5, "%s took %.1fs" % (name, took)
    assert r.is_running()


# ---------------------------------------------------------------------------
# Floods of commands
# ---------------------------------------------------------------------------

def test_pipelining_without_reading_replies_does_not_grow_memory(make_relevo):
    """A client pipelines 300,000 NOOPs and reads nothing: relevo stops reading once
    its unsent replies pass a bound instead of buffering them; later the client
    reads and gets every reply, in order, and others are served meanwhile."""
    r = start_measured(make_relevo(start=False, smtp={"max_errors": 1000}))
    n = 300000
    base = rss_kb(r)
    c = r.client("relay", timeout=30)
    try:
        c.ehlo()
        sender = threading.Thread(target=lambda: _send_quietly(c, b"NOOP\r\n" * n))
        sender.start()
        time.sleep(2)
        mid = rss_kb(r) - base
        assert_prompt(r, "a client pipelines without reading")
        got = 0
        buf = b""
        c.sock.settimeout(30)
        while got < n:
            d = c.sock.recv(1 << 20)
            assert d, "connection closed after %d replies" % got
            buf += d
            got += buf.count(b"\r\n")
            buf = buf[buf.rfind(b"\r\n") + 2:] if b"\r\n" in buf else buf
        sender.join(30)
        c.send(b"QUIT\r\n")
    finally:
        c.close()
    print("300k pipelined NOOPs, unread: RSS +%d KiB" % mid)
    assert mid < 32 * 1024, "RSS grew by %d KiB while the client did not read" % mid


def _send_quietly(c, data):
    try:
        c.sock.sendall(data)
    except OSError:
        pass


def test_error_storm_ends_with_421(make_relevo):
    """10,000 bad commands in one write, from 20 connections at once: each session
    answers max_errors of them with 500, then 421 4.7.0, and closes without
    reading the rest; the daemon serves a good client meanwhile."""
    r = make_relevo(smtp={"max_errors": 10, "max_connections_per_ip": 50})
    storm = b"".join(b"BOGUS%d\r\n" % i for i in range(10000))
    outcomes = []

    def stormer():
        try:
            with r.client("relay", timeout=20) as c:
                c.send(storm)
                replies = []
                while True:
                    try:
                        replies.append(c.reply())
                    except (Closed, OSError):
                        break
                outcomes.append(replies)
        except Exception as e:
            outcomes.append(e)
    threads = [threading.Thread(target=stormer) for _ in range(20)]
    for t in threads:
        t.start()
    assert_prompt(r, "20 clients storm errors")
    for t in threads:
        t.join(60)
    assert len(outcomes) == 20
    for replies in outcomes:
        assert not isinstance(replies, Exception), replies
        assert len(replies) == 11, "%d replies to an error storm" % len(replies)
        assert all(x.code == 500 for x in replies[:-1]), replies
        expect(replies[-1], 421, "4.7.0")
    assert r.is_running()


# ---------------------------------------------------------------------------
# Slow clients: totals that trickling cannot stretch
# ---------------------------------------------------------------------------

def _cut_while_others_served(r, start, payload, limit, mode="relay"):
    """A client (set up by start(c)) trickles payload a byte every 200 ms (which
    keeps every idle timeout at bay); it must get 421 4.4.2 after about `limit`
    seconds and be closed, while a normal client is served meanwhile."""
    result = {}

    def slow():
        with r.client(mode, timeout=30) as c:
            start(c)
            got, took = trickle(c, payload, interval=0.2, give_up=limit + 10)
            result["reply"], result["took"] = got, took
            result["closed"] = c.wait_closed(5)
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    served = 0
    while t.is_alive() and served < 3:
        assert_prompt(r, "a client trickles a byte every 200 ms", mode="relay")
        served += 1
    t.join(limit + 30)
    assert served >= 1
    print("trickler cut after %.2fs (limit %ss): %r" % (result["took"], limit,
                                                      result["reply"][:120]))
    assert result["reply"].startswith(b"421 4.4.2 "), result
    assert b"timeout" in result["reply"].lower(), result
    assert limit - 0.5 <= result["took"] <= limit + 3, result
    assert result["closed"], "connection still open after the 421"


def test_trickled_command_line_is_cut_at_timeout_command(make_relevo):
    r = make_relevo(smtp={"timeout_command": 3})
    _cut_while_others_served(r, lambda c: c.ehlo(), b"NOOP " + b"x" * 200, 3)
    assert "limit=command seconds=3" in r.stderr()


def test_trickled_auth_line_is_cut_at_timeout_command(make_relevo):
    r = make_relevo(smtp={"timeout_command": 2})

    def start(c):
        c.ehlo()
        expect(c.cmd("AUTH PLAIN"), 334)
    _cut_while_others_served(r, start, b"A" * 200, 2, mode="submissions")


def _data_start(c):
    c.ehlo()
    expect(c.cmd("MAIL FROM:<slow@sender.test>"), 250)
    expect(c.cmd("RCPT TO:<rcpt@dest.test>"), 250)
    expect(c.cmd("DATA"), 354)


def _bdat_start(c):
    c.ehlo()
    expect(c.cmd("MAIL FROM:<slow@sender.test>"), 250)
    expect(c.cmd("RCPT TO:<rcpt@dest.test>"), 250)
    c.send(b"BDAT 100\r\n" + b"x" * 100)
    expect(c.reply(), 250)
    c.send(b"BDAT 100000 LAST\r\n")


@pytest.mark.parametrize("how", ["DATA", "BDAT"])
def test_trickled_message_is_cut_at_timeout_data_total(make_relevo, how):
    """timeout_data 30 s (idle) and timeout_command 60 s never fire; the whole
    transfer is limited to 4 s. Nothing is queued."""
    r = make_relevo(smtp={"timeout_data": 30, "timeout_command": 60,
                          "timeout_data_total": 4})
    start = _data_start if how == "DATA" else _bdat_start
    _cut_while_others_served(r, start, make_message(sender="slow@sender.test") * 20, 4)
    assert "limit=transfer seconds=4" in r.stderr()
    ids = set(r.queue_ids())
    assert all("slow@sender.test" not in r.queue_show(i) for i in ids)


def test_busy_session_is_cut_at_session_max_time(make_relevo):
    """Complete commands every 200 ms keep a session busy; it ends after
    session_max_time anyway."""
    r = make_relevo(smtp={"session_max_time": 4})
    t0 = time.monotonic()
    with r.client("relay", timeout=30) as c:
        c.ehlo()
        said = b""
        while not said:
            assert time.monotonic() - t0 < 10, "session not cut after 10 s"
            said = c.pending(0.2)         # the 421 comes on its own, between NOOPs
            if not said:
                rep = c.cmd("NOOP")
                if rep.code != 250:       # it came just as a NOOP was sent
                    said = ("%d %s" % (rep.code, rep.lines[0])).encode()
        took = time.monotonic() - t0
        assert said.startswith(b"421 4.4.2 "), said
        assert c.wait_closed(5)
    assert 3.5 <= took <= 6, took
    assert_prompt(r, "after a session was cut")          # new sessions get a new clock
    assert "limit=session seconds=4" in r.stderr()


# ---------------------------------------------------------------------------
# The memory budget (smtp.memory_budget)
# ---------------------------------------------------------------------------

def _open_data(c, sender="big@sender.test"):
    c.ehlo()
    expect(c.cmd("MAIL FROM:<%s>" % sender), 250)
    expect(c.cmd("RCPT TO:<rcpt@dest.test>"), 250)
    expect(c.cmd("DATA"), 354)


def _body(kib, tag):
    line = (b"%s " % tag.encode()).ljust(78, b"m") + b"\r\n"
    return make_message(sender="big@sender.test", subject=tag,
                        body=line * (kib * 1024 // len(line)))


def test_memory_budget_refuses_with_452_and_session_goes_on(make_relevo):
    """Budget 1 MiB (= max_message_size): while one client holds 700 KiB of an
    unfinished message, another's 500 KiB message (DATA, then BDAT) gets 452 4.3.1;
    its session goes on and a small message fits; once the first is committed its
    bytes are free again and a 900 KiB message is accepted."""
    r = make_relevo(smtp={"max_message_size": MB, "memory_budget": MB})
    holder = r.client("relay", timeout=30)
    try:
        _open_data(holder, "holder@sender.test")
        held = _body(700, "held")
        holder.send(held)
        time.sleep(0.7)                       # relevo has read it
        with r.client("relay", timeout=30) as c:
            _open_data(c)
            c.send(_body(500, "refused-data") + b".\r\n")
            rep = expect(c.reply(), 452, "4.3.1")
            assert "insufficient system storage" in rep.text.lower(), rep
            expect(c.cmd("MAIL FROM:<big@sender.test>"), 250)   # transaction was reset
            expect(c.cmd("RCPT TO:<rcpt@dest.test>"), 250)
            body = _body(500, "refused-bdat")
            c.send(b"BDAT %d LAST\r\n" % len(body) + body)
            expect(c.reply(), 452, "4.3.1")
            expect(c.cmd("NOOP"), 250)
            ok = c.mail_transaction("big@sender.test", ["rcpt@dest.test"], _body(10, "small"))
            expect(ok, 250, "2.0.0")
            holder.send(b".\r\n")
            expect(holder.reply(), 250, "2.0.0")
            big = c.mail_transaction("big@sender.test", ["rcpt@dest.test"], _body(900, "big"))
            expect(big, 250, "2.0.0")
            c.quit()
        holder.quit()
    finally:
        holder.close()
    assert len(r.queue_ids()) == 3                     # held, small, big
    assert "event=memory_budget_exhausted" in r.stderr()
    assert r.stop() == 0
    assert "memory_budget_leak" not in r.stderr()


def test_memory_budget_bounds_memory_under_concurrent_large_messages(make_relevo):
    """Ten clients send 6 MiB messages at once in step (80 MiB... if all were kept);
    budget 8 MiB: some get 452 4.3.1, RSS stays near the budget, and afterwards a
    message of nearly the whole budget is accepted (nothing stayed counted)."""
    r = start_measured(make_relevo(start=False, smtp={
        "max_message_size": 8 * MB, "memory_budget": 8 * MB,
        "max_connections_per_ip": 50, "timeout_data": 60}))
    base = rss_kb(r)
    n, pieces = 10, 6
    piece = (b"p" * 998 + b"\r\n") * 1024           # 1000 KiB
    barrier = threading.Barrier(n)
    replies, errors = [], []

    def sender(k):
        try:
            with r.client("relay", timeout=60) as c:
                _open_data(c)
                c.send(make_message(sender="big@sender.test", subject="bulk %d" % k, body=b""))
                for _ in range(pieces):
                    barrier.wait(60)
                    c.send(piece)
                c.send(b".\r\n")
                replies.append(c.reply(timeout=60))
                expect(c.cmd("RSET"), 250)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=sender, args=(k,)) for k in range(n)]
    peak = 0
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_kb(r) - base)
        time.sleep(0.05)
    assert not errors, errors[:3]
    codes = sorted(x.code for x in replies)
    print("10 x 6 MiB against an 8 MiB budget: replies %s, RSS peak +%d KiB" % (codes, peak))
    assert set(codes) <= {250, 452}, replies
    assert codes.count(452) >= 1
    assert all(x.enh == "4.3.1" for x in replies if x.code == 452), replies
    assert peak < 40 * 1024, "RSS grew by %d KiB with an 8 MiB budget" % peak
    # Nothing leaked: nearly the whole budget is free again.
    nearly_all = make_message(sender="big@sender.test", subject="after",
                              body=(b"q" * 998 + b"\r\n") * 7800)
    with r.client("relay", timeout=60) as c:
        c.ehlo()
        expect(c.mail_transaction("big@sender.test", ["rcpt@dest.test"], nearly_all), 250)
        c.quit()
    assert r.stop() == 0
    assert "memory_budget_leak" not in r.stderr()
