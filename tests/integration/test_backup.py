"""`mfactl backup` and `mfactl restore` on a real three-member cluster.

Users with PINs and enrolled TOTP apps sign in (the auth log fills and is
shipped); a backup is taken from the primary, and one from a standby whose
max_standby_streaming_delay is 0 while the primary takes ACCESS EXCLUSIVE
locks in a loop, so replay cancels pg_dump (real recovery conflicts) and the
backup retries. Restoring over the live cluster is refused without --force,
and a tampered, truncated or wrongly unlocked backup is refused with its
sentence; nothing changes. Then every member is wiped (daemons stopped;
PostgreSQL's data, the spool, the key file and the replicator's state
removed; configuration and certificates kept), the standby's backup is
restored on n1 through the real path (its key file, the bootstrap
permission, mfa-replicator creating the cluster) and the others join it
with `mfactl setup --join`: every user signs in through every node with the
TOTP app and PIN they had, and the auth log holds the rows it held.
"""

import base64
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402
from otp_ref import b32decode, totp  # noqa: E402
from test_failover import sql  # noqa: E402

NAME = "backup-test"
PASSPHRASE = "a long backup passphrase"
USERS = [("ann", "4711"), ("bob", "902134"), ("cyd", "55551234")]
FILLER_ROWS = 150000  # a large auth_log: pg_dump runs long enough to meet the locks


def mfactl(c, m, *args, timeout=180, conf=None):
    """mfactl with no terminal (a missing passphrase fails, never prompts) and TMPDIR c.tmp."""
    p = subprocess.run([c.binary("appliance/mfactl"), "-c", conf or m.conf, *args],
                       capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=dict(os.environ, TMPDIR=c.tmp))
    return p.returncode, p.stdout, p.stderr


def assert_tmp_empty(c):
    """The decrypted dump lives in an unlinked file: nothing is left in TMPDIR, ever."""
    assert os.listdir(c.tmp) == [], os.listdir(c.tmp)


def auth_rows(m):
    return set(sql(m, "SELECT node_id, boot_epoch, seq, username, result FROM auth_log "
                      "WHERE node_id <> 'filler'"))


def wait_shipped(c):
    for m in c.data_members():
        wait_for(lambda m=m: m.node("GET", "/status")[1].get("auth_log_pending") == 0, 30,
                 f"{m.id} auth log shipped")


def sign_in(m, key, user, pin, seed, at, offset=0):
    return m.node("POST", "/api/v1/auth", {"username": user, "pin": pin,
                                           "otp": totp(seed, at, step_offset=offset)}, key=key)


def wait_early_in_a_step():
    """Codes of the steps around now stay good for the next few seconds."""
    wait_for(lambda: time.time() % 30 < 15, 20, "early in a TOTP step", interval=0.2)


@pytest.fixture(scope="module")
def cl():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix="mfa-backup-", dir="/tmp")
    c = Cluster(base, build, members=3, name=NAME, fence_after=2)
    c.create()
    # n2, the standby the test backs up from: replay cancels conflicting queries at once.
    n2 = c.by_id["n2"]
    with open(n2.conf) as f:
        text = f.read()
    with open(n2.conf, "w") as f:
        f.write(text.replace("  fsync = false;\n",
                             '  fsync = false;\n  max_standby_streaming_delay = "0";\n', 1))
    c.tmp = os.path.join(base, "tmp")
    os.mkdir(c.tmp)
    c.passfile = os.path.join(base, "passphrase")
    with open(c.passfile, "w") as f:
        f.write(PASSPHRASE + "\n")
    try:
        c.start(timeout=120)
        yield c
    finally:
        c.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def data(cl):
    """Users with PINs and TOTP apps, sign-ins in the auth log, shipped."""
    n1 = cl.by_id["n1"]
    key = "mfa_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    sql(n1, "INSERT INTO api_keys (name, scope, key_hash, prefix) VALUES "
        "('backup-admin', 'admin', %s, 'mfa_')", (hashlib.sha256(key.encode()).hexdigest(),))
    for m in cl.data_members():
        wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=key)[0] == 200, 20,
                 f"{m.id} accepts the key")
    seeds = {}
    for user, pin in USERS:
        st, doc = n1.node("POST", "/api/v1/users", {"username": user, "method": "totp",
                                                     "pin": pin}, key=key)
        assert st == 201, doc
        st, doc = n1.node("POST", "/api/v1/users/%s/totp" % user, {}, key=key)
        assert st in (200, 201), doc
        seeds[user] = b32decode(doc["secret"])
    # One accepted sign-in per user through a different node (the code of
    # the step before now: the replay mark is then step - 1), and a wrong PIN.
    wait_early_in_a_step()
    now = time.time()
    for i, (user, pin) in enumerate(USERS):
        m = cl.data_members()[i % 3]
        st, doc = sign_in(m, key, user, pin, seeds[user], now, -1)
        assert st == 200 and doc["result"] == "accepted", doc
        st, doc = sign_in(m, key, user, "0000", seeds[user], now)
        assert doc["result"] == "rejected", doc
    # Filler rows of a node that does not exist: a dump that takes a while.
    sql(n1, "INSERT INTO auth_log (node_id, boot_epoch, seq, at, username, method, result) "
        "SELECT 'filler', 1, g, now(), 'user' || g, 'totp', 'accepted' "
        "FROM generate_series(1, %s) g", (FILLER_ROWS,))
    wait_shipped(cl)
    rows = auth_rows(n1)
    assert len(rows) == 2 * len(USERS), rows
    return {"key": key, "seeds": seeds, "rows": rows, "step": int(now // 30)}


def test_backup_from_the_primary(cl, data):
    n1 = cl.by_id["n1"]
    path = os.path.join(cl.base, "primary.mfab")
    rc, out, err = mfactl(cl, n1, "backup", path, "--passphrase-file", cl.passfile)
    assert rc == 0, out + err
    assert "member n1 (primary)" in out, out
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert not os.path.exists(path + ".tmp")
    with open(path, "rb") as f:
        blob = f.read()
    assert blob.startswith(b"MFA-BACKUP 1\n")
    # Neither the key file nor the data is readable in it.
    with open(os.path.join(n1.dir, "keys.conf"), "rb") as f:
        pepper = re.search(rb'key = "([^"]+)"', f.read()).group(1)
    assert pepper not in blob and b"pepper" not in blob
    assert b"filler" not in blob and b"user149999" not in blob  # auth_log rows
    # pg_dump's table of contents is stored in clear: it must not be here either.
    assert b"PGDMP" not in blob and b"CREATE TABLE" not in blob
    cl.primary_backup = path


def test_backup_from_a_standby_retries_recovery_conflicts(cl, data):
    n1, n2 = cl.by_id["n1"], cl.by_id["n2"]
    path = os.path.join(cl.base, "standby.mfab")
    stop = threading.Event()
    locks = [0]

    def lock_loop():
        conn = psycopg2.connect(n1.dsn())
        try:
            while not stop.is_set():
                with conn, conn.cursor() as cur:
                    cur.execute("LOCK TABLE users, auth_log IN ACCESS EXCLUSIVE MODE")
                locks[0] += 1
                time.sleep(0.01)
        finally:
            conn.close()

    locker = threading.Thread(target=lock_loop, daemon=True)
    locker.start()
    wait_for(lambda: locks[0] > 5, 10, "the primary taking locks")
    p = subprocess.Popen([cl.binary("appliance/mfactl"), "-c", n1.conf, "backup", path,
                          "--from", "n2", "--passphrase-file", cl.passfile, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines = []

    def read_err():
        for line in p.stderr:
            err_lines.append(line)

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.poll() is None and \
            not any("recovery conflict" in x for x in err_lines):
        time.sleep(0.05)
    stop.set()  # the next attempt meets no lock
    locker.join(10)
    out = p.stdout.read()
    rc = p.wait(120)
    reader.join(10)
    err = "".join(err_lines)
    assert "recovery conflict" in err, (
        "the recovery conflict did not reproduce: pg_dump on n2 was never cancelled while the "
        f"primary took {locks[0]} ACCESS EXCLUSIVE locks; exit {rc}\n{out}{err}")
    assert re.search(r"cancelled by a recovery conflict \(attempt 1 of 5\); retrying in 1 s",
                     err), err
    assert rc == 0, out + err
    assert '"member":"n2"' in out and '"role":"standby"' in out, out
    assert '"attempts":' in out and '"attempts":1' not in out, out
    cl.standby_backup = path


def snapshot(c):
    """What a refused restore must leave as it was: every member's key file and the data."""
    out = {}
    for m in c.data_members():
        with open(os.path.join(m.dir, "keys.conf"), "rb") as f:
            out[m.id] = (f.read(), os.path.exists(os.path.join(m.dir, "bootstrap.allow")))
    out["users"] = sql(c.by_id["n1"], "SELECT username, pin_hash FROM users ORDER BY 1")
    out["auth"] = auth_rows(c.by_id["n1"])
    return out


def test_restore_over_the_live_cluster_is_refused(cl, data):
    n1 = cl.by_id["n1"]
    before = snapshot(cl)
    rc, out, err = mfactl(cl, n1, "restore", cl.primary_backup, "--passphrase-file",
                          cl.passfile, "--no-start")
    assert rc == 3, out + err
    assert "this member has data" in err and "--force" in err, err
    assert "nothing was changed" in err, err
    assert snapshot(cl) == before
    assert_tmp_empty(cl)


def fresh_conf(c, m, name, replace=()):
    """m's configuration with an empty data directory: a fresh appliance beside the cluster."""
    d = os.path.join(c.base, name)
    os.makedirs(d, exist_ok=True)
    with open(m.conf) as f:
        text = f.read().replace(f'data_dir = "{m.dir}";', f'data_dir = "{d}";', 1)
    for old, new in replace:
        text = text.replace(old, new, 1)
    path = os.path.join(d, "appliance.conf")
    with open(path, "w") as f:
        f.write(text)
    return path, d


def test_restore_on_a_fresh_member_is_refused_while_the_others_have_data(cl, data):
    """No data here, but n2 and n3 answer with theirs: a cluster exists, nothing is done."""
    n1 = cl.by_id["n1"]
    conf, d = fresh_conf(cl, n1, "fresh-n1")
    before = snapshot(cl)
    rc, out, err = mfactl(cl, n1, "restore", cl.primary_backup, "--passphrase-file",
                          cl.passfile, "--no-start", conf=conf)
    assert rc == 3, out + err
    assert "answers that it has data" in err and "nothing was changed" in err, err
    assert os.listdir(d) == ["appliance.conf"], os.listdir(d)
    assert snapshot(cl) == before
    assert_tmp_empty(cl)


def test_restore_refuses_members_it_cannot_verify(cl, data, tmp_path):
    """Another CA (a new `setup --primary` beside live members): TLS fails, yet they are there."""
    n1 = cl.by_id["n1"]
    ca = tmp_path / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=other", "-days", "2",
                    "-keyout", str(tmp_path / "other-ca.key"), "-out", str(ca)],
                   check=True, capture_output=True)
    conf, d = fresh_conf(cl, n1, "fresh-n1-ca", [(f'ca = "{cl.ca}";', f'ca = "{ca}";')])
    before = snapshot(cl)
    rc, out, err = mfactl(cl, n1, "restore", cl.primary_backup, "--passphrase-file",
                          cl.passfile, "--no-start", conf=conf)
    assert rc == 3, out + err
    assert "is there but its answer cannot be trusted" in err, err
    assert os.listdir(d) == ["appliance.conf"], os.listdir(d)
    assert snapshot(cl) == before
    assert_tmp_empty(cl)


def test_bad_backups_are_refused(cl, data):
    n1 = cl.by_id["n1"]
    with open(cl.primary_backup, "rb") as f:
        good = f.read()
    head = good.index(b"\n", 13) + 1
    bad = {}
    dump = bytearray(good)
    dump[head + (len(good) - head) // 2] ^= 0x01
    bad["dump"] = (bytes(dump), "the backup was altered or is corrupt (MAC mismatch)")
    manifest = re.sub(rb'"created_at":"(\d)', lambda m: b'"created_at":"' +
                      str((int(m.group(1)) + 1) % 10).encode(), good, count=1)
    assert manifest != good
    bad["manifest"] = (manifest, "the backup was altered or is corrupt (MAC mismatch)")
    bad["truncated"] = (good[:head + 5000], "truncated: the dump part expected")
    bad["garbage"] = (b"PGDMP" + good[13:400], "not an MFA Appliance backup")
    wrong = os.path.join(cl.base, "wrong-passphrase")
    with open(wrong, "w") as f:
        f.write("not the passphrase\n")
    before = snapshot(cl)
    for what, (blob, sentence) in bad.items():
        path = os.path.join(cl.base, f"bad-{what}.mfab")
        with open(path, "wb") as f:
            f.write(blob)
        # --force: the file is read (a live cluster alone is refused before reading it)
        rc, out, err = mfactl(cl, n1, "restore", path, "--passphrase-file", cl.passfile,
                              "--force")
        assert rc == 3 and sentence in err and "nothing was changed" in err, (what, out, err)
    rc, out, err = mfactl(cl, n1, "restore", cl.primary_backup, "--passphrase-file", wrong,
                          "--force")
    assert rc == 3 and "wrong passphrase" in err, out + err
    rc, out, err = mfactl(cl, n1, "restore", cl.primary_backup)
    assert rc == 2 and "passphrase" in err, out + err
    assert snapshot(cl) == before
    assert_tmp_empty(cl)


def test_force_restores_into_the_live_primary(cl, data):
    """A mistake undone: a deleted user is back, with the data as of the backup; but no
    counter goes back, no audit row written since is lost, and the restore is audited."""
    n1, n3 = cl.by_id["n1"], cl.by_id["n3"]
    st, doc = n1.node("DELETE", "/api/v1/users/cyd", key=data["key"])
    assert st in (200, 204), doc
    assert n3.node("GET", "/api/v1/users/cyd", key=data["key"])[0] == 404
    # Codes used since the backup stay used: the live counter and step are kept.
    serial, counter, step = sql(n1, "SELECT serial, counter, last_step FROM oath_tokens "
                                    "ORDER BY serial LIMIT 1")[0]
    sql(n1, "UPDATE oath_tokens SET counter = counter + 1000, last_step = %s WHERE serial = %s",
        ((step or 0) + 1000, serial))
    audit = sql(n1, "SELECT id, action FROM admin_audit ORDER BY id")
    rc, out, err = mfactl(cl, n1, "restore", cl.primary_backup, "--passphrase-file",
                          cl.passfile, "--force", "--json")
    assert rc == 0, out + err
    assert '"users":3' in out and '"force":true' in out, out
    wait_for(lambda: n3.node("GET", "/api/v1/users/cyd", key=data["key"])[0] == 200, 10,
             "cyd back on a standby's node")
    assert auth_rows(n1) == data["rows"]
    assert sql(n1, "SELECT counter, last_step FROM oath_tokens WHERE serial = %s", (serial,)) \
        == [(counter + 1000, (step or 0) + 1000)]
    after = sql(n1, "SELECT id, action FROM admin_audit ORDER BY id")
    assert set(audit) <= set(after), (audit, after)
    assert after[-1][1] == "backup.restore", after
    assert_tmp_empty(cl)


def test_force_with_another_clusters_keys_is_refused(cl, data):
    """A backup whose key file is not the installed one: its PINs and seeds would not open."""
    n1, n2 = cl.by_id["n1"], cl.by_id["n2"]
    kf = os.path.join(n1.dir, "keys.conf")
    with open(kf) as f:
        original = f.read()
    # A second pepper: the database password (from the oldest) stays, the key file differs.
    extra = base64.b64encode(secrets.token_bytes(32)).decode()
    with open(kf, "w") as f:
        f.write(re.sub(r"pepper = \( (\{[^}]*\}) \);",
                       lambda m: f'pepper = ( {m.group(1)}, {{ id = 2; key = "{extra}"; }} );',
                       original))
    try:
        path = os.path.join(cl.base, "other-keys.mfab")
        rc, out, err = mfactl(cl, n1, "backup", path, "--passphrase-file", cl.passfile)
        assert rc == 0, out + err
    finally:
        with open(kf, "w") as f:
            f.write(original)
    before = snapshot(cl)
    rc, out, err = mfactl(cl, n2, "restore", path, "--passphrase-file", cl.passfile, "--force")
    assert rc == 3, out + err
    assert "the backup's key file is not this cluster's" in err, err
    assert snapshot(cl) == before


def wipe(m):
    """A member whose disk was replaced: its configuration and certificates remain."""
    for name in os.listdir(m.dir):
        p = os.path.join(m.dir, name)
        if name in ("appliance.conf", "pki") or name.endswith(".log"):
            continue
        if name == "run":
            for f in os.listdir(p):
                fp = os.path.join(p, f)
                shutil.rmtree(fp) if os.path.isdir(fp) else os.unlink(fp)
            continue
        shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)


def join(c, m, n1):
    bundle = os.path.join(c.base, f"{m.id}.join")
    rc, out, err = mfactl(c, n1, "setup", "--invite", m.id, "--address", m.address, "--out",
                          bundle, "--no-start")
    assert rc == 0, out + err
    rc, out, err = mfactl(c, m, "setup", "--join", f"{n1.address}:{n1.ports['replicator']}",
                          "--bundle", bundle, "--no-start")
    assert rc == 0, out + err
    assert re.search(r"made\s+key file", out), out
    m.start_replicator()


def test_wipe_every_member_restore_and_sign_in(cl, data):
    n1, n2, n3 = cl.members
    cl.stop()
    for m in cl.members:
        wipe(m)
        m.procs.clear()
    assert not os.path.exists(os.path.join(n1.dir, "keys.conf"))

    # The standby's backup (taken through the conflicts) onto n1, as on a fresh appliance.
    # A first run is cut short after the bootstrap (mfa-replicator not started in time):
    # it leaves restore.pending, and once the replicator has made the cluster, the next
    # run takes this member's data for the interrupted restore's, not a live cluster's.
    rc, out, err = mfactl(cl, n1, "restore", cl.standby_backup, "--passphrase-file",
                          cl.passfile, "--no-start", "--wait", "2")
    assert rc == 1 and "not primary after 2 s" in err, out + err
    assert os.path.exists(os.path.join(n1.dir, "restore.pending"))
    assert_tmp_empty(cl)
    n1.start_replicator()
    wait_for(lambda: n1.status().get("has_data") is True, 120, "n1 made the cluster",
             interval=0.2)
    p = subprocess.Popen([cl.binary("appliance/mfactl"), "-c", n1.conf, "restore",
                          cl.standby_backup, "--passphrase-file", cl.passfile, "--no-start",
                          "--wait", "150"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL, env=dict(os.environ, TMPDIR=cl.tmp))
    try:
        wait_for(lambda: n1.status().get("role") == "primary", 120, "n1 primary", interval=0.2)
        # Alone of three, n1 is fenced: the others join, and the restore goes on.
        join(cl, n2, n1)
        out, _ = p.communicate(timeout=150)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out
    assert "an earlier restore was interrupted" in out, out
    assert_tmp_empty(cl)
    assert not os.path.exists(os.path.join(n1.dir, "restore.pending"))
    assert re.search(r"made\s+key file \(the backup's\)", out), out
    assert re.search(r"done\s+restored into member n1: users 3, oath_tokens \d+, auth_log %d"
                     % (FILLER_ROWS + 2 * len(USERS)), out), out
    join(cl, n3, n1)
    cl.wait_healthy(180)
    # What the restore waited for: the primary's roles, database and schema are made.
    assert n1.status().get("setup_done") is True and n2.status().get("setup_done") is False
    for m in cl.data_members():
        m.start_node()
    for m in cl.data_members():
        wait_for(lambda m=m: m.node("GET", "/ready")[0] == 200, 30, f"{m.id} node ready")

    # The auth log as it was, before anyone signs in again.
    assert auth_rows(n1) == data["rows"]
    # Every user, through every node, with the TOTP app and PIN they had. A
    # code is good once, never one of an earlier step than the last used, and
    # a standby's node may not have the last sign-in's clock drift yet: so n1
    # takes the code of the step before now, n2 now's, n3 the next step's
    # once it has come — all after the step the users last signed in with.
    wait_for(lambda: int(time.time() // 30) > data["step"], 40, "a TOTP step after the last")
    wait_early_in_a_step()
    now = time.time()
    for user, pin in USERS:
        for m, offset in ((n1, -1), (n2, 0)):
            st, doc = sign_in(m, data["key"], user, pin, data["seeds"][user], now, offset)
            assert st == 200 and doc["result"] == "accepted", (user, m.id, doc)
    step = int(now // 30)
    wait_for(lambda: int(time.time() // 30) > step, 35, "the next TOTP step", interval=0.2)
    now = time.time()
    for user, pin in USERS:
        st, doc = sign_in(n3, data["key"], user, pin, data["seeds"][user], now)
        assert st == 200 and doc["result"] == "accepted", (user, "n3", doc)
        st, doc = sign_in(n3, data["key"], user, "0000", data["seeds"][user], now)
        assert doc["result"] == "rejected", (user, doc)
    wait_shipped(cl)
    assert data["rows"] < auth_rows(n1)
