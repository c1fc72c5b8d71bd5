"""
test_queue_cli.py - `relevo queue list|show|delete`, with the daemon running and
with it stopped.

  queue list    one line per message: ID SENDER RECIPIENTS STATE NEXT-ATTEMPT
                (ID is 16 hex digits), or "queue is empty"
  queue show    the envelope and the message
  queue delete  removes it (durably)
"""

import re

import pytest

from conftest import make_message, submit, ID_RE


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


def test_queue_list_format(relevo):
    qid, _ = submit(relevo, rcpts=("b@example.net", "c@example.org"),
                    message=make_message(to="b@example.net"))
    r = relevo.cli_ok(["queue", "list"])
    lines = r.out.splitlines()
    assert len(lines) == 1, r
    toks = lines[0].split()
    assert ID_RE.match(toks[0]) and toks[0].upper() == qid, r
    assert toks[1].strip("<>") == "alice@example.com", r
    # both recipients are listed, before the state
    assert "b@example.net" in lines[0] and "c@example.org" in lines[0], r
    entry = relevo.queue_list()[0]
    # waiting for its first attempt, or deferred after it (our fake MX says 421)
    assert entry.state.lower() in ("queued", "deferred"), r


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
