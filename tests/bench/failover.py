"""How long a switchover and a failover keep writes away, on a Release build.

Starts a three-member cluster with the launcher (appliance/cluster.py), keeps
a stream of admin writes (POST /api/v1/users, acknowledged with
synchronous_commit = remote_apply) going through the node of a member that
stays up, and times:

- switchover: from `mfactl switchover --to N` to the first acknowledged
  write after the old primary stopped taking them;
- failover: the primary is SIGKILLed; once it has been unseen for
  fence_after (so mfactl does not wait for its fence), from `mfactl failover
  --to N` to the first acknowledged write. The killed member is started
  again and rejoins before the next round.

Baseline, measured in the same run: PostgreSQL's own promotion
(`pg_promote(wait => true)` inside the replicator, its `elapsed_ms`), the
floor under every figure above.

Prints a table and writes build/bench/failover.json.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "appliance"))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from cluster import Cluster, wait_for  # noqa: E402
from test_failover import Writer, sql  # noqa: E402

FENCE_AFTER = 2


def admin_key(c):
    import base64
    import hashlib
    import secrets
    key = "mfa_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    sql(c.primary(), "INSERT INTO api_keys (name, scope, key_hash, prefix) VALUES "
        "('bench-admin', 'admin', %s, 'mfa_')", (hashlib.sha256(key.encode()).hexdigest(),))
    for m in c.members:
        wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=key)[0] == 200, 20,
                 f"{m.id} accepts the key")
    return key


def promote_ms(member, since):
    """The replicator's own measure of pg_promote, from its log."""
    for line in reversed(member.log().splitlines()):
        if "promote.done elapsed_ms=" in line:
            return int(line.rsplit("elapsed_ms=", 1)[1].split()[0])
    return None


def one_switch(c, key, kind):
    prim = c.primary()
    others = [m for m in c.members if m is not prim]
    target, via = others[0], others[1]
    w = Writer(via, key)
    w.start()
    wait_for(lambda: len(w.acked) >= 20, 30, "writes flowing")
    if kind == "failover":
        prim.kill()
        wait_for(lambda: all((p["age_s"] or 0) > FENCE_AFTER + 2.5
                             for m in others for p in m.status()["peers"] if p["id"] == prim.id),
                 FENCE_AFTER + 15, "old primary unseen")
    t_cmd = time.monotonic()
    rc, out, err = c.mfactl(kind, "--to", target.id, member=target)
    t_done = time.monotonic()
    if rc != 0:
        w.stop()
        raise RuntimeError(f"{kind} failed ({rc}):\n{out}\n{err}")
    t_refused = next((r[0] for r in w.refused if r[0] >= t_cmd), t_cmd)
    wait_for(lambda: w.first_ack_after(max(t_refused, t_cmd)), 20, "writes after")
    first = w.first_ack_after(max(t_refused, t_cmd)) if kind == "switchover" else \
        w.first_ack_after(t_cmd)
    w.stop()
    result = {"kind": kind, "from": prim.id, "to": target.id,
              "command_to_first_write_s": round(first - t_cmd, 3),
              "mfactl_s": round(t_done - t_cmd, 3),
              "pg_promote_ms": promote_ms(target, t_cmd)}
    if kind == "failover":
        prim.start()
    c.wait_healthy(120)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(TOP, "build", "release"))
    ap.add_argument("--out-dir", default=os.path.join(TOP, "build", "bench"))
    ap.add_argument("--rounds", type=int, default=5, help="switchovers, and as many failovers")
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="mfa-bench-fo-", dir="/tmp")
    c = Cluster(base, a.build, members=3, fence_after=FENCE_AFTER)
    c.create()
    results = []
    try:
        c.start(timeout=120)
        key = admin_key(c)
        for kind in ("switchover", "failover"):
            for _ in range(a.rounds):
                r = one_switch(c, key, kind)
                print(f"{kind:10s} {r['from']}->{r['to']}: first write "
                      f"{r['command_to_first_write_s']:.3f} s, mfactl {r['mfactl_s']:.3f} s, "
                      f"pg_promote {r['pg_promote_ms']} ms", flush=True)
                results.append(r)
    finally:
        c.stop()
    print()
    print("| | command to first accepted write, median (max) | mfactl, median | "
          "baseline: pg_promote, median |")
    print("|---|---|---|---|")
    for kind in ("switchover", "failover"):
        rs = [r for r in results if r["kind"] == kind]
        fw = [r["command_to_first_write_s"] for r in rs]
        print(f"| {kind} | {statistics.median(fw):.2f} s ({max(fw):.2f} s) | "
              f"{statistics.median(r['mfactl_s'] for r in rs):.2f} s | "
              f"{statistics.median(r['pg_promote_ms'] or 0 for r in rs):.0f} ms |")
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "failover.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
