"""The user portal in a real browser: tests/browser/portal.mjs drives Debian's
chromium (playwright-core, headless) through HAProxy's TLS front of a
three-member cluster (appliance/cluster.py). In order, on one cluster and
one user: the whole flow (sign in with an SMS code, set up an authenticator
app from the secret on the page, sign out, sign in with TOTP, change the
PIN) sticking to one node; the primary stopped: the banner, the PIN change
refused without an error page; the session's node killed: the sign-in page
saying the session ended. Screenshots: <build>/artifacts/browser/ (or
$MFA_BROWSER_ARTIFACTS)."""

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402
from test_failover import sql  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BROWSER = os.path.join(TOP, "tests", "browser")
USER = {"username": "pat", "pin": "482913", "new_pin": "715204", "phone": "+4917055501234"}


def new_key(c, name, scope):
    key = "mfa_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    sql(c.primary(), "INSERT INTO api_keys (name, scope, key_hash, prefix) VALUES "
        "(%s, %s, %s, 'mfa_')", (name, scope, hashlib.sha256(key.encode()).hexdigest()))
    return key


def servers(lb):
    return {s["id"]: s["status"] for s in lb.balancer_api()[1]["servers"]}


@pytest.fixture(scope="module")
def browser_env():
    """node, chromium and playwright-core (tests/browser/install), or a skip
    saying which is missing; ./tests/run installs node and chromium."""
    missing = [t for t in ("node", "npm") if not shutil.which(t)]
    if not os.access("/usr/bin/chromium", os.X_OK):
        missing.append("/usr/bin/chromium")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (packaging/build-deps.txt; "
                    "./tests/run installs them)")
    modules = os.path.join(TOP, "build", "browser")
    p = subprocess.run([os.path.join(BROWSER, "install"), modules], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, "tests/browser/install failed:\n" + p.stdout + p.stderr
    return os.path.join(modules, "node_modules")


@pytest.fixture(scope="module")
def cl(browser_env):
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix="mfa-portal-", dir="/tmp")
    # HAProxy on two members, so that one survives whichever member is primary.
    c = Cluster(base, build, members=3, balancers=["n2", "n3"])
    c.create()
    try:
        c.start(timeout=120)
        c.admin_key = new_key(c, "portal-admin", "admin")
        prim = c.primary()
        c.lb = c.by_id["n3" if prim.id == "n2" else "n2"]
        # Nodes read new keys within a second: wait until every node knows it.
        for m in c.data_members():
            wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=c.admin_key)[0]
                     == 200, 20, f"{m.id} accepts the admin key")
        st, doc = c.lb.api("POST", "/api/v1/users",
                           {"username": USER["username"], "method": "sms",
                            "phone": USER["phone"], "pin": USER["pin"]}, key=c.admin_key)
        assert st == 201, doc
        wait_for(lambda: all(s == "UP" for s in servers(c.lb).values()), 20, "all servers UP")
        c.artifacts = (os.environ.get("MFA_BROWSER_ARTIFACTS")
                       or os.path.join(build, "artifacts", "browser"))
        shutil.rmtree(c.artifacts, ignore_errors=True)
        c.modules = browser_env
        c.state_file = os.path.join(base, "browser-state.json")
        yield c
    finally:
        c.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def run_browser(c, scenario, **extra):
    """portal.mjs <scenario>: its JSON summary; fails with its reason."""
    doc = {"scenario": scenario, "portal_url": f"https://127.0.0.1:{c.lb.ports['api']}/portal/",
           "ca": c.ca, "members": [m.id for m in c.data_members()], "user": USER,
           "sms_outboxes": {m.id: m.outbox for m in c.data_members()},
           "state_file": c.state_file, "artifacts": c.artifacts, "modules": c.modules, **extra}
    path = os.path.join(c.base, f"browser-{scenario}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the PINs
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    try:
        p = subprocess.run(["node", os.path.join(BROWSER, "portal.mjs"), path],
                           capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        pytest.fail(f"browser scenario {scenario} still running after {e.timeout} s: "
                    f"{(err or '')[-2000:]}; screenshots: {c.artifacts}", pytrace=False)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {}
    print(json.dumps({k: v for k, v in summary.items() if k != "requests"}, indent=1))
    if p.returncode != 0 or not summary.get("ok"):
        pytest.fail(f"browser scenario {scenario} failed: "
                    f"{summary.get('error') or p.stderr[-3000:]}\n"
                    f"requests: {summary.get('requests')}\nscreenshots: {c.artifacts}\n"
                    + "".join(f"\n--- {m.id} node.log\n{m.log('node')[-2000:]}"
                              for m in c.data_members()), pytrace=False)
    return summary


def test_whole_flow_sticks_to_one_node(cl):
    s = run_browser(cl, "full")
    assert len(s["nodes"]) == 1, s["nodes"]


def test_primary_stopped_banner_and_change_refused(cl):
    prim = cl.primary()
    prim.stop()
    survivors = [m for m in cl.data_members() if m is not prim]
    for m in survivors:
        wait_for(lambda m=m: m.node("GET", "/status")[1]["writable"] is False, 20,
                 f"{m.id} sees no writable primary")
    wait_for(lambda: servers(cl.lb)[prim.id].startswith("DOWN"), 20, f"{prim.id} DOWN")
    s = run_browser(cl, "read-only")
    assert len(s["nodes"]) == 1 and s["session_node"] != prim.id, s
    cl.session_node = s["session_node"]


def test_killed_node_sends_the_user_back_to_sign_in(cl):
    if not getattr(cl, "session_node", None):
        pytest.fail("needs the signed-in session the read-only scenario leaves, and it failed")
    dead = cl.by_id[cl.session_node]
    dead.procs["node"].send_signal(signal.SIGKILL)
    dead.procs["node"].wait(10)
    s = run_browser(cl, "node-kill", dead_node=dead.id)
    assert s["nodes"] and dead.id not in s["nodes"], s
