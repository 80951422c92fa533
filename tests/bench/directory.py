#!/usr/bin/python3
"""Directory sync on a Release build (docs/bench.md, "Directory sync");
tests/bench/directory builds and starts this.

A real OpenLDAP server (Debian's slapd, tests/integration/ldapd.py's Slapd,
ldaps:// on loopback) holds N users (--users, default 5000) in ou=people,
loaded with slapadd before it starts: inetOrgPerson entries with uid,
displayName, mail and mobile (typed with spaces, as people do); the service
account gets `limits ... size=unlimited` (slapd's default of 500 entries
caps paged searches too, and the sync then fails: "Size limit exceeded").
A one-member cluster (appliance/cluster.py: mfa-replicator with PostgreSQL 15 and
mfa-node) runs without a directory section, so its node never syncs by
itself; `mfactl directory sync --json` runs with a copy of n1's configuration
that has the section (ldapd.py's conf_section: ldaps, the CA, the service
account, base ou=people, filter (objectClass=inetOrgPerson)). E-mail stays
disabled: the events are queued in email_outbox, never sent.

Timed (wall clock from the command's start to its exit, --reps repetitions
each, medians reported):

1. first sync: creates N users. Before each repetition the directory users,
   the e-mail queue and the scratch table are emptied and vacuumed (not
   timed);
2. no-change sync: N users, nothing to do;
3. 1 % changed: before each repetition (not timed) a different 1 % of the
   entries get a new `mobile` through ldapmodify; the sync updates them.

Baselines in the same run, interleaved with the syncs (same machine, same
servers, each with its own connection set-up as mfactl has):

- directory read: `ldapsearch` as the service account over ldaps:// with
  paging (-E pr=500/noprompt, the sync's page size), the same base, filter
  and attributes, to /dev/null;
- rows written: psql, one transaction with one INSERT of the same N rows
  (username, display name, e-mail, normalised phone, DN) into a scratch table
  shaped like `users` (bigserial key, unique index on lower(username));
- rows written to `users`: the same INSERT into `users` itself (method sms,
  source directory), so its indexes and its e-mail trigger (an
  email_outbox row per user) run; emptied again before the sync;
- rows read: psql, SELECT of the users' sync columns, to /dev/null;
- mfactl's fixed cost: `mfactl directory status --json` (the configuration,
  the TLS connection to PostgreSQL, one query).

Also: peak RSS of mfactl (VmHWM, read from /proc every 2 ms while it runs),
and the e-mail events the first sync queued (email_outbox rows).

Prints a table and writes build/bench/directory.json. Whatever it started is
stopped on the way out, also after an error, Ctrl-C, SIGTERM or its time limit.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "appliance"))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

from cluster import Cluster  # noqa: E402
from ldapd import SUFFIX, SYNC_DN, SYNC_PW, Slapd, slappasswd  # noqa: E402

ATTRS = ("uid", "displayName", "mail", "mobile", "telephoneNumber")  # what the sync asks for
PAGE = 500  # the sync's page size (common/directory_fetch.c)


class Interrupted(Exception):
    pass


class Failed(Exception):
    pass


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def on_signal(sig, frame):
    raise Interrupted(signal.Signals(sig).name)


# ---- the directory's content ----

def uid(i):
    return f"u{i:06d}"


def mobile(i, rev=0):
    """As people type it; rev > 0: the number of the rev-th change (another prefix)."""
    if rev:
        return f"+41 78 {rev:03d} {i // 100 % 100:02d} {i % 100:02d}"
    return f"+41 79 {i // 10000:03d} {i // 100 % 100:02d} {i % 100:02d}"


def normalised(phone):
    return "".join(ch for ch in phone if ch not in " -.()")


def user_row(i):
    """(username, display name, e-mail, phone, DN) as the sync stores them."""
    return (uid(i), f"User {i:06d}", f"{uid(i)}@example.com", normalised(mobile(i)),
            Slapd.user_dn(uid(i)))


def ldif(n):
    """The whole tree for slapadd: what Slapd.start() adds, then N users."""
    out = [f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: {SYNC_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: sync
userPassword: {slappasswd(SYNC_PW)}

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups
"""]
    for i in range(n):
        out.append(f"""
dn: {Slapd.user_dn(uid(i))}
objectClass: inetOrgPerson
uid: {uid(i)}
cn: User {i:06d}
sn: {i:06d}
displayName: User {i:06d}
mail: {uid(i)}@example.com
mobile: {mobile(i)}
""")
    return "".join(out)


def load_slapd(base, n):
    """A slapd with the N users, loaded by slapadd before it starts."""
    d = Slapd(base, start=False)
    # slapd's default size limit (500 entries) caps a paged search's total too
    # (size.prtotal): the service account of a directory this size is given none,
    # as an operator would (docs/bench.md). The mdb database is the file's last section.
    with open(d.conf, "a") as f:
        f.write(f'limits dn.exact="{SYNC_DN}" size=unlimited\n')
    path = os.path.join(d.dir, "bench.ldif")
    with open(path, "w") as f:
        f.write(ldif(n))
    t0 = time.monotonic()
    subprocess.run(["slapadd", "-q", "-f", d.conf, "-l", path], check=True,
                   capture_output=True, text=True, timeout=600)
    say(f"slapadd: {n} users in {time.monotonic() - t0:.1f} s")
    d.start()
    return d


def change_phones(d, n, rev):
    """A new mobile for 1 % of the users (i % 100 == rev - 1): another 1 % each rev."""
    picked = [i for i in range(n) if i % 100 == (rev - 1) % 100]
    d.modify("".join(f"dn: {Slapd.user_dn(uid(i))}\nchangetype: modify\nreplace: mobile\n"
                     f"mobile: {mobile(i, rev)}\n\n" for i in picked))
    return len(picked)


# ---- timing ----

def timed(args, env=None, stdout=subprocess.DEVNULL):
    """Runs <args>: (wall seconds, exit code, stderr)."""
    t0 = time.monotonic()
    p = subprocess.run(args, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env,
                       timeout=600)
    return time.monotonic() - t0, p.returncode, p.stderr


def vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_sync(c, conf):
    """mfactl directory sync --json: (wall seconds, report, peak RSS kB). The
    peak is VmHWM read every 2 ms on a thread of its own (not on the timed
    path); it only grows, so the last read before the exit is the peak to
    within what the last 2 ms added."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        p = subprocess.Popen([c.binary("appliance/mfactl"), "-c", conf, "directory", "sync",
                              "--json"], stdout=out, stderr=err, text=True)
        peak = [0]
        done = threading.Event()

        def poll():
            while not done.is_set():
                v = vm_hwm_kb(p.pid)
                if v:
                    peak[0] = max(peak[0], v)
                time.sleep(0.002)
        t = threading.Thread(target=poll, daemon=True)
        t.start()
        rc = p.wait(timeout=600)
        wall = time.monotonic() - t0
        done.set()
        t.join()
        out.seek(0)
        err.seek(0)
        text, errtext = out.read(), err.read()
    if rc != 0:
        raise Failed(f"mfactl directory sync exited {rc}: {errtext.strip()} {text[:500]}")
    return wall, json.loads(text), peak[0]


class Db:
    """The primary's database: psycopg2 for the housekeeping, psql for the
    timed baselines (a client process with its own connection, like mfactl)."""

    def __init__(self, c):
        m = c.members[0]
        self.dsn = m.dsn()
        # psql gets the password in its environment, not on its command line.
        self.psql_dsn = " ".join(w for w in self.dsn.split() if not w.startswith("password="))
        self.env = dict(os.environ, PGPASSWORD=c.db_password("mfa"))

    def run(self, sql, args=(), fetch=True):
        conn = psycopg2.connect(self.dsn)
        try:
            conn.autocommit = True  # VACUUM runs outside a transaction
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if fetch else None
        finally:
            conn.close()

    def psql_file(self, path):
        return timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.psql_dsn, "-f",
                      path], env=self.env)

    def psql(self, sql):
        return timed(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                      self.psql_dsn, "-c", sql], env=self.env)


def quote(s):
    return "'" + s.replace("'", "''") + "'"


def insert_sql(n, path, users=False):
    """One transaction, one INSERT of the N rows the first sync writes: into the
    scratch table, or (<users>) into `users` as the sync's own INSERT fills it
    (method sms, the default; source directory), its e-mail trigger and all."""
    with open(path, "w") as f:
        if users:
            f.write("BEGIN;\nINSERT INTO users (username, display_name, email, phone,"
                    " directory_dn, method, source, directory_synced_at) VALUES\n")
            tail = ",'sms','directory',now())"
        else:
            f.write("BEGIN;\nINSERT INTO bench_dir.rows (username, display_name, email, phone,"
                    " directory_dn) VALUES\n")
            tail = ")"
        f.write(",\n".join("(" + ",".join(quote(v) for v in user_row(i)) + tail
                           for i in range(n)))
        f.write(";\nCOMMIT;\n")


SCRATCH = """
CREATE SCHEMA IF NOT EXISTS bench_dir;
DROP TABLE IF EXISTS bench_dir.rows;
CREATE TABLE bench_dir.rows (
    id bigserial PRIMARY KEY,
    username text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    email text NOT NULL DEFAULT '',
    phone text NOT NULL DEFAULT '',
    source text NOT NULL DEFAULT 'directory',
    directory_dn text,
    directory_synced_at timestamptz DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ON bench_dir.rows (lower(username));
"""


def reset(db):
    """Before a first sync: no directory user, no queued e-mail, an empty scratch table."""
    db.run("DELETE FROM users WHERE source = 'directory'", fetch=False)
    db.run("DELETE FROM email_outbox", fetch=False)
    db.run("TRUNCATE bench_dir.rows", fetch=False)
    for t in ("users", "email_outbox", "bench_dir.rows"):
        db.run(f"VACUUM ANALYZE {t}", fetch=False)


def med(xs):
    return statistics.median(xs) if xs else None


# ---- the bench ----

def machine(db):
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return None

    def run(*args):
        p = subprocess.run(args, capture_output=True, text=True)
        return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr) else None
    return {"cpus": os.cpu_count(), "cpu": first("/proc/cpuinfo", "model name"),
            "mem": first("/proc/meminfo", "MemTotal"), "kernel": platform.release(),
            "load_before": os.getloadavg(),
            "commit": run("git", "-C", TOP, "describe", "--always", "--dirty"),
            "slapd": run("slapd", "-VV"), "postgres": db.run("SELECT version()")[0][0]}


def bench(a, out):
    base = tempfile.mkdtemp(prefix="mfa-bench-dir-", dir="/tmp")
    out["base"] = base
    n = a.users
    say(f"slapd with {n} users")
    d = load_slapd(base, n)
    out["slapd"] = d
    say("one-member cluster")
    c = Cluster(base, a.build, members=1)
    out["cluster"] = c
    c.create()
    c.start(timeout=120)
    # mfactl's configuration: n1's with the directory section (the node's has none,
    # so it never syncs by itself).
    conf = os.path.join(base, "mfactl-directory.conf")
    with open(conf, "w") as f:
        f.write(c.conf_text(c.members[0]) + d.conf_section(user=c.user))
    db = Db(c)
    db.run(SCRATCH, fetch=False)
    files = os.path.join(base, "bench")
    os.makedirs(files)
    ins = os.path.join(files, "insert.sql")
    insert_sql(n, ins)
    ins_users = os.path.join(files, "insert-users.sql")
    insert_sql(n, ins_users, users=True)
    ldap_args = ["ldapsearch", "-x", "-H", d.url_ldaps, "-D", SYNC_DN, "-w", SYNC_PW, "-LLL",
                 "-b", d.people, "-E", f"pr={PAGE}/noprompt", "(objectClass=inetOrgPerson)",
                 *ATTRS]
    # ldap-utils as ldapd.py runs them: this CA, verified, no other configuration.
    ldap_env = dict(os.environ, LDAPTLS_CACERT=d.ca_file, LDAPTLS_REQCERT="demand",
                    LDAPCONF="/dev/null", LDAPRC="/dev/null")
    select_sql = ("SELECT username, coalesce(directory_dn, ''), display_name, email, phone,"
                  " disabled FROM users WHERE source = 'directory'")
    res = {"users": n, "reps": a.reps, "machine": machine(db), "started": time.strftime(
        "%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "samples": {}}
    s = res["samples"]
    for k in ("ldapsearch_s", "insert_s", "insert_users_s", "select_s", "status_s", "first_s",
              "first_rss_kb", "nochange_s", "nochange_rss_kb", "change_s", "change_rss_kb", "changed"):
        s[k] = []

    def ldapsearch():
        wall, rc, err = timed(ldap_args, env=ldap_env)
        if rc != 0:
            raise Failed(f"ldapsearch exited {rc}: {err.strip()}")
        s["ldapsearch_s"].append(wall)

    def select():
        wall, rc, err = db.psql(select_sql)
        if rc != 0:
            raise Failed(f"psql SELECT exited {rc}: {err.strip()}")
        s["select_s"].append(wall)

    def status():
        wall, rc, err = timed([c.binary("appliance/mfactl"), "-c", conf, "directory", "status",
                               "--json"])
        if rc != 0:
            raise Failed(f"mfactl directory status exited {rc}: {err.strip()}")
        s["status_s"].append(wall)

    # Warm-up, not timed: slapd's and PostgreSQL's caches, the binaries' pages.
    timed(ldap_args, env=ldap_env)
    db.psql("SELECT 1")

    say(f"1. first sync of {n} users, {a.reps}x (each after emptying users and the queue)")
    for r in range(a.reps):
        reset(db)
        ldapsearch()
        wall, rc, err = db.psql_file(ins)
        if rc != 0:
            raise Failed(f"psql INSERT exited {rc}: {err.strip()}")
        s["insert_s"].append(wall)
        wall, rc, err = db.psql_file(ins_users)
        if rc != 0:
            raise Failed(f"psql INSERT INTO users exited {rc}: {err.strip()}")
        s["insert_users_s"].append(wall)
        reset(db)
        wall, rep, rss = run_sync(c, conf)
        if rep.get("result") != "ok" or rep.get("created") != n:
            raise Failed(f"first sync: {json.dumps(rep)[:600]}")
        s["first_s"].append(wall)
        s["first_rss_kb"].append(rss)
        queued = db.run("SELECT event, count(*) FROM email_outbox GROUP BY event ORDER BY 1")
        res["email_outbox_after_first"] = {e: k for e, k in queued}
        say(f"   {r + 1}: sync {wall:.2f} s (RSS {rss} kB), ldapsearch "
            f"{s['ldapsearch_s'][-1]:.2f} s, INSERT {s['insert_s'][-1]:.2f} s, INSERT INTO users "
            f"{s['insert_users_s'][-1]:.2f} s, "
            f"e-mail queued {res['email_outbox_after_first']}")

    say(f"2. no-change sync of {n} users, {a.reps}x")
    for r in range(a.reps):
        ldapsearch()
        select()
        status()
        wall, rep, rss = run_sync(c, conf)
        if rep.get("result") != "ok" or rep.get("unchanged") != n or rep.get("updated"):
            raise Failed(f"no-change sync: {json.dumps(rep)[:600]}")
        s["nochange_s"].append(wall)
        s["nochange_rss_kb"].append(rss)
        say(f"   {r + 1}: sync {wall:.2f} s (RSS {rss} kB), ldapsearch "
            f"{s['ldapsearch_s'][-1]:.2f} s, SELECT {s['select_s'][-1]:.2f} s")

    say(f"3. 1 % changed (mobile), {a.reps}x")
    for r in range(a.reps):
        k = change_phones(d, n, r + 1)
        wall, rep, rss = run_sync(c, conf)
        if rep.get("result") != "ok" or rep.get("updated") != k:
            raise Failed(f"1 % sync: expected {k} updated: {json.dumps(rep)[:600]}")
        s["change_s"].append(wall)
        s["change_rss_kb"].append(rss)
        s["changed"].append(k)
        say(f"   {r + 1}: sync {wall:.2f} s, {k} updated (RSS {rss} kB)")
    res["email_outbox_after_all"] = {e: k for e, k in db.run(
        "SELECT event, count(*) FROM email_outbox GROUP BY event ORDER BY 1")}

    m = {k: med(v) for k, v in s.items() if k not in ("changed",)}
    res["median"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}
    res["derived"] = {
        "first_over_baseline": round(m["first_s"] / (m["ldapsearch_s"] + m["insert_s"]), 2),
        "first_over_users_baseline": round(
            m["first_s"] / (m["ldapsearch_s"] + m["insert_users_s"]), 2),
        "nochange_over_baseline": round(m["nochange_s"] / (m["ldapsearch_s"] + m["select_s"]),
                                        2),
        "change_over_baseline": round(m["change_s"] / (m["ldapsearch_s"] + m["select_s"]), 2),
        "first_per_user_ms": round(m["first_s"] / n * 1000, 3),
        "nochange_per_user_ms": round(m["nochange_s"] / n * 1000, 3),
        "first_rss_peak_kb": max(s["first_rss_kb"]),
    }
    return res


def dur(x):
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def kb(x):
    return f"{int(round(x)):,} kB".replace(",", " ")


def table(res):
    m, dv, n, s = res["median"], res["derived"], res["users"], res["samples"]

    def rng(k):
        return f"{dur(m[k])} ({dur(min(s[k]))}–{dur(max(s[k]))})"
    q = res.get("email_outbox_after_first", {})
    read = m["ldapsearch_s"] + m["select_s"]
    lines = [
        f"{n} users, {res['reps']} repetitions, median (min–max); machine: "
        f"{res['machine']['cpus']} cores, {res['machine']['cpu']}",
        "",
        "| | `mfactl directory sync` | baseline: directory read + rows | baseline, sum |"
        " sync / baseline | mfactl peak RSS |",
        "|---|---|---|---|---|---|",
        f"| first sync (creates {n}) | {rng('first_s')} | ldapsearch {dur(m['ldapsearch_s'])}"
        f" + INSERT {dur(m['insert_s'])} | {dur(m['ldapsearch_s'] + m['insert_s'])} |"
        f" {dv['first_over_baseline']:.2f} | {kb(m['first_rss_kb'])} |",
        f"| first sync, against writing `users` | | ldapsearch {dur(m['ldapsearch_s'])}"
        f" + INSERT INTO users {dur(m['insert_users_s'])} |"
        f" {dur(m['ldapsearch_s'] + m['insert_users_s'])} |"
        f" {dv['first_over_users_baseline']:.2f} | |",
        f"| no change | {rng('nochange_s')} | ldapsearch {dur(m['ldapsearch_s'])}"
        f" + SELECT {dur(m['select_s'])} | {dur(read)} |"
        f" {dv['nochange_over_baseline']:.2f} | {kb(m['nochange_rss_kb'])} |",
        f"| 1 % changed ({s['changed'][0]} phones) | {rng('change_s')} |"
        f" ldapsearch {dur(m['ldapsearch_s'])} + SELECT {dur(m['select_s'])} |"
        f" {dur(read)} | {dv['change_over_baseline']:.2f} | {kb(m['change_rss_kb'])} |",
        "",
        f"mfactl's fixed cost (`mfactl directory status --json`: configuration, TLS"
        f" connection to PostgreSQL, one query): {dur(m['status_s'])}",
        f"first sync: {dv['first_per_user_ms']} ms per user; peak RSS of mfactl (highest of"
        f" the runs) {kb(dv['first_rss_peak_kb'])}; e-mail events queued: "
        + (", ".join(f"{k} {e}" for e, k in q.items()) or "none"),
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(TOP, "build", "release"))
    ap.add_argument("--out-dir", default=os.path.join(TOP, "build", "bench"))
    ap.add_argument("--users", type=int, default=5000, help="directory users (default 5000)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each timed step")
    ap.add_argument("--time-limit", type=int, default=1200,
                    help="seconds before everything is stopped (default 1200)")
    ap.add_argument("--keep", action="store_true", help="keep the files under /tmp")
    a = ap.parse_args()
    if a.users < 100 or a.reps < 1:
        ap.error("--users 100 or more (1 % of them change), --reps 1 or more")
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(a.time_limit)
    os.makedirs(a.out_dir, exist_ok=True)
    out = {}
    rc = 0
    t0 = time.monotonic()
    try:
        res = bench(a, out)
        res["elapsed_s"] = round(time.monotonic() - t0, 1)
        path = os.path.join(a.out_dir, "directory.json")
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
        if out.get("cluster"):
            say("stopping the cluster")
            out["cluster"].stop()
        if out.get("slapd"):
            out["slapd"].stop()
        if out.get("base") and not a.keep:
            shutil.rmtree(out["base"], ignore_errors=True)
        elif out.get("base"):
            say(f"files kept in {out['base']}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
