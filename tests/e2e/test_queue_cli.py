"""
test_queue_cli.py - `relevo queue list|show|delete|hold|release|flush`, with the
daemon running (through its control socket) and with it stopped (the spool
opened directly).

  queue list    a header, then per message "ID ARRIVED SIZE STATE <SENDER>" and
                an indented line per recipient with its state and last reply;
                --json; filters --state --from --to-domain --user --older-than
  queue show    the envelope and the headers; the body only with --body
  queue delete|hold|release|flush  several ids, or --all with the filters;
                delete records a "dropped" event per waiting recipient
"""

import json
import os
import re
import socket
import time
import urllib.parse

import pytest

from conftest import make_message, parse_queue_list, poll, submit, ID_RE, expect_status
from test_hardening_helpers import start_with_env


def submit_three(relevo):
    ids = []
    for i, rcpts in enumerate([("a@example.net",), ("b@example.net", "c@example.org"),
                               ("d@example.net",)]):
        qid, _ = submit(relevo, rcpts=rcpts,
                        message=make_message(subject="msg %d" % i, to=rcpts[0]))
        ids.append(qid)
    return ids


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_queue_list_empty(make_relevo, running):
    relevo = make_relevo(start=running)
    r = relevo.cli_ok(["queue", "list"])
    assert r.out.strip() == "queue is empty", r


def wait_deferred(relevo, qid, timeout=20):
    """Wait until qid's recipients were tried once (the fake MX answers 421)."""
    def tried():
        e = [x for x in relevo.queue_list() if x.id.upper() == qid]
        return e and e[0].state == "deferred" and e[0]
    return poll(tried, timeout=timeout, what="%s deferred" % qid)


def test_queue_list_format(relevo):
    message = make_message(to="b@example.net")
    qid, _ = submit(relevo, rcpts=("b@example.net", "c@example.org"), message=message)
    entry = wait_deferred(relevo, qid)
    r = relevo.cli_ok(["queue", "list"])
    lines = r.out.splitlines()
    assert lines[0].split() == ["ID", "ARRIVED", "SIZE", "STATE", "SENDER"], r
    assert len(lines) == 4, r
    toks = lines[1].split()
    assert ID_RE.match(toks[0]) and toks[0].upper() == qid, r
    arrived = time.mktime(time.strptime(toks[1], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(arrived - time.time()) < 120, r
    # the stored message: what was sent plus the trace headers
    assert int(toks[2]) > len(message), r
    assert toks[3] == "deferred" and toks[4] == "<alice@example.com>", r
    assert entry.sender == "alice@example.com"
    assert set(entry.rcpts) == {"b@example.net", "c@example.org"}, entry
    for addr, (state, rest) in entry.rcpts.items():
        assert state == "deferred", entry
        assert re.search(r"attempts=1\b", rest) and "next=" in rest, entry
        # each recipient's last deferral reason, as the remote server said it
        assert "status=4.3.2" in rest and "421 4.3.2 relevo-e2e fake MX" in rest, entry
    assert "1 message" in r.err, r


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_queue_list_json(relevo, running):
    qid, _ = submit(relevo, rcpts=("b@example.net", "c@example.org"),
                    message=make_message(to="b@example.net"))
    wait_deferred(relevo, qid)
    if not running:
        relevo.stop()
    r = relevo.cli_ok(["queue", "list", "--json"])
    doc = json.loads(r.out)
    assert doc["count"] == 1, doc
    [m] = doc["messages"]
    assert m["id"].upper() == qid and m["state"] == "deferred", m
    assert m["sender"] == "alice@example.com" and m["user"] == "alice", m
    assert m["held"] is False and m["size"] > 0, m
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", m["arrived"]), m
    assert [x["address"] for x in m["recipients"]] == ["b@example.net", "c@example.org"]
    for x in m["recipients"]:
        assert x["state"] == "deferred" and x["attempts"] == 1, x
        assert x["next_attempt"], x
        lr = x["last_reply"]
        assert lr["status"] == "4.3.2" and "421 4.3.2 relevo-e2e fake MX" in lr["reply"], x
        assert lr["remote"] and "127.0.0.1" in lr["remote"], x
    empty = relevo.cli_ok(["queue", "list", "--json", "--user", "nobody"])
    assert json.loads(empty.out) == {"messages": [], "count": 0}, empty


def submit_mix(relevo):
    """Three messages: alice to example.net, carol to example.org, alice to both."""
    a, _ = submit(relevo, rcpts=("a@example.net",), message=make_message(to="a@example.net"))
    c, _ = submit(relevo, sender="carol@example.net", user="carol", rcpts=("c@example.org",),
                  message=make_message(sender="carol@example.net", to="c@example.org"))
    b, _ = submit(relevo, rcpts=("b@example.net", "b@Example.ORG"),
                  message=make_message(to="b@example.net"))
    return a, c, b


def listed(relevo, *args):
    return sorted(e.id.upper() for e in parse_queue_list(
        relevo.cli_ok(["queue", "list", *args]).out))


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_queue_list_filters(relevo, running):
    a, c, b = submit_mix(relevo)
    if not running:
        relevo.stop()
    assert listed(relevo) == sorted([a, c, b])
    assert listed(relevo, "--user", "carol") == [c]
    assert listed(relevo, "--user=alice") == sorted([a, b])
    assert listed(relevo, "--from", "carol@EXAMPLE.net") == [c]
    assert listed(relevo, "--from", "example.com") == sorted([a, b])
    assert listed(relevo, "--from", "<>") == []
    assert listed(relevo, "--to-domain", "example.org") == sorted([c, b])
    assert listed(relevo, "--to-domain", "example.org", "--user", "alice") == [b]
    assert listed(relevo, "--older-than", "1h") == []
    time.sleep(1.5)
    assert listed(relevo, "--older-than", "1s") == sorted([a, c, b])
    relevo.cli_ok(["queue", "hold", c])
    assert listed(relevo, "--state", "held") == [c]
    for bad in (["--state", "frozen"], ["--older-than", "2x"], ["--older-than", "h"],
                ["--user"], ["--frob"], ["0123456789ABCDEF"]):
        r = relevo.cli(["queue", "list", *bad])
        assert r.rc == 2 and r.err.strip(), r


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_queue_several_ids_and_all(relevo, running):
    a, c, b = submit_mix(relevo)
    if not running:
        relevo.stop()
    r = relevo.cli_ok(["queue", "hold", a, b])
    assert a in r.out.upper() and b in r.out.upper(), r
    states = {e.id.upper(): e.state for e in relevo.queue_list()}
    assert states[a] == "held" and states[b] == "held" and states[c] != "held", states
    r = relevo.cli_ok(["queue", "release", "--all", "--to-domain", "example.org"])
    assert "2 messages released" in r.out, r
    assert listed(relevo, "--state", "held") == [a]
    # a filter without --all, ids with --all, nothing at all: usage errors, nothing done
    for bad in (["delete", "--user", "alice"], ["delete", a, "--all"], ["delete"],
                ["hold", "--all", "--state", "frozen"]):
        r = relevo.cli(["queue", *bad])
        assert r.rc == 2 and r.err.strip(), r
    assert listed(relevo) == sorted([a, c, b])
    # one unknown id among known ones: the others are done, the exit status says it
    r = relevo.cli(["queue", "delete", a, "0123456789ABCDEF"])
    assert r.rc == 1 and "0123456789ABCDEF" in r.err.upper(), r
    assert listed(relevo) == sorted([c, b])
    r = relevo.cli_ok(["queue", "delete", "--all", "--user", "carol"])
    assert "1 message deleted" in r.out, r
    assert listed(relevo) == [b]
    r = relevo.cli_ok(["queue", "delete", "--all", "--user", "carol"])
    assert "no message matches" in r.out, r
    if not running:
        relevo.start()
    assert listed(relevo) == [b]


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_queue_flush_held_says_so(relevo, running):
    held, _ = submit(relevo)
    other, _ = submit(relevo)
    relevo.cli_ok(["queue", "hold", held])
    if not running:
        relevo.stop()
    r = relevo.cli(["queue", "flush", held])
    assert r.rc == 1, r
    assert "held" in r.err and "flushed" not in r.out + r.err, r
    r = relevo.cli_ok(["queue", "flush", other])
    assert other in r.out.upper() and "held" not in r.out, r
    r = relevo.cli_ok(["queue", "flush"])
    assert "1 held message not attempted" in r.out, r
    assert [e.state for e in relevo.queue_list() if e.id.upper() == held] == ["held"]


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_queue_show_headers_body_on_request(relevo, running):
    body = b"The customer's private text.\r\n"
    qid, _ = submit(relevo, message=make_message(subject="private", body=body))
    if not running:
        relevo.stop()
    out = relevo.queue_show(qid, body=False)
    assert "Subject: private" in out and re.search(r"^Received:", out, re.M), out
    assert "sender:      <alice@example.com>" in out, out
    assert "customer's private text" not in out, out
    assert re.search(r"\[body: \d+ bytes not shown", out), out
    out = relevo.queue_show(qid)
    assert "The customer's private text." in out, out


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_queue_list_shows_every_message(relevo, running):
    ids = submit_three(relevo)
    if not running:
        relevo.stop()
    entries = relevo.queue_list()
    assert sorted(e.id.upper() for e in entries) == sorted(ids)
    by_id = {e.id.upper(): e for e in entries}
    assert "a@example.net" in by_id[ids[0]].line
    assert "b@example.net" in by_id[ids[1]].line and "c@example.org" in by_id[ids[1]].line
    assert "d@example.net" in by_id[ids[2]].line


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_queue_show(relevo, running):
    body = b"Show me this body.\r\nSecond line.\r\n"
    qid, _ = submit(relevo, rcpts=("b@example.net", "c@example.org"),
                    message=make_message(subject="show test", to="b@example.net",
                                         body=body))
    if not running:
        relevo.stop()
    out = relevo.queue_show(qid)
    assert qid in out.upper()
    assert "alice@example.com" in out
    assert "b@example.net" in out and "c@example.org" in out
    assert "Subject: show test" in out
    assert re.search(r"^Received:", out, re.M), out
    assert body.decode().replace("\r\n", "\n") in out.replace("\r\n", "\n")


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_queue_delete(relevo, running):
    ids = submit_three(relevo)
    if not running:
        relevo.stop()
    r = relevo.cli_ok(["queue", "delete", ids[1]])
    assert sorted(relevo.queue_ids()) == sorted([ids[0], ids[2]])
    r = relevo.cli(["queue", "show", ids[1]])
    assert r.rc == 1, r
    # the deletion is durable, and the rest of the queue is intact
    if running:
        relevo.kill9()
    relevo.start()
    assert sorted(relevo.queue_ids()) == sorted([ids[0], ids[2]])
    assert "Subject: msg 0" in relevo.queue_show(ids[0])
    assert "Subject: msg 2" in relevo.queue_show(ids[2])


def test_queue_delete_while_running_then_submit(relevo):
    ids = submit_three(relevo)
    for qid in ids:
        relevo.cli_ok(["queue", "delete", qid])
    assert relevo.cli_ok(["queue", "list"]).out.strip() == "queue is empty"
    # the running daemon is unaffected
    qid, _ = submit(relevo, message=make_message(subject="after deletes"))
    assert relevo.queue_ids() == [qid]
    relevo.restart()
    assert relevo.queue_ids() == [qid]


def test_queue_lowercase_id_accepted(relevo):
    qid, _ = submit(relevo)
    r = relevo.cli(["queue", "show", qid.lower()])
    assert r.rc == 0 and "alice@example.com" in r.out, r


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
@pytest.mark.parametrize("verb", ["show", "delete"])
def test_queue_unknown_id_fails(make_relevo, running, verb):
    relevo = make_relevo(start=running)
    submit_ok = None
    if running:
        submit_ok, _ = submit(relevo)
    r = relevo.cli(["queue", verb, "0123456789ABCDEF"])
    assert r.rc == 1, r
    assert r.err.strip(), "no explanation on stderr: %r" % r
    if submit_ok:
        assert relevo.queue_ids() == [submit_ok]


@pytest.mark.parametrize("bad", ["xyz", "0123", "0123456789ABCDEFG"])
def test_queue_malformed_id_fails(relevo, bad):
    r = relevo.cli(["queue", "show", bad])
    assert r.rc in (1, 2), r
    assert r.err.strip(), r


def test_queue_unknown_subcommand_is_usage_error(relevo):
    r = relevo.cli(["queue", "frobnicate"])
    assert r.rc == 2, r
    assert "unknown queue subcommand 'frobnicate'" in r.err, r


@pytest.mark.parametrize("sub", ["list", "show", "delete", "hold", "release", "flush"])
def test_queue_help_anywhere(relevo, sub):
    for args in ([sub, "--help"], [sub, "-h"], [sub, "0123456789ABCDEF", "--help"]):
        r = relevo.cli(["queue", *args])
        assert r.rc == 0, r
        assert r.out.startswith("usage: relevo queue %s" % sub), r
        assert "not a message id" not in r.err, r


def test_queue_after_crash_offline_delete_then_restart(relevo):
    ids = submit_three(relevo)
    relevo.kill9()
    # the crashed daemon's lock and control socket are stale: the CLI works offline
    relevo.cli_ok(["queue", "delete", ids[0]])
    assert sorted(relevo.queue_ids()) == sorted(ids[1:])
    relevo.start()
    assert sorted(relevo.queue_ids()) == sorted(ids[1:])
    # and the restarted daemon's control socket works
    relevo.cli_ok(["queue", "delete", ids[1]])
    assert relevo.queue_ids() == [ids[2]]


def test_second_daemon_on_same_data_dir_refused(make_relevo):
    import subprocess
    from conftest import RELEVO_BIN, sanitizer_env, render_yaml, pick_ports
    first = make_relevo()
    qid, _ = submit(first)
    cfg = dict(first.config)
    ports = pick_ports(3)
    cfg["listen"] = [{"address": "127.0.0.1:%d" % p, "mode": m}
                     for p, m in zip(ports, ("submission", "submissions", "relay"))]
    path = first.conf_path + ".second.yaml"
    with open(path, "w") as f:
        f.write(render_yaml(cfg))
    try:
        r = subprocess.run([RELEVO_BIN, "serve", "-c", path], capture_output=True,
                           text=True, timeout=15, env=sanitizer_env())
    except subprocess.TimeoutExpired:
        raise AssertionError("a second daemon started on a data_dir already in use")
    assert r.returncode != 0, r
    assert r.stderr.strip(), r
    # the first daemon and its queue are unharmed
    assert first.queue_ids() == [qid]
    qid2, _ = submit(first)
    assert sorted(first.queue_ids()) == sorted([qid, qid2])


def test_queue_list_during_concurrent_submissions(relevo):
    """`queue list` reads the spool while the daemon appends to it: every run
    succeeds and shows every message acknowledged before it started."""
    import threading
    acked, lock, stop, errors = [], threading.Lock(), threading.Event(), []

    def sender():
        try:
            with relevo.client("submissions") as c:
                c.login("alice")
                while not stop.is_set():
                    r = c.mail_transaction("alice@example.com", ["r@example.net"],
                                           make_message(body=(b"q" * 70 + b"\r\n") * 40))
                    assert r.code == 250, r
                    with lock:
                        acked.append(r.queued_id)
        except Exception as e:          # reported below
            errors.append(e)

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        from conftest import poll
        poll(lambda: len(acked) >= 3 or errors, timeout=30, what="first acknowledgements")
        for _ in range(15):
            with lock:
                before = set(acked)
            ids = set(relevo.queue_ids())
            missing = before - ids
            assert not missing, "acknowledged but not listed: %s" % sorted(missing)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert len(acked) > 0
    assert set(relevo.queue_ids()) == set(acked)


# ---------------------------------------------------------------------------
# queue delete: a "dropped" event per waiting recipient (API, webhooks)
# ---------------------------------------------------------------------------

def api_get(r, path):
    return expect_status(r.api.get(path), 200)


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_queue_delete_records_dropped_events(make_relevo, make_api_relevo, running):
    from test_events import Receiver
    rec = Receiver()
    try:
        r = make_relevo(start=False)
        r.config["webhooks"] = [{"url": rec.url, "secret": "whsec-queue-0123456789"}]
        r = make_api_relevo(relevo=r, http={"webhooks_allow_private": True})
        qid, _ = submit(r, rcpts=("b@example.net", "c@example.org"),
                        message=make_message(to="b@example.net"))
        wait_deferred(r, qid)
        keep, _ = submit(r)
        if not running:
            r.stop()
        out = r.cli_ok(["queue", "delete", qid]).out
        assert qid in out.upper() and "deleted" in out, out
        if not running:
            r.start()
        assert [e.id.upper() for e in r.queue_list()] == [keep]

        def dropped():
            evs = api_get(r, "/v1/events?" + urllib.parse.urlencode(
                {"type": "dropped"}))["events"]
            return len(evs) >= 2 and evs
        evs = poll(dropped, timeout=15, what="two dropped events")
        assert len(evs) == 2, evs
        assert sorted(e["recipient"] for e in evs) == ["b@example.net", "c@example.org"]
        for e in evs:
            assert e["type"] == "dropped" and e["message_id"].upper() == qid, e
            assert e["reply"] == "deleted by operator", e
        # the message is finished, each recipient finished as dropped
        m = api_get(r, "/v1/messages/%s" % qid)
        assert m["status"] == "finished", m
        assert sorted((x["address"], x["state"]) for x in m["recipients"]) == [
            ("b@example.net", "dropped"), ("c@example.org", "dropped")], m
        # and the webhook receiver got them, signed
        got = poll(lambda: len([e for e in rec.events() if e.get("type") == "dropped"]) >= 2
                   and rec.events(), timeout=20, what="dropped webhooks")
        hooks = [e for e in got if e.get("type") == "dropped"]
        assert sorted(e["recipient"] for e in hooks) == ["b@example.net", "c@example.org"]
        # the message left in the queue has no such event
        m2 = api_get(r, "/v1/messages/%s" % keep)
        assert all(x["state"] != "dropped" for x in m2["recipients"]), m2
    finally:
        rec.close()


def ctl_send(relevo, line):
    """A connected control socket with line sent (the daemon's protocol)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(os.path.join(relevo.data_dir, "control.sock"))
    s.sendall(line.encode() + b"\r\n")
    return s


def ctl_answer(s):
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode()


def test_queue_hold_waits_for_the_disk_not_the_main_loop(make_relevo):
    """A hold through the control socket is answered once its record is durable,
    and the main loop serves other clients meanwhile (issue 13: the fdatasync runs
    on the spool writer's thread, never on the main loop). Every group commit is
    made 3 s slower (RELEVO_FAULT=slow_fsync): while the hold waits, a ping on the
    same socket is answered at once; the hold's answer is the usual one, and the
    message is held."""
    relevo = make_relevo(start=False)
    start_with_env(relevo, {"RELEVO_FAULT": "slow_fsync:1+"})
    qid, _ = submit(relevo, rcpts=("a@example.net",))
    t0 = time.monotonic()
    hold = ctl_send(relevo, "queue hold %s" % qid)
    time.sleep(0.3)  # the daemon has read the hold and queued its record
    t1 = time.monotonic()
    pong = ctl_answer(ctl_send(relevo, "ping"))
    ping_s = time.monotonic() - t1
    answer = ctl_answer(hold)
    hold_s = time.monotonic() - t0
    assert pong == "pong\nexit 0\n", pong
    assert answer.upper() == ("%s held\nexit 0\n" % qid).upper(), answer
    assert hold_s >= 2.5, "the slow disk did not slow the hold (%.1f s)" % hold_s
    assert ping_s < 1.5, "the main loop waited for the disk: ping took %.1f s" % ping_s
    assert [e.state for e in relevo.queue_list() if e.id.upper() == qid] == ["held"]
