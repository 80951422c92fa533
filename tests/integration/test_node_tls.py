"""A cluster whose members are not on loopback, as on real hosts: every
node port speaks TLS and requires a client certificate from the cluster CA
(DESIGN §4), and everything that reaches a node follows — HAProxy (its
`server ... ssl verify required ca-file ... crt ...` lines), the balancer's
health-page polls, and mfactl.

The members get 10.254.77.1-3 on the loopback interface of a private network
namespace that this test process enters (unshare(CLONE_NEWNET)): no real
interface of the host is touched, and the addresses vanish with the process.
(A dummy interface would need the dummy kernel module, which containers
often lack.) n1 and n2 run PostgreSQL and a node, n3 is a witness; n1 runs
the balancer and HAProxy."""

import ctypes
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402
from test_balancer import new_key  # noqa: E402

CLONE_NEWNET = 0x40000000
ADDRESSES = ["10.254.77.1", "10.254.77.2", "10.254.77.3"]
PHONE = "+491700000777"


def enter_private_network():
    """Moves this process into a network namespace of its own, with lo up and
    ADDRESSES on it; skips the module when the kernel refuses."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace with the members' addresses")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        pytest.skip(f"cannot make a network namespace (unshare: {os.strerror(err)})")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for a in ADDRESSES:
        subprocess.run(["ip", "addr", "add", f"{a}/32", "dev", "lo"], check=True)


@pytest.fixture(scope="module")
def cl():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    enter_private_network()
    base = tempfile.mkdtemp(prefix="mfa-nt-", dir="/tmp")
    c = Cluster(base, build, members=3, witnesses=["n3"], balancers=["n1"],
                addresses=ADDRESSES,
                sms_conf="per_user_per_hour = 1000; per_phone_per_hour = 1000;")
    c.create()
    try:
        c.start(timeout=120)
        c.admin_key = new_key(c, "nt-admin", "admin")
        c.auth_key = new_key(c, "nt-auth", "auth")
        c.lb = c.by_id["n1"]
        c.nodes = c.data_members()
        for m in c.nodes:
            wait_for(lambda m=m: m.node("POST", "/api/v1/auth", {"username": "nobody-here"},
                                        key=c.auth_key)[0] == 200, 20,
                     f"{m.id} accepts the auth key")
            wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=c.admin_key)[0]
                     == 200, 20, f"{m.id} accepts the admin key")
        yield c
    finally:
        c.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def curl(*args):
    """Runs curl with a deadline: (exit code, stdout)."""
    p = subprocess.run(["curl", "-sS", "--max-time", "5", *args], capture_output=True,
                       text=True, timeout=20)
    return p.returncode, p.stdout


def node_url(m, path="/health", scheme="https"):
    return f"{scheme}://{m.address}:{m.ports['node']}{path}"


def test_nodes_listen_with_tls(cl):
    for m in cl.nodes:
        want = f"node.listening address={m.address} port={m.ports['node']} tls=on"
        assert want in m.log("node"), f"{m.id}: no '{want}' in node.log"


def test_plain_http_is_not_answered(cl):
    for m in cl.nodes:
        rc, out = curl(node_url(m, scheme="http"))
        assert rc != 0 and "ok" not in out, (m.id, rc, out)


def test_tls_without_client_certificate_is_refused(cl):
    for m in cl.nodes:
        rc, out = curl("--cacert", cl.ca, node_url(m))
        assert rc != 0 and "ok" not in out, (m.id, rc, out)
        # The same from Python: the handshake (or the first read, in TLS 1.3) fails.
        ctx = ssl.create_default_context(cafile=cl.ca)
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection(m.address, m.ports["node"], timeout=5, context=ctx)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            conn.request("GET", "/health")
            conn.getresponse().read()
        conn.close()


def test_member_certificate_is_answered(cl):
    for m in cl.nodes:
        pki = os.path.join(m.dir, "pki")
        rc, out = curl("--cacert", cl.ca, "--cert", os.path.join(pki, "member.crt"),
                       "--key", os.path.join(pki, "member.key"), node_url(m))
        assert rc == 0 and json.loads(out) == {"status": "ok"}, (m.id, rc, out)


def test_haproxy_reaches_both_nodes_over_tls(cl):
    def servers():
        return {s["id"]: s["status"] for s in cl.lb.balancer_api()[1]["servers"]}
    # HAProxy's check is TLS with the member certificate; n3 is a witness (no node).
    wait_for(lambda: servers()["n1"] == "UP" and servers()["n2"] == "UP", 30,
             "n1 and n2 UP in HAProxy")
    st, doc = cl.lb.api("POST", "/api/v1/users",
                        {"username": "tls-user", "method": "sms", "phone": PHONE},
                        key=cl.admin_key)
    assert st == 201, doc
    started = {}
    for _ in range(40):
        st, doc = cl.lb.api("POST", "/api/v1/auth", {"username": "tls-user", "method": "sms"},
                            key=cl.auth_key)
        assert st == 200 and doc["result"] == "challenge", doc
        cid = doc["challenge_id"]
        started[cid.split("-", 1)[0]] = cid  # each node's latest
        if len(started) == 2:
            break
    assert set(started) == {"n1", "n2"}, f"sign-ins reached only {sorted(started)}"
    # Each code is verified on the node that made its challenge, through HAProxy.
    for node_id, cid in started.items():
        msgs = [x for x in cl.by_id[node_id].sms() if x["to"] == PHONE]
        code = re.search(r"\b(\d{6})\b", msgs[-1]["text"]).group(1)
        st, doc = cl.lb.api("POST", f"/api/v1/challenges/{cid}/verify", {"otp": code},
                            key=cl.auth_key)
        assert (st, doc.get("result")) == (200, "accepted"), (cid, st, doc)


def test_mfactl_sees_both_nodes_ready(cl):
    rc, out, err = cl.mfactl("status", "--json")
    assert rc == 0, err
    ready = {m["id"]: m["node_ready"] for m in json.loads(out)["members"]}
    assert ready["n1"] is True and ready["n2"] is True, ready


def test_health_page_shows_the_nodes(cl):
    def polled():
        members = {m["id"]: m for m in cl.lb.health()[1]["members"]}
        return all(members[i]["node"].get("reachable") for i in ("n1", "n2")) and members
    members = wait_for(polled, 20, "the health page reaches both nodes")
    for i in ("n1", "n2"):
        node = members[i]["node"]
        assert node["reachable"] is True and node["ready"] is True, node
        assert "challenges" in node, node


def test_drain_wait_asks_the_node_over_tls(cl):
    # `drain --wait` polls the node's /status itself (ctl_call_all, CTL_API_NODE).
    # Older challenges of the sign-in test may still be live: a short wait is
    # enough to see the node answer with its counts. (n2 and n3 run no
    # balancer: mfactl says so, which is beside the point here.)
    rc, out, err = cl.mfactl("drain", "n2", "--wait", "--timeout", "1")
    try:
        assert re.search(r"n2: \d+ live challenges?, 0 sessions", out), (rc, out, err)
        assert "n2: does not answer" not in out, out
    finally:
        assert cl.mfactl("ready", "n2")[0] == 0
