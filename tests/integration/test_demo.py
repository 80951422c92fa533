"""./appliance/demo's cluster (appliance/demo.py on the test build): it
starts, writes cluster.json with the keys DESIGN §9 names, serves an SMS
sign-in through HAProxy with its demo user and one with radclient as printed,
survives being run twice, runs the printed failover (kill n1, failover to
n2) after which sign-ins and writes go on through the same front door and
n1 comes back as a standby, and stops everything it started."""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, alive  # noqa: E402

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "appliance", "demo.py")
KEYS = ["api_url", "portal_url", "health_url", "stats_url", "radius", "admin_api_key",
        "auth_api_key", "demo_user", "sms_outbox", "mfactl", "config", "members"]


def demo(env, *args, timeout=240):
    return subprocess.run(["/usr/bin/python3", DEMO, *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_demo_cluster_end_to_end():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    d = tempfile.mkdtemp(prefix="mfa-demo-", dir="/tmp")
    os.chmod(d, 0o755)
    env = {**os.environ, "MFA_DEMO_DIR": d}
    try:
        p = demo(env, "up", build)
        assert p.returncode == 0, p.stdout + p.stderr
        with open(os.path.join(d, "cluster.json")) as f:
            info = json.load(f)
        assert all(k in info for k in KEYS), sorted(info)
        assert [m["id"] for m in info["members"]] == ["n1", "n2", "n3"]
        assert all(k in info["members"][0] for k in ("id", "node_url", "replicator_url",
                                                      "pg_port", "pgdata"))
        c = Cluster.load(os.path.join(d, "state.json"))
        lb = next(m for m in c.members if m.balancer)
        assert lb.id != c.primary().id, "the front door must outlive the primary"
        user = info["demo_user"]
        st, doc = lb.api("POST", "/api/v1/auth", {"username": user["username"],
                                                  "pin": user["pin"]}, key=info["auth_api_key"])
        assert st == 200 and doc["result"] == "challenge", doc
        node = c.by_id[doc["challenge_id"].split("-", 1)[0]]
        text = [m for m in node.sms() if m["to"] == user["phone"]][-1]["text"]
        code = re.match(r"(\d{6})\b", text).group(1)
        st, doc = lb.api("POST", f"/api/v1/challenges/{doc['challenge_id']}/verify",
                         {"otp": code}, key=info["auth_api_key"])
        assert (st, doc["result"]) == (200, "accepted"), doc
        # The RADIUS sign-in exactly as printed: radclient through the balancer.
        lines = p.stdout.splitlines()
        cmds = [line.strip() + " " + lines[i + 1].strip() for i, line in enumerate(lines)
                if line.strip().startswith("printf 'User-Name")]
        assert len(cmds) == 2, p.stdout
        rc = subprocess.run(["bash", "-c", cmds[0]], capture_output=True, text=True, timeout=60)
        out = rc.stdout
        assert "Received Access-Challenge" in out, (rc.returncode, out, rc.stderr)
        state = re.search(r"State = (0x[0-9a-f]+)", out).group(1)
        node = c.by_id[bytes.fromhex(state[2:]).decode().split("-", 1)[0]]
        text = [m for m in node.sms() if m["to"] == user["phone"]][-1]["text"]
        code = re.match(r"(\d{6})\b", text).group(1)
        rc = subprocess.run(["bash", "-c", cmds[1].replace("<code>", code)
                             .replace("<State>", state)], capture_output=True, text=True,
                            timeout=60)
        out = rc.stdout
        assert "Received Access-Accept" in out, (rc.returncode, out, rc.stderr)
        # Twice is safe: the second run finds it running.
        p = demo(env, "up", build)
        assert p.returncode == 0 and "already running" in p.stdout
        # The printed failover, as printed: n1 (the primary) dies, n2 is promoted.
        fail = [line.strip() for line in lines if " kill n1 && " in line]
        assert len(fail) == 1 and fail[0].endswith("failover --to n2"), p.stdout
        f = subprocess.run(["bash", "-c", fail[0]], capture_output=True, text=True, timeout=120)
        assert f.returncode == 0, f.stdout + f.stderr
        assert not c.by_id["n1"].postgres_pids()
        # ... after which the same front door signs users in and takes writes.
        st, doc = lb.api("POST", "/api/v1/auth", {"username": user["username"],
                                                  "pin": user["pin"]}, key=info["auth_api_key"])
        assert st == 200 and doc["result"] == "challenge", doc
        node = c.by_id[doc["challenge_id"].split("-", 1)[0]]
        assert node.id != "n1"
        text = [m for m in node.sms() if m["to"] == user["phone"]][-1]["text"]
        st, doc = lb.api("POST", f"/api/v1/challenges/{doc['challenge_id']}/verify",
                         {"otp": re.match(r"(\d{6})\b", text).group(1)},
                         key=info["auth_api_key"])
        assert (st, doc["result"]) == (200, "accepted"), doc
        st, doc = lb.api("POST", "/api/v1/users", {"username": "after-failover",
                                                   "method": "totp"}, key=info["admin_api_key"])
        assert st == 201, doc
        # The printed start brings n1 back as a standby of n2.
        start = [line.strip().split("#")[0].strip() for line in lines
                 if line.strip().split("#")[0].strip().endswith(" start n1")]
        assert len(start) == 1, p.stdout
        assert subprocess.run(["bash", "-c", start[0]], timeout=60).returncode == 0
        c = Cluster.load(os.path.join(d, "state.json"))

        def n1_standby():
            rc = subprocess.run([info["mfactl"], "-c", info["config"], "status", "--json"],
                                capture_output=True, text=True, timeout=30)
            members = {m["id"]: m for m in json.loads(rc.stdout)["members"]}
            return (members["n1"]["role"] == "standby" and members["n1"]["upstream"] == "n2"
                    and members["n1"].get("streaming") is True
                    and members["n2"]["role"] == "primary")
        deadline = time.monotonic() + 90
        while not n1_standby():
            assert time.monotonic() < deadline, "n1 did not come back as a standby of n2"
            time.sleep(0.5)
        # n1's node restarted too: once it serves (it reads the keys first) and
        # its database has replayed n2's WAL, it reads what was written while
        # it was dead.
        deadline = time.monotonic() + 30
        while True:
            try:
                st, doc = c.by_id["n1"].node("GET", "/api/v1/users/after-failover",
                                             key=info["admin_api_key"])
            except OSError as e:
                st, doc = None, repr(e)
            if st == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert st == 200, doc
        # Asked again, the demo names the new primary in what it prints.
        again = demo(env, "up", build)
        assert again.returncode == 0 and "n2 is the primary" in again.stdout, again.stdout
        assert "apikey create my-app --scope auth   # on the primary, n2" in again.stdout
        pids = [p.pid for m in c.members for p in m.procs.values()]
        pids += [p for m in c.members for p in m.postgres_pids() + m.haproxy_pids()]
        assert demo(env, "stop").returncode == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.1)
        assert not [p for p in pids if alive(p)], "the demo left processes running"
    finally:
        if os.path.exists(os.path.join(d, "state.json")):
            demo(env, "stop")
        import shutil
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(d, ignore_errors=True)
