"""The local demo cluster (./appliance/demo): three members on 127.0.0.1,
each with mfa-replicator (and its PostgreSQL), mfa-node, and mfa-balancer
with HAProxy on n3 (a standby, so the front door outlives the primary's
death in the printed failover), built from this checkout, with the file SMS
provider, a demo user and API keys. Standard library only.

  demo.py up BUILD_DIR      start it (or say where it runs when it does)
  demo.py stop              stop everything it started, by pid
  demo.py kill MEMBER       SIGKILL that member's processes: a host that died
  demo.py start MEMBER      bring that member back, as a host that boots
"""

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, wait_for  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DEMO_DIR = os.path.abspath(os.environ.get("MFA_DEMO_DIR", os.path.join(TOP, ".demo")))
STATE = os.path.join(DEMO_DIR, "state.json")
INFO = os.path.join(DEMO_DIR, "cluster.json")
DEMO_USER = {"username": "demo", "pin": "1234", "phone": "+15550100"}
BALANCER = "n3"  # the member that runs mfa-balancer and HAProxy


def running():
    if not os.path.exists(STATE):
        return None
    c = Cluster.load(STATE)
    return c if any(m.procs for m in c.members) else None


def new_key(c, name, scope):
    """An API key made as an operator makes one: mfactl on the primary's host."""
    rc, out, err = c.mfactl("--json", "apikey", "create", name, "--scope", scope,
                            member=c.primary())
    if rc != 0:
        raise RuntimeError(f"mfactl apikey create {name}: exit {rc}: {err.strip()}")
    return json.loads(out)["key"]


def describe(c, keys):
    lb = next(m for m in c.members if m.balancer)
    info = {
        "api_url": f"https://127.0.0.1:{lb.ports['api']}",
        "portal_url": f"https://127.0.0.1:{lb.ports['api']}/portal/",
        "health_url": f"http://127.0.0.1:{lb.ports['health']}/",
        "stats_url": f"http://127.0.0.1:{lb.ports['stats']}/",
        "stats_user": "admin",
        "stats_password": c.stats_password,
        "radius": {"host": "127.0.0.1", "port": lb.ports["radius"], "secret": c.radius_secret},
        "admin_api_key": keys["admin"],
        "auth_api_key": keys["auth"],
        "demo_user": DEMO_USER,
        "sms_outbox": [m.outbox for m in c.members],
        "ca": c.ca,
        "mfactl": os.path.join(c.build_dir, "appliance", "mfactl"),
        "config": lb.conf,
        "members": [{"id": m.id, "node_url": f"http://127.0.0.1:{m.ports['node']}",
                     "replicator_url": f"https://127.0.0.1:{m.ports['replicator']}",
                     "pg_port": m.ports["postgres"], "pgdata": m.pgdata,
                     "logs": m.dir, "config": m.conf} for m in c.members],
    }
    fd = os.open(INFO + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=1)
    os.replace(INFO + ".tmp", INFO)
    return info


def tell(info, primary):
    """Prints where everything is; <primary> is the writable primary's id, or None."""
    m, r = info["mfactl"], info["radius"]
    members = {x["id"]: x for x in info["members"]}
    if primary:
        roles = (f"{primary} is the primary, the others stream from it; HAProxy and the RADIUS "
                 f"front run on {BALANCER}.")
    else:
        roles = (f"No member takes writes right now (mfactl status says why); HAProxy and the "
                 f"RADIUS front run on {BALANCER}.")
        primary = "n1"
    out = os.path.dirname(info["members"][0]["logs"])
    demo = os.path.join(TOP, "appliance", "demo")
    env = f"MFA_DEMO_DIR={DEMO_DIR} " if "MFA_DEMO_DIR" in os.environ else ""
    code = ("python3 -c 'import json,sys; print(json.loads(sys.stdin.readlines()[-1])"
            "[\"text\"].split()[0])' <")
    print(f"""
MFA Appliance demo cluster: 3 members on 127.0.0.1 ({INFO} has it all as JSON)
{roles}

  API (HTTPS, HAProxy)   {info['api_url']}   (CA: {info['ca']})
  user portal            {info['portal_url']}   (demo / PIN 1234, then the SMS code)
  health page            {info['health_url']}
  HAProxy stats          {info['stats_url']}  (admin / {info['stats_password']})
  SMS outboxes           {out}/<node>/sms-outbox.jsonl (one per node)

Try:
  curl --cacert {info['ca']} -H 'Authorization: Bearer {info['auth_api_key']}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"username": "demo", "pin": "1234"}}' {info['api_url']}/api/v1/auth
      # the code went to the node the challenge id starts with (n1-..., n2-..., n3-...):
      #   {code} {out}/n1/sms-outbox.jsonl
  curl --cacert {info['ca']} -H 'Authorization: Bearer {info['auth_api_key']}' \\
       -H 'Content-Type: application/json' -d '{{"otp": "<code>"}}' \\
       {info['api_url']}/api/v1/challenges/<challenge_id>/verify
  printf 'User-Name = "demo"\\nUser-Password = "1234"\\nMessage-Authenticator = 0x00\\n' |
    radclient -x 127.0.0.1:{r['port']} auth '{r['secret']}'
      # an Access-Challenge (radclient says it expected an Accept: that is fine); its State
      # is the challenge id in hex (0x6e31... is "n1-..."): the code is in that node's outbox
  printf 'User-Name = "demo"\\nUser-Password = "<code>"\\nState = <State>\\nMessage-Authenticator = 0x00\\n' |
    radclient -x 127.0.0.1:{r['port']} auth '{r['secret']}'
  {m} -c {info['config']} status
  {m} -c {members[primary]['config']} apikey create my-app --scope auth   # on the primary, {primary}
  {env}{demo} kill n1 && {m} -c {info['config']} failover --to n2
      # n1 died: n2 takes writes, sign-ins go on through the same API, portal and RADIUS
  {env}{demo} start n1          # it rejoins as a standby of n2
  {env}{demo} stop              # stops everything; the next start makes a new cluster
""")


def up(build_dir):
    c = running()
    if c:
        with open(INFO) as f:
            info = json.load(f)
        print("the demo cluster is already running")
        prim = c.primary()
        tell(info, prim.id if prim else None)
        return 0
    base = os.path.join(DEMO_DIR, "cluster")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(DEMO_DIR, exist_ok=True)
    # The balancer on n3: the printed failover kills n1 (the primary), and the
    # front door must outlive it. SMS limits above the production default of
    # 5 per user and hour: trying the printed commands twice would hit it.
    c = Cluster(base, build_dir, members=3, balancers=[BALANCER], fence_after=10,
                sms_conf="per_user_per_hour = 100; per_phone_per_hour = 100;")
    c.create()
    c.start(timeout=180)
    c.save(STATE)
    keys = {"admin": new_key(c, "demo-admin", "admin"), "auth": new_key(c, "demo-auth", "auth")}
    lb = c.by_id[BALANCER]
    # Nodes read new keys within a second: wait until every node knows both.
    for m in c.data_members():
        wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=keys["admin"])[0] == 200,
                 30, f"{m.id} accepts the admin key")
        wait_for(lambda m=m: m.node("POST", "/api/v1/auth", {"username": "nobody-here"},
                                    key=keys["auth"])[0] == 200, 30, f"{m.id} accepts the auth key")
    wait_for(lambda: lb.api("GET", "/api/v1/users?limit=1", key=keys["admin"])[0] == 200, 30,
             "the API through HAProxy")
    st, doc = lb.api("POST", "/api/v1/users", {"username": DEMO_USER["username"],
                                               "method": "sms", "phone": DEMO_USER["phone"],
                                               "pin": DEMO_USER["pin"]}, key=keys["admin"])
    if st not in (201, 409):
        raise RuntimeError(f"creating the demo user: {st} {doc}")
    tell(describe(c, keys), c.primary().id)
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "up":
        return up(argv[1])
    c = running()
    if not c:
        print("the demo cluster is not running (./appliance/demo starts it)", file=sys.stderr)
        return 1
    if argv == ["stop"]:
        c.stop()
        os.unlink(STATE)
        print("stopped")
        return 0
    if len(argv) == 2 and argv[0] in ("kill", "start"):
        m = c.by_id.get(argv[1])
        if not m:
            print(f"no member {argv[1]} (n1, n2, n3)", file=sys.stderr)
            return 2
        if argv[0] == "kill":
            m.kill()
            m.procs.clear()
        else:
            m.start()
        c.save(STATE)
        print(f"{argv[1]}: {'killed' if argv[0] == 'kill' else 'started'}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
