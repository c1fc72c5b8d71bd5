"""
test_demo.py - `make run` (scripts/run-demo.sh) and the README's first examples
(issue 11, "The demo").

  banner     printed only once the daemon listens (a connection to the submission
             port it names gets 220 the moment the banner is out), with the ports of
             RELEVO_DEMO_*_PORT and an HTTP URL that answers 200.
  examples   the README's "A first message" commands (swaks, curl) and its
             `POST /v1/messages` example work as pasted against the demo (only the
             ports, the run/ directory and the API key substituted).
  config     run/relevo.yaml is written only when missing: an edited one is kept
             byte for byte on the next start, and RELEVO_DEMO_*_PORT are then
             reported as ignored.
  failure    a listener that cannot be bound: no banner, "did not start", the
             system's reason in the log, a non-zero exit.
  Ctrl-C     SIGINT to the process group (what a terminal sends) stops the daemon
             gracefully and `make run` exits 0.
"""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import RELEVO_BIN, pick_ports, sanitizer_env, sanitizer_findings

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEMO = os.path.join(ROOT, "scripts", "run-demo.sh")
START_TIMEOUT = 90


class Demo:
    def __init__(self, d, ports):
        self.dir = d
        self.ports = ports
        self.out = os.path.join(d, "demo-%d.out" % time.monotonic_ns())
        self.err = self.out.replace(".out", ".err")
        env = sanitizer_env()
        env["RELEVO_DEMO_DIR"] = os.path.join(d, "run")
        for k, v in ports.items():
            env["RELEVO_DEMO_%s_PORT" % k.upper()] = str(v)
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen([DEMO, RELEVO_BIN], stdin=subprocess.DEVNULL,
                                         stdout=o, stderr=e, env=env, cwd=d,
                                         start_new_session=True)

    def stdout(self):
        with open(self.out, errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.err, errors="replace") as f:
            return f.read()

    def wait_banner(self):
        deadline = time.monotonic() + START_TIMEOUT
        while "Press Ctrl-C to stop." not in self.stdout():
            assert self.proc.poll() is None, "demo exited (%s):\n%s\n%s" % (
                self.proc.returncode, self.stdout(), self.stderr())
            assert time.monotonic() < deadline, "no banner:\n%s\n%s" % (self.stdout(), self.stderr())
            time.sleep(0.05)
        return self.stdout()

    def ctrl_c(self):
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(60)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def demos(workdir):
    made = []
    yield lambda ports: made.append(Demo(workdir, ports)) or made[-1]
    for d in made:
        d.kill()
        assert not sanitizer_findings(d.stderr()), d.stderr()


def demo_ports():
    return dict(zip(["submission", "submissions", "relay", "http", "metrics"], pick_ports(5)))


def greeting(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        return s.recv(512).decode()


def readme_block(after, index=0):
    """The index-th ```sh block after the line starting with `after` in README.md."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    rest = text[text.index(after):]
    return re.findall(r"```sh\n(.*?)```", rest, re.S)[index]


def sh(script):
    r = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "%s\n%s%s" % (script, r.stdout, r.stderr)
    return r.stdout


def test_demo_banner_once_listening_and_readme_examples_work(demos, workdir):
    ports = demo_ports()
    d = demos(ports)
    banner = d.wait_banner()
    # The daemon already listens when the banner is out.
    assert greeting(ports["submission"]).startswith("220 "), banner
    assert "relevo is running" in banner and "is starting" not in banner
    for mode in ("submission", "submissions", "relay"):
        assert "127.0.0.1:%d" % ports[mode] in banner, (mode, banner)
    url = re.search(r"HTTP API\s+(http://\S+)", banner).group(1)
    assert url.startswith("http://127.0.0.1:%d/v1/" % ports["http"]), banner
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
    run = os.path.join(workdir, "run")
    key = open(os.path.join(run, "demo-apikey")).read().strip()
    assert key in banner

    # README, "A first message": swaks, then the two curls, as pasted.
    swaks = readme_block("## A first message", 0).replace("127.0.0.1:2587", "127.0.0.1:%d" % ports["submission"])
    out = sh(swaks)
    assert re.search(r"<~  250 2\.0\.0 queued as [0-9A-F]{16}", out), out
    curls = readme_block("## A first message", 2)
    curls = curls.replace("127.0.0.1:8025", "127.0.0.1:%d" % ports["http"]).replace("run/", run + "/")
    out = sh(curls)
    assert re.search(r'"id":\s*"[0-9A-F]{16}"', out) and '"events"' in out, out

    # README, "POST /v1/messages": the full example, with the demo's key.
    post = readme_block("### Sending: `POST /v1/messages`")
    post = re.sub(r"^KEY=rlv_\.\.\.$", "KEY=" + key, post, flags=re.M)
    post = post.replace("127.0.0.1:8025", "127.0.0.1:%d" % ports["http"])
    out = sh(post)
    assert re.search(r'"id":\s*"[0-9A-F]{16}"', out), out
    assert "carol@example.org" in out and "dave@example.org" in out, out

    assert d.ctrl_c() == 0, d.stderr()
    assert "event=stopped status=0" in d.stderr()


def test_demo_keeps_an_edited_config(demos, workdir):
    ports = demo_ports()
    d = demos(ports)
    d.wait_banner()
    assert d.ctrl_c() == 0, d.stderr()
    conf = os.path.join(workdir, "run", "relevo.yaml")
    with open(conf) as f:
        text = f.read()
    assert "max_recipients: 1000" in text
    edited = text.replace("max_recipients: 1000", "max_recipients: 7") + "# my own note\n"
    with open(conf, "w") as f:
        f.write(edited)

    d2 = demos(demo_ports())            # other ports asked for: the file wins
    banner = d2.wait_banner()
    with open(conf) as f:
        assert f.read() == edited
    assert "RELEVO_DEMO_*_PORT ignored" in d2.stderr()
    assert "127.0.0.1:%d" % ports["submission"] in banner, banner
    assert greeting(ports["submission"]).startswith("220 ")
    assert d2.ctrl_c() == 0, d2.stderr()


def test_demo_failed_start_prints_no_banner(demos):
    ports = demo_ports()
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", ports["submissions"]))
    busy.listen(1)
    try:
        d = demos(ports)
        rc = d.proc.wait(START_TIMEOUT)
    finally:
        busy.close()
    assert rc != 0
    assert "relevo is running" not in d.stdout() and "Press Ctrl-C" not in d.stdout(), d.stdout()
    err = d.stderr()
    assert "run-demo.sh: relevo did not start" in err, err
    assert re.search(r"127\.0\.0\.1:%d.*Address already in use" % ports["submissions"], err), err
