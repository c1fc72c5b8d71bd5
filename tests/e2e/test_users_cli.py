"""
test_users_cli.py - `relevo user add|list|del|passwd`; passwords come from the first
line of stdin. Changes take effect for a running daemon's next AUTH.
"""

import pytest

from conftest import expect, USERS


@pytest.fixture
def inst(make_relevo):
    return make_relevo(users=False, start=False)


def auth(relevo, user, password):
    with relevo.client("submissions") as c:
        c.ehlo()
        return c.auth_plain(user, password)


def user_line(relevo, name):
    out = relevo.cli_ok(["user", "list"]).out
    lines = [l for l in out.splitlines() if l.split() and l.split()[0] == name]
    return lines[0] if lines else None


def test_add_and_list(inst):
    r = inst.cli(["user", "add", "dave", "--domain", "example.com"], stdin="pw-dave-1\n")
    assert r.rc == 0, r
    r = inst.cli(["user", "add", "erin", "--domain", "example.net", "--domain",
                  "Example.ORG"], stdin="pw-erin-1\n")
    assert r.rc == 0, r
    out = inst.cli_ok(["user", "list"]).out
    assert "pw-dave-1" not in out and "pw-erin-1" not in out
    assert "argon2" not in out and "$" not in out, "password hashes listed: %r" % out
    d = user_line(inst, "dave")
    e = user_line(inst, "erin")
    assert d and "example.com" in d, out
    assert e and "example.net" in e and "example.org" in e.lower(), out


def test_list_empty(inst):
    r = inst.cli(["user", "list"])
    assert r.rc == 0, r
    assert "dave" not in r.out


def test_add_duplicate_fails(inst):
    inst.cli_ok(["user", "add", "dave", "--domain", "example.com"], stdin="pw1\n")
    r = inst.cli(["user", "add", "dave", "--domain", "example.net"], stdin="pw2\n")
    assert r.rc == 1, r
    assert "dave" in r.err, r
    # the original account is unchanged
    line = user_line(inst, "dave")
    assert "example.com" in line and "example.net" not in line


def test_add_without_domain_fails(inst):
    r = inst.cli(["user", "add", "dave"], stdin="pw\n")
    assert r.rc in (1, 2), r
    assert user_line(inst, "dave") is None


def test_add_bad_domain_fails(inst):
    r = inst.cli(["user", "add", "dave", "--domain", "not a domain"], stdin="pw\n")
    assert r.rc in (1, 2), r
    assert user_line(inst, "dave") is None


def test_add_without_password_fails(inst):
    r = inst.cli(["user", "add", "dave", "--domain", "example.com"], stdin="")
    assert r.rc in (1, 2), r
    assert user_line(inst, "dave") is None


def test_del(inst):
    inst.cli_ok(["user", "add", "dave", "--domain", "example.com"], stdin="pw\n")
    inst.cli_ok(["user", "del", "dave"])
    assert user_line(inst, "dave") is None
    r = inst.cli(["user", "del", "dave"])
    assert r.rc == 1, r


def test_passwd_unknown_user_fails(inst):
    r = inst.cli(["user", "passwd", "nobody"], stdin="pw\n")
    assert r.rc == 1, r


def test_user_added_before_start_can_authenticate(inst):
    inst.cli_ok(["user", "add", "dave", "--domain", "example.com"], stdin="pw-dave-1\r\n")
    inst.start()
    # the CRLF line ending is not part of the password
    expect(auth(inst, "dave", "pw-dave-1"), 235, "2.7.0")


def test_changes_apply_to_running_daemon(relevo):
    # add while running
    relevo.cli_ok(["user", "add", "frank", "--domain", "example.com"], stdin="pw-frank-1\n")
    expect(auth(relevo, "frank", "pw-frank-1"), 235, "2.7.0")
    # passwd while running: the old password stops working, the new one works
    relevo.cli_ok(["user", "passwd", "frank"], stdin="pw-frank-2\n")
    expect(auth(relevo, "frank", "pw-frank-1"), 535, "5.7.8")
    expect(auth(relevo, "frank", "pw-frank-2"), 235, "2.7.0")
    # del while running
    relevo.cli_ok(["user", "del", "frank"])
    expect(auth(relevo, "frank", "pw-frank-2"), 535, "5.7.8")
    # the others are untouched
    expect(auth(relevo, "alice", USERS["alice"][0]), 235, "2.7.0")


def test_password_with_spaces_and_unicode(inst):
    pw = "correct horse battery staple ✓"
    inst.cli_ok(["user", "add", "gina", "--domain", "example.com"], stdin=pw + "\n")
    inst.start()
    expect(auth(inst, "gina", pw), 235, "2.7.0")
    expect(auth(inst, "gina", "correct horse battery staple"), 535, "5.7.8")
