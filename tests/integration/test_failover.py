"""Switchover, failover, rejoin and fencing on a three-member cluster
(appliance/cluster.py): mfa-replicator running PostgreSQL on each member,
mfa-node on each, mfactl driving the changes. The tests run in order on one
cluster, each starting from the state the previous one left; a monitor
samples every member's PostgreSQL all along and the last test checks that
no two members ever accepted writes at the same moment."""

import bisect
import hashlib
import json
import os
import secrets
import sys
import threading
import time

import psycopg2
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402

FENCE_AFTER = 2


class Monitor(threading.Thread):
    """Asks every member's PostgreSQL, about every 50 ms, whether a new
    transaction there may write; keeps (time, writable) per member."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.samples = {m.id: [] for m in cluster.members}
        self.stopping = threading.Event()

    def sample(self, m):
        try:
            conn = psycopg2.connect(m.dsn("mfa"), connect_timeout=1)
        except psycopg2.Error:
            return False
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT NOT pg_is_in_recovery() AND "
                            "current_setting('default_transaction_read_only') = 'off'")
                return cur.fetchone()[0]
        except psycopg2.Error:
            return False
        finally:
            conn.close()

    def run(self):
        threads = [threading.Thread(target=self.watch, args=(m,), daemon=True)
                   for m in self.cluster.members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def watch(self, m):
        while not self.stopping.is_set():
            start = time.monotonic()
            w = self.sample(m)
            self.samples[m.id].append((start, time.monotonic(), w))
            self.stopping.wait(0.05)

    def overlaps(self):
        """Moments when one member was writable both just before and just after
        another member was seen writable."""
        bad = []
        for a, sa in self.samples.items():
            ends = [s[1] for s in sa]
            starts = [s[0] for s in sa]
            for b, sb in self.samples.items():
                if a == b:
                    continue
                for (t0, t1, wb) in sb:
                    if not wb:
                        continue
                    i = bisect.bisect_left(ends, t0) - 1   # last of a ended before t0
                    j = bisect.bisect_right(starts, t1)    # first of a started after t1
                    if i >= 0 and j < len(sa) and sa[i][2] and sa[j][2]:
                        bad.append((a, b, t0))
        return bad


class Writer(threading.Thread):
    """Creates users through one node, one after another, keeping what was
    acknowledged (201) and when writes were refused."""

    def __init__(self, member, key):
        super().__init__(daemon=True)
        self.member = member
        self.key = key
        self.acked = []    # (t_sent, t_answered, username)
        self.refused = []  # (t_sent, t_answered, status)
        self.stopping = threading.Event()
        self.n = 0

    def run(self):
        while not self.stopping.is_set():
            self.n += 1
            name = f"w{os.getpid()}x{self.n}x{secrets.token_hex(3)}"
            t0 = time.monotonic()
            try:
                st, _ = self.member.node("POST", "/api/v1/users",
                                         {"username": name, "method": "totp"}, key=self.key,
                                         timeout=5)
            except OSError:
                st = 0
            t1 = time.monotonic()
            if st == 201:
                self.acked.append((t0, t1, name))
            else:
                self.refused.append((t0, t1, st))
                self.stopping.wait(0.02)

    def stop(self):
        self.stopping.set()
        self.join(10)

    def longest_gap(self):
        """Longest time between two acknowledged writes."""
        times = [a[1] for a in self.acked]
        return max((b - a for a, b in zip(times, times[1:])), default=0)

    def first_ack_after(self, t):
        return next((a[1] for a in self.acked if a[0] >= t), None)


def sql(member, query, params=None, dbname="mfa"):
    conn = psycopg2.connect(member.dsn(dbname))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture(scope="module")
def cl():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    import tempfile
    base = tempfile.mkdtemp(prefix="mfa-fo-", dir="/tmp")
    c = Cluster(base, build, members=3, fence_after=FENCE_AFTER)
    c.create()
    try:
        c.start(timeout=120)
        # The first admin key, as an operator makes it: mfactl on the primary's host.
        rc, out, err = c.mfactl("--json", "apikey", "create", "test-admin", member=c.primary())
        assert rc == 0, err
        made = json.loads(out)
        assert made["scope"] == "admin" and made["prefix"] == made["key"][:12], made
        key = made["key"]
        stored = sql(c.primary(), "SELECT key_hash, created_by FROM api_keys WHERE name = 'test-admin'")
        assert stored == [(hashlib.sha256(key.encode()).hexdigest(), "mfactl")], stored
        c.admin_key = key
        for m in c.members:  # every node knows the key (it reloads keys every second)
            wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=key)[0] == 200,
                     20, f"{m.id} accepts the key")
        c.monitor = Monitor(c)
        c.monitor.start()
        yield c
    finally:
        if getattr(c, "monitor", None):
            c.monitor.stopping.set()
        c.stop()
        if not os.environ.get("MFA_KEEP"):
            import shutil
            shutil.rmtree(base, ignore_errors=True)


def status_json(c):
    rc, out, err = c.mfactl("status", "--json")
    assert rc == 0, err
    return {m["id"]: m for m in json.loads(out)["members"]}


def test_status_shows_one_primary_and_streaming_standbys(cl):
    st = status_json(cl)
    roles = sorted(m["role"] for m in st.values())
    assert roles == ["primary", "standby", "standby"], st
    for m in st.values():
        if m["role"] == "standby":
            assert m["streaming"] is True and m["upstream"] == cl.primary().id
    rc, out, _ = cl.mfactl("status")
    assert rc == 0 and "primary" in out and "n1" in out and "n3" in out


def test_switchover_under_writes_loses_nothing(cl):
    old = cl.primary()
    new = next(m for m in cl.members if m is not old)
    third = next(m for m in cl.members if m not in (old, new))
    w = Writer(third, cl.admin_key)
    w.start()
    wait_for(lambda: len(w.acked) >= 20, 30, "writes flowing")
    t_cmd = time.monotonic()
    rc, out, err = cl.mfactl("switchover", "--to", new.id)
    t_done = time.monotonic()
    assert rc == 0, f"switchover failed ({rc}):\n{out}\n{err}"
    wait_for(lambda: w.first_ack_after(t_done), 20, "writes after the switchover")
    # A few more acknowledged writes on the new primary, all to be found there.
    n = len(w.acked)
    wait_for(lambda: len(w.acked) >= n + 20, 20, "writes flowing on the new primary")
    w.stop()
    assert cl.primary() is new
    first = w.first_ack_after(t_cmd + 0.001)
    gap = w.longest_gap()
    t_refused = next((r[0] for r in w.refused if r[0] >= t_cmd), None)
    t_first = w.first_ack_after(t_refused) if t_refused else first
    print(f"\nswitchover {old.id}->{new.id}: mfactl took {t_done - t_cmd:.2f} s; "
          f"command to first accepted write after the fence {t_first - t_cmd:.2f} s; "
          f"longest gap between acknowledged writes {gap:.2f} s; "
          f"{len(w.acked)} acknowledged, {len(w.refused)} refused")
    assert gap < 5, f"writes were refused for {gap:.2f} s"
    names = {r[0] for r in sql(new, "SELECT username FROM users")}
    lost = [a[2] for a in w.acked if a[2] not in names]
    assert not lost, f"acknowledged writes missing on the new primary: {lost[:5]}"
    cl.wait_healthy(30)
    st = status_json(cl)
    assert st[old.id]["role"] == "standby" and st[old.id]["upstream"] == new.id
    assert first is not None


def test_failover_refuses_a_standby_behind_then_promotes_the_most_advanced(cl):
    prim = cl.primary()
    behind, ahead = [m for m in cl.members if m is not prim]
    # Make <behind> lag: freeze it, write more WAL than its socket buffers
    # hold, and kill the primary before it is thawed.
    behind.freeze()
    t_freeze = time.monotonic()
    w = Writer(ahead, cl.admin_key)
    w.start()
    wait_for(lambda: len(w.acked) >= 1, 30, "an admin write with a standby frozen")
    dropped = w.acked[0][1] - t_freeze
    print(f"\nfirst admin write acknowledged {dropped:.2f} s after a standby froze")
    assert dropped < 4, "a silent standby must leave the synchronous list within ~2 s"
    sql(prim, "SET synchronous_commit = local; CREATE TABLE bulk AS "
        "SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 100000) g")
    wait_for(lambda: len(w.acked) >= 10, 30, "writes while one standby is frozen")
    w.stop()
    wait_for(lambda: ahead.status()["lsn"] == prim.status()["lsn"], 10, "the other standby caught up")
    t_kill = time.monotonic()
    prim.kill()
    behind.thaw()
    wait_for(lambda: behind.status()["role"] == "standby", 10, "thawed standby answers")
    rc, out, err = cl.mfactl("failover", "--to", behind.id)
    assert rc == 3, f"a failover to the standby behind must be refused:\n{out}\n{err}"
    assert ahead.id in (out + err)
    # The command's own time, apart from the wait for the old primary's fence:
    # once it has been unseen for fence_after plus the time a replicator takes
    # to notice a silent peer (peer timeout and poll), mfactl does not wait.
    wait_for(lambda: all((p["age_s"] or 0) > FENCE_AFTER + 2.5
                         for m in (ahead, behind) for p in m.status()["peers"]
                         if p["id"] == prim.id), FENCE_AFTER + 15, "old primary unseen")
    # Writes resume once the most advanced standby is promoted.
    w = Writer(ahead, cl.admin_key)
    w.start()
    t_cmd = time.monotonic()
    rc, out, err = cl.mfactl("failover", "--to", ahead.id)
    t_done = time.monotonic()
    assert rc == 0, f"failover failed ({rc}):\n{out}\n{err}"
    wait_for(lambda: w.first_ack_after(t_cmd), 20, "writes after the failover")
    first = w.first_ack_after(t_cmd)
    w.stop()
    print(f"\nfailover to {ahead.id}: {t_cmd - t_kill:.2f} s after the kill; mfactl took "
          f"{t_done - t_cmd:.2f} s; command to first accepted write {first - t_cmd:.2f} s")
    assert cl.primary() is ahead
    cl.wait_healthy(30, members=[ahead.id, behind.id])
    cl.killed = prim


def test_killed_member_rejoins_as_standby(cl):
    prim = cl.primary()
    back = cl.killed
    back.start()
    cl.wait_healthy(90)
    st = status_json(cl)
    assert st[back.id]["role"] == "standby"
    assert st[back.id]["streaming"] is True
    assert st[back.id]["upstream"] == prim.id
    assert cl.primary() is prim
    # Its node serves again and writes reach the primary through it.
    wait_for(lambda: back.node("GET", "/ready")[0] == 200, 30, "node ready")
    wait_for(lambda: back.node("POST", "/api/v1/users", {"username": "after-rejoin",
                                                         "method": "totp"},
                               key=cl.admin_key)[0] == 201, 20, "write through the rejoined node")


def test_partitioned_primary_fences_itself_and_recovers(cl):
    prim = cl.primary()
    others = [m for m in cl.members if m is not prim]
    sql(prim, "CREATE TABLE IF NOT EXISTS fence_probe (t timestamptz)")

    def accepts():
        try:
            sql(prim, "SET synchronous_commit = off; INSERT INTO fence_probe VALUES (now())")
            return True
        except psycopg2.Error:
            return False

    assert accepts()
    t0 = time.monotonic()
    for m in others:
        m.freeze()
    try:
        wait_for(lambda: not accepts(), FENCE_AFTER + 3, "the primary refuses writes",
                 interval=0.05)
        took = time.monotonic() - t0
        print(f"\nfenced {took:.2f} s after the others froze (fence_after {FENCE_AFTER} s)")
        assert took <= FENCE_AFTER + 1 + 0.5
        st = prim.status()
        assert st["fenced"] is True and st["fence_reason"] == "no majority"
    finally:
        for m in others:
            m.thaw()
    wait_for(accepts, 15, "the primary accepts writes again")
    cl.wait_healthy(30)


def test_admin_write_is_read_at_once_everywhere(cl):
    """remote_apply to every live standby: what one node wrote, all read."""
    for src in cl.members:
        name = f"everywhere-{src.id}"
        st, _ = src.node("POST", "/api/v1/users", {"username": name, "method": "totp"},
                         key=cl.admin_key)
        assert st == 201
        for m in cl.members:
            st, body = m.node("GET", f"/api/v1/users/{name}", key=cl.admin_key)
            assert st == 200, f"{name} written through {src.id} not yet on {m.id}: {body}"


def test_apikey_create_refuses_on_a_standby_and_makes_a_working_auth_key(cl):
    standby = next(m for m in cl.members if m is not cl.primary())
    rc, out, err = cl.mfactl("apikey", "create", "nope", member=standby)
    assert rc == 3 and out == "" and "standby" in err, (rc, out, err)
    assert sql(cl.primary(), "SELECT count(*) FROM api_keys WHERE name = 'nope'") == [(0,)]

    rc, out, err = cl.mfactl("apikey", "create", "app", "--scope", "auth", member=cl.primary())
    assert rc == 0, err
    key = out.strip()
    assert key.startswith("mfa_") and key not in err
    wait_for(lambda: standby.node("POST", "/api/v1/auth", {"username": "nobody-here"},
                                  key=key)[0] == 200, 20, "the auth key works on a standby's node")
    assert standby.node("GET", "/api/v1/users?limit=1", key=key)[0] == 403
    rc, _, err = cl.mfactl("apikey", "create", "x", "--scope", "root", member=cl.primary())
    assert rc == 2 and "--scope" in err


def test_replicator_restart_adopts_running_postgres(cl):
    prim = cl.primary()
    pid = prim.postmaster_pid()
    rp = prim.procs["replicator"]
    rp.kill()
    rp.wait(10)
    prim.start_replicator()
    wait_for(lambda: prim.status()["role"] == "primary", 20, "replicator back as primary")
    st = prim.status()
    assert st["postgres"]["pid"] == pid and st["writable"] is True
    assert prim.postmaster_pid() == pid, "PostgreSQL was restarted"
    cl.wait_healthy(30)


def test_crashed_standby_postgres_is_restarted(cl):
    prim = cl.primary()
    sb = next(m for m in cl.members if m is not prim)
    old = sb.postmaster_pid()
    for pid in sb.postgres_pids():
        os.kill(pid, 9)
    wait_for(lambda: sb.postmaster_pid() not in (None, old), 20, "PostgreSQL restarted")
    cl.wait_healthy(30)
    assert sb.status()["postgres"]["restarts"] >= 1


def test_no_two_members_ever_accepted_writes(cl):
    cl.monitor.stopping.set()
    cl.monitor.join(10)
    counts = {k: sum(1 for s in v if s[2]) for k, v in cl.monitor.samples.items()}
    print(f"\nmonitor: writable samples per member {counts}")
    assert sum(counts.values()) > 50, "the monitor saw too little to prove anything"
    assert not cl.monitor.overlaps(), cl.monitor.overlaps()[:5]
