"""Directory sync (docs/directory.md) against a real OpenLDAP server (Debian's
slapd, ldapd.py) and a real three-member cluster (appliance/cluster.py):
the node on the primary syncs by itself at start, `mfactl directory sync`
brings an OU's users in (then a group's), a changed phone and a removed user
are reflected on the next sync (disabled, not deleted; enabled again when
back), a user an administrator disabled stays so, an enrolled TOTP seed is
byte-identical after every sync and still signs in, the guard refuses a sync
that would disable most users or that found nobody, a wrong bind
password or an unreachable directory fails and changes nothing, and a list
of URLs whose first server takes connections but never answers moves on to
the next within about timeout_ms.

The tests run in file order and build on each other (one cluster and one
slapd for the module, as test_tokens.py does): run the module whole."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import psycopg2
import pytest

import otp_ref
from ldapd import SUFFIX, Slapd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402

PEOPLE = [  # uid, display name, mail, mobile as people type it, the phone it becomes
    ("alice", "Alice Adams", "alice@example.com", "+41 79 123 45 67", "+41791234567"),
    ("bob", "Bob Brown", "bob@example.com", "+41 (79) 222-33.44", "+41792223344"),
    ("carol", "Carol Clark", "carol@example.com", None, ""),
    ("dave", "Dave Davis", "dave@example.com", "+41 79 444 55 66", "+41794445566"),
    ("erin", "Erin Evans", "erin@example.com", "+41 79 555 66 77", "+41795556677"),
    ("fred", "Fred Fox", "fred@example.com", "+41 79 666 77 88", "+41796667788"),
]


@pytest.fixture(scope="module")
def env():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix="mfa-dir-", dir="/tmp")
    d = c = None
    try:
        d = Slapd(base)
        # A wide TOTP window: each sign-in below takes a step of its own (replay guard).
        c = Cluster(base, build, members=3, node_conf="otp = { totp_window = 10; };")
        c.extra_conf = d.conf_section(user=c.user)
        c.create()
        c.start(timeout=120)
        rc, out, err = c.mfactl("--json", "apikey", "create", "test-admin", member=c.primary())
        assert rc == 0, err
        c.admin_key = json.loads(out)["key"]
        for m in c.data_members():
            wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1",
                                        key=c.admin_key)[0] == 200, 20, f"{m.id} knows the key")
        c.slapd = d
        c.files = os.path.join(base, "files")
        os.makedirs(c.files)
        yield c
    finally:
        if c:
            c.stop()
        if d:
            d.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


# ---- helpers ----

def api(c, method, path, body=None, member=None):
    return (member or c.primary()).node(method, path, body, key=c.admin_key)


def query(c, sql, args=()):
    with psycopg2.connect(c.primary().dsn()) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def users(c):
    """Every user: username -> dict of what the sync may touch and what it may not."""
    rows = query(c, "SELECT username, source, display_name, email, phone, disabled, directory_dn,"
                    " directory_missing_since IS NOT NULL, method, pin_hash FROM users")
    keys = ("source", "display_name", "email", "phone", "disabled", "dn", "missing", "method",
            "pin_hash")
    return {r[0]: dict(zip(keys, r[1:])) for r in rows}


def syncs(c):
    return query(c, "SELECT id, node_id, trigger, result, report FROM directory_syncs ORDER BY id")


def conf_file(c, name, **overrides):
    """A configuration file like n1's with another directory section, for mfactl -c."""
    section = c.slapd.conf_section(user=c.user, **overrides)
    path = os.path.join(c.files, f"{name}.conf")
    with open(path, "w") as f:
        f.write(c.conf_text(c.members[0]).replace(c.extra_conf, section))
    return path


def mfactl(c, conf, *args):
    return subprocess.run([c.binary("appliance/mfactl"), "-c", conf, *args],
                          capture_output=True, text=True, timeout=120)


def sync(c, *args, conf=None):
    """mfactl directory sync --json (n1's configuration, or <conf>): (exit code, report, stderr)."""
    p = mfactl(c, conf or c.members[0].conf, "directory", "sync", "--json", *args)
    report = json.loads(p.stdout) if p.stdout.strip() else None
    return p.returncode, report, p.stderr


Totp = otp_ref.TotpApp


def sign_in(c, user, totp, member=None):
    status, doc = api(c, "POST", "/api/v1/auth", {"username": user, "otp": totp.code()}, member)
    assert status in (200, 401, 403), (status, doc)
    return doc.get("result"), doc


def token_row(c, user):
    return query(c, "SELECT t.id, t.serial, t.kind, t.seed_sealed, t.user_id FROM oath_tokens t"
                    " JOIN users u ON u.id = t.user_id WHERE u.username = %s", (user,))


STATE = {}


# ---- (f) the schedule: the primary's node syncs at start, no standby's does ----

def test_the_primary_node_syncs_on_its_own_at_start(env):
    c = env
    prim = c.primary()
    rows = wait_for(lambda: [r for r in syncs(c) if r[2] == "schedule"], 60,
                    "a scheduled sync row")
    assert [r[1] for r in rows] == [prim.id], rows  # one, by the primary's node
    assert rows[0][3] == "ok", rows
    # It is in the primary node's /status and metrics; the standbys' nodes have none.
    st = wait_for(lambda: (lambda s: s if s["directory"]["last"] else None)(prim.node(
        "GET", "/status")[1]), 10, "the primary's node reports its sync")
    assert st["directory"]["enabled"] is True
    assert st["directory"]["last"]["result"] == "ok", st["directory"]
    assert st["directory"]["last"]["trigger"] == "schedule"
    metrics = prim.node("GET", "/metrics")[1].decode()
    assert 'mfa_directory_syncs_total{result="ok"} 1' in metrics, metrics
    for m in c.data_members():
        if m is not prim:
            d = m.node("GET", "/status")[1]["directory"]
            assert d["enabled"] is True and d["last"] is None and d["running"] is False, d
    STATE["primary"] = prim.id


# ---- (a) an OU syncs in ----

def test_an_ou_of_users_syncs_in(env):
    c = env
    d = c.slapd
    for uid, cn, mail, mobile, _ in PEOPLE:
        d.add_user(uid, cn, mail, mobile, password=f"{uid}-pw")
    d.add_user("gina", "Gina Green", "gina@example.com", "+41 79 777 88 99", ou="sales")
    # An entry with an invalid username is skipped and reported, not created.
    d.add_user("bad user", "Bad Entry", "bad@example.com")

    rc, rep, err = sync(c, "--dry-run")
    assert rc == 0, err
    assert rep["result"] == "dry_run" and rep["created"] == len(PEOPLE), rep
    assert not [u for u in users(c) if users(c)[u]["source"] == "directory"], "dry run changed"

    rc, rep, err = sync(c)
    assert rc == 0, err
    assert rep["result"] == "ok", rep
    assert rep["created"] == len(PEOPLE), rep
    assert sorted(ch["username"] for ch in rep["changes"]) == sorted(p[0] for p in PEOPLE)
    assert [s["dn"] for s in rep["skipped"]] == [d.user_dn("bad user")], rep["skipped"]
    have = users(c)
    for uid, cn, mail, _, phone in PEOPLE:
        u = have[uid]
        assert (u["source"], u["display_name"], u["email"], u["phone"], u["disabled"]) == \
            ("directory", cn, mail, phone, False), (uid, u)
        assert u["dn"].lower() == d.user_dn(uid).lower(), u
        assert u["pin_hash"] is None and u["method"] == "sms", u
    assert "gina" not in have and "bad user" not in have
    # The row says who ran it; a second sync changes nothing.
    last = syncs(c)[-1]
    assert last[1:4] == ("n1", "mfactl", "ok"), last
    rc, rep, err = sync(c)
    assert rc == 0 and rep["created"] == 0 and rep["unchanged"] == len(PEOPLE), rep
    # The human summary and the status command.
    rc, out, err = c.mfactl("directory", "status")
    assert rc == 0, err
    assert "mfactl" in out and "schedule" in out, out
    rc, out, err = c.mfactl("directory", "status", "--json")
    assert rc == 0 and json.loads(out)["syncs"][0]["trigger"] == "mfactl", out


# ---- (d) an enrolled TOTP seed ----

def enrol(c, user):
    status, doc = api(c, "POST", f"/api/v1/users/{user}/totp", {})
    assert status in (200, 201), doc  # the user's method is totp from now on
    return Totp(doc["secret"])


def test_a_synced_user_enrols_totp_and_signs_in(env):
    c = env
    totp = enrol(c, "alice")
    result, doc = sign_in(c, "alice", totp)
    assert result == "accepted", doc
    STATE["totp"] = totp
    STATE["token"] = token_row(c, "alice")
    assert len(STATE["token"]) == 1, STATE["token"]


def assert_seed_kept(c, signs_in=True):
    assert token_row(c, "alice") == STATE["token"], "the sync touched the enrolled seed"
    assert users(c)["alice"]["method"] == "totp"
    if signs_in:
        result, doc = sign_in(c, "alice", STATE["totp"])
        assert result == "accepted", doc


# ---- (c) changes, removals, returns ----

def test_a_changed_phone_and_a_removed_user_are_reflected(env):
    c = env
    d = c.slapd
    d.set_attr(d.user_dn("alice"), "mobile", "+41 79 000 11 22")
    d.set_attr(d.user_dn("bob"), "mail", "robert@example.com")
    d.delete(d.user_dn("carol"))
    # An administrator disables dave: the sync leaves that alone.
    status, doc = api(c, "PATCH", "/api/v1/users/dave", {"disabled": True})
    assert status == 200, doc

    rc, rep, err = sync(c)
    assert rc == 0, err
    assert (rep["updated"], rep["disabled"], rep["created"], rep["enabled"]) == (2, 1, 0, 0), rep
    have = users(c)
    assert have["alice"]["phone"] == "+41790001122"
    assert have["bob"]["email"] == "robert@example.com"
    assert have["carol"]["disabled"] and have["carol"]["missing"], have["carol"]  # not deleted
    assert have["dave"]["disabled"] and not have["dave"]["missing"], have["dave"]
    assert_seed_kept(c)
    status, _ = api(c, "GET", "/api/v1/users/carol")
    assert status == 200

    # alice leaves the directory: disabled, her seed kept; she cannot sign in meanwhile.
    d.delete(d.user_dn("alice"))
    rc, rep, err = sync(c)
    assert rc == 0 and rep["disabled"] == 1, (rep, err)
    assert users(c)["alice"]["disabled"]
    assert_seed_kept(c, signs_in=False)
    result, doc = sign_in(c, "alice", STATE["totp"])
    assert result != "accepted", doc

    # Both come back: enabled again, alice with the same seed; dave stays disabled.
    d.add_user("alice", "Alice Adams", "alice@example.com", "+41 79 000 11 22")
    d.add_user("carol", "Carol Clark", "carol@example.com")
    rc, rep, err = sync(c)
    assert rc == 0 and rep["enabled"] == 2, (rep, err)
    have = users(c)
    for u in ("alice", "carol"):
        assert not have[u]["disabled"] and not have[u]["missing"], have[u]
    assert have["dave"]["disabled"], have["dave"]
    assert_seed_kept(c)


# ---- (b) a group ----

def test_a_group_restricts_the_sync_to_its_members(env):
    c = env
    d = c.slapd
    members = [d.user_dn(u) for u in ("alice", "bob", "carol", "dave", "erin", "fred")]
    group = d.add_group("mfa-users", members + [d.user_dn("gina", "sales")])
    # The whole suffix, but only the group's members: gina (another OU) comes in.
    conf = conf_file(c, "group", base_dn=SUFFIX, group_dn=group)
    rc, rep, err = sync(c, conf=conf)
    assert rc == 0, err
    assert rep["created"] == 1 and rep["disabled"] == 0, rep
    assert [ch["username"] for ch in rep["changes"]] == ["gina"], rep["changes"]
    have = users(c)
    assert have["gina"]["source"] == "directory" and have["gina"]["phone"] == "+41797778899"
    # fred leaves the group (not the directory): disabled by the group's sync.
    d.set_members(group, [m for m in members if "fred" not in m] + [d.user_dn("gina", "sales")])
    rc, rep, err = sync(c, conf=conf)
    assert rc == 0 and rep["disabled"] == 1, (rep, err)
    assert users(c)["fred"]["disabled"]
    assert_seed_kept(c)
    STATE["group"] = group


# ---- (e) the guard ----

def test_the_guard_refuses_mass_disabling_unless_forced(env):
    c = env
    conf = conf_file(c, "guard", base_dn=SUFFIX, group_dn=STATE["group"])
    # Most members leave the group: more than max_disable_percent (50).
    d = c.slapd
    d.set_members(STATE["group"], [d.user_dn("alice")])
    before, nsyncs = users(c), len(syncs(c))
    rc, rep, err = sync(c, conf=conf)
    assert rc == 3, (rc, rep, err)
    assert rep["result"] == "refused" and rep.get("reason"), rep
    assert "refused" in err, err
    assert users(c) == before, "a refused sync changed users"
    rows = syncs(c)
    assert len(rows) == nsyncs + 1 and rows[-1][3] == "refused", rows[-1]
    # The human summary says it too, and lists who would have been disabled.
    p = mfactl(c, conf, "directory", "sync")
    assert p.returncode == 3 and "REFUSED" in p.stdout and "bob" in p.stdout, (p.stdout, p.stderr)
    assert users(c) == before

    rc, rep, err = sync(c, "--force", conf=conf)
    assert rc == 0 and rep["result"] == "ok", (rep, err)
    have = users(c)
    assert not have["alice"]["disabled"]
    assert all(have[u]["disabled"] for u in ("bob", "carol", "erin", "gina")), have
    assert_seed_kept(c)

    # A filter that matches nothing is a broken directory: refused even with --force.
    empty = conf_file(c, "empty", filter="(uid=nobody-at-all)")
    before = users(c)
    for args in ((), ("--force",)):
        rc, rep, err = sync(c, *args, conf=empty)
        assert rc == 3 and rep["result"] == "refused", (args, rep, err)
        assert users(c) == before
    assert syncs(c)[-1][3] == "refused"

    # Everyone back (the OU again): enabled, alice's seed still the same.
    rc, rep, err = sync(c)
    assert rc == 0, (rep, err)
    have = users(c)
    assert not any(have[u]["disabled"] for u in ("alice", "bob", "carol", "erin", "fred")), have
    assert have["dave"]["disabled"]  # the administrator's
    assert_seed_kept(c)


# ---- (g) failures change nothing ----

def test_a_wrong_bind_password_or_no_directory_fails_and_changes_nothing(env):
    c = env
    d = c.slapd
    d.set_attr(d.user_dn("erin"), "displayName", "Erin Changed")
    before, nsyncs = users(c), len(syncs(c))
    wrong = conf_file(c, "wrongpw", password="not-the-password")
    rc, rep, err = sync(c, conf=wrong)
    assert rc == 1, (rc, rep, err)
    assert "nvalid credentials" in err, err
    assert "not-the-password" not in err + json.dumps(rep)
    assert users(c) == before
    rows = syncs(c)
    assert len(rows) == nsyncs + 1 and rows[-1][3] == "failed", rows[-1]

    d.stop()
    try:
        t0 = time.monotonic()
        rc, rep, err = sync(c)
        assert rc == 1, (rc, rep, err)
        assert time.monotonic() - t0 < 30, "an unreachable directory held the sync"
        assert err.strip(), "no reason given"
        assert users(c) == before
        assert syncs(c)[-1][3] == "failed"
    finally:
        d.start()
    rc, rep, err = sync(c)
    assert rc == 0 and rep["updated"] == 1, (rep, err)
    assert users(c)["erin"]["display_name"] == "Erin Changed"


class SilentServer:
    """A loopback port that takes TCP connections (the kernel's backlog) and never says a word:
    a directory server that silently stops answering, the TLS handshake left hanging."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)  # never accept()ed: connects complete, nothing is ever read
        self.url = f"ldaps://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


def test_a_silent_first_server_of_the_list_fails_over_to_the_next(env):
    """url lists a server that takes the connection and then says nothing, then slapd: each
    URL has its own timeout_ms, so the sync moves on to slapd after about one timeout_ms and
    succeeds (one deadline for the whole list left the second server's handshake failed as a
    timeout)."""
    c = env
    timeout_ms = 1000
    with SilentServer() as silent:
        conf = conf_file(c, "failover", url=f"{silent.url},{c.slapd.url_ldaps}",
                         timeout_ms=timeout_ms)
        nsyncs = len(syncs(c))
        t0 = time.monotonic()
        rc, rep, err = sync(c, "--dry-run", conf=conf)
        took = time.monotonic() - t0
        assert rc == 0 and rep["result"] == "dry_run", (rc, rep, err)
        assert rep["directory_users"] > 0, rep
        # one timeout_ms for the silent one, then slapd at once (and mfactl's own start)
        assert took < 10 * timeout_ms / 1000, took
        rows = syncs(c)
        assert len(rows) == nsyncs + 1 and rows[-1][3] == "dry_run", rows[-1]

        # the silent one alone: a timeout naming it, within about timeout_ms, not a hang
        alone = conf_file(c, "silent", url=silent.url, timeout_ms=timeout_ms)
        t0 = time.monotonic()
        rc, rep, err = sync(c, "--dry-run", conf=alone)
        assert rc == 1, (rc, rep, err)
        assert silent.url in err and "timeout_ms" in err, err
        assert time.monotonic() - t0 < 10 * timeout_ms / 1000


def test_a_sync_while_another_runs_is_busy_and_leaves_no_row(env):
    """The lock taken (as a running sync holds it): mfactl says so, exit 1,
    changes nothing and writes no directory_syncs row."""
    c = env
    lock = psycopg2.connect(c.primary().dsn())
    try:
        with lock.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(7882692138657428857)")  # DIRECTORY_LOCK_KEY
        before, nsyncs = users(c), len(syncs(c))
        rc, rep, err = sync(c)
        assert rc == 1 and "another directory sync is running" in err, (rc, rep, err)
        assert rep["result"] == "busy", rep
        assert len(syncs(c)) == nsyncs and users(c) == before
    finally:
        lock.close()
    # The lock is free again: it runs. An entry with two usernames is skipped, not guessed at.
    d = c.slapd
    twin = d.user_dn("twin1")
    d.add(f"dn: {twin}\nobjectClass: inetOrgPerson\nuid: twin1\nuid: twin2\ncn: Twin\nsn: Twin\n")
    try:
        rc, rep, err = sync(c)
        assert rc == 0 and rep["result"] == "ok", (rc, rep, err)
        assert {"dn": twin, "reason": "the username attribute has more than one value"} \
            in rep["skipped"], rep["skipped"]
        assert not {"twin1", "twin2"} & set(users(c))
    finally:
        d.delete(twin)


def test_no_standby_node_ever_synced(env):
    c = env
    rows = [r for r in syncs(c) if r[2] == "schedule"]
    assert {r[1] for r in rows} == {STATE["primary"]}, rows
    for m in c.data_members():
        if m.id != STATE["primary"]:
            metrics = m.node("GET", "/metrics")[1].decode()
            assert 'mfa_directory_syncs_total{result="ok"} 0' in metrics


# ---- the schedule follows the primary ----

def test_the_schedule_follows_the_primary_after_a_switchover(env):
    """After a switchover the new primary's node takes the schedule over (it
    reads the newest row, so the interval holds across the move) and the old
    primary's node, now on a standby, runs none."""
    c = env
    old = c.primary()
    new = next(m for m in c.data_members() if m is not old)
    rc, out, err = c.mfactl("--json", "switchover", "--to", new.id, timeout=150)
    assert rc == 0, (out, err)
    c.wait_healthy(60)
    assert c.primary() is new
    # Make the next sync due now (the newest row is what the schedule counts from).
    query(c, "DELETE FROM directory_syncs RETURNING id")
    rows = wait_for(lambda: [r for r in syncs(c) if r[2] == "schedule"], 60,
                    "a scheduled sync by the new primary's node")
    assert [r[1] for r in rows] == [new.id], rows
    assert rows[0][3] == "ok", rows
    # Once one has run, the schedule is not due again for interval_s: no second row.
    st = wait_for(lambda: (lambda d: d if d["last"] and not d["running"] else None)(
        new.node("GET", "/status")[1]["directory"]), 20, "the new primary's node reports it")
    assert st["last"]["result"] == "ok", st
    assert len([r for r in syncs(c) if r[2] == "schedule"]) == 1
    STATE["primary"] = new.id
