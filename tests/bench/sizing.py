#!/usr/bin/python3
"""Memory and disk sizing of a three-member cluster (docs/bench.md, "Sizing");
tests/bench/sizing builds Release and starts this.

A cluster from the launcher (appliance/cluster.py), mfa-balancer and HAProxy
on n1, is measured at four points:

1. idle, right after it starts;
2. after U users (PIN + TOTP, made through the admin API);
3. after S RADIUS PIN+TOTP sign-ins with radclient through the balancer's
   RADIUS front (each user at most once per TOTP step: a round of every user
   signs in with one step's codes, the next round with a later step's), in
   two halves, once every node's auth log spool has shipped
   (/status auth_log_pending 0 everywhere);
4. with C live SMS challenges (C users with method sms, one RADIUS
   Access-Request each, answered with an Access-Challenge; the file SMS
   provider, the cluster's SMS limits lifted).

At each point: VmRSS (and PSS, /proc/<pid>/smaps_rollup) of every process of
every member (PostgreSQL: the postmaster and all its children summed), the
database's size (pg_database_size), PGDATA and pg_wal on disk (du), the node's
spool directory, the sizes of the tables that grow (pg_total_relation_size,
indexes and TOAST included) and the primary's WAL position.

Prints a table and writes build/bench/sizing.json. Whatever it started is
stopped on the way out, also after an error, Ctrl-C, SIGTERM or its time limit.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import radius as rb  # noqa: E402  (its helpers: cluster, users, radclient, TOTP steps)
from radius import (Failed, Interrupted, PERIOD, STOP, admin_key, make_users,  # noqa: E402
                    passwords, radclient, say, sql, wait_for_room,
                    write_requests)
from cluster import Cluster, wait_for  # noqa: E402  (radius.py put appliance/ on the path)

TABLES = ("users", "oath_tokens", "auth_log", "admin_audit", "sms_sends", "lockouts")


# ---- memory, from /proc ----

def mem_kb(pid):
    """(VmRSS, PSS) of one process in kB; PSS None where smaps_rollup is unreadable."""
    rss = pss = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
    except OSError:
        return None, None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except OSError:
        pass
    return rss, pss


def group_mem(pids):
    rss = pss = 0
    pss_ok = True
    for p in pids:
        r, s = mem_kb(p)
        if r is None:
            continue
        rss += r
        if s is None:
            pss_ok = False
        else:
            pss += s
    return {"rss_kb": rss, "pss_kb": pss if pss_ok else None, "procs": len(pids)}


def du_bytes(path):
    """Bytes on disk (du -s -B1: allocated blocks) of a file or directory."""
    if not os.path.exists(path):
        return 0
    p = subprocess.run(["du", "-s", "-B1", path], capture_output=True, text=True)
    try:
        return int(p.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def member_memory(m):
    def one(name):
        return [m.procs[name].pid] if m.running(name) else []

    out = {"node": group_mem(one("node")), "replicator": group_mem(one("replicator")),
           "postgres": group_mem(m.postgres_pids())}
    if m.balancer:
        out["balancer"] = group_mem(one("balancer"))
        out["haproxy"] = group_mem(m.haproxy_pids())
    out["total"] = {"rss_kb": sum(v["rss_kb"] for v in out.values()),
                    "pss_kb": (None if any(v["pss_kb"] is None for v in out.values())
                               else sum(v["pss_kb"] for v in out.values()))}
    return out


# ---- the database and disk ----

def member_disk(m, primary):
    q = ("SELECT pg_database_size(current_database()), "
         + ", ".join(f"coalesce(pg_total_relation_size(to_regclass('{t}')), 0)"
                     for t in TABLES)
         + (", pg_current_wal_lsn()::text" if m is primary else ", pg_last_wal_replay_lsn()::text"))
    row = sql(m, q)[0]
    return {"db_bytes": row[0], "tables": dict(zip(TABLES, row[1:1 + len(TABLES)])),
            "wal_lsn": row[-1],
            "pgdata_du": du_bytes(m.pgdata),
            "pg_wal_du": du_bytes(os.path.join(m.pgdata, "pg_wal")),
            "spool_du": du_bytes(os.path.join(m.dir, "spool")),
            "sms_outbox_du": du_bytes(m.outbox)}


def node_status(m):
    return m.node("GET", "/status")[1]


def snapshot(c, label):
    """Everything measured at one point, per member."""
    primary = c.primary()
    if primary is None:
        raise Failed("no writable primary")
    snap = {"label": label, "at": time.strftime("%H:%M:%S"), "primary": primary.id,
            "members": {}}
    for m in c.members:
        st = node_status(m)
        snap["members"][m.id] = {"memory": member_memory(m), "disk": member_disk(m, primary),
                                 "challenges": st.get("challenges"),
                                 "sessions": st.get("sessions"),
                                 "auth_log_pending": st.get("auth_log_pending")}
    snap["wal_lsn"] = snap["members"][primary.id]["disk"]["wal_lsn"]
    return snap


def lsn_bytes(lsn):
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def wait_shipped(c, timeout=60):
    """Until every node's auth log spool has shipped, and every standby has
    replayed the primary's WAL as it was then."""
    wait_for(lambda: all(node_status(m).get("auth_log_pending") == 0 for m in c.members),
             timeout, "auth_log_pending 0 on every node", interval=0.2)
    p = c.primary()
    target = lsn_bytes(sql(p, "SELECT pg_current_wal_lsn()::text")[0][0])
    wait_for(lambda: all(lsn_bytes(sql(m, "SELECT pg_last_wal_replay_lsn()::text")[0][0])
                         >= target for m in c.members if m is not p),
             timeout, "standbys replayed", interval=0.2)


def settle(seconds):
    """A pause so that whatever a step set off (batches, checkpoints' first
    effects, malloc trimming) is over before /proc is read."""
    time.sleep(seconds)


# ---- the steps ----

LAST_STEP = [None]  # the step of the latest codes used, across calls of sign_ins()


def sign_ins(args, c, users, port, work, secret_file, total):
    """<total> PIN+TOTP sign-ins, rounds of len(users) or fewer; each round's
    codes are for a later step than the one before (a user signs in at most
    once per step). Returns the radclient results."""
    done, rounds = 0, []
    per = len(users)
    chunk = args.chunk
    while done < total:
        n = min(per, total - done)
        batch = users[:n]
        # a round of n sign-ins at ~est s each must fit before its codes lapse
        est = n / 1500.0 + 2.0
        step = wait_for_room(min(est, PERIOD - 2))
        if LAST_STEP[0] is not None and step <= LAST_STEP[0]:
            step = LAST_STEP[0] + 1  # the next step's codes: the node takes +1
        LAST_STEP[0] = step
        t0 = time.monotonic()
        acc = rej = lost = 0
        for i in range(0, n, chunk):
            part = batch[i:i + chunk]
            path = os.path.join(work, "requests.txt")
            write_requests(path, passwords(part, step))
            r = radclient(args, port, path, secret_file, os.path.join(work, "radclient.out"))
            acc += r["accepted"] or 0
            rej += r["rejected"] or 0
            lost += r["lost"] or 0
            if r["accepted"] != len(part):
                raise Failed(f"sign-ins of step {step}: accepted {r['accepted']} of "
                             f"{len(part)} (rejected {r['rejected']}, lost {r['lost']})\n"
                             f"{r['output_tail']}")
        dt = time.monotonic() - t0
        say(f"  {n} sign-ins (codes of step {step}) in {dt:.1f} s ({n / dt:,.0f}/s): "
            f"accepted {acc}, rejected {rej}, lost {lost}")
        rounds.append({"n": n, "step": step, "wall_s": round(dt, 2), "accepted": acc,
                       "rejected": rej, "lost": lost})
        done += n
    return rounds


def make_sms_users(c, key, n, threads):
    """Users with method sms (no PIN), each its own phone number, through the API."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        if STOP.is_set():
            raise Interrupted("stopping")
        m = c.members[i % len(c.members)]
        name = f"sz-sms{i:06d}"
        for attempt in range(5):
            try:
                st, doc = m.node("POST", "/api/v1/users", {"username": name, "method": "sms",
                                                            "phone": f"+49170{i:07d}"}, key=key)
            except OSError as e:
                st, doc = None, repr(e)
            if st in (201, 409):
                return name
            time.sleep(0.2 * (attempt + 1))
        raise Failed(f"creating {name}: {st} {doc}")

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as ex:
        names = list(ex.map(one, range(n)))
    say(f"  {n} SMS users made in {time.monotonic() - t0:.1f} s")
    return names


def start_challenges(args, c, names, port, work, secret_file):
    """One RADIUS Access-Request per SMS user: each is answered with an
    Access-Challenge and leaves a live challenge in one node's memory."""
    before = {m.id: node_status(m).get("challenges") or 0 for m in c.members}
    t0 = time.monotonic()
    for i in range(0, len(names), args.chunk):
        part = names[i:i + args.chunk]
        path = os.path.join(work, "sms-requests.txt")
        write_requests(path, [(u, "x") for u in part])
        r = radclient(args, port, path, secret_file, os.path.join(work, "sms-radclient.out"))
        if r["lost"]:
            raise Failed(f"SMS sign-ins: {r['lost']} lost\n{r['output_tail']}")
    want = sum(before.values()) + len(names)
    try:
        wait_for(lambda: sum(node_status(m).get("challenges") or 0 for m in c.members) >= want,
                 30, f"{want} live challenges", interval=0.2)
    except TimeoutError:
        now = {m.id: node_status(m).get("challenges") for m in c.members}
        raise Failed(f"live challenges: {now}, expected {len(names)} more than {before} "
                     f"(radclient: {r['output_tail']})")
    dt = time.monotonic() - t0
    say(f"  {len(names)} SMS challenges started in {dt:.1f} s")
    return round(dt, 2)


# ---- the report ----

def kinds(snap, mid):
    return snap["members"][mid]["memory"]


def derive(res, args):
    s = {x["label"]: x for x in res["snapshots"]}
    idle, users, si1, si, ch = (s["idle"], s["users"], s["sign-ins half"], s["sign-ins"],
                                s["challenges"])
    smsu = s["sms users"]
    prim = users["primary"]
    U, S, C = args.users, args.sign_ins, args.challenges

    def tbl(snap, t):
        return snap["members"][prim]["disk"]["tables"][t]

    def disk(snap, key, mid=prim):
        return snap["members"][mid]["disk"][key]

    d = {}
    ut = ["users", "oath_tokens"]
    d["user_tables_bytes_per_user"] = round(sum(tbl(users, t) - tbl(idle, t) for t in ut) / U, 1)
    d["user_tables_detail_per_user"] = {t: round((tbl(users, t) - tbl(idle, t)) / U, 1)
                                        for t in ut}
    d["admin_audit_bytes_per_user"] = round((tbl(users, "admin_audit")
                                             - tbl(idle, "admin_audit")) / U, 1)
    d["db_bytes_per_user"] = round((disk(users, "db_bytes") - disk(idle, "db_bytes")) / U, 1)
    d["wal_bytes_per_user"] = round((lsn_bytes(users["wal_lsn"])
                                     - lsn_bytes(idle["wal_lsn"])) / U, 1)
    d["auth_log_bytes_per_sign_in"] = round((tbl(si, "auth_log") - tbl(users, "auth_log")) / S, 1)
    d["db_bytes_per_sign_in"] = round((disk(si, "db_bytes") - disk(users, "db_bytes")) / S, 1)
    d["wal_bytes_per_sign_in"] = round((lsn_bytes(si["wal_lsn"])
                                        - lsn_bytes(users["wal_lsn"])) / S, 1)
    d["spool_du_after_sign_ins"] = {mid: disk(si, "spool_du", mid) for mid in si["members"]}
    d["pg_wal_du_after_sign_ins"] = {mid: disk(si, "pg_wal_du", mid) for mid in si["members"]}
    d["node_rss_kb"] = {mid: {x["label"]: kinds(x, mid)["node"]["rss_kb"]
                              for x in res["snapshots"]} for mid in idle["members"]}
    d["balancer_rss_kb"] = {x["label"]: kinds(x, "n1")["balancer"]["rss_kb"]
                            for x in res["snapshots"]}
    d["node_rss_bytes_per_sign_in_first_half"] = round(
        sum(kinds(si1, m)["node"]["rss_kb"] - kinds(users, m)["node"]["rss_kb"]
            for m in idle["members"]) * 1024 / (S // 2), 1)
    if "sign-ins again" in s:
        again = s["sign-ins again"]
        d["node_rss_kb_growth_signing_in_again"] = {
            m: kinds(again, m)["node"]["rss_kb"] - kinds(s["window passed"], m)["node"]["rss_kb"]
            for m in idle["members"]}
        d["auth_log_bytes_per_sign_in_again"] = round(
            (tbl(again, "auth_log") - tbl(s["window passed"], "auth_log")) / (S - S // 2), 1)
    ch_per = {mid: ((ch["members"][mid]["challenges"] or 0)
                    - (smsu["members"][mid]["challenges"] or 0)) for mid in ch["members"]}
    d["challenges_per_node"] = ch_per
    d["node_rss_bytes_per_challenge"] = {
        mid: (round((kinds(ch, mid)["node"]["rss_kb"] - kinds(smsu, mid)["node"]["rss_kb"])
                    * 1024 / ch_per[mid], 1) if ch_per[mid] else None)
        for mid in ch["members"]}
    tot_rss = sum(kinds(ch, mid)["node"]["rss_kb"] - kinds(smsu, mid)["node"]["rss_kb"]
                  for mid in ch["members"])
    d["node_rss_bytes_per_challenge_all"] = round(tot_rss * 1024 / max(sum(ch_per.values()), 1), 1)
    d["sms_sends_bytes_per_challenge"] = round(
        (tbl(ch, "sms_sends") - tbl(smsu, "sms_sends")) / C, 1)
    d["wal_bytes_per_challenge"] = round(
        (lsn_bytes(ch["wal_lsn"]) - lsn_bytes(smsu["wal_lsn"])) / C, 1)
    return d


def fmt_kb(v):
    return "-" if v is None else f"{v:,}"


def table(res):
    snaps = res["snapshots"]
    labels = [x["label"] for x in snaps]
    lines = []
    head = f"{'member / process':<22}" + "".join(f"{lb:>19}" for lb in labels)
    lines += ["RSS kB (PSS kB) per process group, VmRSS and smaps_rollup Pss",
              head, "-" * len(head)]
    for mid in snaps[0]["members"]:
        for kind in kinds(snaps[0], mid):
            cells = []
            for x in snaps:
                g = kinds(x, mid)[kind]
                cells.append(f"{fmt_kb(g['rss_kb'])} ({fmt_kb(g['pss_kb'])})")
            lines.append(f"{mid + ' ' + kind:<22}" + "".join(f"{c:>19}" for c in cells))
    lines += ["", "disk, bytes (primary: " + snaps[0]["primary"] + ")",
              head, "-" * len(head)]
    for mid in snaps[0]["members"]:
        for key in ("db_bytes", "pgdata_du", "pg_wal_du", "spool_du"):
            cells = [f"{x['members'][mid]['disk'][key]:,}" for x in snaps]
            lines.append(f"{mid + ' ' + key:<22}" + "".join(f"{c:>19}" for c in cells))
    prim = snaps[0]["primary"]
    for t in TABLES:
        cells = [f"{x['members'][prim]['disk']['tables'][t]:,}" for x in snaps]
        lines.append(f"{'table ' + t:<22}" + "".join(f"{c:>19}" for c in cells))
    lines.append(f"{'live challenges':<22}" + "".join(
        f"{sum((x['members'][m]['challenges'] or 0) for m in x['members']):>19,}" for x in snaps))
    d = res["derived"]
    a = res["settings"]
    lines += ["", "derived",
              "  users + oath_tokens (with indexes) per user: "
              f"{d['user_tables_bytes_per_user']:,.0f} B ("
              + ", ".join(f"{k} {v:,.0f}" for k, v in d["user_tables_detail_per_user"].items())
              + "); "
              f"admin_audit {d['admin_audit_bytes_per_user']:,.0f} B; whole database "
              f"{d['db_bytes_per_user']:,.0f} B; WAL {d['wal_bytes_per_user']:,.0f} B",
              f"  auth_log per sign-in: {d['auth_log_bytes_per_sign_in']:,.0f} B; whole database "
              f"{d['db_bytes_per_sign_in']:,.0f} B; WAL {d['wal_bytes_per_sign_in']:,.0f} B",
              f"  node RSS per sign-in (first half, all nodes): "
              f"{d['node_rss_bytes_per_sign_in_first_half']:,.0f} B; growth signing in again "
              f"after the duplicate window: "
              + ", ".join(f"{m} {v:+,} kB" for m, v in
                          d.get("node_rss_kb_growth_signing_in_again", {}).items()),
              f"  node RSS per live challenge: {d['node_rss_bytes_per_challenge_all']:,.0f} B over "
              f"{a['challenges']} ("
              + ", ".join(f"{mid} {'-' if v is None else f'{v:,.0f}'} B of "
                          f"{d['challenges_per_node'][mid]}"
                          for mid, v in d["node_rss_bytes_per_challenge"].items())
              + f"); sms_sends {d['sms_sends_bytes_per_challenge']:,.0f} B, WAL "
              f"{d['wal_bytes_per_challenge']:,.0f} B per challenge",
              f"resolution: {res['resolution']}"]
    return "\n".join(lines)


# ---- the bench ----

def bench(args, out):
    work = os.path.join(args.out_dir, "sizing-work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    res = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": rb.host_info(),
           "settings": {k: v for k, v in vars(args).items() if k != "build"},
           "loadavg_before": os.getloadavg(),
           "busy_cores_before": round(rb.machine_busy_cores(1.0), 2), "snapshots": []}
    if res["busy_cores_before"] > 0.3:
        say(f"WARNING: the machine is already busy ({res['busy_cores_before']:.2f} cores): "
            "memory and sizes do not depend on it, but the run takes longer")
    res["host"].pop("freeradius", None)

    say(f"starting a 3-member cluster, balancer on n1 ({args.build})")
    base = tempfile.mkdtemp(prefix="mfa-bench-sizing-", dir="/tmp")
    out["base"] = base
    c = Cluster(base, args.build, members=3, balancers=["n1"],
                node_conf="lockout = { per_address_per_minute = 100000; }; "
                          "challenge = { ttl = 3600; };",
                sms_conf="per_user_per_hour = 1000; per_phone_per_hour = 1000; "
                         "cluster_per_hour = 10000000; offline_node_per_hour = 10000000;")
    out["cluster"] = c
    c.create()
    c.start(timeout=120)
    key = admin_key(c)
    secret_file = os.path.join(work, "secret")
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(c.radius_secret + "\n")
    lb = c.by_id["n1"]
    port = lb.ports["radius"]
    wait_for(lambda: all(s["status"] == "UP" for s in lb.balancer_api()[1]["servers"]),
             30, "all servers UP in HAProxy")
    rb.probe(args, rb.Side("ours", "balancer", port, {}), work, secret_file, 30)

    def snap(label):
        settle(args.settle)
        res["snapshots"].append(snapshot(c, label))
        x = res["snapshots"][-1]
        say(f"  [{label}] node RSS kB "
            + ", ".join(f"{mid} {kinds(x, mid)['node']['rss_kb']:,}" for mid in x["members"])
            + f"; database {x['members'][x['primary']]['disk']['db_bytes']:,} B")

    say("1. idle")
    wait_shipped(c)
    snap("idle")

    say(f"2. making {args.users} PIN+TOTP users ({args.setup_threads} threads)")
    users = make_users(c, key, [f"sz{i:06d}" for i in range(args.users)], args.setup_threads)
    wait_shipped(c)
    snap("users")

    half = args.sign_ins // 2
    say(f"3. {args.sign_ins} RADIUS PIN+TOTP sign-ins through the balancer, in two halves")
    res["sign_in_rounds"] = sign_ins(args, c, users, port, work, secret_file, half)
    wait_shipped(c)
    snap("sign-ins half")
    res["sign_in_rounds"] += sign_ins(args, c, users, port, work, secret_file,
                                      args.sign_ins - half)
    wait_shipped(c)
    snap("sign-ins")

    # The nodes keep every answer for node.radius.duplicate_window_ms (30 s by
    # default) for the NAS's retransmissions, and the balancer its route: once
    # that has passed, as many sign-ins again must reuse the memory they
    # freed. RSS that still grows is a leak.
    if args.leak_check:
        say(f"3b. {args.window + 2:.0f} s for the duplicate window to pass, then "
            f"{args.sign_ins - half} sign-ins again (growth that stays is a leak)")
        time.sleep(args.window + 2)
        snap("window passed")
        res["sign_in_rounds_again"] = sign_ins(args, c, users, port, work, secret_file,
                                               args.sign_ins - half)
        wait_shipped(c)
        snap("sign-ins again")

    say(f"4. {args.challenges} live SMS challenges")
    names = make_sms_users(c, key, args.challenges, args.setup_threads)
    wait_shipped(c)
    snap("sms users")  # the SMS users' rows are not challenges: measure from here
    res["challenge_start_s"] = start_challenges(args, c, names, port, work, secret_file)
    wait_shipped(c)
    snap("challenges")

    res["derived"] = derive(res, args)
    res["resolution"] = ("RSS and PSS in kB (/proc/<pid>/status VmRSS, smaps_rollup Pss; "
                         "page-granular, 4 kB); database sizes in bytes "
                         "(pg_database_size, pg_total_relation_size: 8 kB pages); du in "
                         "bytes of allocated blocks (4 kB); WAL from pg_current_wal_lsn "
                         "(bytes)")
    res["loadavg_after"] = os.getloadavg()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(rb.TOP, "build", "release"))
    ap.add_argument("--out-dir", default=os.path.join(rb.TOP, "build", "bench"))
    ap.add_argument("--users", type=int, default=10000, help="PIN+TOTP users (U)")
    ap.add_argument("--sign-ins", type=int, default=20000, help="RADIUS sign-ins (S)")
    ap.add_argument("--challenges", type=int, default=5000, help="live SMS challenges (C)")
    ap.add_argument("--chunk", type=int, default=2500,
                    help="requests per radclient run (radclient slows down with long lists)")
    ap.add_argument("--parallel", type=int, default=64, help="radclient -p")
    ap.add_argument("--timeout", type=float, default=3, help="radclient -t, seconds")
    ap.add_argument("--retries", type=int, default=3, help="radclient -r")
    ap.add_argument("--setup-threads", type=int, default=16,
                    help="threads making users through the API")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds of quiet before each measurement")
    ap.add_argument("--no-leak-check", dest="leak_check", action="store_false",
                    help="skip waiting out the duplicate window and signing in again")
    ap.add_argument("--window", type=float, default=30.0,
                    help="node.radius.duplicate_window_ms of the cluster, in seconds (default)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster's files in /tmp")
    ap.add_argument("--time-limit", type=int, default=420,
                    help="seconds before the whole bench gives up (and cleans up)")
    args = ap.parse_args()
    if min(args.users, args.sign_ins, args.challenges, args.chunk) < 1:
        ap.error("--users, --sign-ins, --challenges and --chunk must be at least 1")
    if not shutil.which("radclient"):
        ap.error("radclient is needed: run ./tests/bench/sizing, which installs it")

    return rb.run_bench(args, bench, table, "sizing.json", lambda out: None)


if __name__ == "__main__":
    sys.exit(main())
