"""Load and faults ("chaos", issue 10): a three-member cluster whose members
are separate hosts — each runs in a network namespace of its own (ip netns),
joined by a veth pair to a bridge — under a mixed load through the two
balancers (n2, n3): API TOTP sign-ins, API SMS sign-ins, RADIUS PAP (TOTP)
sign-ins, and admin writes at a lower rate. One after another the test

  - kills a standby's mfa-node (SIGKILL) and starts it again,
  - kills the primary member (every process: a host that died), fails over
    with `mfactl failover` to the most advanced standby, and starts the old
    primary again (it rejoins as a standby),
  - reloads HAProxy on both balancers (SIGUSR2 to its master),
  - kills a standby's mfa-replicator and starts it again,
  - cuts the primary off from the others (its bridge-side veth down: packets
    dropped, nothing reset) for longer than fence_after, then heals it,

and then checks what must hold whatever the faults: every acknowledged admin
write is on the final primary; the auth log has exactly one row for each
decision a client received (matched on the client_ip each sign-in carries)
and never more than one for a request that got no answer; no two members
were ever writable at once (a monitor asks every member's PostgreSQL from
inside that member's namespace, so a cut-off primary is still watched);
every SMS sign-in whose node was neither killed nor cut off while it ran
completed.
Failures during the faults are expected: their rate per fault window is
printed, not asserted.

The test process enters a network namespace of its own (unshare, as
test_node_tls.py does) holding the bridge; the members' namespaces are named
mfa-chaos-<pid>-nX and removed at the end. Nothing of the host's network is
touched. Bounded: about three minutes."""

import concurrent.futures
import ctypes
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import struct
import hashlib
import hmac
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402
from test_failover import Monitor, sql  # noqa: E402
import otp_ref  # noqa: E402

CLONE_NEWNET = 0x40000000
SUBNET = "10.254.88"
HUB = f"{SUBNET}.254"           # the test process (the load, mfactl) on the bridge
FENCE_AFTER = 2
TOTP_USERS = 320  # each signs in at most once per 30 s step (replay)
SMS_USERS = 2
WINDOW = 6                      # seconds each fault lasts before its repair
PARTITION = 3 * FENCE_AFTER + 2  # longer than fence_after, with room to fence

libc = ctypes.CDLL(None, use_errno=True)


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True,
                          timeout=20)


class Net:
    """The bridge in this process's namespace and one named namespace per member."""

    def __init__(self, n):
        self.tag = f"mfa-chaos-{os.getpid()}"
        self.names = [f"{self.tag}-n{i + 1}" for i in range(n)]
        self.addresses = [f"{SUBNET}.{i + 1}" for i in range(n)]
        self.made = []

    def create(self):
        ip("link", "set", "lo", "up")
        ip("link", "add", "br0", "type", "bridge")
        ip("addr", "add", f"{HUB}/24", "dev", "br0")
        ip("link", "set", "br0", "up")
        for i, (ns, addr) in enumerate(zip(self.names, self.addresses)):
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("link", "add", f"vc{i + 1}", "type", "veth", "peer", "name", f"vm{i + 1}")
            ip("link", "set", f"vm{i + 1}", "netns", ns)
            ip("link", "set", f"vc{i + 1}", "master", "br0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", f"vm{i + 1}")
            ip("-n", ns, "link", "set", f"vm{i + 1}", "up")

    def cut(self, member_index):
        """The member's bridge port down: what it sends and what is sent to it is dropped."""
        ip("link", "set", f"vc{member_index + 1}", "down")

    def heal(self, member_index):
        ip("link", "set", f"vc{member_index + 1}", "up")

    def destroy(self):
        for ns in self.made:
            ip("netns", "del", ns, check=False)


def enter_private_network():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2")
    if libc.unshare(CLONE_NEWNET) != 0:
        pytest.skip(f"cannot make a network namespace ({os.strerror(ctypes.get_errno())})")


class NsMonitor(Monitor):
    """test_failover's monitor, each member watched from inside its own
    namespace (setns is per thread), so a member cut off is still seen."""

    def watch(self, m):
        fd = os.open(f"/run/netns/{m.netns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        super().watch(m)


# ---- the clients ----

class Ledger:
    """Every request the load made: what was sent, what came back, when."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []  # dicts: kind, t0, t1, ok, ips {client_ip: [decisions or None]}
        self.ip_n = 0

    def new_ip(self):
        with self.lock:
            self.ip_n += 1
            n = self.ip_n
        return f"100.{64 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}"

    def add(self, rec):
        rec["thread"] = threading.current_thread().name
        with self.lock:
            self.records.append(rec)


class Load:
    def __init__(self, c, ledger):
        self.c = c
        self.ledger = ledger
        self.stopping = threading.Event()
        self.avoid = set()        # members whose balancer clients do not use now
        self.pool_lock = threading.Lock()
        self.last_step = {u: -1 for u in c.totp_users}
        self.acked_writes = []
        self.sms_started = []     # (node_id, completed, detail, client_ip, t0, t1)
        self.errors = []
        self.challenges = {}      # challenge_id: the client_ip of its sign-in
        self.t_start = time.monotonic()
        self.pool_waits = 0
        self.stalls = []          # (thread name, when its current request began)

    def lb(self):
        for m in self.c.lbs:
            if m.id not in self.avoid:
                return m
        return self.c.lbs[0]

    def take_totp_user(self):
        while not self.stopping.is_set():
            step = int(time.time() // 30)
            with self.pool_lock:
                for u, last in self.last_step.items():
                    if last < step:
                        self.last_step[u] = step
                        return u
            self.pool_waits += 1  # every user signed in this step: fewer requests
            self.stopping.wait(0.2)
        return None

    def api(self, method, path, body, key, timeout=8):
        try:
            return self.lb().api(method, path, body, key=key, timeout=timeout)
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as e:
            return None, repr(e)[:80]

    def loop(self, fn, pace):
        me = threading.current_thread()
        while not self.stopping.is_set():
            me.beat = time.monotonic()
            try:
                fn()
            except Exception as e:  # a client bug must show, not stop the load silently
                self.errors.append(repr(e))
            self.stopping.wait(pace)

    def totp_api(self):
        u = self.take_totp_user()
        if u is None:
            return
        cip = self.ledger.new_ip()
        t0 = time.monotonic()
        st, doc = self.api("POST", "/api/v1/auth",
                           {"username": u, "otp": otp_ref.totp(self.c.seeds[u]),
                            "method": "totp", "client_ip": cip}, self.c.auth_key)
        dec = doc.get("result") if isinstance(doc, dict) else None
        self.ledger.add({"kind": "api-totp", "t0": t0, "t1": time.monotonic(),
                         "ok": dec == "accepted", "ips": {cip: [dec]}, "why": why(st, doc)})

    def sms_api(self, user, phone):
        cip = self.ledger.new_ip()
        t0 = time.monotonic()
        decs = []
        st, doc = self.api("POST", "/api/v1/auth",
                           {"username": user, "method": "sms", "client_ip": cip},
                           self.c.auth_key)
        dec = doc.get("result") if isinstance(doc, dict) else None
        decs.append(dec)
        ok, detail = False, "start: " + why(st, doc)
        if dec == "challenge":
            cid = doc["challenge_id"]
            self.challenges[cid] = cip
            node_id = cid.split("-", 1)[0]
            ok, detail = self.sms_verify(cid, node_id, phone, cip, decs)
            self.sms_started.append((node_id, ok, detail, cip, t0, time.monotonic()))
        self.ledger.add({"kind": "api-sms", "t0": t0, "t1": time.monotonic(), "ok": ok,
                         "ips": {cip: decs}, "why": detail})

    def sms_verify(self, cid, node_id, phone, cip, decs):
        """The code from the node's outbox, verified through the balancer; retried
        (each try is a request of its own) until an answer or 40 s."""
        m = self.c.by_id[node_id]
        code = None
        deadline = time.monotonic() + 40
        while code is None and time.monotonic() < deadline:
            msgs = [x for x in m.sms() if x["to"] == phone]
            if msgs:
                found = re.search(r"\b(\d{6})\b", msgs[-1]["text"])
                code = found.group(1) if found else None
            if code is None:
                time.sleep(0.1)
        if code is None:
            return False, f"no SMS from {node_id}"
        tries = []
        while time.monotonic() < deadline:
            st, doc = self.api("POST", f"/api/v1/challenges/{cid}/verify", {"otp": code},
                               self.c.auth_key)
            dec = doc.get("result") if isinstance(doc, dict) else None
            decs.append(dec)
            tries.append(f"{time.monotonic() - self.t_start:.1f}s {why(st, doc)}")
            if dec is not None:
                return dec == "accepted", f"verify on {node_id}: " + "; ".join(tries)
            time.sleep(0.5)
        return False, "no answer to verify in 40 s"

    def sms_worker(self, user, phone):
        self.loop(lambda: self.sms_api(user, phone), 0.5)

    def radius(self):
        u = self.take_totp_user()
        if u is None:
            return
        cip = self.ledger.new_ip()
        secret = self.c.radius_secret.encode()
        pkt = radius_request(secret, u, otp_ref.totp(self.c.seeds[u]), cip)
        t0 = time.monotonic()
        code = None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            lb = self.lb()
            for _ in range(5):  # retransmissions of the same packet, as a NAS does
                s.sendto(pkt, (lb.address, lb.ports["radius"]))
                try:
                    data = s.recv(4096)
                except socket.timeout:
                    continue
                if len(data) >= 20 and data[1] == pkt[1]:
                    code = data[0]
                    break
        dec = {2: "accepted", 3: "rejected", 11: "challenge"}.get(code)
        self.ledger.add({"kind": "radius", "t0": t0, "t1": time.monotonic(),
                         "ok": code == 2, "ips": {cip: [dec]},
                         "why": dec or "no answer"})

    def admin_write(self):
        name = f"cw{secrets.token_hex(5)}"
        t0 = time.monotonic()
        st, _ = self.api("POST", "/api/v1/users", {"username": name, "method": "totp"},
                         self.c.admin_key)
        if st == 201:
            self.acked_writes.append(name)
        self.ledger.add({"kind": "admin-write", "t0": t0, "t1": time.monotonic(),
                         "ok": st == 201, "ips": {}, "why": why(st, _)})

    def start(self):
        self.threads = [threading.Thread(target=self.loop, args=(self.totp_api, 0.3),
                                         name="api-totp"),
                        threading.Thread(target=self.loop, args=(self.radius, 0.3),
                                         name="radius"),
                        threading.Thread(target=self.loop, args=(self.admin_write, 0.4),
                                         name="admin-write")]
        for user, phone in self.c.sms_users.items():
            self.threads.append(threading.Thread(target=self.sms_worker, args=(user, phone),
                                                 name=f"api-sms-{user}"))
        for t in self.threads:
            t.daemon = True
            t.start()
        threading.Thread(target=self.watchdog, daemon=True).start()

    def watchdog(self):
        """Notes a load thread that made no request for over 4 s (its window
        then counts fewer requests); MFA_CHAOS_DEBUG=1 dumps every stack."""
        import faulthandler
        while not self.stopping.wait(0.5):
            now = time.monotonic()
            for t in self.threads:
                beat = getattr(t, "beat", now)
                if now - beat > 4 and (t.name, beat) not in self.stalls:
                    self.stalls.append((t.name, beat))
                    if os.environ.get("MFA_CHAOS_DEBUG"):
                        faulthandler.dump_traceback(sys.__stderr__, all_threads=True)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(60)


def why(st, doc):
    """A short account of an answer, for the failure table."""
    if st is None:
        return f"no answer ({doc})" if doc else "no answer"
    if isinstance(doc, dict):
        return f"{st} {doc.get('reason') or doc.get('error') or doc.get('result')}"
    return f"{st}"


def radius_request(secret, user, password, calling_station=None):
    """An Access-Request with User-Password, Calling-Station-Id (the person's
    address, which the auth log keeps; none when None) and
    Message-Authenticator (RFC 3579 §3.2)."""
    auth = os.urandom(16)
    pw = password.encode().ljust((len(password) + 15) // 16 * 16 or 16, b"\0")
    hidden, prev = b"", auth
    for i in range(0, len(pw), 16):
        b = hashlib.md5(secret + prev).digest()
        block = bytes(x ^ y for x, y in zip(pw[i:i + 16], b))
        hidden += block
        prev = block
    attrs = bytes([1, 2 + len(user)]) + user.encode() + bytes([2, 2 + len(hidden)]) + hidden
    if calling_station is not None:
        cs = calling_station.encode()
        attrs += bytes([31, 2 + len(cs)]) + cs
    ma_at = len(attrs)
    attrs += bytes([80, 18]) + bytes(16)
    ident = secrets.randbelow(256)
    head = bytes([1, ident]) + struct.pack("!H", 20 + len(attrs)) + auth
    mac = hmac.new(secret, head + attrs, hashlib.md5).digest()
    return head + attrs[:ma_at + 2] + mac


def enrol_totp(m, key, user):
    """Makes <user> a TOTP user through member <m> with admin <key>: (user, seed)."""
    st, doc = m.node("POST", "/api/v1/users", {"username": user, "method": "totp"}, key=key)
    assert st == 201, doc
    st, doc = m.node("POST", f"/api/v1/users/{user}/totp", {}, key=key)
    assert st == 201, doc
    return user, otp_ref.b32decode(doc["secret"])


# ---- the cluster ----

@pytest.fixture(scope="module")
def cl():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    enter_private_network()
    net = Net(3)
    base = tempfile.mkdtemp(prefix="mfa-chaos-", dir="/tmp")
    c = None
    try:
        net.create()
        c = Cluster(base, build, members=3, fence_after=FENCE_AFTER, balancers=["n2", "n3"],
                    addresses=net.addresses, netns=net.names, radius_nas=f"{HUB}/32",
                    # SMS throttles high enough for the load, also the tighter
                    # ones that apply while no primary is reachable: this test
                    # measures the faults, not the throttle.
                    sms_conf="per_user_per_hour = 1000; per_phone_per_hour = 1000; "
                    "offline_per_user_per_hour = 1000; offline_node_per_hour = 100000;")
        c.net = net
        c.create()
        c.start(timeout=120)
        rc, out, err = c.mfactl("--json", "apikey", "create", "chaos-admin", member=c.primary())
        assert rc == 0, err
        c.admin_key = json.loads(out)["key"]
        rc, out, err = c.mfactl("--json", "apikey", "create", "chaos-auth", "--scope", "auth",
                                member=c.primary())
        assert rc == 0, err
        c.auth_key = json.loads(out)["key"]
        c.lbs = [c.by_id["n2"], c.by_id["n3"]]
        for m in c.members:
            wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=c.admin_key)[0]
                     == 200, 20, f"{m.id} accepts the admin key")
            wait_for(lambda m=m: m.node("POST", "/api/v1/auth", {"username": "nobody"},
                                        key=c.auth_key)[0] == 200, 20,
                     f"{m.id} accepts the auth key")
        c.seeds, c.totp_users, c.sms_users = {}, [], {}
        prim = c.primary()

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for u, seed in pool.map(lambda i: enrol_totp(prim, c.admin_key, f"ct{i}"),
                                    range(TOTP_USERS)):
                c.seeds[u] = seed
                c.totp_users.append(u)
        for i in range(SMS_USERS):
            u, phone = f"cs{i}", f"+4917000{88000 + i}"
            st, doc = prim.node("POST", "/api/v1/users",
                                {"username": u, "method": "sms", "phone": phone},
                                key=c.admin_key)
            assert st == 201, doc
            c.sms_users[u] = phone
        c.monitor = NsMonitor(c)
        c.monitor.start()
        yield c
    finally:
        if c is not None:
            if getattr(c, "monitor", None):
                c.monitor.stopping.set()
            c.stop()
        net.destroy()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def standbys(c):
    p = c.primary()
    return [m for m in c.members if m is not p]


def test_chaos(cl, capsys):
    c = cl

    def say(line):
        """The figures, printed past pytest's capture: ctest -V shows them on a pass."""
        with capsys.disabled():
            print(line, flush=True)
    started = time.monotonic()
    ledger = Ledger()
    load = Load(c, ledger)
    windows = []   # (name, t0, t1)
    outages = []   # (member id, from, to): its node killed, or the member cut off

    def window(name, inject, repair, hold=WINDOW):
        # Windows are back to back: every request falls in one.
        t0 = windows[-1][2]
        inject()
        time.sleep(hold)  # the fault lasts this long under load, by design
        repair()
        c.wait_healthy(90)
        windows.append((name, t0, time.monotonic()))

    t0 = time.monotonic()
    load.start()
    try:
        wait_for(lambda: sum(r["ok"] for r in ledger.records) >= 20, 60, "load flowing")
        time.sleep(WINDOW)
        windows.append(("baseline", t0, time.monotonic()))

        # 1. a standby's node dies and comes back
        victim = standbys(c)[0]

        def kill_node():
            outages.append([victim.id, time.monotonic(), None])
            victim.procs["node"].kill()
            victim.procs["node"].wait(10)

        def start_node():
            victim.start_node()
            wait_for(lambda: victim.node("GET", "/ready")[0] == 200, 60, "node back")
            outages[-1][2] = time.monotonic()
        window(f"kill node {victim.id}", kill_node, start_node)

        # 2. the primary's host dies; failover to the most advanced standby
        old = c.primary()

        def kill_primary():
            outages.append([old.id, time.monotonic(), None])
            load.avoid.add(old.id)
            old.kill()

        def failover():
            done = None
            for cand in [m for m in c.members if m is not old]:
                rc, out, err = c.mfactl("failover", "--to", cand.id, timeout=120)
                if rc == 0:
                    done = cand
                    break
            assert done, f"failover refused: {out} {err}"
            wait_for(lambda: c.primary() is done, 60, "new primary writable")
            old.start()
            wait_for(lambda: old.node("GET", "/ready")[0] == 200, 90, "old primary's node back")
            outages[-1][2] = time.monotonic()
            load.avoid.discard(old.id)
        window(f"kill primary {old.id} + failover", kill_primary, failover)

        # 3. HAProxy reloaded on both balancers
        def reload():
            for m in c.lbs:
                os.kill(m.haproxy_pids()[0], signal.SIGUSR2)  # HAProxy's master reloads

        def reloaded():
            for m in c.lbs:
                wait_for(lambda m=m: m.api("GET", "/health")[0] == 200, 30, "HAProxy serving")
        window("reload HAProxy", reload, reloaded, hold=2)

        # 4. a standby's replicator dies and is started again
        rvictim = standbys(c)[-1]

        def kill_replicator():
            rvictim.procs["replicator"].kill()
            rvictim.procs["replicator"].wait(10)
        window(f"restart replicator {rvictim.id}", kill_replicator, rvictim.start_replicator,
               hold=2)

        # 5. the primary cut off (packets dropped), then healed
        cut = c.primary()
        idx = c.members.index(cut)

        def partition():
            load.avoid.add(cut.id)
            outages.append([cut.id, time.monotonic(), None])
            c.net.cut(idx)

        def heal():
            c.net.heal(idx)
            outages[-1][2] = time.monotonic()
            load.avoid.discard(cut.id)
        window(f"partition primary {cut.id}", partition, heal, hold=PARTITION)

        t0 = windows[-1][2]
        time.sleep(WINDOW)
        windows.append(("after", t0, time.monotonic()))
    finally:
        load.stop()
    c.monitor.stopping.set()
    c.monitor.join(10)

    # ---- the figures ----
    say(f"\nchaos: {len(ledger.records)} requests, {time.monotonic() - started:.0f} s "
          f"(waits for a TOTP user not yet used in the current step: {load.pool_waits})")
    say(f"{'window':38} {'secs':>5} {'requests':>8} {'failed':>6} {'rate':>6} {'slowest':>7}"
          "  by kind (failed/all)")
    for name, w0, w1 in windows:
        rs = [r for r in ledger.records if w0 <= r["t0"] < w1]
        failed = [r for r in rs if not r["ok"]]
        kinds = {}
        for r in rs:
            k = kinds.setdefault(r["kind"], [0, 0])
            k[0] += not r["ok"]
            k[1] += 1
        rate = len(failed) / len(rs) if rs else 0
        slowest = max((r["t1"] - r["t0"] for r in rs), default=0)
        say(f"{name:38} {w1 - w0:5.1f} {len(rs):8} {len(failed):6} {rate:6.1%} "
              f"{slowest:6.1f}s  "
              + " ".join(f"{k}={v[0]}/{v[1]}" for k, v in sorted(kinds.items())))
        if os.environ.get("MFA_CHAOS_DEBUG"):
            for r in rs:
                say(f"    {r['kind']:12} {r['t0'] - w0:6.2f} {r['t1'] - r['t0']:6.2f} "
                      f"{r['ok']} {r['why']}")
        reasons = {}
        for r in failed:
            key = f"{r['kind']}: {r['why']}"
            reasons[key] = reasons.get(key, 0) + 1
        for key, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            say(f"{'':40}{n:4} x {key}")

    assert not load.errors, load.errors[:5]

    # No two members writable at once, and the monitor did see a primary.
    assert not c.monitor.overlaps(), c.monitor.overlaps()[:5]
    assert any(w for s in c.monitor.samples.values() for (_, _, w) in s)

    # Every acknowledged admin write is on the final primary.
    final = wait_for(c.primary, 30, "a primary")
    names = {r[0] for r in sql(final, "SELECT username FROM users WHERE username LIKE 'cw%%'")}
    lost = [n for n in load.acked_writes if n not in names]
    say(f"admin writes acknowledged: {len(load.acked_writes)}, lost: {len(lost)}")
    assert not lost, lost[:10]

    # The auth log: one row per decision received; at most one per request
    # without an answer; never two for one request.
    expected = {}
    for r in ledger.records:
        for cip, decs in r["ips"].items():
            expected[cip] = decs

    def rows():
        """Rows by the sign-in they belong to: its client_ip, or for a verify
        of a challenge that was gone (logged with the caller's address, as
        the node no longer knows the sign-in's), the challenge id."""
        got = {}
        for cip, result, cid in sql(final, "SELECT host(client_ip), result, challenge_id "
                                    "FROM auth_log"):
            if not cip.startswith("100.") and cid in load.challenges:
                cip = load.challenges[cid]
            if cip.startswith("100."):
                got.setdefault(cip, []).append(result)
        return got

    def shipped():
        for m in c.data_members():
            st, doc = m.node("GET", "/status")
            if st != 200 or doc.get("auth_log_pending"):
                return False
        got = rows()
        for cip, decs in expected.items():
            have = list(got.get(cip, []))
            for d in decs:
                if d is not None and d not in have:
                    return False
                if d is not None:
                    have.remove(d)
        return got

    try:
        got = wait_for(shipped, 90, "every decision in the auth log", interval=0.5)
    except TimeoutError:
        got = rows()
    bad, unanswered_logged = [], 0
    for cip, decs in expected.items():
        answered = sorted(d for d in decs if d is not None)
        have = sorted(got.get(cip, []))
        unanswered = len(decs) - len(answered)
        extra = list(have)
        for d in answered:
            if d in extra:
                extra.remove(d)
            else:
                bad.append((cip, "missing", d, decs, have,
                            [r.get("why") for r in ledger.records if cip in r["ips"]]))
        unanswered_logged += len(extra)
        if len(extra) > unanswered:
            bad.append((cip, "more rows than requests", decs, have))
    strays = [cip for cip in got if cip not in expected]
    say(f"auth log: {sum(len(v) for v in got.values())} rows for {len(expected)} sign-ins; "
          f"{unanswered_logged} rows of requests whose answer was lost")
    assert not bad, bad[:10]
    assert not strays, strays[:10]

    # SMS sign-ins whose node stayed up and connected while they ran all completed.
    # Completed: accepted — as the client heard, or, when the answer to an
    # accepted verify was lost and the retry found the challenge used, as the
    # auth log says.
    def survived(s):
        """The sign-in's node was neither killed nor cut off while it ran."""
        return not any(node == s[0] and a < s[5] and s[4] < b for node, a, b in outages)
    survivors = [s for s in load.sms_started if survived(s)]
    answer_lost = [s for s in survivors if not s[1] and "accepted" in got.get(s[3], [])]
    unfinished = [s for s in survivors if not s[1] and s not in answer_lost]
    say(f"SMS sign-ins started on surviving nodes: {len(survivors)}, completed: "
          f"{len(survivors) - len(unfinished)} (of which {len(answer_lost)} accepted but the "
          f"answer lost: the retry was told challenge_expired), not completed: "
          f"{len(unfinished)}")
    assert not unfinished, unfinished[:5]
    for name, beat in load.stalls:
        rec = next((r for r in ledger.records if r["thread"] == name and r["t0"] >= beat), None)
        where = next((w[0] for w in windows if rec and w[1] <= rec["t0"] < w[2]), "no window")
        say(f"note: load thread {name} made no new request for over 4 s from "
            f"{beat - load.t_start:.1f} s; its request then: " +
            (f"{rec['t1'] - rec['t0']:.1f} s in '{where}', ok={rec['ok']}, {rec['why']}"
             if rec else "none recorded"))
    say(f"chaos: total {time.monotonic() - started:.0f} s")
