"""RADIUS sign-ins through mfa-balancer's UDP front to three mfa-nodes, with
radclient (freeradius-utils) as the NAS: a client this project did not write,
which checks our Response Authenticator and Message-Authenticator itself.

Covered: PIN+TOTP accepted (and its replay, a wrong PIN rejected); SMS
Access-Challenge whose State names the node, the code from the SMS gateway
with State accepted, a wrong code rejected and the challenge then gone; a
request retransmitted while its SMS is still being sent sends exactly one
SMS; a wrong shared secret and a missing Message-Authenticator dropped and
counted; the auth log has the RADIUS decisions; a node killed during a run of
sign-ins, after which every new sign-in succeeds.

The SMS provider is `http`, pointed at a gateway in this test (servers.py)
that can be told to answer slowly, so a NAS retransmits while the node is
still sending."""

import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import pytest

import otp_ref
import servers as srv

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402
from test_balancer import new_key  # noqa: E402

TOTP_USERS = 90  # each signs in once: a TOTP code is good once
PIN = "2468"


class Gateway(BaseHTTPRequestHandler):
    """An SMS gateway: records every message, answers after server.delay seconds."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        msg = json.loads(self.rfile.read(n))
        with self.server.lock:
            self.server.messages.append(msg)
        time.sleep(self.server.delay)  # the gateway's own pace, in its own thread
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def radclient(c, attrs, secret=None, timeout=1, retries=3, code="auth"):
    """One request through the balancer's front: (reply code, {attr: value}, output)."""
    front = c.lb.ports["radius"]
    text = "\n".join(f"{k} = {v}" for k, v in attrs.items()) + "\n"
    p = subprocess.run(["radclient", "-x", "-t", str(timeout), "-r", str(retries),
                        f"127.0.0.1:{front}", code, secret or c.radius_secret],
                       input=text, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    m = re.search(r"Received (Access-\w+) Id \d+ from 127\.0\.0\.1:(\d+)", out)
    if not m:
        return None, {}, out
    assert int(m.group(2)) == front, f"the answer must come from the front port:\n{out}"
    reply = dict(re.findall(r"^\s+([\w-]+) = (.*)$", out[m.end():], re.M))
    return m.group(1), reply, out


def sign_in(c, user, password, state=None, ma=True, **kw):
    attrs = {"User-Name": f'"{user}"', "User-Password": f'"{password}"'}
    if state:
        attrs["State"] = state
    if ma:
        attrs["Message-Authenticator"] = "0x00"  # radclient then computes it
    return radclient(c, attrs, **kw)


def node_radius(m):
    return m.node("GET", "/status")[1]["radius"]


@pytest.fixture(scope="module")
def cl():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    gw = srv.HttpServer(Gateway)
    gw.lock, gw.messages, gw.delay = threading.Lock(), [], 0.0
    base = tempfile.mkdtemp(prefix="mfa-radius-", dir="/tmp")
    c = Cluster(base, build, members=3, balancers=["n1"],
                sms_conf=f'provider = "http"; http = {{ url = "{gw.url("/send")}"; }}; '
                         "per_user_per_hour = 1000; per_phone_per_hour = 1000; "
                         "cluster_per_hour = 100000;",
                # Shorter than the slow SMS below: an entry still being worked on
                # must outlive the window.
                radius_conf="duplicate_window_ms = 1000;")
    c.create()
    try:
        c.start(timeout=120)
        c.gw = gw
        c.lb = c.by_id["n1"]
        c.admin_key = new_key(c, "radius-admin", "admin")
        for m in c.members:
            wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=c.admin_key)[0]
                     == 200, 20, f"{m.id} accepts the admin key")
        c.seeds = {}
        for i in range(TOTP_USERS):
            user = f"totp{i}"
            st, doc = c.lb.api("POST", "/api/v1/users",
                               {"username": user, "method": "totp", "pin": PIN}, key=c.admin_key)
            assert st == 201, doc
            st, doc = c.lb.api("POST", f"/api/v1/users/{user}/totp", {}, key=c.admin_key)
            assert st == 201, doc
            c.seeds[user] = otp_ref.b32decode(doc["secret"])
        for i in range(3):
            st, doc = c.lb.api("POST", "/api/v1/users",
                               {"username": f"sms{i}", "method": "sms", "pin": PIN,
                                "phone": f"+49170000001{i}"}, key=c.admin_key)
            assert st == 201, doc
        # The front forwards only to nodes it sees up.
        wait_for(lambda: sign_in(c, "nobody", "x", timeout=1, retries=1)[0] == "Access-Reject",
                 30, "the RADIUS front answers")
        c.unused = list(c.seeds)
        yield c
    finally:
        c.stop()
        gw.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def take_user(c):
    return c.unused.pop(0)


def totp_code(c, user):
    return otp_ref.totp(c.seeds[user])


def test_pin_and_totp_accepted(cl):
    user = take_user(cl)
    code = totp_code(cl, user)
    kind, reply, out = sign_in(cl, user, PIN + code)
    assert kind == "Access-Accept", out
    assert "Message-Authenticator" in reply, "every answer carries Message-Authenticator"
    # The same code again is a replay; a wrong PIN is wrong.
    kind, _, out = sign_in(cl, user, PIN + code)
    assert kind == "Access-Reject", out
    # A wrong PIN is rejected; Proxy-State comes back as sent (RFC 2865 §5.33).
    other = take_user(cl)
    kind, reply, out = radclient(cl, {"User-Name": f'"{other}"',
                                      "User-Password": f'"9999{totp_code(cl, other)}"',
                                      "Proxy-State": "0x70726f78792d31",
                                      "Message-Authenticator": "0x00"})
    assert kind == "Access-Reject", out
    assert reply.get("Proxy-State") == "0x70726f78792d31", out


def sms_challenge(cl, user):
    kind, reply, out = sign_in(cl, user, PIN)
    assert kind == "Access-Challenge", out
    assert reply.get("Reply-Message"), out
    state = reply["State"]
    node_id = bytes.fromhex(state[2:]).decode().split("-", 1)[0]
    assert node_id in cl.by_id, f"State must start with a node id: {state}"
    with cl.gw.lock:
        text = cl.gw.messages[-1]["text"]
    return state, node_id, re.search(r"\b(\d{6})\b", text).group(1)


def test_sms_challenge_then_code(cl):
    state, node_id, code = sms_challenge(cl, "sms0")
    kind, _, out = sign_in(cl, "sms0", code, state=state)
    assert kind == "Access-Accept", out
    # A wrong code is rejected, and ends that challenge: the right one is too late.
    state, node_id, code = sms_challenge(cl, "sms1")
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    kind, _, out = sign_in(cl, "sms1", wrong, state=state)
    assert kind == "Access-Reject", out
    kind, reply, out = sign_in(cl, "sms1", code, state=state)
    assert kind == "Access-Reject", out
    assert "start the sign-in again" in reply.get("Reply-Message", ""), out


def test_retransmission_sends_one_sms(cl):
    before = sum(node_radius(m)["duplicates"] for m in cl.members)
    with cl.gw.lock:
        sent = len(cl.gw.messages)
    cl.gw.delay = 2.5  # longer than the NAS's 1 s retransmit timer and the 1 s window
    try:
        kind, reply, out = sign_in(cl, "sms2", PIN, timeout=1, retries=5)
    finally:
        cl.gw.delay = 0.0
    assert kind == "Access-Challenge", out
    dups = sum(node_radius(m)["duplicates"] for m in cl.members) - before
    with cl.gw.lock:
        new = [m for m in cl.gw.messages[sent:] if m["to"] == "+491700000012"]
    print(f"\nretransmissions seen by the node: {dups}, SMS sent: {len(new)}")
    assert dups >= 1, f"radclient must have retransmitted:\n{out}"
    assert len(new) == 1, new
    state = reply["State"]
    code = re.search(r"\b(\d{6})\b", new[0]["text"]).group(1)
    assert sign_in(cl, "sms2", code, state=state)[0] == "Access-Accept"


def test_bad_clients_dropped_and_counted(cl):
    user = take_user(cl)
    before = [node_radius(m)["dropped"] for m in cl.members]
    kind, _, out = sign_in(cl, user, PIN + totp_code(cl, user), secret="not-the-secret",
                           timeout=1, retries=1)
    assert kind is None, f"a wrong secret must get no answer:\n{out}"
    kind, _, out = sign_in(cl, user, PIN + totp_code(cl, user), ma=False, timeout=1, retries=1)
    assert kind is None, f"a request without Message-Authenticator must get no answer:\n{out}"

    def grew(reason):
        return sum(node_radius(m)["dropped"][reason] - b[reason]
                   for m, b in zip(cl.members, before))
    wait_for(lambda: grew("bad_authenticator") == 1, 5, "the bad authenticator counted")
    wait_for(lambda: grew("missing_message_authenticator") == 1, 5, "the missing one counted")
    # The code was never used: the right request still signs in.
    assert sign_in(cl, user, PIN + totp_code(cl, user))[0] == "Access-Accept"


def test_auth_log_has_radius_decisions(cl):
    def rows():
        st, doc = cl.lb.api("GET", "/api/v1/auth-log?limit=1000", key=cl.admin_key)
        assert st == 200, doc
        return doc["entries"] if isinstance(doc, dict) else doc
    wait_for(lambda: any(r["username"] == "sms2" and r["result"] == "accepted"
                         for r in rows()), 20, "the SMS sign-in is in the auth log")
    sms1 = [r for r in rows() if r["username"] == "sms1"]
    assert {r["result"] for r in sms1} >= {"challenge", "rejected"}, sms1
    assert all(r["client_ip"] == "127.0.0.1" for r in sms1), sms1


def test_node_killed_during_sign_ins(cl):
    """Sign-ins four at a time; n3's node is killed midway. Every sign-in that
    starts after the kill succeeds (the NAS retries, the front re-routes)."""
    victim = cl.by_id["n3"]
    users = cl.unused[:-8]  # the tests after this one take the rest
    del cl.unused[:-8]
    killed_at = []
    results = []

    def one(user):
        t0 = time.monotonic()
        kind, _, out = sign_in(cl, user, PIN + totp_code(cl, user), timeout=1, retries=3)
        results.append((t0, time.monotonic(), user, kind, out))

    def killer():
        while len(results) < len(users) // 3:
            time.sleep(0.01)
        victim.procs["node"].send_signal(signal.SIGKILL)
        killed_at.append(time.monotonic())

    k = threading.Thread(target=killer)
    k.start()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(one, users))
    k.join(30)
    assert killed_at, "the node was never killed"
    after = [r for r in results if r[0] > killed_at[0]]
    during = [r for r in results if r[0] <= killed_at[0] < r[1]]
    failed_after = [r for r in after if r[3] != "Access-Accept"]
    print(f"\n{len(results)} sign-ins, {len(after)} started after the kill "
          f"({len(failed_after)} failed); {len(during)} in flight at the kill "
          f"({sum(r[3] != 'Access-Accept' for r in during)} failed)")
    assert len(after) >= 10, "too few sign-ins after the kill to show anything"
    assert not failed_after, failed_after[0][4]
    victim.start_node()

    def answers():
        try:
            return victim.node("GET", "/status")[0] == 200
        except OSError:
            return False
    wait_for(answers, 30, "n3's node back")


# ---- an independent RADIUS client (hashlib/hmac), for what radclient cannot do ----

def raw_request(secret, user, password, code=1, ident=7, extra=b""):
    """An Access-Request (or Status-Server, code 12) with Message-Authenticator."""
    auth = os.urandom(16)
    attrs = b""
    if code == 1:
        pw = password.encode().ljust((len(password) + 15) // 16 * 16 or 16, b"\0")
        hidden, prev = b"", auth
        for i in range(0, len(pw), 16):
            b = hashlib.md5(secret + prev).digest()
            block = bytes(x ^ y for x, y in zip(pw[i:i + 16], b))
            hidden += block
            prev = block
        attrs += bytes([1, 2 + len(user)]) + user.encode() + bytes([2, 2 + len(hidden)]) + hidden
    attrs += extra
    ma_at = len(attrs)
    attrs += bytes([80, 18]) + bytes(16)
    head = bytes([code, ident]) + struct.pack("!H", 20 + len(attrs)) + auth
    mac = hmac.new(secret, head + attrs, hashlib.md5).digest()
    attrs = attrs[:ma_at + 2] + mac + attrs[ma_at + 18:]
    return head + attrs, auth


def proxy_v2(src, dst):
    """A PROXY v2 header, DGRAM over IPv4, <src> -> <dst> ((ip, port) pairs)."""
    body = (socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) +
            struct.pack("!HH", src[1], dst[1]))
    return b"\r\n\r\n\0\r\nQUIT\n" + bytes([0x21, 0x12]) + struct.pack("!H", len(body)) + body


def exchange(sock, dest, data, timeout=2.0):
    sock.settimeout(timeout)
    sock.sendto(data, dest)
    try:
        return sock.recvfrom(4096)[0]
    except socket.timeout:
        return None


def test_retransmission_after_the_answer_gets_the_same_answer(cl):
    """A TOTP code is good once: a retransmission of an accepted request must
    get the cached Accept, not a second sign-in rejected as a replay."""
    user = take_user(cl)
    secret = cl.radius_secret.encode()
    pkt, _ = raw_request(secret, user, PIN + totp_code(cl, user))
    before = sum(node_radius(m)["resent"] for m in cl.members)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        first = exchange(s, ("127.0.0.1", cl.lb.ports["radius"]), pkt)
        again = exchange(s, ("127.0.0.1", cl.lb.ports["radius"]), pkt)
    assert first and first[0] == 2, "Access-Accept expected"
    assert again == first, "the retransmission must get the very same answer"
    assert sum(node_radius(m)["resent"] for m in cl.members) == before + 1


def test_node_port_direct_and_proxy_from_unlisted(cl):
    """A NAS may talk to a node directly; a PROXY header from an address that
    is not a balancer is dropped; Status-Server is answered."""
    n2 = cl.by_id["n2"]
    secret = cl.radius_secret.encode()
    dest = ("127.0.0.1", n2.ports["node_radius"])
    user = take_user(cl)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))  # a client, but not a balancer (those are 127.0.0.1)
        pkt, _ = raw_request(secret, user, PIN + totp_code(cl, user))
        answer = exchange(s, dest, pkt)
        assert answer and answer[0] == 2, "a direct request is answered directly"
        before = node_radius(n2)["dropped"]["proxy_from_unlisted"]
        pkt, _ = raw_request(secret, user, PIN + "000000", ident=8)
        assert exchange(s, dest, proxy_v2(("192.0.2.1", 1645), ("127.0.0.1", 1812)) + pkt,
                        timeout=1.0) is None
        wait_for(lambda: node_radius(n2)["dropped"]["proxy_from_unlisted"] == before + 1, 5,
                 "the PROXY header from an unlisted address counted")
        pkt, _ = raw_request(secret, "", "", code=12, ident=9)
        answer = exchange(s, dest, pkt)
        assert answer and answer[0] == 2, "Status-Server gets Access-Accept"
