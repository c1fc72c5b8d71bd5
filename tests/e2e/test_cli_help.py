"""
test_cli_help.py - every command and subcommand answers --help (and -h) with its
usage and exit 0, wherever the option is on the line; unknown subcommands say so
and exit 2; `relevo --help` lists every command and subcommand. The list is read
from `relevo --help` itself, so a subcommand added later is covered.
"""

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import RELEVO_BIN, sanitizer_env, sanitizer_findings


def run(*args):
    r = subprocess.run([RELEVO_BIN, *args], capture_output=True, text=True, timeout=30,
                       env=sanitizer_env(), stdin=subprocess.DEVNULL)
    assert not sanitizer_findings(r.stderr), r.stderr
    return r


def run_all(arglists):
    """run() for each argument list, a few at a time (each is a process start of the
    sanitizer build, mostly waiting); the results in the same order."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda a: run(*a), arglists))


def listed():
    """(command, subcommand or None, the usage line) from `relevo --help`."""
    r = run("--help")
    assert r.returncode == 0, r
    out = []
    for line in r.stdout.splitlines():
        m = re.match(r"^\s+relevo ([a-z-]+)(?: ([a-z][a-z-]*))?(?:\s|$)", line)
        if m:
            out.append((m.group(1), m.group(2), line.strip()))
    return out


def test_top_level_help_lists_every_command_and_subcommand():
    r = run("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: relevo"), r
    cmds = {(c, s) for c, s, _ in listed()}
    for want in [("serve", None), ("check-config", None), ("user", "add"), ("user", "list"),
                 ("user", "del"), ("user", "passwd"), ("user", "sandbox"), ("domain", "add"),
                 ("domain", "records"), ("domain", "rotate"), ("domain", "retire-key"),
                 ("domain", "list"), ("domain", "del"), ("domain", "check"),
                 ("queue", "list"), ("queue", "show"), ("queue", "delete"), ("queue", "hold"),
                 ("queue", "release"), ("queue", "flush"), ("spf", "eval"),
                 ("apikey", "create"), ("apikey", "list"), ("apikey", "revoke"),
                 ("domain", "activate"), ("sendmail", None)]:
        assert want in cmds, "%r missing from relevo --help:\n%s" % (want, r.stdout)
    for h in ("-h", "help"):
        assert run(h).stdout == r.stdout
    assert run().returncode == 2


def test_version():
    r = run("--version")
    assert r.returncode == 0 and re.match(r"^relevo \S+\n$", r.stdout), r


@pytest.mark.parametrize("opt", ["--help", "-h"])
def test_every_subcommand_answers_help(opt):
    seen = listed()
    assert len(seen) >= 20, seen
    checks = []                 # (words, args)
    for cmd, sub, line in seen:
        if cmd == "sendmail" and opt == "-h":
            continue            # sendmail's -h is its legacy hop-count option
        words = [cmd] + ([sub] if sub else [])
        # the option alone, after arguments, before them, and with -c
        for args in (words + [opt], words + ["x@example.com", opt],
                     words[:1] + [opt] + words[1:], words + [opt, "-c", "/nonexistent.yaml"]):
            checks.append((words, args))
    for (words, args), r in zip(checks, run_all([a for _, a in checks])):
        assert r.returncode == 0, "relevo %s: %r" % (" ".join(args), r)
        assert r.stdout.startswith("usage: relevo " + " ".join(words[:1])), r
        assert r.stderr == "", r
        if args == words + [opt]:
            assert " ".join(words) in r.stdout, r
    cmds = [c for c in sorted({c for c, _, _ in seen}) if not (c == "sendmail" and opt == "-h")]
    for cmd, r in zip(cmds, run_all([[c, opt] for c in cmds])):
        assert r.returncode == 0 and r.stdout.startswith("usage: relevo"), r
        # every subcommand of cmd is in its own help too
        for c, sub, _ in seen:
            if c == cmd and sub:
                assert "relevo %s %s" % (cmd, sub) in r.stdout or \
                       "queue %s" % sub in r.stdout, (cmd, sub, r.stdout)


def test_unknown_subcommands_are_usage_errors():
    for cmd in sorted({c for c, s, _ in listed() if s}):
        r = run(cmd, "frobnicate", "-c", "/nonexistent.yaml")
        assert r.returncode == 2, r
        assert "unknown %s subcommand 'frobnicate'" % cmd in r.stderr, r
        assert "usage:" in r.stderr, r
    r = run("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr, r
