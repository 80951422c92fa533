"""mfa-balancer and HAProxy in front of three nodes (appliance/cluster.py):
sticky routing of challenges to the node that made them, a dead node's
challenge answered "expired" at once, drain, a reload under load, and the
health page in a real browser. The tests run in order on one cluster."""

import base64
import hashlib
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, free_ports, wait_for  # noqa: E402
from test_failover import sql  # noqa: E402

USERS = 10


def new_key(c, name, scope):
    key = "mfa_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    sql(c.primary(), "INSERT INTO api_keys (name, scope, key_hash, prefix) VALUES "
        "(%s, %s, %s, 'mfa_')", (name, scope, hashlib.sha256(key.encode()).hexdigest()))
    return key


@pytest.fixture(scope="module")
def cl():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix="mfa-lb-", dir="/tmp")
    c = Cluster(base, build, members=3, balancers=["n1"],
                sms_conf="per_user_per_hour = 1000; per_phone_per_hour = 1000; "
                         "cluster_per_hour = 100000;")
    c.create()
    try:
        c.start(timeout=120)
        c.admin_key = new_key(c, "lb-admin", "admin")
        c.auth_key = new_key(c, "lb-auth", "auth")
        c.lb = c.by_id["n1"]
        # Nodes read new keys within a second: wait until every node knows both.
        for m in c.members:
            wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=c.admin_key)[0]
                     == 200, 20, f"{m.id} accepts the admin key")
            wait_for(lambda m=m: m.node("POST", "/api/v1/auth", {"username": "nobody-here"},
                                        key=c.auth_key)[0] == 200, 20,
                     f"{m.id} accepts the auth key")
        for i in range(USERS):
            st, doc = c.lb.api("POST", "/api/v1/users",
                               {"username": f"sms{i}", "method": "sms",
                                "phone": f"+4917000000{i:02d}"}, key=c.admin_key)
            assert st == 201, doc
        # Every server up in HAProxy before the tests count on the spread.
        wait_for(lambda: all(s["status"] == "UP" for s in c.lb.balancer_api()[1]["servers"]),
                 20, "all servers UP")
        yield c
    finally:
        c.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def start_sms(c, user):
    """Starts an SMS sign-in through HAProxy; returns (challenge id, code)."""
    st, doc = c.lb.api("POST", "/api/v1/auth", {"username": user, "method": "sms"},
                       key=c.auth_key)
    assert st == 200 and doc["result"] == "challenge", doc
    cid = doc["challenge_id"]
    node = c.by_id[cid.split("-", 1)[0]]
    phone = f"+4917000000{int(user[3:]):02d}"
    msgs = [m for m in node.sms() if m["to"] == phone]
    return cid, re.search(r"\b(\d{6})\b", msgs[-1]["text"]).group(1)


def test_300_challenges_stick_to_their_node(cl):
    started = [start_sms(cl, f"sms{i % USERS}") for i in range(300)]
    per_node = {}
    for cid, _ in started:
        per_node[cid[:2]] = per_node.get(cid[:2], 0) + 1
    print(f"\n300 SMS starts through HAProxy, per node: {per_node}")
    assert set(per_node) == {"n1", "n2", "n3"}, "leastconn must spread the starts"
    accepted = 0
    for cid, code in started:
        st, doc = cl.lb.api("POST", f"/api/v1/challenges/{cid}/verify", {"otp": code},
                            key=cl.auth_key)
        assert (st, doc.get("result")) == (200, "accepted"), (cid, st, doc)
        accepted += 1
    assert accepted == 300


def test_dead_node_challenge_expires_at_once(cl):
    victim = cl.by_id["n3"]
    cid, others = None, []
    for i in range(60):
        c, code = start_sms(cl, f"sms{i % USERS}")
        if c.startswith("n3-"):
            cid = c
            break
        others.append((c, code))
    assert cid, "no challenge landed on n3"
    for c, code in others:  # leave nothing live behind (the drain test counts them)
        assert cl.lb.api("POST", f"/api/v1/challenges/{c}/verify", {"otp": code},
                         key=cl.auth_key)[0] == 200
    victim.procs["node"].send_signal(signal.SIGKILL)
    victim.procs["node"].wait(10)
    t0 = time.monotonic()
    st, doc = cl.lb.api("POST", f"/api/v1/challenges/{cid}/verify", {"otp": "123456"},
                        key=cl.auth_key, timeout=5)
    took = time.monotonic() - t0
    print(f"\nverify of a dead node's challenge: {st} in {took * 1000:.0f} ms")
    assert st == 410 and doc["error"] == "challenge_expired", (st, doc)
    assert took < 1.0
    # New sign-ins all succeed on the others.
    for i in range(30):
        c, code = start_sms(cl, f"sms{i % USERS}")
        assert not c.startswith("n3-")
        st, doc = cl.lb.api("POST", f"/api/v1/challenges/{c}/verify", {"otp": code},
                            key=cl.auth_key)
        assert (st, doc["result"]) == (200, "accepted")
    # HAProxy has marked it down by now (checks every 500 ms, two failures):
    # a node that comes back takes traffic only once its /ready says so.
    wait_for(lambda: any(s["id"] == "n3" and s["status"].startswith("DOWN")
                         for s in cl.lb.balancer_api()[1]["servers"]), 10, "n3 DOWN")
    victim.start_node()
    wait_for(lambda: any(s["id"] == "n3" and s["status"] == "UP"
                         for s in cl.lb.balancer_api()[1]["servers"]), 20, "n3 UP again")


def test_drain_keeps_own_challenges_and_takes_no_new_ones(cl):
    mine = []
    for i in range(60):
        c, code = start_sms(cl, f"sms{i % USERS}")
        if c.startswith("n2-"):
            mine.append((c, code))
        if len(mine) >= 3:
            break
    assert mine
    rc, out, err = cl.mfactl("drain", "n2")
    assert rc == 0, f"{out}\n{err}"
    assert any(s["id"] == "n2" and s["state"] == "drain"
               for s in cl.lb.balancer_api()[1]["servers"])
    fresh = [start_sms(cl, f"sms{i % USERS}") for i in range(30)]
    assert not [c for c, _ in fresh if c.startswith("n2-")], "a drained node got new work"
    for c, code in fresh:
        cl.lb.api("POST", f"/api/v1/challenges/{c}/verify", {"otp": code}, key=cl.auth_key)
    # Its own challenges still reach it; once they are done --wait returns.
    waiter = subprocess.Popen([cl.binary("appliance/mfactl"), "-c", cl.members[0].conf, "drain",
                               "n2", "--wait", "--timeout", "30"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    # It has seen the live challenges and keeps waiting for them. Read the
    # pipe's bytes as they come: a buffered readline() could hold a second
    # line that select() no longer reports.
    fd, got, deadline = waiter.stdout.fileno(), b"", time.monotonic() + 15
    while time.monotonic() < deadline and b"live challenge" not in got:
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            got += chunk
    seen = got.decode(errors="replace").splitlines()
    assert any("live challenge" in ln for ln in seen), seen
    assert waiter.poll() is None, "drain --wait returned with challenges still live"
    for c, code in mine:
        st, doc = cl.lb.api("POST", f"/api/v1/challenges/{c}/verify", {"otp": code},
                            key=cl.auth_key)
        assert (st, doc["result"]) == (200, "accepted"), doc
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, f"{out}\n{err}"
    rc, out, err = cl.mfactl("ready", "n2")
    assert rc == 0, f"{out}\n{err}"


def restart_balancer_with(cl, text):
    """Writes the balancer host's configuration and restarts mfa-balancer: the
    new balancer adopts the running HAProxy and reloads it."""
    with open(cl.lb.conf, "w") as f:
        f.write(text)
    bp = cl.lb.procs["balancer"]
    bp.terminate()
    bp.wait(15)
    cl.lb.start_balancer()
    wait_for(lambda: cl.lb.balancer_api()[1]["haproxy"]["reloads"] >= 1, 60,
             "the new balancer reloaded HAProxy")


def test_reload_on_membership_change_loses_no_request(cl):
    failures, done = [], []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                st, _ = cl.lb.api("GET", "/api/v1/users?limit=1", key=cl.admin_key, timeout=5)
            except OSError as e:
                st = str(e)
            (done if st == 200 else failures).append(st)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(done) > 50, 60, "load running")
    pid = cl.lb.balancer_api()[1]["haproxy"]["pid"]
    with open(cl.lb.conf) as f:
        original = f.read()
    # A fourth member joins (its host not up yet): HAProxy gets a new server.
    ports = " ".join(f"{k} = {p};" for k, p in zip(
        ["api", "stats", "health", "balancer_control", "radius", "node", "node_radius",
         "replicator", "postgres"], free_ports(9, {p for m in cl.members
                                                   for p in m.ports.values()})))
    n4 = '{ id = "n4"; address = "127.0.0.1"; ports = { ' + ports + ' }; }'
    joined = original.replace("\n  );\n};", ",\n    " + n4 + "\n  );\n};", 1)
    assert joined != original
    restart_balancer_with(cl, joined)
    servers = [s["id"] for s in cl.lb.balancer_api()[1]["servers"]]
    assert servers == ["n1", "n2", "n3", "n4"], servers
    assert cl.lb.balancer_api()[1]["haproxy"]["pid"] == pid, "HAProxy was restarted, not reloaded"
    n = len(done)
    wait_for(lambda: len(done) > n + 100, 60, "load after the reload")
    # ...and leaves again.
    restart_balancer_with(cl, original)
    n = len(done)
    wait_for(lambda: len(done) > n + 100, 60, "load after the second reload")
    # A drained node stays drained across a reload (SIGHUP with a change).
    rc, out, err = cl.mfactl("drain", "n3")
    assert rc == 0, f"{out}\n{err}"
    before = cl.lb.balancer_api()[1]["haproxy"]["reloads"]
    with open(cl.lb.conf, "w") as f:
        f.write(original.replace("check_inter_ms = 500;", "check_inter_ms = 600;"))
    cl.lb.procs["balancer"].send_signal(signal.SIGHUP)
    wait_for(lambda: cl.lb.balancer_api()[1]["haproxy"]["reloads"] > before, 30, "reloaded")
    n = len(done)
    wait_for(lambda: len(done) > n + 100, 60, "load after the third reload")
    wait_for(lambda: [s["status"] for s in cl.lb.balancer_api()[1]["servers"]
                      if s["id"] == "n3"] == ["DRAIN"], 15, "n3 still drained in HAProxy")
    fresh = [start_sms(cl, f"sms{i % USERS}") for i in range(20)]
    assert not [c for c, _ in fresh if c.startswith("n3-")], "a reload undid the drain"
    for c, code in fresh:
        cl.lb.api("POST", f"/api/v1/challenges/{c}/verify", {"otp": code}, key=cl.auth_key)
    rc, out, err = cl.mfactl("ready", "n3")
    assert rc == 0, f"{out}\n{err}"
    stop.set()
    for t in threads:
        t.join(10)
    print(f"\nreloads under load: {len(done)} requests, {len(failures)} failed")
    assert not failures, failures[:5]


def test_health_page_shows_members_and_a_dead_one(cl):
    st, snap = cl.lb.health()
    assert st == 200 and [m["id"] for m in snap["members"]] == ["n1", "n2", "n3"]
    # every replicator says when its certificate (mfactl pki issue: 825 days) expires
    wait_for(lambda: all(m["replicator"].get("cert_days_left") is not None
                         for m in cl.lb.health()[1]["members"]), 15, "certificate expiry shown")
    for m in cl.lb.health()[1]["members"]:
        assert 823 <= m["replicator"]["cert_days_left"] <= 825
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m["replicator"]["cert_expires_at"])
    assert b"certificate expires" not in cl.lb.health("/")[1]
    cl.by_id["n3"].kill()
    wait_for(lambda: [m for m in cl.lb.health()[1]["members"] if m["id"] == "n3"][0]["down"],
             15, "n3 shown down")
    st, html = cl.lb.health("/")
    assert st == 200 and b"n3" in html
    out_dir = os.path.join(os.environ["MFA_BUILD_DIR"], "artifacts")
    os.makedirs(out_dir, exist_ok=True)
    shot = os.path.join(out_dir, "health-page.png")
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("chromium is not installed (./tests/run installs it)")
    if os.path.exists(shot):
        os.unlink(shot)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,720",
                    f"http://127.0.0.1:{cl.lb.ports['health']}/"], capture_output=True,
                   timeout=60)
    assert os.path.getsize(shot) > 10000, "no screenshot of the health page"
    print(f"\nhealth page screenshot: {shot}")
