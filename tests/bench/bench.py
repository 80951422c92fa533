#!/usr/bin/python3
"""The mfa-node benchmarks (docs/bench.md); tests/bench/run builds and starts this.

One node on a throwaway PostgreSQL primary (no standby), on loopback:
  1. GET /health, then one-time TOTP sign-ins, both with wrk (bench.lua);
  2. GET /health, then SMS start+verify pairs, both with the Python driver here;
  3. the node's RSS before and after 20 000 more users, and before and after
     20 000 live SMS challenges.
Prints a table and writes it as JSON (--out). Everything it starts is stopped
on the way out, also on an error, Ctrl-C, SIGTERM or its own time limit.
"""

import argparse
import collections
import datetime
import json
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import otp_ref  # noqa: E402
from nodes import NodeCluster  # noqa: E402
from pgcluster import children, wait_for  # noqa: E402

# The node settings of the bench: SMS limits lifted, the address throttle
# (which counts failures only) at its maximum. nodes.py writes its own
# `sms = { file = ...; }` block, so the SMS limits go into that one.
SMS_LIMITS = ("per_user_per_hour = 1000; per_phone_per_hour = 1000; "
              "cluster_per_hour = 10000000; offline_node_per_hour = 10000000;")
NODE_CONF = ("lockout = { per_address_per_minute = 100000; };\n"
             "  challenge = { ttl = 900; };")

STOP = threading.Event()  # set on the way out: every worker loop ends
CLK_TCK = os.sysconf("SC_CLK_TCK")
CODE_RE = re.compile(r"\b(\d{6,8})\b")


class Interrupted(Exception):
    pass


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchCluster(NodeCluster):
    """NodeCluster with the bench's SMS limits in the node's sms block."""

    def __init__(self, *args, **kw):
        try:
            super().__init__(*args, **kw)
        except BaseException:
            if getattr(self, "pg", None):
                self.pg.close()
            raise

    def conf_text(self, member_id, node, extra):
        text = super().conf_text(member_id, node, extra)
        new = re.sub(r'sms = \{ (file = "[^"]*";) \};', r"sms = { \1 " + SMS_LIMITS + " };", text)
        if new == text:
            raise RuntimeError("bench: cannot find the sms block in the node config of nodes.py")
        return new


# ---- a small keep-alive HTTP/1.1 client (the SMS driver and the setup) ----

class Conn:
    """One keep-alive connection; call() sends a request and reads the answer."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.timeout = timeout
        self.sock = None
        self.buf = b""
        self.used = False

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None
        self.buf = b""

    def _connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf, self.used = s, b"", False

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the node closed the connection")
        self.buf += data

    def call(self, raw):
        """raw: a whole request (bytes). Returns (status, body bytes)."""
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            stale_ok = self.used and attempt == 0
            try:
                self.sock.sendall(raw)
                while b"\r\n\r\n" not in self.buf:
                    self._recv()
            except (ConnectionError, BrokenPipeError) as e:
                # A keep-alive connection the node closed while idle: once more.
                self.close()
                if stale_ok:
                    continue
                raise ConnectionError(f"HTTP request failed: {e}") from e
            break
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = None, False
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
        if length is None:
            raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
        self.buf = rest
        while len(self.buf) < length:
            self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        self.used = True
        if close:
            self.close()
        return status, body

    def json(self, raw):
        status, body = self.call(raw)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {"raw": body[:300].decode(errors="replace")}


def http_req(method, path, key=None, body=None):
    h = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if key:
        h.append(f"Authorization: Bearer {key}")
    data = b""
    if body is not None:
        data = json.dumps(body, separators=(",", ":")).encode()
        h.append("Content-Type: application/json")
    if body is not None or method != "GET":
        h.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(h) + "\r\n\r\n").encode() + data


# ---- parallel helpers ----

def run_parallel(fn, items, workers, what, port):
    """fn(conn, item) for every item on <workers> threads, each with its own
    keep-alive connection. Returns the results in order; the first error stops
    all and is raised. Prints progress every 5 s."""
    items = list(items)
    results = [None] * len(items)
    errors = []
    lock = threading.Lock()
    nxt = [0]

    def work():
        conn = Conn(port)
        try:
            while not errors and not STOP.is_set():
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(items):
                    return
                results[i] = fn(conn, items[i])
        except BaseException as e:  # noqa: B902 — handed to the main thread
            errors.append(e)
        finally:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    last = t0
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        if time.monotonic() - last >= 5:
            last = time.monotonic()
            say(f"  {what}: {min(nxt[0], len(items))}/{len(items)}")
    if errors:
        raise errors[0]
    if STOP.is_set():
        raise Interrupted()
    dt = time.monotonic() - t0
    say(f"  {what}: {len(items)} in {dt:.1f} s ({len(items) / dt:.0f}/s)")
    return results


# ---- what the node and PostgreSQL use ----

def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return 0.0
    fields = st[st.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


class CpuMeter:
    """CPU seconds of the node, of PostgreSQL (postmaster and its children)
    and of this process's client (wrk: waited children; driver: ourselves)."""

    def __init__(self, cluster):
        self.node = cluster.nodes[0].proc.pid
        self.pg = cluster.pg.primary.proc.pid

    def sample(self):
        pg = cpu_s(self.pg) + sum(cpu_s(p) for p in children(self.pg))
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"node": cpu_s(self.node), "pg": pg, "wrk": ch.ru_utime + ch.ru_stime,
                "driver": time.process_time(), "wall": time.monotonic()}

    @staticmethod
    def delta(a, b, client):
        wall = b["wall"] - a["wall"]
        return {"node_cores": round((b["node"] - a["node"]) / wall, 2),
                "postgres_cores": round((b["pg"] - a["pg"]) / wall, 2),
                "client_cores": round((b[client] - a[client]) / wall, 2),
                "node_cpu_s": b["node"] - a["node"]}


def metrics(node):
    status, body = node.request("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r'^(\w+)(?:\{(.*)\})?\s+(\S+)$', line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def auth_counts(node):
    m = metrics(node)
    return {r: int(m.get(("mfa_auth_total", f'result="{r}"'), 0))
            for r in ("accepted", "rejected", "challenge", "error")}


# ---- bench 1: wrk ----

class Wrk:
    def __init__(self, args, port, outdir):
        self.args, self.port, self.outdir = args, port, outdir
        self.proc = None

    def run(self, name, script_args):
        a = self.args
        cmd = ["wrk", "--latency", f"-t{a.wrk_threads}", f"-c{a.wrk_connections}",
               f"-d{a.duration}s", "--timeout", "10s", "-s", os.path.join(HERE, "bench.lua"),
               f"http://127.0.0.1:{self.port}/", "--"] + script_args
        say(f"wrk {name}: -t{a.wrk_threads} -c{a.wrk_connections} -d{a.duration}s")
        log = os.path.join(self.outdir, f"wrk-{name}.txt")
        with open(log, "w") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
            try:
                rc = self.proc.wait(a.duration + 60)
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
                self.proc = None
        with open(log) as f:
            text = f.read()
        if rc != 0:
            raise RuntimeError(f"wrk {name} failed ({rc}):\n{text[-2000:]}")
        line = next((ln for ln in text.splitlines() if ln.startswith("MFA_BENCH ")), None)
        if not line:
            raise RuntimeError(f"wrk {name}: no MFA_BENCH line:\n{text[-2000:]}")
        return json.loads(line[len("MFA_BENCH "):])

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()


def wrk_figures(r):
    """requests/s over the time the run really took (a TOTP thread that ran out
    of bodies stopped early), p99, and the errors."""
    dur = r["duration_us"] / 1e6
    threads = r["threads"]
    out = {"requests": r["requests"], "seconds": round(dur, 2),
           "p50_ms": r["latency_us"]["p50"] / 1000, "p99_ms": r["latency_us"]["p99"] / 1000,
           "socket_errors": sum(v for k, v in r["errors"].items() if k != "status"),
           "non_2xx": r["errors"]["status"]}
    if r["mode"] == "totp":
        answered = sum(t["answered"] for t in threads)
        ran_out = [t["elapsed"] for t in threads if t["elapsed"] > 0]
        window = max(ran_out) if len(ran_out) == len(threads) else dur
        out.update(answered=answered, seconds=round(window, 2),
                   client_accepted=sum(t["accepted"] for t in threads),
                   client_not_accepted=sum(t["other"] for t in threads),
                   overrun=sum(t["overrun"] for t in threads),
                   ran_out=bool(ran_out),
                   samples=[s for t in threads for s in t["samples"].splitlines() if s])
        out["rps"] = round(answered / window, 1)
    else:
        out["rps"] = round(r["requests"] / dur, 1)
    return out


def totp_bodies(users, nthreads, outdir):
    """Two fresh codes per user (steps now and now+1: both stay inside the ±1
    window until the end of step now+1, at least 30 s from here), each used
    once. Thread i gets its own slice of users: first every user's code for
    step now, then every user's code for step now+1, so a user's two sign-ins
    are far apart and in step order (the replay check wants last_step to grow)."""
    step = int(time.time() // 30)
    slices = [users[i::nthreads] for i in range(nthreads)]
    for i, sl in enumerate(slices, 1):
        with open(os.path.join(outdir, f"bodies-{i}.txt"), "w") as f:
            for s in (step, step + 1):
                for name, key in sl:
                    f.write(json.dumps({"username": name, "otp": otp_ref.hotp(key, s)},
                                       separators=(",", ":")) + "\n")
    return 2 * len(users)


# ---- bench 2: the Python driver ----

class Outbox:
    """Tails the node's JSON-lines SMS outbox; codes by phone, oldest first."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.f = None
        self.partial = b""
        self.codes = collections.defaultdict(collections.deque)

    def skip_existing(self):
        if os.path.exists(self.path):
            self.f = open(self.path, "rb")
            self.f.seek(0, os.SEEK_END)

    def close(self):
        if self.f:
            self.f.close()

    def _pump(self):
        if self.f is None:
            if not os.path.exists(self.path):
                return
            self.f = open(self.path, "rb")
        data = self.f.read()
        if not data:
            return
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.strip():
                msg = json.loads(line)
                m = CODE_RE.search(msg["text"])
                if m:
                    self.codes[msg["to"]].append(m.group(1))

    def take(self, phone, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                q = self.codes.get(phone)
                if not q:
                    self._pump()
                    q = self.codes.get(phone)
                if q:
                    return q.popleft()
            if time.monotonic() > deadline or STOP.is_set():
                raise TimeoutError(f"no SMS to {phone} in {self.path} after {timeout} s")
            time.sleep(0.0005)


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1)]


def drive(port, clients, duration, one, what):
    """Runs one(conn, worker_index, i) in a loop on <clients> threads for
    <duration> s. one returns (ok, latency_s, sample-or-None)."""
    results = [None] * clients
    errors = []
    start = threading.Event()
    deadline = [0.0]

    def work(w):
        conn = Conn(port)
        lat, ok, bad, samples, i = [], 0, 0, [], 0
        try:
            start.wait()
            while time.monotonic() < deadline[0] and not STOP.is_set():
                good, dt, sample = one(conn, w, i)
                i += 1
                lat.append(dt)
                if good:
                    ok += 1
                else:
                    bad += 1
                    if sample and len(samples) < 3:
                        samples.append(sample)
        except BaseException as e:  # noqa: B902 — handed to the main thread
            errors.append(e)
        finally:
            conn.close()
        results[w] = (lat, ok, bad, samples)

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(clients)]
    for t in threads:
        t.start()
    say(f"driver {what}: {clients} clients, {duration} s")
    t0 = time.monotonic()
    deadline[0] = t0 + duration
    start.set()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    wall = time.monotonic() - t0
    if errors:
        raise errors[0]
    if STOP.is_set():
        raise Interrupted()
    lat = [x for r in results for x in r[0]]
    ok = sum(r[1] for r in results)
    bad = sum(r[2] for r in results)
    return {"done": ok + bad, "ok": ok, "not_ok": bad, "seconds": round(wall, 2),
            "rps": round((ok + bad) / wall, 1), "p50_ms": round(pct(lat, 50) * 1000, 2),
            "p99_ms": round(pct(lat, 99) * 1000, 2),
            "samples": [s for r in results for s in r[3]][:5]}


# ---- the run ----

def create_users(cluster, port, prefix, n, totp, first_phone=0, workers=8):
    key = cluster.admin_key

    def one(conn, i):
        name = f"{prefix}{i:05d}"
        body = {"username": name, "method": "totp" if totp else "sms"}
        if not totp:
            body["phone"] = f"+1555{first_phone + i:07d}"
        st, d = conn.json(http_req("POST", "/api/v1/users", key, body))
        if st not in (200, 201):
            raise RuntimeError(f"creating {name}: {st} {d}")
        if not totp:
            return name, body["phone"]
        st, d = conn.json(http_req("POST", f"/api/v1/users/{name}/totp", key, {}))
        if st not in (200, 201) or "secret" not in d:
            raise RuntimeError(f"enrolling {name}: {st} {d}")
        return name, otp_ref.b32decode(d["secret"])

    return run_parallel(one, range(n), workers, f"{n} {'TOTP' if totp else 'SMS'} users "
                        f"({prefix}*)", port)


def bench(args, out):
    outdir = os.path.abspath(args.out_dir)
    bodies_dir = os.path.join(outdir, "bodies")
    os.makedirs(bodies_dir, exist_ok=True)
    res = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "command": " ".join(["./tests/bench/run"] + sys.argv[1:]), "host": host_info(),
           "settings": vars(args)}
    out["results"] = res
    binary = os.path.join(args.build, "node", "mfa-node")
    schema = os.path.join(args.build, "tests", "tools", "mfa-schema-apply")
    for p in (binary, schema):
        if not os.access(p, os.X_OK):
            raise RuntimeError(f"{p} is missing: build first (tests/bench/run does)")

    say("starting PostgreSQL (primary, no standby) and one mfa-node")
    with deferred_signals():
        out["cluster"] = BenchCluster(binary, schema, standbys=0, node_conf=NODE_CONF)
    cluster = out["cluster"]
    cluster.start()
    node = cluster.nodes[0]
    pid = node.proc.pid
    port = node.port
    cpu = CpuMeter(cluster)
    rss = {"started": rss_bytes(pid)}
    say(f"node n1 pid {pid} on 127.0.0.1:{port}, RSS {rss['started'] / 1024:.0f} KiB; "
        f"PostgreSQL on port {cluster.pg.primary.port}; files in {cluster.base}")

    # Users for the benches.
    totp_users = create_users(cluster, port, "bt", args.totp_users, True)
    sms_users = create_users(cluster, port, "bs", args.sms_users, False)
    rss["users_made"] = rss_bytes(pid)

    # ---- bench 1 ----
    wrk = Wrk(args, port, outdir)
    out["wrk"] = wrk
    c0 = cpu.sample()
    h = wrk_figures(wrk.run("health", ["health"]))
    c1 = cpu.sample()
    h["cpu"] = CpuMeter.delta(c0, c1, "wrk")
    say(f"  /health: {h['rps']:.0f} req/s, p99 {h['p99_ms']:.2f} ms")
    nbodies = totp_bodies(totp_users, args.wrk_threads, bodies_dir)
    before = auth_counts(node)
    c0 = cpu.sample()
    t = wrk_figures(wrk.run("totp", ["totp", bodies_dir, cluster.auth_key]))
    c1 = cpu.sample()
    time.sleep(0.2)
    after = auth_counts(node)
    t["cpu"] = CpuMeter.delta(c0, c1, "wrk")
    t["bodies"] = nbodies
    t["node_accepted"] = after["accepted"] - before["accepted"]
    t["node_rejected"] = after["rejected"] - before["rejected"]
    t["node_error"] = after["error"] - before["error"]
    t["node_cpu_us_per_request"] = round(t["cpu"]["node_cpu_s"] / max(t["answered"], 1) * 1e6, 1)
    h["node_cpu_us_per_request"] = round(h["cpu"]["node_cpu_s"] / max(h["requests"], 1) * 1e6, 1)
    say(f"  TOTP: {t['rps']:.0f} sign-ins/s, p99 {t['p99_ms']:.2f} ms; {t['client_accepted']} "
        f"of {t['answered']} answers accepted; node /metrics: {t['node_accepted']} accepted, "
        f"{t['node_rejected']} rejected, {t['node_error']} errors (the node may count up to "
        f"{args.wrk_connections} more: requests still in flight when wrk stopped)")
    if t["ran_out"]:
        say(f"  note: the {nbodies} one-time bodies ran out after {t['seconds']} s (the rate is "
            f"over that time; wrk's p99 includes the {t['overrun']} quick GET /health sent "
            "meanwhile); more --totp-users gives a longer run")
    for s in t["samples"]:
        say(f"  not accepted: {s}")
    res["totp"] = {"health": h, "totp": t, "ratio": round(t["rps"] / h["rps"], 3)}
    rss["after_totp"] = rss_bytes(pid)

    # ---- bench 2 ----
    outbox = Outbox(node.outbox)
    out["outbox"] = outbox
    outbox.skip_existing()
    akey = cluster.auth_key
    health_raw = http_req("GET", "/health")
    clients = args.sms_clients
    per = [sms_users[w::clients] for w in range(clients)]

    def health_one(conn, w, i):
        t0 = time.perf_counter()
        st, body = conn.call(health_raw)
        return st == 200, time.perf_counter() - t0, None if st == 200 else f"{st} {body[:200]}"

    def pair_one(conn, w, i):
        name, phone = per[w][i % len(per[w])]
        t0 = time.perf_counter()
        st, d = conn.json(http_req("POST", "/api/v1/auth", akey, {"username": name}))
        if st != 200 or d.get("result") != "challenge":
            return False, time.perf_counter() - t0, f"start {st} {d}"
        code = outbox.take(phone)
        st, d = conn.json(http_req("POST", f"/api/v1/challenges/{d['challenge_id']}/verify",
                                   akey, {"otp": code}))
        dt = time.perf_counter() - t0
        if st != 200 or d.get("result") != "accepted":
            return False, dt, f"verify {st} {d}"
        return True, dt, None

    c0 = cpu.sample()
    hh = drive(port, clients, args.duration, health_one, "/health")
    c1 = cpu.sample()
    hh["cpu"] = CpuMeter.delta(c0, c1, "driver")
    say(f"  /health: {hh['rps']:.0f} req/s, p99 {hh['p99_ms']:.2f} ms")
    before = auth_counts(node)
    c0 = cpu.sample()
    pp = drive(port, clients, args.duration, pair_one, "SMS start+verify")
    c1 = cpu.sample()
    time.sleep(0.2)
    after = auth_counts(node)
    pp["cpu"] = CpuMeter.delta(c0, c1, "driver")
    pp["node_challenges"] = after["challenge"] - before["challenge"]
    pp["node_accepted"] = after["accepted"] - before["accepted"]
    pp["node_rejected"] = after["rejected"] - before["rejected"]
    pp["node_error"] = after["error"] - before["error"]
    pp["node_cpu_us_per_pair"] = round(pp["cpu"]["node_cpu_s"] / max(pp["done"], 1) * 1e6, 1)
    hh["node_cpu_us_per_request"] = round(hh["cpu"]["node_cpu_s"] / max(hh["done"], 1) * 1e6, 1)
    say(f"  SMS pairs: {pp['rps']:.0f} pairs/s, p99 {pp['p99_ms']:.2f} ms; {pp['ok']} accepted, "
        f"{pp['not_ok']} not; node /metrics: {pp['node_challenges']} challenges, "
        f"{pp['node_accepted']} accepted, {pp['node_rejected']} rejected, "
        f"{pp['node_error']} errors")
    for s in pp["samples"]:
        say(f"  not accepted: {s}")
    res["sms"] = {"health": hh, "pairs": pp, "ratio": round(pp["rps"] / hh["rps"], 3)}
    rss["after_sms"] = rss_bytes(pid)

    # ---- memory ----
    # Freed heap (the benches' used challenges, request buffers) is reused
    # before the heap grows and would hide growth, so the node is restarted
    # first, warmed up with a few users, sign-ins and SMS challenges (the SMS
    # path's worker threads get their own malloc arenas), and then measured.
    # (The node's challenge TTL is 900 s here, so none expires meanwhile:
    # checked with mfa_challenges_live.)
    mem = {}
    say("memory: restarting the node (a heap without the benches' freed memory)")
    node.stop()
    node.start()
    wait_for(lambda: node.status()["writable"], 30, "n1 writable")
    pid = node.proc.pid
    rss["restarted"] = rss_bytes(pid)

    def live():
        return int(metrics(node).get(("mfa_challenges_live", ""), -1))

    def start_one(conn, u):
        st, d = conn.json(http_req("POST", "/api/v1/auth", akey, {"username": u[0]}))
        if st != 200 or d.get("result") != "challenge":
            raise RuntimeError(f"SMS start for {u[0]}: {st} {d}")

    def signin(conn, u):
        name, key = u
        st, d = conn.json(http_req("POST", "/api/v1/auth", akey,
                                   {"username": name, "otp": otp_ref.totp(key)}))
        return st == 200 and d.get("result") == "accepted"

    warm = create_users(cluster, port, "bw", 500, True)
    run_parallel(signin, warm, 8, "warm-up sign-ins", port)
    run_parallel(start_one, sms_users[:500], 8, "warm-up SMS challenges", port)
    rss["warmed_up"] = rss_bytes(pid)

    time.sleep(1)
    r0 = rss_bytes(pid)
    more = create_users(cluster, port, "bm", args.more_users, True)
    time.sleep(1)
    r1 = rss_bytes(pid)

    ok = run_parallel(signin, more, 8, f"one sign-in for each of {len(more)} new users", port)
    time.sleep(1)
    r2 = rss_bytes(pid)
    mem["users"] = {"count": len(more), "rss_before": r0, "rss_after_create": r1,
                    "rss_after_signin": r2, "delta_create": r1 - r0, "delta_signin": r2 - r0,
                    "signins_accepted": sum(1 for x in ok if x)}
    say(f"  RSS {r0 / 1024:.0f} KiB → {r1 / 1024:.0f} KiB after {len(more)} more users "
        f"({(r1 - r0) / 1024:+.0f} KiB), {r2 / 1024:.0f} KiB after one sign-in each "
        f"({(r2 - r0) / 1024:+.0f} KiB; {mem['users']['signins_accepted']} accepted)")
    rss["users"] = r2

    n = args.challenges
    targets = [sms_users[i % len(sms_users)] for i in range(n)]
    time.sleep(1)
    l0, r0, t0 = live(), rss_bytes(pid), time.monotonic()
    run_parallel(start_one, targets, 8, f"{n} SMS challenges left open", port)
    dt = time.monotonic() - t0
    time.sleep(1)
    l1, r1 = live(), rss_bytes(pid)
    c = {"count": n, "live_before": l0, "live_after": l1, "rss_before": r0, "rss_after": r1,
         "starts_per_s": round(n / dt, 1), "bytes_per_challenge": round((r1 - r0) / max(l1 - l0, 1))}
    say(f"  RSS {r0 / 1024:.0f} KiB → {r1 / 1024:.0f} KiB with {l1 - l0} more live challenges "
        f"({l0} → {l1}): {c['bytes_per_challenge']} B each")
    if l1 - l0 != n:
        say(f"  note: {n} challenges started but the live count grew by {l1 - l0}")
    mem["challenges"] = c
    rss["end"] = rss_bytes(pid)
    mem["rss_timeline"] = rss
    res["memory"] = mem
    return res


class deferred_signals:
    """Holds SIGINT/SIGTERM while the cluster is made (so nothing it starts is
    left without an owner), then raises."""

    pending = None
    active = False

    def __enter__(self):
        deferred_signals.active = True

    def __exit__(self, *exc):
        deferred_signals.active = False
        if deferred_signals.pending and not exc[0]:
            raise Interrupted(f"signal {deferred_signals.pending}")


def on_signal(sig, frame):
    if deferred_signals.active:
        deferred_signals.pending = sig
        return
    STOP.set()
    raise Interrupted(signal.Signals(sig).name)


def host_info():
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    try:
        commit = subprocess.run(["git", "-C", TOP, "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        commit = "?"
    return {"cpus": os.cpu_count(), "cpu": first("/proc/cpuinfo", "model name"),
            "kernel": platform.release(), "commit": commit,
            "wrk": subprocess.run(["wrk", "--version"], capture_output=True,
                                  text=True).stdout.split("\n")[0].strip()}


def fmt_rate(x, unit):
    return f"{x:,.0f} {unit}"


def table(res):
    rows = []
    t, s, m = res.get("totp"), res.get("sms"), res.get("memory")
    if t:
        h, b = t["health"], t["totp"]
        rows += [
            ("GET /health (wrk)", fmt_rate(h["rps"], "req/s"), f"p99 {h['p99_ms']:.2f} ms", ""),
            ("TOTP sign-in, one-time code (wrk)", fmt_rate(b["rps"], "req/s"),
             f"p99 {b['p99_ms']:.2f} ms", ""),
            ("  ratio TOTP / health", f"{t['ratio']:.2f}", "", "goal >= 0.5"),
            ("  accepted (client saw)", f"{b['client_accepted']} of {b['answered']}",
             f"node /metrics: {b['node_accepted']} accepted, {b['node_rejected']} rejected, "
             f"{b['node_error']} errors", "all"),
            ("  node CPU per request", f"{b['node_cpu_us_per_request']:.0f} us",
             f"health {h['node_cpu_us_per_request']:.0f} us", ""),
            ("  cores used: node/pg/wrk", "{node_cores}/{postgres_cores}/{client_cores}"
             .format(**b["cpu"]), "health {node_cores}/{postgres_cores}/{client_cores}"
             .format(**h["cpu"]), ""),
        ]
    if s:
        h, p = s["health"], s["pairs"]
        rows += [
            (f"GET /health (driver, {res['settings']['sms_clients']} clients)",
             fmt_rate(h["rps"], "req/s"), f"p99 {h['p99_ms']:.2f} ms", ""),
            ("SMS start+verify pair (driver)", fmt_rate(p["rps"], "pairs/s"),
             f"p99 {p['p99_ms']:.2f} ms", ""),
            ("  ratio pairs / health", f"{s['ratio']:.2f}", "", ""),
            ("  accepted (client saw)", f"{p['ok']} of {p['done']}",
             f"node /metrics: {p['node_accepted']} accepted, {p['node_rejected']} rejected, "
             f"{p['node_error']} errors", "all"),
            ("  node CPU per pair", f"{p['node_cpu_us_per_pair']:.0f} us",
             f"health {h['node_cpu_us_per_request']:.0f} us", ""),
            ("  cores used: node/pg/driver", "{node_cores}/{postgres_cores}/{client_cores}"
             .format(**p["cpu"]), "health {node_cores}/{postgres_cores}/{client_cores}"
             .format(**h["cpu"]), ""),
        ]
    if m:
        c, u, rt = m["challenges"], m["users"], m["rss_timeline"]
        rows += [
            ("RSS per live SMS challenge", f"{c['bytes_per_challenge']} B",
             f"{c['live_before']} -> {c['live_after']} live, {c['starts_per_s']:.0f} starts/s",
             "goal <= 1024 B"),
            (f"RSS after {u['count']} more users", f"{u['delta_create'] / 1024:+.0f} KiB",
             f"{u['delta_signin'] / 1024:+.0f} KiB after a sign-in each", "goal: no growth"),
            ("node RSS after the benches", f"{rt['after_sms'] / 1048576:.1f} MiB",
             f"at start {rt['started'] / 1048576:.1f} MiB", ""),
            ("node RSS restarted / warm / end", f"{rt['restarted'] / 1048576:.1f} MiB",
             f"{rt['warmed_up'] / 1048576:.1f} MiB / {rt['end'] / 1048576:.1f} MiB", ""),
        ]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{'figure':<{w[0]}}  {'measured':>{w[1]}}  {'':<{w[2]}}  goal",
             "-" * (sum(w) + 6 + 4)]
    for r in rows:
        lines.append(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:<{w[2]}}  {r[3]}".rstrip())
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(TOP, "build", "release"))
    ap.add_argument("--out-dir", default=os.path.join(TOP, "build", "bench"))
    ap.add_argument("--duration", type=int, default=10, help="seconds of each measured run")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=32)
    ap.add_argument("--totp-users", type=int, default=20000,
                    help="TOTP users; two one-time sign-ins each")
    ap.add_argument("--sms-users", type=int, default=2000)
    ap.add_argument("--sms-clients", type=int, default=16,
                    help="driver threads (connections) for the SMS pairs and their /health")
    ap.add_argument("--more-users", type=int, default=20000)
    ap.add_argument("--challenges", type=int, default=20000)
    ap.add_argument("--time-limit", type=int, default=540,
                    help="seconds before the whole bench gives up (and cleans up)")
    args = ap.parse_args()
    if args.sms_users < args.sms_clients:
        ap.error("--sms-users must be at least --sms-clients (each client has its own users)")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(args.time_limit)
    out = {}
    rc = 0
    t0 = time.monotonic()
    try:
        res = bench(args, out)
        res["elapsed_s"] = round(time.monotonic() - t0, 1)
        path = os.path.join(args.out_dir, "results.json")
        with open(path, "w") as f:
            json.dump(res, f, indent=2, default=str)
            f.write("\n")
        print()
        print(table(res))
        print()
        say(f"done in {res['elapsed_s']} s; written to {path}")
    except (Interrupted, KeyboardInterrupt) as e:
        say(f"interrupted ({e}); stopping everything")
        rc = 130
    except Exception as e:
        say(f"FAILED: {type(e).__name__}: {e}")
        cluster = out.get("cluster")
        if cluster and cluster.nodes and os.path.exists(cluster.nodes[0].logfile):
            keep = os.path.join(args.out_dir, "node.log")
            with open(cluster.nodes[0].logfile, "rb") as src, open(keep, "wb") as dst:
                dst.write(src.read())
            say(f"the node's log is kept in {keep}")
        rc = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        STOP.set()
        if out.get("wrk"):
            out["wrk"].kill()
        if out.get("outbox"):
            out["outbox"].close()
        if out.get("cluster"):
            say("stopping the node and PostgreSQL")
            out["cluster"].close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
