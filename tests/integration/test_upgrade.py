"""Rolling upgrade (issue 11, docs/upgrade.md): a three-member cluster on
127.0.0.1 with balancers (HAProxy and the RADIUS front) on n2 and n3, under a
steady load through them: API TOTP sign-ins, RADIUS PAP (TOTP) sign-ins, API
SMS sign-ins (code from the file outbox) and admin writes.

  - test_additive_migration: a synthetic next-release migration (V+1: a new
    table, a new defaulted column on users and on oath_tokens, a new index),
    applied on the primary as common/schema.c does, while the load runs: no
    sign-in fails, and every node reports schema V+1, compatible, ready.
    Then (load stopped) V+2 makes every node incompatible and /ready 503;
    removing that row brings them back (the negative control).
  - test_switchover_drains_the_old_primary_itself: a plain `mfactl
    switchover` under the load, the old primary not drained beforehand: the
    command drains it on the balancers while its PostgreSQL restarts and
    puts it back to ready at the end. No sign-in fails, no acknowledged
    write is lost.
  - test_switchover_leaves_an_operators_state_alone: the old primary in
    maint on one balancer (set by the operator) stays so; on the other it is
    drained and made ready again.
  - test_rolling_restart: `mfactl upgrade-plan --json`, then its steps in
    order under the load: drain, ready and switchover by running the
    command, upgrade by restarting the member's processes as a package
    upgrade does (mfa-node, mfa-replicator and mfa-balancer stopped with
    SIGTERM and started again, PostgreSQL stopped too; HAProxy stays, as
    KillMode=mixed keeps it). No sign-in fails (RADIUS clients retransmit
    every second up to five times, as a NAS does), no acknowledged admin
    write is lost (writes refused with 503 read_only during the switchover
    are retried and counted), and the old primary ends a streaming standby.

The figures are printed past pytest's capture (ctest -V shows them)."""

import concurrent.futures
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time

import psycopg2
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, alive, wait_for  # noqa: E402
import otp_ref  # noqa: E402
from test_chaos import enrol_totp, radius_request, why  # noqa: E402
from test_failover import sql  # noqa: E402

TOTP_USERS = 240  # each signs in at most once per 30 s step (replay)
SCHEMA_LOCK_KEY = 7882697064710159693  # common/schema.c


class Load:
    """Clients through the balancers, in turn; every request in self.records."""

    def __init__(self, c):
        self.c = c
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.records = []  # (kind, ok, why, t0, t1)
        self.acked = []    # admin writes answered 201
        self.read_only = []  # (t0, t1) of admin writes refused 503 read_only, then retried
        self.errors = []
        self.sms_nodes = []  # (t0, node id) of every SMS challenge started
        self.turn = 0

    def lb(self):
        with self.lock:
            self.turn += 1
            return self.c.lbs[self.turn % len(self.c.lbs)]

    def add(self, kind, ok, detail, t0):
        with self.lock:
            self.records.append((kind, ok, detail, t0, time.monotonic()))

    def take_user(self):
        while not self.stopping.is_set():
            step = int(time.time() // 30)
            with self.lock:
                for u, last in self.c.last_step.items():
                    if last < step:
                        self.c.last_step[u] = step
                        return u
            self.stopping.wait(0.2)
        return None

    def api(self, method, path, body, key, lb=None):
        try:
            return (lb or self.lb()).api(method, path, body, key=key, timeout=8)
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as e:
            return None, repr(e)[:80]

    def totp_api(self):
        u = self.take_user()
        if u is None:
            return
        t0 = time.monotonic()
        st, doc = self.api("POST", "/api/v1/auth", {"username": u, "method": "totp",
                                                    "otp": otp_ref.totp(self.c.seeds[u])},
                           self.c.auth_key)
        self.add("api-totp", isinstance(doc, dict) and doc.get("result") == "accepted",
                 why(st, doc), t0)

    def radius(self):
        u = self.take_user()
        if u is None:
            return
        pkt = radius_request(self.c.radius_secret.encode(), u, otp_ref.totp(self.c.seeds[u]))
        lb = self.lb()
        t0 = time.monotonic()
        code, tries = None, 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            while tries < 5 and code is None:  # the same packet again, as a NAS does
                tries += 1
                s.sendto(pkt, (lb.address, lb.ports["radius"]))
                try:
                    data = s.recv(4096)
                except socket.timeout:
                    continue
                if len(data) >= 20 and data[1] == pkt[1]:
                    code = data[0]
        self.add("radius", code == 2, f"code {code} after {tries} sends via {lb.id}", t0)
        if tries > 1:
            self.add("radius-retransmitted", True, lb.id, t0)

    def sms(self):
        user, phone = self.c.sms_user
        t0 = time.monotonic()
        lb = self.lb()
        before = {m.id: len(m.sms()) for m in self.c.data_members()}
        st, doc = self.api("POST", "/api/v1/auth", {"username": user, "method": "sms"},
                           self.c.auth_key, lb)
        if not (isinstance(doc, dict) and doc.get("result") == "challenge"):
            self.add("api-sms", False, "start: " + why(st, doc), t0)
            return
        cid = doc["challenge_id"]
        node = self.c.by_id[cid.split("-", 1)[0]]
        with self.lock:
            self.sms_nodes.append((t0, node.id))
        code, deadline = None, time.monotonic() + 20
        while code is None and time.monotonic() < deadline:
            msgs = node.sms()
            if len(msgs) > before[node.id] and msgs[-1]["to"] == phone:
                found = re.search(r"\b(\d{6})\b", msgs[-1]["text"])
                code = found.group(1) if found else None
            if code is None:
                time.sleep(0.05)
        if code is None:
            self.add("api-sms", False, f"no SMS from {node.id}", t0)
            return
        st, doc = self.api("POST", f"/api/v1/challenges/{cid}/verify", {"otp": code},
                           self.c.auth_key, lb)
        self.add("api-sms", isinstance(doc, dict) and doc.get("result") == "accepted",
                 f"verify on {node.id}: " + why(st, doc), t0)

    def admin_write(self):
        name = f"uw{secrets.token_hex(5)}"
        t0 = time.monotonic()
        while not self.stopping.is_set():
            st, doc = self.api("POST", "/api/v1/users", {"username": name, "method": "totp"},
                               self.c.admin_key)
            if st == 503 and isinstance(doc, dict) and doc.get("error") == "read_only":
                with self.lock:
                    self.read_only.append((time.monotonic(), name))
                self.stopping.wait(0.2)  # the writer retries, as a script would
                continue
            if st == 201:
                with self.lock:
                    self.acked.append(name)
            self.add("admin-write", st == 201, why(st, doc), t0)
            return

    def loop(self, fn, pace):
        while not self.stopping.is_set():
            try:
                fn()
            except Exception as e:  # a client bug must show, not stop the load silently
                self.errors.append(repr(e))
            self.stopping.wait(pace)

    def start(self):
        self.threads = [threading.Thread(target=self.loop, args=(f, p), daemon=True)
                        for f, p in ((self.totp_api, 0.2), (self.radius, 0.2),
                                     (self.sms, 0.5), (self.admin_write, 0.4))]
        for t in self.threads:
            t.start()
        wait_for(lambda: sum(r[1] for r in self.records) >= 10, 30, "load flowing")

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(60)

    def figures(self, say, title):
        kinds = {}
        for kind, ok, _, _, _ in self.records:
            n, bad = kinds.get(kind, (0, 0))
            kinds[kind] = (n + 1, bad + (not ok))
        say(f"--- {title}")
        for kind, (n, bad) in sorted(kinds.items()):
            say(f"  {kind:22s} {n:5d} requests, {bad} failed")
        if self.read_only:
            t = [x[0] for x in self.read_only]
            say(f"  admin writes refused read_only then retried: {len(t)} "
                f"(window {max(t) - min(t):.2f} s)")
        for kind, ok, detail, t0, _ in self.records:
            if not ok:
                say(f"  FAILED {kind} at {t0 - self.t_start:.1f} s: {detail}")

    def failures(self):
        """The sign-ins that failed (admin writes are judged on what was acknowledged)."""
        return [r for r in self.records if not r[1] and r[0] != "admin-write"]


@pytest.fixture(scope="module")
def cl():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix="mfa-upg-", dir="/tmp")
    c = Cluster(base, build, members=3, balancers=["n2", "n3"],
                sms_conf="per_user_per_hour = 1000; per_phone_per_hour = 1000; "
                "offline_per_user_per_hour = 1000; offline_node_per_hour = 100000;")
    try:
        c.create()
        c.start(timeout=120)
        prim = c.primary()
        rc, out, err = c.mfactl("--json", "apikey", "create", "upg-admin", member=prim)
        assert rc == 0, err
        c.admin_key = json.loads(out)["key"]
        rc, out, err = c.mfactl("--json", "apikey", "create", "upg-auth", "--scope", "auth",
                                member=prim)
        assert rc == 0, err
        c.auth_key = json.loads(out)["key"]
        c.lbs = [c.by_id["n2"], c.by_id["n3"]]
        for m in c.members:
            wait_for(lambda m=m: m.node("POST", "/api/v1/auth", {"username": "nobody"},
                                        key=c.auth_key)[0] == 200, 20, f"{m.id} auth key")

        c.seeds = {}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for u, seed in pool.map(lambda i: enrol_totp(prim, c.admin_key, f"ut{i}"),
                                    range(TOTP_USERS)):
                c.seeds[u] = seed
        c.last_step = {u: -1 for u in c.seeds}
        c.sms_user = ("us0", "+491700099000")
        st, doc = prim.node("POST", "/api/v1/users", {"username": "us0", "method": "sms",
                                                      "phone": c.sms_user[1]}, key=c.admin_key)
        assert st == 201, doc
        yield c
    finally:
        c.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def balancers_see(c, member_id, statuses=("UP",)):
    """True when every balancer's HAProxy has <member_id> in one of <statuses>."""
    for lb in c.lbs:
        st, doc = lb.balancer_api()
        found = [s for s in doc.get("servers", []) if s["id"] == member_id] if st == 200 else []
        # HAProxy's status: "UP", "DOWN", "DRAIN", or with a count while it moves ("UP 1/3").
        if not found or found[0]["status"] not in statuses:
            return False
    return True


def node_schema(m):
    st, doc = m.node("GET", "/status")
    return doc.get("schema") if st == 200 and isinstance(doc, dict) else None


def apply_migration(prim, version, name, ddl):
    """As common/schema.c applies one: a transaction under the advisory lock."""
    conn = psycopg2.connect(prim.dsn("mfa"))
    try:
        with conn, conn.cursor() as cur:  # one transaction, committed at the end
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            cur.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            assert cur.fetchone()[0] == version - 1
            cur.execute(ddl)
            cur.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                        (version, name))
    finally:
        conn.close()


def say_fn(capsys):
    def say(line):
        with capsys.disabled():
            print(line, flush=True)
    return say


def test_additive_migration(cl, capsys):
    c, say = cl, say_fn(capsys)
    prim = c.primary()
    v = sql(prim, "SELECT max(version) FROM schema_version")[0][0]
    for m in c.data_members():
        s = node_schema(m)
        assert s == {"database": v, "min": v - 1, "max": v + 1, "compatible": True}, s
    load = Load(c)
    load.t_start = time.monotonic()
    load.start()
    try:
        time.sleep(2)  # some load before the migration, by design
        apply_migration(prim, v + 1, f"{v + 1:03d}_synthetic",
                        "CREATE TABLE synthetic_devices (id bigint GENERATED ALWAYS AS IDENTITY "
                        " PRIMARY KEY, user_id bigint REFERENCES users (id) ON DELETE CASCADE,"
                        " label text NOT NULL DEFAULT '');"
                        "ALTER TABLE users ADD COLUMN synthetic_locale text NOT NULL "
                        " DEFAULT 'en';"
                        "ALTER TABLE oath_tokens ADD COLUMN synthetic_note text DEFAULT '';"
                        "CREATE INDEX users_synthetic_locale ON users (synthetic_locale);")
        for m in c.data_members():
            wait_for(lambda m=m: (node_schema(m) or {}).get("database") == v + 1, 20,
                     f"{m.id} reads schema {v + 1}")
            assert node_schema(m)["compatible"] is True
            assert m.node("GET", "/ready")[0] == 200
        time.sleep(2)  # load after the migration, by design
    finally:
        load.stop()
    load.figures(say, f"additive migration {v + 1} under load")
    assert not load.errors, load.errors
    assert not load.failures(), load.failures()
    assert sum(1 for r in load.records if r[0] in ("api-totp", "radius")) >= 20
    # A user made after the migration reads back with the new column's default.
    assert sql(prim, "SELECT count(*) FROM users WHERE synthetic_locale = 'en'")[0][0] > 0

    # The negative control: V+2 is beyond what this release works with.
    sql(prim, "INSERT INTO schema_version (version, name) VALUES (%s, 'too_new')", (v + 2,))
    for m in c.data_members():
        wait_for(lambda m=m: (node_schema(m) or {}).get("compatible") is False, 20,
                 f"{m.id} sees schema {v + 2} incompatible")
        st, doc = m.node("GET", "/ready")
        assert st == 503 and doc["error"] == "schema_incompatible", doc
        assert f"version {v + 2}" in doc["detail"]
        assert "schema version=%d" % (v + 2) in m.log("node")
    for m in c.data_members():  # HAProxy's checks of /ready took every node out
        wait_for(lambda m=m: balancers_see(c, m.id, ("DOWN",)), 20, f"{m.id} DOWN on the balancers")
    sql(prim, "DELETE FROM schema_version WHERE version = %s", (v + 2,))
    for m in c.data_members():
        wait_for(lambda m=m: m.node("GET", "/ready")[0] == 200, 20, f"{m.id} ready again")
        assert node_schema(m)["database"] == v + 1
        wait_for(lambda m=m: balancers_see(c, m.id), 20, f"{m.id} UP on the balancers again")


def server_states(c, member_id):
    """Each balancer's state for <member_id>: {"n2": "ready", ...}."""
    out = {}
    for lb in c.lbs:
        st, doc = lb.balancer_api()
        assert st == 200, doc
        out[lb.id] = next(s["state"] for s in doc["servers"] if s["id"] == member_id)
    return out


def streams_from(m, upstream):
    st = m.status()
    return st.get("role") == "standby" and st.get("streaming") and st.get("upstream") == upstream


def test_switchover_drains_the_old_primary_itself(cl, capsys):
    c, say = cl, say_fn(capsys)
    old = c.primary()
    target = next(m for m in c.data_members() if m is not old)
    lb_ids = sorted(lb.id for lb in c.lbs)
    assert server_states(c, old.id) == {i: "ready" for i in lb_ids}  # no drain beforehand
    wait_for(lambda: balancers_see(c, old.id), 30, f"{old.id} UP on the balancers")
    load = Load(c)
    load.t_start = time.monotonic()
    load.start()
    try:
        time.sleep(1)  # load before the switchover, by design
        t0, wall0 = time.monotonic(), time.time()
        rc, out, err = c.mfactl("--json", "switchover", "--to", target.id, timeout=150)
        took = time.monotonic() - t0
        assert rc == 0, f"switchover failed ({rc}):\n{out}\n{err}"
        c.wait_healthy(60)
        assert c.primary() is target
        # Back in HAProxy's rotation: ready, and its checks of /ready pass.
        wait_for(lambda: balancers_see(c, old.id), 30, f"{old.id} UP on the balancers again")
        # And new work reaches it again: its node signs users in after the command.
        done = time.time()
        wait_for(lambda: sql(c.primary(), "SELECT count(*) FROM auth_log WHERE node_id = %s "
                             "AND at > to_timestamp(%s)", (old.id, done))[0][0] > 0,
                 30, f"a new sign-in on {old.id} after the switchover")
    finally:
        load.stop()
    say(f"--- mfactl switchover --to {target.id} (no drain beforehand): {took:.1f} s\n{err}")
    # New work went elsewhere while the old primary was drained: no sign-in (TOTP by API or
    # RADIUS) or SMS challenge started well inside the command (it drains first and makes the
    # node ready again last) was taken by the old primary's node, as its auth log says.
    lo, hi = 0.2, took - 0.2
    expected = sum(1 for kind, ok, _, a, b in load.records
                   if kind in ("api-totp", "radius") and ok and t0 + lo < a and b < t0 + hi)

    def logged():
        return dict(sql(c.primary(), "SELECT node_id, count(*) FROM auth_log WHERE method <> "
                        "'sms' AND at > to_timestamp(%s) AND at < to_timestamp(%s) GROUP BY 1",
                        (wall0 + lo, wall0 + hi)))
    wait_for(lambda: sum(logged().values()) >= expected, 20, "the auth log of the switchover")
    by_node = logged()
    inside = [n for t, n in load.sms_nodes if t0 + lo < t < t0 + hi]
    say(f"  sign-ins during the switchover by node: {by_node} (the load finished {expected}); "
        f"SMS challenges started: "
        f"{len(inside)}, on {old.id}: {inside.count(old.id)}")
    assert expected + len(inside) >= 1, "no sign-in fell inside the switchover: nothing was checked"
    assert old.id not in by_node and old.id not in inside, (by_node, load.sms_nodes)
    load.figures(say, f"switchover {old.id} -> {target.id} under load")
    assert not load.errors, load.errors
    assert not load.failures(), load.failures()
    assert sum(1 for r in load.records if r[0] in ("api-totp", "radius")) >= 20

    # The command drained the old primary on both balancers and put it back.
    doc = json.loads(out)
    assert doc["cluster"] == c.name and {m["id"] for m in doc["members"]} == set(c.by_id)
    assert doc["old_primary"] == {"id": old.id, "drained_on": lb_ids, "ready_again_on": lb_ids}
    assert f"drained {old.id} on {', '.join(lb_ids)}" in err, err
    assert f"{old.id} is ready again on {', '.join(lb_ids)}" in err, err
    assert server_states(c, old.id) == {i: "ready" for i in lb_ids}
    assert streams_from(old, target.id), old.status()
    names = [r[0] for r in sql(c.primary(), "SELECT username FROM users")]
    lost = set(load.acked) - set(names)
    assert not lost, f"acknowledged admin writes lost: {sorted(lost)}"
    say(f"  acknowledged admin writes: {len(load.acked)}, lost: 0")


def test_switchover_leaves_an_operators_state_alone(cl, capsys):
    c, say = cl, say_fn(capsys)
    old = c.primary()
    target = next(m for m in c.data_members() if m is not old)
    held, other = c.lbs[0], c.lbs[1]
    # The operator took the old primary out on one balancer only.
    st, doc = held.balancer_api("POST", f"/servers/{old.id}", {"state": "maint"})
    assert st == 200 and doc["state"] == "maint", doc
    assert server_states(c, old.id) == {held.id: "maint", other.id: "ready"}
    rc, out, err = c.mfactl("--json", "switchover", "--to", target.id, timeout=150)
    assert rc == 0, f"switchover failed ({rc}):\n{out}\n{err}"
    say(f"--- mfactl switchover --to {target.id} ({old.id} maint on {held.id})\n{err}")
    doc = json.loads(out)
    assert doc["old_primary"] == {"id": old.id, "drained_on": [other.id],
                                  "ready_again_on": [other.id]}, doc["old_primary"]
    assert server_states(c, old.id) == {held.id: "maint", other.id: "ready"}
    c.wait_healthy(60)
    assert c.primary() is target
    wait_for(lambda: streams_from(old, target.id), 30, f"{old.id} streams from {target.id}")

    # Left healthy for the next test: the operator ends the maintenance.
    rc, out, err = c.mfactl("ready", old.id)
    assert rc == 0, (out, err)
    wait_for(lambda: balancers_see(c, old.id), 30, f"{old.id} UP on the balancers")


def restart_member(m):
    """A package upgrade's restart: the daemons SIGTERM'd and started again;
    PostgreSQL stopped too (fast shutdown) and started by the replicator;
    HAProxy left running (KillMode=mixed)."""
    pids = {name: m.procs[name].pid for name in ("node", "balancer", "replicator")
            if m.running(name)}
    haproxy = m.haproxy_pids()[:1]
    for name in ("node", "balancer", "replicator"):
        p = m.procs.get(name)
        if p and p.poll() is None:
            p.terminate()
            p.wait(20)
    pm = m.postmaster_pid()
    assert pm, f"{m.id} runs no PostgreSQL"
    os.kill(pm, signal.SIGINT)
    wait_for(lambda: not alive(pm), 30, f"{m.id} PostgreSQL stopped")
    m.start()
    # Every daemon is a new process; PostgreSQL too, once the replicator started it.
    assert all(m.procs[name].pid != pid for name, pid in pids.items())
    wait_for(lambda: m.postmaster_pid() not in (None, pm), 30, f"{m.id} PostgreSQL back")
    assert m.haproxy_pids()[:1] == haproxy  # HAProxy stayed


def test_rolling_restart(cl, capsys):
    c, say = cl, say_fn(capsys)
    old = c.primary()
    rc, out, err = c.mfactl("--json", "upgrade-plan")
    assert rc == 0, err
    plan = json.loads(out)
    assert plan["primary"] == old.id and plan["cluster"] == c.name
    v = sql(old, "SELECT max(version) FROM schema_version")[0][0]
    assert plan["schema"]["database"] == v and plan["schema"]["max"] >= v, plan["schema"]
    for pm in plan["members"]:
        assert pm["node_ready"] and pm["version"] and pm["schema"] == v, pm
    assert all(set(s) >= {"n", "member", "action", "command", "check"} for s in plan["steps"])
    assert [s["n"] for s in plan["steps"]] == list(range(1, len(plan["steps"]) + 1))
    actions = [(s["action"], s["member"]) for s in plan["steps"]]
    standbys = [m.id for m in c.members if m is not old]
    target = plan["switchover_to"]
    assert target in standbys
    # Each standby drained, upgraded and made ready; then the old primary drained (before the
    # switchover restarts its PostgreSQL), the switchover, the old primary upgraded.
    assert actions[-4:] == [("drain", old.id), ("switchover", target), ("upgrade", old.id),
                            ("ready", old.id)]
    assert sorted(a[1] for a in actions[:-4]) == sorted(standbys * 3)
    assert actions[-7:-4] == [("drain", target), ("upgrade", target), ("ready", target)]
    text_rc, text, _ = c.mfactl("upgrade-plan")
    assert text_rc == 0 and f"switchover {target}" in text, text
    say("--- mfactl upgrade-plan\n" + text)

    load = Load(c)
    load.t_start = time.monotonic()
    load.start()
    timings = []
    try:
        for s in plan["steps"]:
            m = c.by_id[s["member"]]
            t0 = time.monotonic()
            if s["action"] == "upgrade":
                assert s["command"] is None
                restart_member(m)
                c.wait_healthy(60)
                wait_for(lambda m=m: m.node("GET", "/ready")[0] == 200, 60, f"{m.id} ready")
                if m.balancer:
                    wait_for(lambda m=m: m.balancer_api()[1]["haproxy"]["running"], 30,
                             f"{m.id} balancer")
                # Drained, and its checks pass again: HAProxy would send it work once ready.
                wait_for(lambda m=m: balancers_see(c, m.id, ("DRAIN",)), 30,
                         f"{m.id} back on the balancers (drained)")
            else:
                args = s["command"].split()
                assert args[0] == "mfactl"
                rc, out, err = c.mfactl(*args[1:], timeout=150)
                assert rc == 0, f"{s['command']}: {out} {err}"
                if s["action"] == "ready":
                    wait_for(lambda m=m: balancers_see(c, m.id), 30, f"{m.id} UP")
                if s["action"] == "switchover":
                    c.wait_healthy(60)
                    assert c.primary() is c.by_id[target]
            timings.append(f"{s['n']:2d}. {s['action']:10s} {m.id}: "
                           f"{time.monotonic() - t0:.1f} s")
        time.sleep(1)  # load on the final cluster, by design
    finally:
        load.stop()
    say("--- steps\n  " + "\n  ".join(timings))
    load.figures(say, "rolling restart in upgrade-plan order")
    assert not load.errors, load.errors
    assert not load.failures(), load.failures()

    # The cluster ends healthy, the old primary a streaming standby of the target.
    c.wait_healthy(30)
    st = old.status()
    assert st["role"] == "standby" and st["streaming"] and st["upstream"] == target, st
    # No acknowledged admin write lost: every one is on the final primary.
    names = [r[0] for r in sql(c.primary(), "SELECT username FROM users")]
    lost = set(load.acked) - set(names)
    assert not lost, f"acknowledged admin writes lost: {sorted(lost)}"
    say(f"  acknowledged admin writes: {len(load.acked)}, lost: 0")
    rc, out, err = c.mfactl("--json", "upgrade-plan")
    assert rc == 0, err
    assert json.loads(out)["primary"] == target

    # Refused (exit 3, a sentence) while a node is down: a cluster not fit to start.
    victim = c.by_id[standbys[0]] if standbys[0] != target else old
    victim.procs["node"].terminate()
    victim.procs["node"].wait(20)
    rc, out, err = c.mfactl("upgrade-plan")
    assert rc == 3, (out, err)
    assert f"the node on {victim.id}" in err and "refused" in err, err
    victim.start_node()
    wait_for(lambda: victim.node("GET", "/ready")[0] == 200, 30, f"{victim.id} node back")
    assert c.mfactl("upgrade-plan")[0] == 0
