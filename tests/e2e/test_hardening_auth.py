"""
test_hardening_auth.py - password guessing across connections (issue 5, "AUTH"):
failed AUTH is counted per client address (shared by every worker thread) and per
account. An address with smtp.auth_lockout_failures failures within
smtp.auth_lockout_window is refused (454 4.7.0) without a password check, even
with the right password, until the window has passed; other addresses are not
affected; trusted addresses (the harness trusts 127.0.0.0/8) are not exempt.
Each failure is answered later than the last (a tarpit on a timer, which does not
hold up the worker's other sessions); an account that many addresses guess at is
answered at the longest delay but never locked.

Clients connect from several loopback addresses (127.0.0.x) to stand for
different machines.
"""

import threading
import time

from conftest import USERS, Closed, expect, make_message
from fakes import log_events
from test_hardening_helpers import client_from

LOCKED_TEXT = "too many authentication failures from your address, try again later"
RIGHT = USERS["alice"][0]


def fail_auth(c, user="alice", password="wrong"):
    """One failed AUTH PLAIN; returns (reply, seconds it took)."""
    t0 = time.monotonic()
    r = c.auth_plain(user, password)
    return r, time.monotonic() - t0


def assert_locked_out(r):
    expect(r, 454, "4.7.0")
    assert LOCKED_TEXT in r.text.lower(), r


def test_lockout_across_connections_holds_even_the_right_password(make_relevo):
    r = make_relevo(smtp={"auth_lockout_failures": 4, "auth_lockout_window": 600,
                          "max_auth_failures": 3})
    # 4 failures from 127.0.0.1 over two connections (the session limit is 3)
    for _ in range(2):
        with r.client("submissions") as c:
            c.ehlo()
            for _ in range(2):
                expect(fail_auth(c)[0], 535, "5.7.8")
    with r.client("submissions") as c:
        c.ehlo()
        assert_locked_out(c.auth_plain("alice", RIGHT))
        assert_locked_out(c.cmd("AUTH LOGIN"))          # refused before the exchange
        expect(c.cmd("MAIL FROM:<alice@example.com>"), 530, "5.7.0")
        expect(c.cmd("NOOP"), 250)                      # the session itself goes on
    # STARTTLS on 587 from the same address: locked too
    with r.client("submission") as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        assert_locked_out(c.auth_plain("alice", RIGHT))
    # another machine, and another account from it, are not affected
    with client_from(r, "127.0.0.5") as c:
        c.login("alice")
        expect(c.mail_transaction("alice@example.com", ["rcpt@example.net"],
                                  make_message(subject="from another address")), 250)
    with client_from(r, "127.0.0.6") as c:
        c.login("carol")
    log = r.stderr()
    assert "event=auth_lockout client=127.0.0.1 " in log, log[-3000:]
    # the refused attempts never reached the password check
    assert log.count("event=auth result=locked_out client=127.0.0.1") == 3, log[-3000:]
    assert "result=ok user=alice client=127.0.0.1" not in log


def test_lockout_ends_when_the_window_has_passed(make_relevo):
    r = make_relevo(smtp={"auth_lockout_failures": 2, "auth_lockout_window": 3})
    with client_from(r, "127.0.0.9") as c:
        c.ehlo()
        # two names: no account reaches the limit (whose 5 s tarpit would outlast
        # this short window)
        expect(fail_auth(c, user="nobody")[0], 535)
        expect(fail_auth(c)[0], 535)
        locked_at = time.monotonic()
        assert_locked_out(c.auth_plain("alice", RIGHT))
    time.sleep(max(0, locked_at + 3.3 - time.monotonic()))
    with client_from(r, "127.0.0.9") as c:
        c.login("alice")


def test_success_resets_the_address_count(make_relevo):
    r = make_relevo(smtp={"auth_lockout_failures": 3, "auth_lockout_window": 600,
                          "max_auth_failures": 5})
    # (a different name each time: no account reaches the limit)
    with client_from(r, "127.0.0.12") as c:
        c.ehlo()
        expect(fail_auth(c, user="nobody-1")[0], 535)
        expect(fail_auth(c, user="nobody-2")[0], 535)
        expect(c.auth_plain("alice", RIGHT), 235)
    with client_from(r, "127.0.0.12") as c:
        c.ehlo()
        expect(fail_auth(c, user="nobody-3")[0], 535)
        r2, took = fail_auth(c, user="nobody-4")
        expect(r2, 535)                 # the 2nd since the success, not the 4th
        # The reply's delay follows the address's count since the success: 2 x 0.5 s,
        # as the log says (the reply's wall time only bounds it: it carries the
        # password hashing of a loaded machine too).
        fail = log_events(r, "auth", result="fail", user="nobody-4")
        assert [(e["client_failures"], e["delay_ms"]) for e in fail] == [("2", "1000")], fail
        assert 1.0 <= took < 3.0, "second failure since the success took %.2fs" % took
        expect(c.auth_plain("alice", RIGHT), 235)       # 2 < 3: not locked


def test_failures_are_answered_ever_later_without_blocking_the_worker(make_relevo):
    """0.5 s x the address's failures so far, across connections; meanwhile a client
    on the same (single) worker thread is answered at once."""
    r = make_relevo(server={"workers": 1},
                    smtp={"auth_lockout_failures": 50, "max_auth_failures": 3})
    took = []
    for _ in range(3):
        with client_from(r, "127.0.0.20") as c:
            c.ehlo()
            for _ in range(2):
                rep, t = fail_auth(c)
                expect(rep, 535, "5.7.8")
                took.append(t)
    print("failure reply times: %s" % ", ".join("%.2f" % t for t in took))
    for n, t in enumerate(took, 1):
        assert t >= 0.5 * n - 0.1, "failure %d answered after %.2fs, < %.1fs" % (n, t, 0.5 * n)
    assert took[-1] < 3.0 + 3.0

    # While the 7th failure waits its 3.5 s, the same worker serves someone else.
    with client_from(r, "127.0.0.20") as slow, r.client("relay") as other:
        slow.ehlo()
        slow.send(b"AUTH PLAIN AGFsaWNlAHdyb25n\r\n")        # alice / wrong
        time.sleep(0.3)
        t0 = time.monotonic()
        for _ in range(5):
            expect(other.cmd("NOOP"), 250)
        other.ehlo()
        assert time.monotonic() - t0 < 1.0, "the worker was blocked by a tarpit"
        rep = slow.reply()
        t_slow = time.monotonic() - t0 + 0.3
        expect(rep, 535, "5.7.8")
        assert t_slow >= 3.3, "7th failure answered after %.2fs" % t_slow


def test_account_guessed_from_many_addresses_is_tarpitted_not_locked(make_relevo):
    """limit 3: three addresses fail once each for alice; a fourth address's failure
    for alice then waits the longest delay (5 s), but alice herself, from yet
    another address, still logs in at once; carol is not slowed."""
    r = make_relevo(smtp={"auth_lockout_failures": 3, "auth_lockout_window": 600})
    for i in (31, 32, 33):
        with client_from(r, "127.0.0.%d" % i) as c:
            c.ehlo()
            rep, t = fail_auth(c, password="guess-%d" % i)
            expect(rep, 535)
            assert t < 2.5, t
    with client_from(r, "127.0.0.34") as c:
        c.ehlo()
        rep, t = fail_auth(c, user="ALICE", password="guess-34")   # names are case-blind
        expect(rep, 535, "5.7.8")
        assert t >= 4.8, "failure for an account under attack answered after %.2fs" % t
    with client_from(r, "127.0.0.35") as c:
        c.ehlo()
        t0 = time.monotonic()
        expect(c.auth_plain("alice", RIGHT), 235, "2.7.0")
        assert time.monotonic() - t0 < 2.5
        expect(c.mail_transaction("alice@example.com", ["rcpt@example.net"],
                                  make_message(subject="still here")), 250)
    with client_from(r, "127.0.0.36") as c:
        c.ehlo()
        rep, t = fail_auth(c, user="carol")
        expect(rep, 535)
        assert t < 2.5, "another account was slowed: %.2fs" % t


def test_guessing_from_many_connections_of_one_address_locks_it(make_relevo):
    """Ten connections from one address guess in parallel: the address is locked
    after the limit however the guesses are spread over connections and worker
    threads, and nothing more is checked from it."""
    r = make_relevo(server={"workers": 4},
                    smtp={"auth_lockout_failures": 6, "auth_lockout_window": 600,
                          "max_auth_failures": 3})
    codes = []
    lock = threading.Lock()

    def guesser(n):
        try:
            with client_from(r, "127.0.0.40", timeout=30) as c:
                c.ehlo()
                for i in range(3):
                    rep = c.auth_plain("alice", "g-%d-%d" % (n, i))
                    with lock:
                        codes.append(rep.code)
                    if rep.code != 535:
                        break
        except (Closed, OSError):
            pass
    threads = [threading.Thread(target=guesser, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    checked = r.stderr().count("event=auth result=fail user=alice client=127.0.0.40")
    print("parallel guesses: %d answered, %d checked, codes %s" % (len(codes), checked, codes))
    # Guesses in flight when the limit is reached still finish; at most one per
    # connection can be in flight.
    assert 6 <= checked <= 6 + 10, checked
    assert 454 in codes
    with client_from(r, "127.0.0.40") as c:
        c.ehlo()
        assert_locked_out(c.auth_plain("alice", RIGHT))
