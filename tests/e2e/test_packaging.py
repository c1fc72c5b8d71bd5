"""
test_packaging.py - installing relevo (issue 11, "Install and service").

  install    scripts/install.sh (what `make install` runs) honours PREFIX and DESTDIR
             and installs the binary, relevo.service, the sample configuration and
             the two man pages; `make install` passes PREFIX and DESTDIR through.
  unit       `systemd-analyze verify` reports nothing; `systemd-analyze security`
             rates it no worse than the exposure level the README records; the
             unit has the shape the README promises (Type=notify, HUP reload, the
             relevo user with CAP_NET_BIND_SERVICE only, the sandbox).
  man        relevo(8) and relevo.yaml(5) are generated from the README's tables,
             pass `groff -ww` and `man --warnings`, and name every command and key.
  sample     /etc/relevo/relevo.yaml.example names every key of the README's tables
             with its default; with the hostname and TLS placeholders filled it
             passes `relevo check-config`, and so it does with every line
             uncommented; as shipped (placeholders not filled) it does not.
  deb        `scripts/build-deb.sh` (what `make deb` runs) builds a package that
             lintian passes without errors or warnings, whose version is
             `relevo --version`'s, and that installs into a scratch root: a copy of
             this machine's / (overlayfs over a tmpfs, in a private mount
             namespace, so the real system is never touched), where dpkg runs the
             real maintainer scripts: the relevo user and /var/lib/relevo exist, the
             installed unit verifies with its man pages, the relevo user can run
             check-config on a filled-in sample, and purge removes /var/lib/relevo.
"""

import importlib.util
import os
import pwd
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import RELEVO_BIN, sanitizer_env, sanitizer_findings

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SAMPLE = os.path.join(ROOT, "packaging", "relevo.yaml.example")
UNIT_IN = os.path.join(ROOT, "packaging", "relevo.service.in")
README = os.path.join(ROOT, "README.md")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, chroot)")


def _genman():
    spec = importlib.util.spec_from_file_location("genman", os.path.join(ROOT, "scripts", "gen-man.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GENMAN = _genman()


def readme_lines():
    with open(README, encoding="utf-8") as f:
        return f.read().splitlines()


def readme_keys():
    """(key, default cell) of every row of the README's key tables."""
    out = []
    for cell, _meaning, default in GENMAN.key_rows(readme_lines()):
        out.append((re.findall(r"`([^`]+)`", cell)[0], default))
    return out


def readme_commands():
    return [c for c, _ in GENMAN.command_rows(GENMAN.sections(readme_lines()))]


def run(args, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(args, **kw)


def version():
    out = run([RELEVO_BIN, "--version"], env=sanitizer_env()).stdout.strip()
    assert re.fullmatch(r"relevo \d+\.\d+\.\d+", out), out
    return out.split()[1]


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """relevo installed with PREFIX (and SYSCONFDIR) in a scratch directory, no DESTDIR:
    the unit's ExecStart then names a binary that exists."""
    p = str(tmp_path_factory.mktemp("prefix"))
    env = dict(os.environ, PREFIX=p, SYSCONFDIR=os.path.join(p, "etc"))
    r = run([os.path.join(ROOT, "scripts", "install.sh"), RELEVO_BIN], env=env)
    assert r.returncode == 0, r.stderr
    return p


# ---------------------------------------------------------------------------
# make install
# ---------------------------------------------------------------------------

def test_install_honours_destdir_and_prefix(tmp_path):
    dest = str(tmp_path / "dest")
    env = dict(os.environ, DESTDIR=dest, PREFIX="/opt/relevo")
    r = run([os.path.join(ROOT, "scripts", "install.sh"), RELEVO_BIN], env=env)
    assert r.returncode == 0, r.stderr
    want = {
        "opt/relevo/sbin/relevo": 0o755,
        "opt/relevo/lib/systemd/system/relevo.service": 0o644,
        "etc/relevo/relevo.yaml.example": 0o644,
        "opt/relevo/share/man/man8/relevo.8": 0o644,
        "opt/relevo/share/man/man5/relevo.yaml.5": 0o644,
    }
    found = sorted(os.path.relpath(os.path.join(d, f), dest)
                   for d, _, fs in os.walk(dest) for f in fs)
    assert found == sorted(want), found
    for path, mode in want.items():
        assert os.stat(os.path.join(dest, path)).st_mode & 0o7777 == mode, path
    with open(os.path.join(dest, "opt/relevo/lib/systemd/system/relevo.service")) as f:
        unit = f.read()
    assert "\nExecStart=/opt/relevo/sbin/relevo serve -c /etc/relevo/relevo.yaml\n" in unit
    assert "@SBINDIR@" not in unit
    with open(SAMPLE, "rb") as a, open(os.path.join(dest, "etc/relevo/relevo.yaml.example"), "rb") as b:
        assert a.read() == b.read()


def test_make_install_passes_prefix_and_destdir(tmp_path):
    """`make install` runs the same script with the Makefile's variables (-n: the
    build it depends on is not rerun here)."""
    r = run(["make", "-n", "-C", ROOT, "install", "PREFIX=/opt/x", "DESTDIR=%s" % tmp_path])
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.replace("\\\n", " ").splitlines() if "scripts/install.sh" in l]
    assert line, r.stdout
    assert 'PREFIX="/opt/x"' in line[0] and 'DESTDIR="%s"' % tmp_path in line[0], line[0]
    assert 'SBINDIR="/opt/x/sbin"' in line[0], line[0]


# ---------------------------------------------------------------------------
# The unit
# ---------------------------------------------------------------------------

def unit_settings(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")):
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
    return out


def test_unit_verifies(prefix):
    unit = os.path.join(prefix, "lib/systemd/system/relevo.service")
    r = run(["systemd-analyze", "verify", unit],
            env=dict(os.environ, MANPATH=os.path.join(prefix, "share/man")))
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
        "systemd-analyze verify:\n%s%s" % (r.stdout, r.stderr)


def recorded_exposure():
    text = "\n".join(readme_lines())
    m = re.search(r"exposure level ([0-9]+\.[0-9])", text)
    assert m, "the README records no 'exposure level N.N' for relevo.service"
    return float(m.group(1))


def test_unit_exposure_no_worse_than_recorded(prefix):
    unit = os.path.join(prefix, "lib/systemd/system/relevo.service")
    r = run(["systemd-analyze", "security", "--offline=true", "--no-pager", unit])
    assert r.returncode == 0, r.stderr
    m = re.search(r"Overall exposure level for relevo\.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout
    score = float(m.group(1))
    assert score <= recorded_exposure(), \
        "exposure %.1f is above the %.1f the README records:\n%s" % (
            score, recorded_exposure(), r.stdout)


def test_unit_runs_as_relevo_with_only_bind_service(prefix):
    s = unit_settings(os.path.join(prefix, "lib/systemd/system/relevo.service"))
    assert s["Type"] == ["notify"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["User"] == ["relevo"] and s["Group"] == ["relevo"]
    assert s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    for k, v in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                 "PrivateDevices": "yes", "ProtectHome": "yes", "StateDirectory": "relevo",
                 "StateDirectoryMode": "0700", "UMask": "0077",
                 "SystemCallArchitectures": "native", "MemoryDenyWriteExecute": "yes"}.items():
        assert s.get(k) == [v], (k, s.get(k))
    assert "@system-service" in s["SystemCallFilter"]
    # the sample config's data_dir is the unit's StateDirectory, and run_as its User
    sample = yaml.safe_load(open(SAMPLE))
    assert sample["data_dir"] == "/var/lib/relevo" and sample["run_as"] == "relevo"


# ---------------------------------------------------------------------------
# Man pages
# ---------------------------------------------------------------------------

def rendered(path):
    r = run(["man", "--warnings", "-l", path],
            env=dict(os.environ, MANWIDTH="200", MAN_KEEP_FORMATTING="", LC_ALL="C.UTF-8"))
    assert r.returncode == 0 and r.stderr.strip() == "", "man --warnings %s:\n%s" % (path, r.stderr)
    return re.sub(r".\x08", "", r.stdout)


def test_man_pages_are_valid_and_name_every_command_and_key(prefix):
    man8 = os.path.join(prefix, "share/man/man8/relevo.8")
    man5 = os.path.join(prefix, "share/man/man5/relevo.yaml.5")
    for page in (man8, man5):
        r = run(["groff", "-man", "-ww", "-z", page])
        assert r.returncode == 0 and r.stderr.strip() == "", "groff -ww %s:\n%s" % (page, r.stderr)
    text8, text5 = rendered(man8), rendered(man5)
    flat8 = " ".join(text8.split())
    assert "relevo %s" % version() in text8
    commands = readme_commands()
    assert len(commands) >= 20, commands
    for cmd in commands:
        plain = " ".join(re.sub(r"[`\\]", "", cmd).split())
        assert plain in flat8, "relevo(8) lacks the README's command %r" % plain
    keys = readme_keys()
    assert len(keys) >= 60, keys
    for key, _ in keys:
        assert re.search(r"^ {7}%s(\s|$)" % re.escape(key), text5, re.M), \
            "relevo.yaml(5) has no entry for the README's key %r" % key


# ---------------------------------------------------------------------------
# The sample configuration
# ---------------------------------------------------------------------------

KEYLINE = re.compile(r"^#(\s*(?:- )?[a-z_.]+:(?:\s|$))")


def uncommented(text):
    """The sample with every commented-out key line turned on."""
    return "\n".join(KEYLINE.sub(r"\1", l) for l in text.splitlines()) + "\n"


def flatten(node, path=""):
    """key paths of a parsed config: list items as [], route domains as DOMAIN."""
    out = {}
    if isinstance(node, dict):
        for k, v in node.items():
            name = "DOMAIN" if path == "delivery.routes" else str(k)
            p = name if not path else path + "." + name
            out[p] = v
            out.update(flatten(v, p))
    elif isinstance(node, list):
        for item in node:
            out.update(flatten(item, path + "[]"))
    return out


def fill(text, tls, data_dir, run_as):
    """The sample with its placeholders filled as an operator would."""
    text = text.replace("relay.example.net", "relay.test")
    text = text.replace("/etc/relevo/fullchain.pem", tls.cert)
    text = text.replace("/etc/relevo/privkey.pem", tls.key)
    text = text.replace("data_dir: /var/lib/relevo", "data_dir: " + data_dir)
    return text.replace("run_as: relevo", "run_as: " + run_as)


def sample_text():
    with open(SAMPLE) as f:
        return f.read()


def test_sample_names_every_key_with_its_default():
    text = sample_text()
    keys = flatten(yaml.safe_load(uncommented(text)))
    missing, wrong = [], []
    for key, default in readme_keys():
        if key not in keys:
            last = key.rsplit(".", 1)[-1]
            if not (key.startswith("delivery.routes.DOMAIN.") and re.search(r"\b%s\b" % last, text)):
                missing.append(key)
            continue
        m = re.match(r"^`([^`]+)`", default)
        if not m or m.group(1).count(".") and not m.group(1)[0].isdigit() and "/" not in m.group(1):
            continue        # no literal default ("none", "empty", another key's value)
        if yaml.safe_load(m.group(1)) != keys[key]:
            wrong.append("%s: sample %r, README default %s" % (key, keys[key], m.group(1)))
    assert not missing, "keys in the README's tables but not in %s: %s" % (SAMPLE, missing)
    assert not wrong, "sample values that are not the README's defaults:\n" + "\n".join(wrong)


def check_config(path):
    return run([RELEVO_BIN, "check-config", "-c", path], env=sanitizer_env())


def test_sample_passes_check_config_once_filled(tmp_path, tls_ca):
    me = pwd.getpwuid(os.getuid()).pw_name
    data = str(tmp_path / "data")
    shipped = str(tmp_path / "shipped.yaml")
    shutil.copy(SAMPLE, shipped)
    r = check_config(shipped)
    assert r.returncode == 1 and "tls.cert" in r.stderr, (r.returncode, r.stderr)

    for name, text in (("filled", fill(sample_text(), tls_ca, data, me)),
                       ("all-keys", uncommented(fill(sample_text(), tls_ca, data, me)))):
        path = str(tmp_path / (name + ".yaml"))
        with open(path, "w") as f:
            f.write(text)
        r = check_config(path)
        assert r.returncode == 0, "%s:\n%s%s" % (name, r.stdout, r.stderr)
        assert "configuration is valid" in r.stdout + r.stderr
        assert not sanitizer_findings(r.stderr), r.stderr


# ---------------------------------------------------------------------------
# The Debian package
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("deb"))
    r = run([os.path.join(ROOT, "scripts", "build-deb.sh"), RELEVO_BIN, out])
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    assert os.path.isfile(path), r.stdout
    return path


# Both deb tests share one build of the package (the module's `deb` fixture): under
# xdist they run in one group, on one worker, so the package is built once.
@pytest.mark.xdist_group("deb")
def test_deb_is_lintian_clean_and_versioned_from_the_build(deb):
    assert os.path.basename(deb).startswith("relevo_%s_" % version())
    fields = run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends"]).stdout
    assert "Package: relevo\n" in fields and "Version: %s\n" % version() in fields, fields
    assert "adduser" in fields and "libc6" in fields, fields
    files = run(["dpkg-deb", "-c", deb]).stdout
    for path in ("./usr/sbin/relevo", "./lib/systemd/system/relevo.service",
                 "./etc/relevo/relevo.yaml.example", "./usr/share/man/man8/relevo.8.gz",
                 "./usr/share/man/man5/relevo.yaml.5.gz", "./usr/share/doc/relevo/copyright"):
        assert re.search(r" %s$" % re.escape(path), files, re.M), (path, files)
    r = run(["lintian", "--fail-on", "error,warning", "--no-tag-display-limit", deb], timeout=600)
    problems = [l for l in r.stdout.splitlines() if l.startswith(("E:", "W:"))]
    assert r.returncode == 0 and not problems, "lintian:\n%s%s" % (r.stdout, r.stderr)


SCRATCH = r"""
set -eu
S=$1 DEB=$2 CERT=$3 KEY=$4 SAMPLE_FILLED=$5
mount -t tmpfs tmpfs "$S"
mkdir "$S/upper" "$S/work" "$S/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$S/upper,workdir=$S/work" "$S/root"
R=$S/root
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
cp "$DEB" "$R/tmp/relevo.deb"
cp "$CERT" "$R/tmp/cert.pem"
cp "$KEY" "$R/tmp/key.pem"
cp "$SAMPLE_FILLED" "$R/tmp/relevo.yaml"
chroot "$R" /bin/sh -eu <<'IN'
echo "@@ user-before $(getent passwd relevo || echo none)"
dpkg -i /tmp/relevo.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 1; }
echo "@@ user $(getent passwd relevo)"
echo "@@ group $(getent group relevo)"
echo "@@ datadir $(stat -c '%U:%G %a' /var/lib/relevo)"
echo "@@ etc $(stat -c '%U:%G %a' /etc/relevo)"
echo "@@ version $(/usr/sbin/relevo --version)"
echo "@@ conffiles $(dpkg-query -W -f='${Conffiles}' relevo | tr -s ' \n' ' ')"
systemd-analyze verify /lib/systemd/system/relevo.service >/tmp/verify.log 2>&1 && v=ok || v=failed
echo "@@ verify $v $(tr '\n' '|' </tmp/verify.log)"
install -o relevo -g relevo -m 600 /tmp/key.pem /etc/relevo/privkey.pem
install -m 644 /tmp/cert.pem /etc/relevo/fullchain.pem
install -m 640 -g relevo /tmp/relevo.yaml /etc/relevo/relevo.yaml
runuser -u relevo -- /usr/sbin/relevo check-config >/tmp/check.log 2>&1 && c=ok || c=failed
echo "@@ check-config $c $(tr '\n' '|' </tmp/check.log)"
dpkg -r relevo >/dev/null 2>&1
echo "@@ after-remove $(test -d /var/lib/relevo && echo datadir-kept) $(test -e /usr/sbin/relevo && echo binary-left || echo binary-gone)"
dpkg -P relevo >/dev/null 2>&1
echo "@@ after-purge $(test -e /var/lib/relevo && echo datadir-left || echo datadir-gone) $(getent passwd relevo >/dev/null && echo user-kept)"
IN
"""


@needs_root
@pytest.mark.xdist_group("deb")
def test_deb_installs_into_a_scratch_root(deb, tmp_path, tls_ca):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    filled = tmp_path / "filled.yaml"
    text = sample_text().replace("relay.example.net", "relay.test")
    filled.write_text(text)
    r = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRATCH, "scratch",
             str(scratch), deb, tls_ca.cert, tls_ca.key, str(filled)], timeout=600)
    assert r.returncode == 0, "scratch install failed:\n%s%s" % (r.stdout, r.stderr)
    got = dict(l[3:].split(" ", 1) for l in r.stdout.splitlines() if l.startswith("@@ "))
    assert got["user-before"] == "none", "a relevo user exists already on this machine"
    assert re.fullmatch(r"relevo:x:\d+:\d+:[^:]*:/var/lib/relevo:/usr/sbin/nologin", got["user"]), got
    uid = int(got["user"].split(":")[2])
    assert uid < 1000, got["user"]
    assert got["group"].startswith("relevo:x:"), got
    assert got["datadir"] == "relevo:relevo 700", got
    assert got["etc"] == "root:root 755", got
    assert got["version"] == "relevo %s" % version(), got
    assert "/etc/relevo/relevo.yaml.example" in got["conffiles"], got
    assert got["verify"].startswith("ok"), got["verify"]
    assert got["check-config"].startswith("ok") and "configuration is valid" in got["check-config"], got
    assert got["after-remove"].split() == ["datadir-kept", "binary-gone"], got
    assert got["after-purge"].split() == ["datadir-gone", "user-kept"], got
    # and nothing of it reached the real system
    with open("/etc/passwd") as f:
        assert not re.search(r"^relevo:", f.read(), re.M)
