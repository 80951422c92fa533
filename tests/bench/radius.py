#!/usr/bin/python3
"""RADIUS PIN+TOTP sign-ins per second: MFA Appliance beside FreeRADIUS
(docs/bench.md); tests/bench/radius installs, builds and starts this.

Both sides on this machine, in the same run, with the same client and the
same requests:

- ours: a three-member cluster from the launcher (appliance/cluster.py),
  mfa-balancer's RADIUS UDP front on n1 (or, with --target node, n1's node
  directly), PIN+TOTP users made through the admin API;
- FreeRADIUS: Debian's radiusd in the foreground (not -X) with a private
  configuration in build/bench/freeradius: one client (127.0.0.1, the same
  secret, require_message_authenticator = yes), a users file with the same
  users, PINs and TOTP secrets, and unlang that splits User-Password like our
  node does (the last 6 digits are the code, checked by rlm_totp; the rest
  must be the PIN).

Each round sends N Access-Requests, one per user, with `radclient -f FILE -p P
-c 1 -s`, and is timed from radclient's start to its exit. Codes are made
right before a round, for the current 30-second step, and a round starts only
when it fits in what is left of that step (rlm_totp in bookworm's 3.2.1 checks
the current step only; our node takes +-1 step). Rounds alternate between the
two sides; every round uses users no earlier round used (a TOTP code is good
once on our side). Every request must be accepted, or the bench fails.

Prints a table and writes build/bench/radius.json. Whatever it started is
stopped on the way out, also after an error, Ctrl-C, SIGTERM or its time limit.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "appliance"))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import otp_ref  # noqa: E402
from cluster import Cluster, wait_for  # noqa: E402

PERIOD = 30          # TOTP step, both sides
DIGITS = 6           # rlm_totp in 3.2.1 takes 6 digits only
CLK_TCK = os.sysconf("SC_CLK_TCK")
RADIUSD = "/usr/sbin/freeradius"  # Debian's name for radiusd
STOP = threading.Event()


class Interrupted(Exception):
    pass


class Failed(Exception):
    pass


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def on_signal(sig, frame):
    STOP.set()
    raise Interrupted(signal.Signals(sig).name)


# ---- CPU time from /proc ----

def cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    fields = st[st.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


class CpuMeter:
    """CPU seconds of named groups of processes; a group is a function
    returning its pids now (PostgreSQL's backends come and go)."""

    def __init__(self, groups):
        self.groups = groups

    def sample(self):
        return {g: {p: cpu_s(p) for p in f()} for g, f in self.groups.items()}

    @staticmethod
    def delta(a, b):
        out = {}
        for g in b:
            total = 0.0
            for pid, t in b[g].items():
                if t is None:
                    continue
                t0 = a.get(g, {}).get(pid)
                total += t - (t0 or 0.0)  # a process born during the run counts whole
            out[g] = round(total, 3)
        return out


def machine_ticks():
    """(busy, total) clock ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)  # idle and iowait are not busy


def machine_busy_cores(seconds):
    b0, _ = machine_ticks()
    time.sleep(seconds)
    b1, _ = machine_ticks()
    return (b1 - b0) / CLK_TCK / seconds


def udp_drops():
    """Datagrams the kernel dropped for want of room in a socket's receive
    buffer, machine-wide (/proc/net/snmp, Udp RcvbufErrors)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def udp_socket_drops():
    """{local port: drops} of every UDP socket (/proc/net/udp): which
    receiver was short of buffer."""
    out = {}
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    v = line.split()
                    port = int(v[1].rsplit(":", 1)[1], 16)
                    out[port] = out.get(port, 0) + int(v[-1])
        except OSError:
            pass
    return out


# ---- radclient ----

SUMMARY_RE = {k: re.compile(rf"^\s*{k}\s*:\s*(\d+)", re.M)
              for k in ("Accepted", "Rejected", "Lost")}


def write_requests(path, pairs):
    """radclient's input: one request per (user, password), blank-line separated."""
    with open(path, "w") as f:
        for user, password in pairs:
            f.write(f'User-Name = "{user}"\nUser-Password = "{password}"\n'
                    "Message-Authenticator = 0x00\n\n")


def radclient(args, port, infile, secret_file, log_path, parallel=None):
    """Runs radclient once over <infile>: wall time, its own CPU, the summary."""
    cmd = ["radclient", "-f", infile, "-p", str(parallel or args.parallel), "-c", "1", "-s",
           "-q", "-t", str(args.timeout), "-r", str(args.retries), "-S", secret_file,
           f"127.0.0.1:{port}", "auth"]
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()
            p.wait()
            raise
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    with open(log_path) as f:
        out = f.read()
    summary = {}
    for k, rx in SUMMARY_RE.items():
        m = rx.search(out)
        summary[k.lower()] = int(m.group(1)) if m else None
    return {"wall_s": wall, "client_cpu_s": ru.ru_utime + ru.ru_stime,
            "client_sys_s": ru.ru_stime, "exit": p.returncode,
            "cmd": " ".join(cmd), **summary, "output_tail": out[-600:]}


# ---- TOTP codes and the 30-second step ----

def wait_for_room(need_s):
    """Waits until at least <need_s> seconds are left in the current step;
    returns that step."""
    if need_s > PERIOD - 1:
        raise Failed(f"a round needs ~{need_s:.0f} s but must fit one {PERIOD} s TOTP step "
                     "(rlm_totp checks the current step only): use fewer --users")
    while True:
        now = time.time()
        left = PERIOD - now % PERIOD
        if left >= need_s:
            return int(now // PERIOD)
        time.sleep(left + 0.02)


def passwords(users, step):
    return [(u["name"], u["pin"] + otp_ref.hotp(u["seed"], step, DIGITS)) for u in users]


# ---- our cluster ----

def sql(member, query, params=None):
    import psycopg2
    conn = psycopg2.connect(member.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def admin_key(c):
    key = "mfa_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    sql(c.primary(), "INSERT INTO api_keys (name, scope, key_hash, prefix) VALUES "
        "('bench-radius-admin', 'admin', %s, 'mfa_')", (hashlib.sha256(key.encode()).hexdigest(),))
    for m in c.members:
        wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=key)[0] == 200, 20,
                 f"{m.id} accepts the admin key")
    return key


def make_users(c, key, names, threads):
    """Users with method totp, a random PIN of 4-8 digits and an enrolled TOTP
    seed, made through the nodes' admin API (spread over the members)."""
    def call(m, path, body):
        try:
            return m.node("POST", path, body, key=key)
        except (OSError, http.client.HTTPException) as e:  # retried below
            return None, repr(e)

    def one(i):
        if STOP.is_set():
            raise Interrupted("stopping")
        name = names[i]
        m = c.members[i % len(c.members)]
        pin = "".join(str(secrets.randbelow(10)) for _ in range(4 + secrets.randbelow(5)))
        for attempt in range(5):
            # 409: an earlier try was made but its answer was lost; same PIN.
            st, doc = call(m, "/api/v1/users", {"username": name, "method": "totp", "pin": pin})
            if st in (201, 409):
                break
            time.sleep(0.2 * (attempt + 1))
        else:
            raise Failed(f"creating {name}: {st} {doc}")
        for attempt in range(5):
            st, doc = call(m, f"/api/v1/users/{name}/totp", {})
            if st == 201:
                return {"name": name, "pin": pin, "secret": doc["secret"],
                        "seed": otp_ref.b32decode(doc["secret"])}
            time.sleep(0.2 * (attempt + 1))
        raise Failed(f"enrolling TOTP for {name}: {st} {doc}")

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as ex:
        users = list(ex.map(one, range(len(names))))
    dt = time.monotonic() - t0
    say(f"  {len(users)} users made and enrolled in {dt:.1f} s ({len(users) / dt:.0f}/s)")
    return users


def radius_counters(c):
    out = {}
    for m in c.data_members():
        try:
            r = m.node("GET", "/status")[1]["radius"]
        except Exception:
            continue
        out[m.id] = {k: r[k] for k in ("received", "accepts", "rejects", "duplicates")}
        out[m.id]["dropped"] = sum(r["dropped"].values())
    return out


def counters_delta(a, b):
    return {mid: {k: b[mid][k] - a.get(mid, {}).get(k, 0) for k in b[mid]} for mid in b}


# ---- FreeRADIUS ----

FR_CONF = """\
# radiusd.conf of tests/bench/radius.py: Debian's defaults where they matter
# (thread pool, max_request_time, cleanup_delay), one client, one listener,
# PIN+TOTP from one User-Password.
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
radacctdir = {dir}/radacct
name = radiusd
confdir = ${{raddbdir}}
modconfdir = ${{confdir}}
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = {max_requests}
hostname_lookups = no

log {{
  destination = files
  file = {dir}/radius.log
  auth = no
}}

security {{
  max_attributes = 200
  # Debian's default is 1 s; no measured request is rejected, and the
  # start-up probe (an unknown user) is answered at once, as by our node.
  reject_delay = 0
  status_server = yes
}}

thread pool {{
  start_servers = 5
  max_servers = 32
  min_spare_servers = 3
  max_spare_servers = 10
  max_requests_per_server = 0
  auto_limit_acct = no
}}

client bench {{
  ipaddr = 127.0.0.1
  secret = "{secret}"
  require_message_authenticator = yes
}}

modules {{
  files {{
    filename = {dir}/users
  }}
  totp {{
  }}
  always reject {{
    rcode = reject
  }}
}}

server default {{
  listen {{
    type = auth
    ipaddr = 127.0.0.1
    port = {port}
  }}
  authorize {{
    # control:Cleartext-Password (the PIN) and control:TOTP-Secret (base32)
    files
    if (!&control:TOTP-Secret) {{
      reject
    }}
    # The last 6 digits are the code, the rest must be the PIN.
    if (&User-Password =~ /^([0-9]*)([0-9]{{6}})$/) {{
      if ("%{{1}}" != "%{{control:Cleartext-Password}}") {{
        reject
      }}
      update request {{
        &TOTP-Password := "%{{2}}"
      }}
      update control {{
        &Auth-Type := totp
      }}
    }}
    else {{
      reject
    }}
  }}
  authenticate {{
    Auth-Type totp {{
      totp
    }}
  }}
}}
"""


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FreeRadius:
    def __init__(self, confdir, secret, users):
        self.dir = confdir
        self.port = free_udp_port()
        self.proc = None
        shutil.rmtree(confdir, ignore_errors=True)
        os.makedirs(confdir)
        with open(os.path.join(confdir, "radiusd.conf"), "w") as f:
            f.write(FR_CONF.format(dir=confdir, secret=secret, port=self.port,
                                   max_requests=max(16384, 4 * len(users))))
        with open(os.path.join(confdir, "users"), "w") as f:
            for u in users:
                f.write(f'{u["name"]}\tCleartext-Password := "{u["pin"]}", '
                        f'TOTP-Secret := "{u["secret"].upper()}"\n')
        self.log = os.path.join(confdir, "radiusd.out")

    def version(self):
        p = subprocess.run([RADIUSD, "-v"], capture_output=True, text=True)
        m = re.search(r"FreeRADIUS Version (\S+?),", p.stdout)
        return m.group(1) if m else "?"

    def check(self):
        p = subprocess.run([RADIUSD, "-C", "-d", self.dir, "-n", "radiusd"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise Failed("FreeRADIUS rejects the bench's configuration:\n"
                         + (p.stdout + p.stderr)[-3000:])

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([RADIUSD, "-f", "-d", self.dir, "-n", "radiusd"],
                                         stdout=log, stderr=log, start_new_session=True)

    def tail(self):
        out = ""
        for name in ("radiusd.out", "radius.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out += f"--- {name}\n" + f.read()[-2000:]
            except OSError:
                pass
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ---- one side ----

class Side:
    """What one server under test needs: where radclient sends, and whose CPU counts."""

    def __init__(self, key, label, port, cpu_groups, counters=None):
        self.key, self.label, self.port = key, label, port
        self.cpu = CpuMeter(cpu_groups)
        self.counters = counters
        self.rounds = []
        self.server_ports = [port]  # UDP sockets of the server side, for their drops
        self.est_s_per = None  # a sign-in's share of a round's wall time, from the last one


def probe(args, side, work, secret_file, timeout):
    """Waits until <side> answers an unknown user's request (Access-Reject)."""
    path = os.path.join(work, f"probe-{side.key}.txt")
    write_requests(path, [("bench-nobody", "000000")])
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = radclient(args, side.port, path, secret_file,
                         os.path.join(work, f"probe-{side.key}.out"), parallel=1)
        if last["rejected"] == 1:
            return
        time.sleep(0.5)
    raise Failed(f"{side.label} does not answer on 127.0.0.1:{side.port} after {timeout} s "
                 f"(radclient: {last['output_tail'] if last else '-'})")


def startup_cost(args, side, work, secret_file, n=5):
    """radclient's start plus one request and its answer, median of <n>: the
    part of every round's wall time that is not throughput."""
    path = os.path.join(work, f"probe-{side.key}.txt")
    times = []
    for _ in range(n):
        r = radclient(args, side.port, path, secret_file,
                      os.path.join(work, f"probe-{side.key}.out"), parallel=1)
        if r["rejected"] != 1:
            raise Failed(f"{side.label}: the one-request probe got no Access-Reject:\n"
                         f"{r['output_tail']}")
        times.append(r["wall_s"])
    return statistics.median(times)


def one_round(args, side, users, work, secret_file, label):
    n = len(users)
    est = n * (side.est_s_per if side.est_s_per is not None else 1 / 200.0)
    step = wait_for_room(est * 1.5 + 2.0)
    path = os.path.join(work, f"requests-{side.key}-{label}.txt")
    write_requests(path, passwords(users, step))
    cnt0 = side.counters() if side.counters else None
    cpu0 = side.cpu.sample()
    m0, _ = machine_ticks()
    d0, s0 = udp_drops(), udp_socket_drops()
    r = radclient(args, side.port, path, secret_file,
                  os.path.join(work, f"radclient-{side.key}-{label}.out"))
    m1, _ = machine_ticks()
    d1, s1 = udp_drops(), udp_socket_drops()
    cpu1 = side.cpu.sample()
    end_step = int(time.time() // PERIOD)
    cnt1 = side.counters() if side.counters else None
    r.update({"round": label, "users": n, "step": step, "steps_crossed": end_step - step,
              "rate": n / r["wall_s"], "server_cpu_s": CpuMeter.delta(cpu0, cpu1),
              "machine_busy_cores": round((m1 - m0) / CLK_TCK / r["wall_s"], 2),
              "udp_rcvbuf_drops": d1 - d0,
              "udp_drops_by_server_socket": {str(p): s1.get(p, 0) - s0.get(p, 0)
                                             for p in side.server_ports}})
    # What the machine did besides the server, its database and radclient:
    # other processes (or interrupts accounted to none of them).
    r["other_cores"] = round(r["machine_busy_cores"] - (sum(r["server_cpu_s"].values())
                                                        + r["client_cpu_s"]) / r["wall_s"], 2)
    if cnt0 is not None:
        r["node_counters"] = counters_delta(cnt0, cnt1)
    side.est_s_per = r["wall_s"] / n
    ok = r["exit"] == 0 and r["accepted"] == n and not r["rejected"] and not r["lost"]
    say(f"  {side.label:<24} {label:>7}: {n} in {r['wall_s']:.3f} s = {r['rate']:,.0f}/s; "
        f"accepted {r['accepted']}, rejected {r['rejected']}, lost {r['lost']}"
        + (f"; {r['udp_rcvbuf_drops']} datagrams dropped by the kernel for a full receive "
           f"buffer, {sum(r['udp_drops_by_server_socket'].values())} of them at the server's "
           "port (each costs radclient's -t before it retransmits)"
           if r["udp_rcvbuf_drops"] else "")
        + ("" if ok else f"  <-- FAILED (radclient exit {r['exit']})"))
    if not ok:
        raise Failed(f"{side.label}, round {label}: not every sign-in was accepted "
                     f"(accepted {r['accepted']}, rejected {r['rejected']}, lost {r['lost']}, "
                     f"radclient exit {r['exit']}; codes of step {step}, "
                     f"{r['steps_crossed']} step(s) crossed)\n{r['output_tail']}")
    del r["output_tail"]
    side.rounds.append(r)
    return r


def replay_check(args, side, user, work, secret_file):
    """The same code twice in one step: is the second one accepted?"""
    wait_for_room(5)
    path = os.path.join(work, f"replay-{side.key}.txt")
    write_requests(path, passwords([user], int(time.time() // PERIOD)))
    got = []
    for i in range(2):
        r = radclient(args, side.port, path, secret_file,
                      os.path.join(work, f"replay-{side.key}-{i}.out"), parallel=1)
        got.append("accepted" if r["accepted"] == 1 else
                   "rejected" if r["rejected"] == 1 else "lost")
    return {"first": got[0], "replay": got[1]}


# ---- the report ----

def summarize(side, startup_s):
    rates = [r["rate"] for r in side.rounds]
    net = [r["users"] / max(r["wall_s"] - startup_s, 1e-3) for r in side.rounds]
    walls = [r["wall_s"] for r in side.rounds]
    n = sum(r["users"] for r in side.rounds)
    cpu, kinds = {}, {}
    for r in side.rounds:
        for g, t in r["server_cpu_s"].items():
            cpu[g] = cpu.get(g, 0.0) + t
            kinds[g.split()[0]] = kinds.get(g.split()[0], 0.0) + t
    client_cpu = sum(r["client_cpu_s"] for r in side.rounds)
    return {
        "rounds": len(rates), "sign_ins_per_round": side.rounds[0]["users"],
        "rate_median": statistics.median(rates), "rate_min": min(rates), "rate_max": max(rates),
        "net_rate_median": statistics.median(net), "net_rate_min": min(net),
        "net_rate_max": max(net),
        "wall_s_median": statistics.median(walls), "wall_s_min": min(walls),
        "wall_s_max": max(walls),
        "accepted": sum(r["accepted"] for r in side.rounds),
        "rejected": sum(r["rejected"] for r in side.rounds),
        "lost": sum(r["lost"] for r in side.rounds),
        "udp_rcvbuf_drops": sum(r["udp_rcvbuf_drops"] for r in side.rounds),
        "server_cpu_us_per_sign_in": {g: round(t / n * 1e6, 1) for g, t in kinds.items()},
        "server_cpu_us_per_sign_in_by_process": {g: round(t / n * 1e6, 1)
                                                 for g, t in cpu.items()},
        "server_cpu_us_per_sign_in_total": round(sum(cpu.values()) / n * 1e6, 1),
        "server_cores": round(sum(cpu.values()) / sum(walls), 2),
        "client_cpu_us_per_sign_in": round(client_cpu / n * 1e6, 1),
        "client_sys_share": round(sum(r["client_sys_s"] for r in side.rounds)
                                  / max(client_cpu, 1e-9), 2),
        "machine_busy_cores": round(sum(r["machine_busy_cores"] * r["wall_s"]
                                        for r in side.rounds) / sum(walls), 2),
        "other_cores": round(sum(r["other_cores"] * r["wall_s"]
                                 for r in side.rounds) / sum(walls), 2),
    }


def table(res):
    o, f = res["ours"], res["freeradius"]
    R = o["rounds"]
    cols = (res["ours_label"], res["freeradius_label"])

    def cpu_detail(s):
        return " + ".join(f"{g} {v:.0f}" for g, v in s["server_cpu_us_per_sign_in"].items())

    rows = [
        (f"sign-ins/s, median of {R} (min-max)",
         f"{o['rate_median']:,.0f} ({o['rate_min']:,.0f}-{o['rate_max']:,.0f})",
         f"{f['rate_median']:,.0f} ({f['rate_min']:,.0f}-{f['rate_max']:,.0f})"),
        ("  less radclient's start + 1 request",
         f"{o['net_rate_median']:,.0f} ({o['net_rate_min']:,.0f}-{o['net_rate_max']:,.0f})",
         f"{f['net_rate_median']:,.0f} ({f['net_rate_min']:,.0f}-{f['net_rate_max']:,.0f})"),
        (f"wall time of {o['sign_ins_per_round']} sign-ins, median",
         f"{o['wall_s_median'] * 1000:.0f} ms", f"{f['wall_s_median'] * 1000:.0f} ms"),
        ("accepted / rejected / lost, all rounds",
         f"{o['accepted']} / {o['rejected']} / {o['lost']}",
         f"{f['accepted']} / {f['rejected']} / {f['lost']}"),
        ("UDP datagrams dropped (full receive buffer)", str(o["udp_rcvbuf_drops"]),
         str(f["udp_rcvbuf_drops"])),
        ("radclient start + 1 request (in the wall time)",
         f"{res['startup_ms']['ours']:.0f} ms", f"{res['startup_ms']['freeradius']:.0f} ms"),
        ("server CPU per sign-in", f"{o['server_cpu_us_per_sign_in_total']:.0f} us",
         f"{f['server_cpu_us_per_sign_in_total']:.0f} us"),
        ("  of which (us)", cpu_detail(o), cpu_detail(f)),
        ("server cores busy during the rounds", f"{o['server_cores']:.2f}",
         f"{f['server_cores']:.2f}"),
        ("radclient CPU per sign-in", f"{o['client_cpu_us_per_sign_in']:.0f} us",
         f"{f['client_cpu_us_per_sign_in']:.0f} us"),
        (f"whole machine busy during the rounds ({res['host']['cpus']} cores)",
         f"{o['machine_busy_cores']:.2f} cores", f"{f['machine_busy_cores']:.2f} cores"),
        ("  of which anything else (should be ~0)", f"{o['other_cores']:.2f} cores",
         f"{f['other_cores']:.2f} cores"),
        ("replay of a used code", res["replay"]["ours"]["replay"],
         res["replay"]["freeradius"]["replay"]),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(cols[0]), *(len(r[1]) for r in rows))
    w2 = max(len(cols[1]), *(len(r[2]) for r in rows))
    lines = [f"{'':<{w0}}  {cols[0]:>{w1}}  {cols[1]:>{w2}}", "-" * (w0 + w1 + w2 + 4)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c:>{w2}}" for a, b, c in rows]
    rt = res["ratio"]
    lines += ["-" * (w0 + w1 + w2 + 4),
              f"ratio ours / FreeRADIUS (medians): {rt['of_medians']:.2f}   "
              f"per round: {', '.join(f'{x:.2f}' for x in rt['per_round'])}   goal >= 1",
              f"resolution: {res['resolution']}"]
    return "\n".join(lines)


# ---- the bench ----

def bench(args, out):
    work = os.path.join(args.out_dir, "radius-work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    res = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": host_info(),
           "settings": {k: v for k, v in vars(args).items() if k != "build"},
           "loadavg_before": os.getloadavg(),
           "busy_cores_before": round(machine_busy_cores(1.0), 2)}
    if res["busy_cores_before"] > 0.3:
        say(f"WARNING: the machine is already busy ({res['busy_cores_before']:.2f} cores in "
            "use before the bench starts): the figures will be low and noisy")
    R, N, W = args.rounds, args.users, args.warmup
    names = [f"rb{i:06d}" for i in range(R * N + W + 1)]

    say(f"starting a {args.members}-member cluster ({args.build})")
    base = tempfile.mkdtemp(prefix="mfa-bench-radius-", dir="/tmp")
    out["base"] = base
    c = Cluster(base, args.build, members=args.members, balancers=["n1"],
                node_conf="lockout = { per_address_per_minute = 100000; };")
    out["cluster"] = c
    c.create()
    c.start(timeout=120)
    key = admin_key(c)
    secret_file = os.path.join(work, "secret")
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(c.radius_secret + "\n")

    say(f"making {len(names)} TOTP users with PINs ({args.setup_threads} threads)")
    users = make_users(c, key, names, args.setup_threads)
    warm, replay_user, measured = users[:W], users[W], users[W + 1:]

    lb = c.by_id["n1"]
    if args.target == "balancer":
        port, label = lb.ports["radius"], f"ours (balancer, {args.members} node" + \
            ("s)" if args.members > 1 else ")")
    else:
        port, label = lb.ports["node_radius"], "ours (n1's node direct)"

    def pids(m, name):
        return lambda: [m.procs[name].pid] if m.running(name) else []

    groups = {}  # "<kind> <member>": CPU is kept per member, shown per kind
    for m in c.members:
        groups[f"node {m.id}"] = pids(m, "node")
        groups[f"postgres {m.id}"] = m.postgres_pids
        groups[f"replicator {m.id}"] = pids(m, "replicator")
        if m.balancer:
            groups[f"balancer {m.id}"] = pids(m, "balancer")
    ours = Side("ours", label, port, groups, counters=lambda: radius_counters(c))
    ours.server_ports = sorted({port} | {m.ports["node_radius"] for m in c.data_members()})
    res["primary"] = c.primary().id

    say("FreeRADIUS: writing its configuration and users file")
    fr = FreeRadius(os.path.join(args.out_dir, "freeradius"), c.radius_secret, users)
    out["freeradius"] = fr
    fr_version = fr.version()
    fr.check()
    fr.start()
    frs = Side("freeradius", f"FreeRADIUS {fr_version}", fr.port,
               {"radiusd": lambda: [fr.proc.pid] if fr.proc.poll() is None else []})
    res["ours_label"], res["freeradius_label"] = ours.label, frs.label + " (rlm_totp)"

    say(f"waiting for both to answer ({label} on {port}, FreeRADIUS on {fr.port})")
    try:
        probe(args, ours, work, secret_file, 30)
    except Failed as e:
        if args.target == "balancer":
            raise Failed(f"{e}\nThe balancer's RADIUS front does not answer; "
                         "--target node measures n1's node directly.")
        raise
    try:
        probe(args, frs, work, secret_file, 15)
    except Failed as e:
        raise Failed(f"{e}\n{fr.tail()}")
    res["startup_ms"] = {s.key: round(startup_cost(args, s, work, secret_file) * 1000, 1)
                         for s in (ours, frs)}

    if W:
        say(f"warm-up: {W} sign-ins each, not counted")
        for s in (ours, frs):
            one_round(args, s, warm, work, secret_file, "warm-up")
            s.rounds.clear()
    say(f"{R} rounds of {N} sign-ins each, alternating, radclient -p {args.parallel}")
    for i in range(R):
        batch = measured[i * N:(i + 1) * N]
        for s in ((ours, frs) if i % 2 == 0 else (frs, ours)):
            one_round(args, s, batch, work, secret_file, f"round {i + 1}")

    res["replay"] = {s.key: replay_check(args, s, replay_user, work, secret_file)
                     for s in (ours, frs)}
    res["ours"] = summarize(ours, res["startup_ms"]["ours"] / 1000)
    res["freeradius"] = summarize(frs, res["startup_ms"]["freeradius"] / 1000)
    res["ours"]["rounds_detail"], res["freeradius"]["rounds_detail"] = ours.rounds, frs.rounds
    per_round = [a["rate"] / b["rate"] for a, b in zip(ours.rounds, frs.rounds)]
    res["ratio"] = {"of_medians": res["ours"]["rate_median"] / res["freeradius"]["rate_median"],
                    "per_round": per_round}
    clock = time.get_clock_info("perf_counter")
    worst = max(res["startup_ms"].values())
    shortest = min(res["ours"]["wall_s_median"], res["freeradius"]["wall_s_median"])
    res["resolution"] = (f"wall time from radclient's start to its exit (perf_counter, "
                         f"{clock.resolution:.0e} s); it includes radclient's start: "
                         f"{worst:.0f} ms for start + 1 request, {worst / 10 / shortest:.0f}% "
                         f"of the shorter median round; CPU in {1000 / CLK_TCK:.0f} ms ticks; "
                         "the spread between rounds is the min-max above")
    res["loadavg_after"] = os.getloadavg()
    return res


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

    def run(*cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().split("\n")[0]
        except Exception:
            return "?"

    return {"cpus": os.cpu_count(), "cpu": first("/proc/cpuinfo", "model name"),
            "kernel": platform.release(), "commit": run("git", "-C", TOP, "describe",
                                                        "--always", "--dirty"),
            "radclient": run("radclient", "-v"), "freeradius": run(RADIUSD, "-v")}


def run_bench(args, bench, table, json_name, stop):
    """The main of the RADIUS benches (this one and sizing.py): signals and
    args.time_limit stop it cleanly; bench(args, out) returns the results,
    written to args.out_dir/<json_name> and printed with table(); on the way
    out stop(out) stops what the bench started, then the cluster in
    out["cluster"] is stopped and its files in out["base"] removed (unless
    args.keep). Returns the exit code: 0, 1 (failed) or 130 (interrupted)."""
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(args.time_limit)
    os.makedirs(args.out_dir, exist_ok=True)
    out = {}
    rc = 0
    t0 = time.monotonic()
    try:
        res = bench(args, out)
        res["elapsed_s"] = round(time.monotonic() - t0, 1)
        path = os.path.join(args.out_dir, json_name)
        with open(path, "w") as f:
            json.dump(res, f, indent=1, default=str)
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
        rc = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        STOP.set()
        stop(out)
        if out.get("cluster"):
            say("stopping the cluster")
            out["cluster"].stop()
        if out.get("base") and not args.keep:
            shutil.rmtree(out["base"], ignore_errors=True)
        elif out.get("base"):
            say(f"the cluster's files are kept in {out['base']}")
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(TOP, "build", "release"))
    ap.add_argument("--out-dir", default=os.path.join(TOP, "build", "bench"))
    ap.add_argument("--users", type=int, default=2000, help="sign-ins per round (one per user)")
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds on each side")
    ap.add_argument("--warmup", type=int, default=200, help="sign-ins of an uncounted first round")
    ap.add_argument("--parallel", type=int, default=64, help="radclient -p: requests in flight")
    ap.add_argument("--timeout", type=float, default=3, help="radclient -t, seconds")
    ap.add_argument("--retries", type=int, default=3, help="radclient -r")
    ap.add_argument("--target", choices=("balancer", "node"), default="balancer",
                    help="our side: the balancer's RADIUS front on n1 (default), or n1's node "
                         "directly (one node; a NAS may do that)")
    ap.add_argument("--members", type=int, default=3, choices=range(1, 6), metavar="1..5",
                    help="members of our cluster (default 3: one appliance is --members 1)")
    ap.add_argument("--setup-threads", type=int, default=16,
                    help="threads making users through the API")
    ap.add_argument("--keep", action="store_true", help="keep the cluster's files in /tmp")
    ap.add_argument("--time-limit", type=int, default=540,
                    help="seconds before the whole bench gives up (and cleans up)")
    args = ap.parse_args()
    if args.users < 1 or args.rounds < 1 or args.parallel < 1:
        ap.error("--users, --rounds and --parallel must be at least 1")
    if not shutil.which("radclient") or not os.access(RADIUSD, os.X_OK):
        ap.error("radclient and freeradius are needed: run ./tests/bench/radius, which "
                 "installs them")

    def stop(out):
        if out.get("freeradius"):
            say("stopping radiusd")
            out["freeradius"].stop()

    return run_bench(args, bench, table, "radius.json", stop)


if __name__ == "__main__":
    sys.exit(main())
