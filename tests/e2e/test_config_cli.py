"""
test_config_cli.py - `relevo check-config -c FILE`: exit 0 for a valid file, else
exit 1 with errors that name the offending key; unknown keys are errors; `serve`
refuses to start with a bad file.
"""

import copy
import os

import pytest

import subprocess

from conftest import render_yaml, default_config, RELEVO_BIN, sanitizer_env


@pytest.fixture
def inst(make_relevo):
    return make_relevo(users=False, start=False)


def check(inst, cfg=None, text=None):
    inst.write_config(text if text is not None else render_yaml(cfg))
    return inst.cli(["check-config"])


def test_spec_config_is_valid(inst):
    # exactly the documented example: delivery: {port: 25}, no routes
    cfg = default_config(inst.workdir, inst.tls, inst.ports)
    assert cfg["delivery"] == {"port": 25}
    r = check(inst, cfg)
    assert r.rc == 0, r
    assert r.err.count("\n") <= 1, r


def test_harness_config_is_valid(inst):
    r = inst.cli(["check-config"])
    assert r.rc == 0, r


def test_minimal_relay_only_config_is_valid(inst):
    text = ("hostname: relay.test\n"
            "data_dir: %s\n"
            "listen:\n"
            "  - {address: 127.0.0.1:%d, mode: relay}\n"
            "trusted_networks: [127.0.0.0/8, \"::1/128\"]\n"
            % (inst.data_dir, inst.ports["relay"]))
    r = check(inst, text=text)
    assert r.rc == 0, r


def mutate(inst, fn):
    cfg = copy.deepcopy(inst.config)
    fn(cfg)
    return check(inst, cfg)


def assert_error_names(r, *keys):
    assert r.rc == 1, r
    for k in keys:
        assert k in r.err, "error does not name %r: %r" % (k, r)


def test_unknown_top_level_key(inst):
    r = mutate(inst, lambda c: c.__setitem__("frobnicate", 1))
    assert_error_names(r, "frobnicate")


def test_unknown_smtp_key(inst):
    r = mutate(inst, lambda c: c["smtp"].__setitem__("max_bananas", 3))
    assert_error_names(r, "max_bananas")


def test_unknown_tls_key(inst):
    r = mutate(inst, lambda c: c["tls"].__setitem__("ciphers_please", "all"))
    assert_error_names(r, "ciphers_please")


def test_unknown_listen_key(inst):
    r = mutate(inst, lambda c: c["listen"][1].__setitem__("colour", "blue"))
    assert_error_names(r, "colour")


def test_bad_listen_mode(inst):
    r = mutate(inst, lambda c: c["listen"][2].__setitem__("mode", "smtps"))
    assert_error_names(r, "mode")
    assert "listen" in r.err


def test_bad_listen_address(inst):
    r = mutate(inst, lambda c: c["listen"][0].__setitem__("address", "localhost:587"))
    assert_error_names(r, "address")


def test_bad_trusted_network(inst):
    r = mutate(inst, lambda c: c.__setitem__("trusted_networks", ["127.0.0.0/33"]))
    assert_error_names(r, "trusted_networks")


@pytest.mark.parametrize("value", ["-1", "lots", "99999999999999999999999"])
def test_bad_number(inst, value):
    r = mutate(inst, lambda c: c["smtp"].__setitem__("max_recipients", value))
    assert_error_names(r, "max_recipients")


def test_submission_listener_without_tls(inst):
    r = mutate(inst, lambda c: c.pop("tls"))
    assert_error_names(r, "tls")


def test_every_error_reported(inst):
    def f(c):
        c["bogus_one"] = 1
        c["smtp"]["bogus_two"] = 2
    r = mutate(inst, f)
    assert_error_names(r, "bogus_one", "bogus_two")


def test_yaml_syntax_error(inst):
    r = check(inst, text="hostname: relay.test\nlisten: [ {address: 1\n")
    assert r.rc == 1, r
    assert r.err.strip(), r


def test_missing_file(inst):
    os.unlink(inst.conf_path)
    r = inst.cli(["check-config"])
    assert r.rc == 1, r
    assert inst.conf_path in r.err, r


def test_serve_refuses_invalid_config(inst):
    cfg = copy.deepcopy(inst.config)
    cfg["smtp"]["max_bananas"] = 3
    inst.write_config(render_yaml(cfg))
    r = subprocess.run([RELEVO_BIN, "serve", "-c", inst.conf_path], capture_output=True,
                       text=True, timeout=30, env=sanitizer_env())
    assert r.returncode != 0, r
    assert "max_bananas" in r.stderr, r.stderr


def test_serve_fails_when_port_taken(inst):
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", inst.ports["relay"]))
    s.listen(1)
    try:
        r = subprocess.run([RELEVO_BIN, "serve", "-c", inst.conf_path], capture_output=True,
                           text=True, timeout=30, env=sanitizer_env())
    finally:
        s.close()
    assert r.returncode != 0, r
    assert str(inst.ports["relay"]) in r.stderr, r.stderr


def test_usage_errors(inst):
    r = subprocess.run([RELEVO_BIN], capture_output=True, text=True, env=sanitizer_env())
    assert r.returncode == 2, r
    r = subprocess.run([RELEVO_BIN, "frobnicate"], capture_output=True, text=True,
                       env=sanitizer_env())
    assert r.returncode == 2, r


# -- tls.key permissions ---------------------------------------------------------------

def _key_copy(inst, mode):
    """A copy of the test TLS key in the workdir with the given mode; the config
    points tls.key at it."""
    import shutil
    path = os.path.join(inst.workdir, "key-%o.pem" % mode)
    shutil.copyfile(inst.tls.key, path)
    os.chmod(path, mode)
    cfg = copy.deepcopy(inst.config)
    cfg["tls"]["key"] = path
    inst.write_config(render_yaml(cfg))
    return path


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o666])
def test_tls_key_open_to_others_is_refused(inst, mode):
    """A key readable or writable by "other" stops check-config and serve, with an
    error that names the key, the file and the fix."""
    path = _key_copy(inst, mode)
    r = inst.cli(["check-config"])
    assert r.rc == 1, r
    line = [l for l in r.err.splitlines() if l.startswith("tls.key:")]
    assert line, r
    assert path in line[0] and "open to other users" in line[0], r
    assert "(mode %04o)" % mode in line[0], r
    assert "chmod 600 " + path in line[0], r
    s = subprocess.run([RELEVO_BIN, "serve", "-c", inst.conf_path], capture_output=True,
                       text=True, timeout=30, env=sanitizer_env())
    assert s.returncode == 1, s
    assert "tls.key:" in s.stderr and "chmod 600 " + path in s.stderr, s.stderr
    assert "event=listening" not in s.stderr, "serve started with a world-readable key"


@pytest.mark.parametrize("mode", [0o640, 0o660])
def test_tls_key_readable_by_group_is_a_warning(inst, mode):
    path = _key_copy(inst, mode)
    r = inst.cli(["check-config"])
    assert r.rc == 0, r
    assert "configuration is valid" in r.out, r
    warn = [l for l in r.err.splitlines() if "event=key_file_mode" in l]
    assert len(warn) == 1, r
    assert " warn " in warn[0] and path in warn[0] and "chmod 600 " + path in warn[0], r


def test_tls_key_owner_only_is_quiet(inst):
    _key_copy(inst, 0o600)
    r = inst.cli(["check-config"])
    assert r.rc == 0, r
    assert "key_file_mode" not in r.err, r


def test_hostname_is_required(inst):
    cfg = copy.deepcopy(inst.config)
    del cfg["hostname"]
    r = check(inst, cfg)
    assert r.rc == 1, r
    assert ("hostname: missing (required): the name relevo greets other servers with, and "
            "that SPF advice names") in r.err, r


def test_run_as_must_name_a_user(inst):
    r = mutate(inst, lambda c: c.__setitem__("run_as", "relevo-nobody-here"))
    assert r.rc == 1, r
    assert 'run_as: no such user "relevo-nobody-here"' in r.err, r
