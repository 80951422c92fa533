"""The directory password as the first factor (directory.first_factor =
"ldap", docs/directory.md) against a real OpenLDAP server (Debian's slapd,
ldapd.py) and a real one-member cluster with its balancer (RADIUS front):

RADIUS with the directory password followed by the TOTP code is accepted
(a password longer than any PIN, as RADIUS allows); a wrong password is
rejected and counted in the lockouts table; enough wrong ones lock the user
out, the right password then too, and queue one "locked" e-mail event; an
SMS user's password is answered with Access-Challenge and the code then
accepted; the API's pin member carries the password; the portal's sign-in
says "Password or PIN", takes the directory password then the TOTP code,
rejects a wrong one with the one generic sentence, and shows no PIN form to
a directory user; a local user still signs in with their PIN; with slapd
stopped a sign-in is "directory_unavailable" (503, Access-Reject) and is
not counted toward lockout, while a locked-out user is told so (lockout comes
before the bind); a directory user without a DN is refused and not counted;
twenty parallel wrong passwords for one user reach the directory one at a
time (the others "busy", 429, not counted): no more binds than
node.lockout.max_failures (slapd's own log counts them), the user locked
out and one "locked" e-mail; no password is in any daemon's log; with a
url list whose first server takes connections and never answers, the check
moves on to slapd and signs in; on a node
whose first factor is the PIN, a directory user is a user like any: no bind
is made, and without a PIN the code decides as for a local user.

Directory users are made in the database (source 'directory' and the
entry's DN), as a sync makes them. The tests run in file order (one
cluster and one slapd for the module): run the module whole."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

import otp_ref
from ldapd import Slapd
from test_directory import SilentServer
from test_portal import Browser, by_id

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402

# Longer than any PIN and code together (32 bytes): only the directory path takes it.
DORA_PW = "correct horse battery staple, 4711 times over & more"
SAM_PW = "sam's own pass phrase"
LENA_PW = "lena-Pa55word!"
MAX_PW = "max's right one"
PIN = "2468"
MAX_FAILURES = 4  # dora below has three wrong ones and is not locked out


@pytest.fixture(scope="module")
def env():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix="mfa-dirauth-", dir="/tmp")
    d = c = None
    try:
        d = Slapd(base, log_level=256)  # its log has a line per bind (binds() below)
        d.add_user("dora", "Dora D", "dora@example.com", None, DORA_PW)
        d.add_user("max", "Max M", "max@example.com", None, MAX_PW)
        d.add_user("sam", "Sam S", "sam@example.com", "+41791110000", SAM_PW)
        d.add_user("lena", "Lena L", "lena@example.com", None, LENA_PW)
        # A wide TOTP window: each sign-in takes a step of its own (the replay guard).
        c = Cluster(base, build, members=1, balancers=["n1"],
                    node_conf="otp = { totp_window = 10; }; lockout = { max_failures = "
                              f"{MAX_FAILURES}; max_failures_total = {MAX_FAILURES}; }};")
        c.extra_conf = d.conf_section(user=c.user, first_factor="ldap")
        c.create()
        c.start(timeout=120)
        c.m = c.members[0]
        rc, out, err = c.mfactl("--json", "apikey", "create", "test-admin", member=c.m)
        assert rc == 0, err
        c.admin_key = json.loads(out)["key"]
        wait_for(lambda: api(c, "GET", "/api/v1/users?limit=1")[0] == 200, 20,
                 "the node knows the key")
        c.slapd = d
        c.totp = {}
        for user, method, phone in (("dora", "totp", ""), ("sam", "sms", "+41791110000"),
                                    ("lena", "totp", ""), ("max", "totp", "")):
            directory_user(c, user, method, phone, d.user_dn(user))
            if method == "totp":
                st, doc = api(c, "POST", f"/api/v1/users/{user}/totp", {})
                assert st == 201, doc
                c.totp[user] = Totp(doc["secret"])
        st, doc = api(c, "POST", "/api/v1/users", {"username": "loc", "method": "totp",
                                                   "pin": PIN})
        assert st == 201, doc
        st, doc = api(c, "POST", "/api/v1/users/loc/totp", {})
        assert st == 201, doc
        c.totp["loc"] = Totp(doc["secret"])
        # The front forwards only to a node it sees up.
        wait_for(lambda: radius(c, "nobody", "x", timeout=1, retries=1)[0] == "Access-Reject",
                 30, "the RADIUS front answers")
        yield c
    finally:
        if c:
            c.stop()
        if d:
            d.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


# ---- helpers ----

def api(c, method, path, body=None):
    return c.m.node(method, path, body, key=c.admin_key)


def query(c, sql, args=()):
    with psycopg2.connect(c.m.dsn()) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def directory_user(c, user, method, phone, dn):
    """A directory user as a sync makes one (whether or not the node's own sync came first)."""
    query(c, "INSERT INTO users (username, display_name, email, phone, method, source,"
             " directory_dn) VALUES (%s, %s, %s, %s, %s, 'directory', %s)"
             " ON CONFLICT ((lower(username))) DO UPDATE SET method = excluded.method,"
             " phone = excluded.phone, source = 'directory', directory_dn = excluded.directory_dn,"
             " disabled = false",
          (user, user.title(), f"{user}@example.com", phone, method, dn))


def binds(c, uid):
    """Binds as <uid>'s entry that reached slapd, from its stats log (log_level 256)."""
    with open(c.slapd.log_path, errors="replace") as f:
        text = f.read()
    return len(re.findall(r'BIND dn="' + re.escape(c.slapd.user_dn(uid)) + r'" method=128', text,
                          re.I))


def failures(c, user):
    rows = query(c, "SELECT coalesce(sum(failures), 0) FROM lockouts WHERE username = %s", (user,))
    return int(rows[0][0])


Totp = otp_ref.TotpApp


def radius(c, user, password, state=None, timeout=3, retries=2):
    """One Access-Request through the balancer's front: (reply code, {attr: value}, output)."""
    attrs = {"User-Name": f'"{user}"', "User-Password": f'"{password}"',
             "Message-Authenticator": "0x00"}
    if state:
        attrs["State"] = state
    front = c.m.ports["radius"]
    text = "\n".join(f"{k} = {v}" for k, v in attrs.items()) + "\n"
    p = subprocess.run(["radclient", "-x", "-t", str(timeout), "-r", str(retries),
                        f"127.0.0.1:{front}", "auth", c.radius_secret],
                       input=text, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    m = re.search(r"Received (Access-\w+) Id \d+ from 127\.0\.0\.1:(\d+)", out)
    if not m:
        return None, {}, out
    return m.group(1), dict(re.findall(r"^\s+([\w-]+) = (.*)$", out[m.end():], re.M)), out


def auth(c, body):
    return api(c, "POST", "/api/v1/auth", body)


class NodePort:
    """What test_portal's Browser needs of a node: its HTTP port."""

    def __init__(self, member):
        self.port = member.ports["node"]


# ---- RADIUS and the API ----

def test_radius_password_and_totp(env):
    c = env
    assert len(DORA_PW) > 32
    kind, _, out = radius(c, "dora", DORA_PW + c.totp["dora"].code())
    assert kind == "Access-Accept", out
    # The API: pin carries the directory password.
    st, doc = auth(c, {"username": "dora", "pin": DORA_PW, "otp": c.totp["dora"].code()})
    assert (st, doc["result"]) == (200, "accepted"), doc


def test_wrong_password_rejected_and_counted(env):
    c = env
    kind, reply, out = radius(c, "dora", "not-her-password" + c.totp["dora"].code())
    assert kind == "Access-Reject", out
    wait_for(lambda: failures(c, "dora") == 1, 10, "the wrong password counted in lockouts")
    st, doc = auth(c, {"username": "dora", "pin": "still-wrong", "otp": c.totp["dora"].code()})
    assert (st, doc["result"], doc["reason"]) == (200, "rejected", "wrong_password"), doc
    wait_for(lambda: failures(c, "dora") == 2, 10, "the second one counted too")
    # No password (only the code) is wrong without asking the directory, and counted.
    st, doc = auth(c, {"username": "dora", "otp": c.totp["dora"].code()})
    assert doc["reason"] == "wrong_password", doc
    # The right password signs in and clears the failures from this address.
    st, doc = auth(c, {"username": "dora", "pin": DORA_PW, "otp": c.totp["dora"].code()})
    assert doc["result"] == "accepted", doc
    wait_for(lambda: failures(c, "dora") == 0, 10, "the failures cleared")


def test_lockout_and_locked_mail(env):
    c = env
    for i in range(MAX_FAILURES):
        kind, _, out = radius(c, "lena", f"wrong-{i}" + c.totp["lena"].code())
        assert kind == "Access-Reject", out
    wait_for(lambda: failures(c, "lena") == MAX_FAILURES, 10, "every wrong password counted")
    # Locked: the right password and code are refused, and the directory is not asked.
    asked = binds(c, "lena")
    st, doc = auth(c, {"username": "lena", "pin": LENA_PW, "otp": c.totp["lena"].code()})
    assert (doc["result"], doc["reason"]) == ("rejected", "locked_out"), doc
    kind, _, out = radius(c, "lena", LENA_PW + c.totp["lena"].code())
    assert kind == "Access-Reject", out
    assert failures(c, "lena") == MAX_FAILURES, "a locked-out attempt is not another failure"
    assert binds(c, "lena") == asked, "a locked-out user's password went to the directory"
    # Reaching the limit queued one "locked" e-mail, and only one.
    wait_for(lambda: query(c, "SELECT count(*) FROM email_outbox WHERE username = 'lena'"
                              " AND event = 'locked'")[0][0] == 1, 10, "the locked e-mail queued")
    row = query(c, "SELECT to_addr, method FROM email_outbox WHERE username = 'lena'"
                   " AND event = 'locked'")[0]
    assert row == ("lena@example.com", "totp"), row


def test_sms_password_then_code(env):
    c = env
    sent = len(c.m.sms())
    kind, reply, out = radius(c, "sam", SAM_PW)
    assert kind == "Access-Challenge", out
    wait_for(lambda: len(c.m.sms()) > sent, 10, "the SMS sent")
    code = re.search(r"\b(\d{6})\b", c.m.sms()[-1]["text"]).group(1)
    kind, _, out = radius(c, "sam", code, state=reply["State"])
    assert kind == "Access-Accept", out
    # A wrong password sends nothing.
    kind, _, out = radius(c, "sam", "wrong" + SAM_PW)
    assert kind == "Access-Reject", out
    assert len(c.m.sms()) == sent + 1


def test_local_user_keeps_the_pin(env):
    c = env
    kind, _, out = radius(c, "loc", PIN + c.totp["loc"].code())
    assert kind == "Access-Accept", out
    st, doc = auth(c, {"username": "loc", "pin": "9999", "otp": c.totp["loc"].code()})
    assert doc["reason"] == "wrong_pin", doc
    # A long "PIN" (room for a directory password in this mode) is just a wrong PIN.
    st, doc = auth(c, {"username": "loc", "pin": PIN * 10, "otp": c.totp["loc"].code()})
    assert (st, doc["reason"]) == (200, "wrong_pin"), doc
    st, doc = auth(c, {"username": "loc", "pin": PIN, "otp": c.totp["loc"].code()})
    assert doc["result"] == "accepted", doc


def test_directory_user_without_dn(env):
    c = env
    directory_user(c, "nodn", "sms", "+41791110001", None)
    st, doc = auth(c, {"username": "nodn", "pin": "anything"})
    assert (st, doc["result"], doc["reason"]) == (200, "rejected", "no_directory_dn"), doc
    assert "auth.no_directory_dn user=nodn" in c.m.log("node")
    # The administrator's to fix, not counted against the user.
    st, doc = auth(c, {"username": "loc", "pin": "9998", "otp": c.totp["loc"].code()})
    assert doc["reason"] == "wrong_pin", doc
    wait_for(lambda: failures(c, "loc") == 1, 10, "the local user's failure counted")
    assert failures(c, "nodn") == 0
    st, doc = auth(c, {"username": "loc", "pin": PIN, "otp": c.totp["loc"].code()})
    assert doc["result"] == "accepted", doc
    wait_for(lambda: failures(c, "loc") == 0, 10, "the local user's failures cleared")


def test_parallel_wrong_passwords_bind_one_at_a_time(env):
    c = env
    ip = "192.0.2.77"  # an address of its own: its throttle and lockout row are this test's
    assert binds(c, "max") == 0

    def one(i):
        return auth(c, {"username": "max", "pin": f"guess-{i}", "otp": "123456",
                        "client_ip": ip})

    answers = []
    deadline = time.time() + 60
    while time.time() < deadline:
        with ThreadPoolExecutor(20) as ex:
            burst = list(ex.map(one, range(20)))
        answers += burst
        if any(doc.get("reason") == "locked_out" for _, doc in burst):
            break
    reasons = [doc.get("reason") for _, doc in answers]
    assert set(reasons) <= {"wrong_password", "busy", "locked_out"}, reasons
    assert "locked_out" in reasons, reasons
    # The parallel ones were refused while one check ran, and not counted.
    assert "busy" in reasons, reasons
    for st, doc in answers:
        if doc.get("reason") == "busy":
            assert (st, doc["result"]) == (429, "rejected"), doc
            assert doc["detail"] == "a check for this user is in progress", doc
    assert reasons.count("wrong_password") == MAX_FAILURES, reasons
    wait_for(lambda: failures(c, "max") == MAX_FAILURES, 10, "every wrong password counted")
    # The directory saw no more guesses than the lockout allows (and could not lock the
    # account in the directory itself sooner than here).
    assert binds(c, "max") == MAX_FAILURES, binds(c, "max")
    st, doc = auth(c, {"username": "max", "pin": MAX_PW, "otp": c.totp["max"].code(),
                       "client_ip": ip})
    assert (st, doc["reason"]) == (200, "locked_out"), doc
    assert binds(c, "max") == MAX_FAILURES
    # One "locked" e-mail for the lock (the database's decision, with the failure's write).
    wait_for(lambda: query(c, "SELECT count(*) FROM email_outbox WHERE username = 'max'"
                              " AND event = 'locked'")[0][0] == 1, 10, "the locked e-mail queued")


# ---- the portal ----

def test_portal_password_then_code(env):
    c = env
    b = Browser(NodePort(c.m))
    resp, text = b.go("GET", "/portal/")
    assert '<label for="pin">Password or PIN</label>' in text, text
    b.submit("/portal/signin", username="dora", pin="wrong password")
    assert by_id(b.last, "error") == "Wrong username, password or PIN.", b.last
    # An unknown user gets the very same answer.
    b.submit("/portal/signin", username="nobody-here", pin="wrong password")
    assert by_id(b.last, "error") == "Wrong username, password or PIN.", b.last
    resp, text = b.submit("/portal/signin", username="dora", pin=DORA_PW)
    assert 'id="factor"' in text, text
    resp, text = b.submit("/portal/factor", code=c.totp["dora"].code())
    assert 'id="profile"' in text, text
    # No PIN form for a directory user: the password is the directory's.
    assert 'id="pin-directory"' in text and 'id="pin-form"' not in text, text
    assert "Your directory password" in text
    # Changing the phone takes the directory password (AUTH_STEP_REPIN).
    b.submit("/portal/phone", phone="+41790000001", current_pin="wrong")
    assert by_id(b.last, "error") == "Your directory password is not right.", b.last
    b.submit("/portal/phone", phone="+41790000001", current_pin=DORA_PW)
    assert by_id(b.last, "notice") == "Your phone number was changed.", b.last
    # A PIN cannot be set for a directory user, even by a hand-made form.
    b.submit("/portal/pin", current_pin=DORA_PW, new_pin="1357", new_pin2="1357")
    assert "Your PIN was not changed." in by_id(b.last, "error"), b.last
    assert query(c, "SELECT pin_hash FROM users WHERE username = 'dora'")[0][0] is None

    # A local user signs in with the PIN on the same page, and keeps the PIN form.
    lb = Browser(NodePort(c.m))
    lb.go("GET", "/portal/")
    resp, text = lb.submit("/portal/signin", username="loc", pin=PIN)
    assert 'id="factor"' in text, text
    resp, text = lb.submit("/portal/factor", code=c.totp["loc"].code())
    assert 'id="profile"' in text and 'id="pin-form"' in text, text


# ---- the directory away ----

def test_directory_down_is_not_counted(env):
    c = env
    before = failures(c, "dora")
    c.slapd.stop()
    st, doc = auth(c, {"username": "dora", "pin": DORA_PW, "otp": c.totp["dora"].code()})
    assert (st, doc["result"], doc["reason"]) == (503, "error", "directory_unavailable"), doc
    kind, reply, out = radius(c, "dora", DORA_PW + c.totp["dora"].code())
    assert kind == "Access-Reject", out
    assert "directory" in reply.get("Reply-Message", ""), out
    b = Browser(NodePort(c.m))
    b.go("GET", "/portal/")
    b.submit("/portal/signin", username="dora", pin=DORA_PW)
    assert "directory cannot check your password" in by_id(b.last, "error"), b.last
    # Lockout is decided before the bind: lena, locked out above, hears so, not about the directory.
    st, doc = auth(c, {"username": "lena", "pin": LENA_PW, "otp": c.totp["lena"].code()})
    assert (st, doc["reason"]) == (200, "locked_out"), doc
    # Never counted: the user did nothing wrong. The lockout writes are fire-and-forget, in
    # order: once a later one (a local user's wrong PIN) is in, an earlier one would be too.
    st, doc = auth(c, {"username": "loc", "pin": "9999", "otp": c.totp["loc"].code()})
    assert doc["reason"] == "wrong_pin", doc
    wait_for(lambda: failures(c, "loc") == 1, 10, "the local user's failure counted")
    assert failures(c, "dora") == before
    # A local user is not affected.
    st, doc = auth(c, {"username": "loc", "pin": PIN, "otp": c.totp["loc"].code()})
    assert doc["result"] == "accepted", doc
    assert "auth.directory_unavailable user=dora" in c.m.log("node")


def test_no_password_in_any_log(env):
    c = env
    logs = {name: c.m.log(name) for name in ("node", "balancer", "replicator")}
    logs["auth_log"] = repr(query(c, "SELECT * FROM auth_log"))
    for name, text in logs.items():
        for secret in (DORA_PW, SAM_PW, LENA_PW, "not-her-password", "still-wrong"):
            assert secret not in text, f"{secret!r} in the {name} log"


# ---- a list of servers whose first is silent ----

def test_a_silent_first_server_fails_over_for_the_password(env):
    """url lists a server that takes the connection and never answers, then slapd
    (timeout_ms = 1000): the bind check moves on to slapd after that server's own
    timeout_ms and the right password signs in."""
    c = env
    c.slapd.start()  # stopped by test_directory_down_is_not_counted
    with SilentServer() as silent:
        p = c.m.procs["node"]
        p.terminate()
        p.wait(20)
        c.rewrite_conf(c.slapd.conf_section(user=c.user, first_factor="ldap", timeout_ms=1000,
                                            url=f"{silent.url},{c.slapd.url_ldaps}"))
        c.m.start_node()

        def up():
            try:
                return api(c, "GET", "/api/v1/users?limit=1")[0] == 200
            except OSError:
                return False
        wait_for(up, 30, "the node is back")
        t0 = time.monotonic()
        st, doc = auth(c, {"username": "dora", "pin": DORA_PW, "otp": c.totp["dora"].code()})
        assert (st, doc["result"]) == (200, "accepted"), doc
        assert time.monotonic() - t0 < 8, "the silent server held the check"


# ---- a node whose first factor is the PIN ----

def test_pin_node_treats_directory_users_like_local_ones(env):
    """first_factor = "pin" (last: the node restarts): no bind queue, and a directory user
    without a PIN signs in with the code alone, as a local user without one does."""
    c = env
    p = c.m.procs["node"]
    p.terminate()
    p.wait(20)
    c.rewrite_conf(c.slapd.conf_section(user=c.user, first_factor="pin"))
    c.m.start_node()

    def up():
        try:
            return api(c, "GET", "/api/v1/users?limit=1")[0] == 200
        except OSError:
            return False
    wait_for(up, 30, "the node is back")
    asked = binds(c, "dora")
    st, doc = auth(c, {"username": "dora", "otp": c.totp["dora"].code(), "client_ip": "192.0.2.9"})
    assert (st, doc["result"]) == (200, "accepted"), doc
    assert binds(c, "dora") == asked, "a bind in \"pin\" mode"
    st = api(c, "GET", "/status")[1]
    assert "directory_checks" not in st, st  # no bind queue in "pin" mode
    # A local user with a PIN is not affected.
    st, doc = auth(c, {"username": "loc", "pin": PIN, "otp": c.totp["loc"].code()})
    assert doc["result"] == "accepted", doc
