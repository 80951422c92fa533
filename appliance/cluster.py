"""The cluster launcher: N members of an MFA Appliance cluster on one host,
each with its own configuration, certificates, key file and ports on
127.0.0.1 (or on an address of its own, <addresses>: then its node speaks
TLS, as between real hosts), running mfa-replicator (which runs PostgreSQL)
and mfa-node.

The integration tests and ./appliance/demo both use it. It can start, stop,
kill (SIGKILL: a host that died), freeze (SIGSTOP: a host that stops
answering) and restart any member. Everything a member has lives under
<base>/<id>/; the cluster CA under <base>/pki/.

Standard library only (plus the programs it starts), so the demo needs
nothing installed from pip.
"""

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import pwd
import secrets
import signal
import socket
import ssl
import subprocess
import time

PORT_KEYS = ["api", "stats", "health", "balancer_control", "radius", "node", "node_radius",
             "replicator", "postgres"]


def wait_for(predicate, timeout, what, interval=0.05):
    """Polls predicate() until it returns a true value or <timeout> seconds pass."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the condition may raise until it holds
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"{what}: not true after {timeout}s (last error: {last_error})")


def free_ports(n, taken=()):
    """<n> distinct ports on 127.0.0.1 that nothing uses now, for TCP and for
    UDP both (the RADIUS ports are UDP)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
            socks.append(s)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind(("127.0.0.1", p))
            except OSError:
                u.close()
                continue  # taken for UDP: not this one
            socks.append(u)
            if p not in taken and p not in ports:
                ports.append(p)
    finally:
        for s in socks:
            s.close()
    return ports


def children(pid):
    """Pids whose parent is <pid>, from /proc."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            kids.append(int(entry))
    return kids


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _request(conn, method, path, body=None, key=None, cookie=None):
    """Sends one request on <conn> (a JSON body, a Bearer key, a cookie) and
    closes it: (status, parsed JSON or raw bytes)."""
    headers = {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if cookie:
        headers["Cookie"] = cookie
    if body is not None:
        body = json.dumps(body)
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.getheader("Content-Type", "").startswith("application/json"):
        return resp.status, json.loads(data)
    return resp.status, data


class PidProc:
    """A daemon started by an earlier run of the launcher (the demo's later
    commands): the subset of Popen the launcher uses, by pid."""

    def __init__(self, pid, binary):
        self.pid = pid
        self.binary = binary

    def poll(self):
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            return 0
        return None if alive(self.pid) and argv0 == self.binary else 0

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def wait(self, timeout=None):
        wait_for(lambda: self.poll() is not None, timeout or 60, f"pid {self.pid} exited")
        return 0


def db_password(pepper, role):
    """The password mfa-replicator gives database role <role> (common/secrets.c)."""
    mac = hmac.new(pepper, b"mfa-appliance db password\0" + role.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


class Member:
    """One appliance: its files, ports and processes."""

    def __init__(self, cluster, member_id, ports, address="127.0.0.1", netns=None):
        self.cluster = cluster
        self.id = member_id
        self.ports = ports
        self.address = address
        # A named network namespace (ip netns) the member's processes run in:
        # a host of its own, which a test can cut off from the others.
        self.netns = netns
        self.dir = os.path.join(cluster.base, member_id)
        self.conf = os.path.join(self.dir, "appliance.conf")
        self.pgdata = os.path.join(self.dir, "pgdata")
        self.outbox = os.path.join(self.dir, "sms-outbox.jsonl")
        self.procs = {}
        self.witness = False
        self.balancer = False

    # -- processes --

    def _spawn(self, name, binary):
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")
        # `ip netns exec` execs the daemon itself: the pid stays the daemon's.
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.procs[name] = subprocess.Popen(prefix + [binary, "-c", self.conf], stdout=log,
                                            stderr=log, start_new_session=True)
        log.close()

    def start_replicator(self):
        if not self.running("replicator"):
            self._spawn("replicator", self.cluster.binary("replicator/mfa-replicator"))

    def start_node(self):
        if not self.running("node"):
            self._spawn("node", self.cluster.binary("node/mfa-node"))

    def start_balancer(self):
        if not self.running("balancer"):
            self._spawn("balancer", self.cluster.binary("balancer/mfa-balancer"))

    def start(self, node=True):
        """Brings the member up as a host that boots: replicator, node, balancer."""
        self.start_replicator()
        if node and self.cluster.with_nodes and not self.witness:
            self.start_node()
        if self.balancer:
            self.start_balancer()

    def running(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def sms(self):
        """The messages in this member's SMS outbox (the file provider), oldest first."""
        try:
            with open(self.outbox) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.pgdata, "postmaster.pid")) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def postgres_pids(self):
        pm = self.postmaster_pid()
        return [pm] + children(pm) if pm else []

    def haproxy_pids(self):
        try:
            with open(os.path.join(self.dir, "run", "haproxy.pid")) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return []
        return [pid] + children(pid) if alive(pid) else []

    def kill(self):
        """SIGKILL of every process of the member: a host that died."""
        pids = self.postgres_pids() + self.haproxy_pids()
        for name in ("node", "replicator", "balancer"):
            p = self.procs.get(name)
            if p and p.poll() is None:
                p.kill()
                p.wait(10)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not any(alive(p) for p in pids), 10, f"{self.id} PostgreSQL gone")

    def freeze(self, node=False):
        """SIGSTOP of the replicator and PostgreSQL: a host that stops answering."""
        self._frozen = self.postgres_pids()
        rp = self.procs.get("replicator")
        targets = ([rp.pid] if rp else []) + self._frozen
        if node and self.procs.get("node"):
            targets.append(self.procs["node"].pid)
        self._frozen_all = targets
        for pid in targets:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass  # a backend that ended since it was listed: nothing left to stop

    def thaw(self):
        for pid in reversed(getattr(self, "_frozen_all", [])):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._frozen_all = []

    def stop(self, timeout=20):
        """SIGTERM to node and replicator, then a fast shutdown of PostgreSQL."""
        self.thaw()
        for name in ("node", "replicator", "balancer"):
            p = self.procs.get(name)
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for pid in self.haproxy_pids()[:1]:  # the master stops its workers
            os.kill(pid, signal.SIGTERM)
        pm = self.postmaster_pid()
        if pm:
            os.kill(pm, signal.SIGINT)
            try:
                wait_for(lambda: not alive(pm), timeout, f"{self.id} PostgreSQL stopped")
            except TimeoutError:
                for pid in self.postgres_pids():
                    os.kill(pid, signal.SIGKILL)

    def log(self, name="replicator"):
        try:
            with open(os.path.join(self.dir, f"{name}.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- APIs --

    def replicator(self, method="GET", path="/status", body=None, timeout=5):
        """A request to this member's replicator over mutual TLS: (status, JSON)."""
        conn = http.client.HTTPSConnection(self.address, self.ports["replicator"],
                                           timeout=timeout, context=self.cluster.tls_context())
        try:
            data = json.dumps(body) if body is not None else None
            headers = {"Content-Type": "application/json"} if data else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def status(self):
        return self.replicator()[1]

    def node_tls(self):
        """True when this member's node speaks TLS (its address is not loopback)."""
        return not ipaddress.ip_address(self.address).is_loopback

    def node(self, method, path, body=None, key=None, timeout=10):
        """A request to this member's mfa-node: (status, JSON or bytes). Over
        mutual TLS (the operator's certificate) when the node speaks TLS."""
        if self.node_tls():
            conn = http.client.HTTPSConnection(self.address, self.ports["node"],
                                               timeout=timeout,
                                               context=self.cluster.tls_context())
        else:
            conn = http.client.HTTPConnection(self.address, self.ports["node"], timeout=timeout)
        return _request(conn, method, path, body, key)

    def api(self, method, path, body=None, key=None, timeout=10, cookie=None):
        """A request through this member's HAProxy (TLS): (status, JSON or bytes)."""
        conn = http.client.HTTPSConnection(self.address, self.ports["api"], timeout=timeout,
                                           context=self.cluster.tls_context())
        return _request(conn, method, path, body, key, cookie)

    def balancer_api(self, method="GET", path="/status", body=None, timeout=5):
        """A request to this member's balancer control API over mutual TLS."""
        conn = http.client.HTTPSConnection(self.address, self.ports["balancer_control"],
                                           timeout=timeout, context=self.cluster.tls_context())
        try:
            data = json.dumps(body) if body is not None else None
            headers = {"Content-Type": "application/json"} if data else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def health(self, path="/cluster.json", timeout=5):
        conn = http.client.HTTPConnection(self.address, self.ports["health"], timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return resp.status, (json.loads(data) if path.endswith(".json") else data)

    def dsn(self, dbname="mfa"):
        """libpq keywords for the node's role on this member's PostgreSQL."""
        c = self.cluster
        return (f"host={self.address} port={self.ports['postgres']} dbname={dbname} "
                f"user=mfa password={c.db_password('mfa')} sslmode=verify-ca "
                f"sslrootcert={c.ca} connect_timeout=2")


class Cluster:
    """Members n1..nN under <base>, on 127.0.0.1 or on <addresses> (one
    numeric address per member, each already on this host)."""

    def __init__(self, base, build_dir, members=3, name="demo", user="mfa", fence_after=2,
                 with_nodes=True, node_conf="", replicator_conf="", witnesses=(),
                 balancers=(), sms_conf="", ports=None, radius_conf="", addresses=None,
                 netns=None, radius_nas=None, extra_conf=""):
        self.base = base
        self.build_dir = build_dir
        self.name = name
        self.user = user if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        self.fence_after = fence_after
        self.with_nodes = with_nodes
        self.node_conf = node_conf
        self.replicator_conf = replicator_conf
        self.sms_conf = sms_conf
        self.radius_conf = radius_conf
        # Whole top-level sections (directory = {...}; email = {...};), written
        # into every member's file; rewrite_conf() changes them later.
        self.extra_conf = extra_conf
        # One more RADIUS client (an address or prefix) with the same secret:
        # a NAS that is not on loopback.
        self.radius_nas = radius_nas
        self.stats_password = secrets.token_hex(12)
        # The shared secret of the one RADIUS client every node knows: the
        # loopback NAS of the demo, the tests and the benchmark.
        # (hex: a printed radclient command takes a secret that starts with '-' for an option)
        self.radius_secret = secrets.token_hex(16)
        self.ca = os.path.join(base, "pki", "ca.crt")
        self._tls = None
        taken = set()
        self.members = []
        for i in range(members):
            mports = (ports[i] if ports else
                      dict(zip(PORT_KEYS, free_ports(len(PORT_KEYS), taken))))
            taken.update(mports.values())
            self.members.append(Member(self, f"n{i + 1}", mports,
                                       addresses[i] if addresses else "127.0.0.1",
                                       netns[i] if netns else None))
        self.by_id = {m.id: m for m in self.members}
        for w in witnesses:  # voters without PostgreSQL or a node
            self.by_id[w].witness = True
        for b in balancers:  # the members that run mfa-balancer and HAProxy
            self.by_id[b].balancer = True

    def save(self, path):
        """Writes what a later process needs to find this cluster again (load())."""
        state = {
            "base": self.base, "build_dir": self.build_dir, "name": self.name,
            "fence_after": self.fence_after, "with_nodes": self.with_nodes,
            "sms_conf": self.sms_conf, "stats_password": self.stats_password,
            "radius_conf": self.radius_conf, "radius_secret": self.radius_secret,
            "extra_conf": self.extra_conf,
            "pepper": base64.b64encode(self.pepper).decode(),
            "members": [{"id": m.id, "ports": m.ports, "address": m.address,
                         "witness": m.witness,
                         "balancer": m.balancer,
                         "pids": {n: p.pid for n, p in m.procs.items() if p.poll() is None}}
                        for m in self.members],
        }
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(path + ".tmp", path)

    @classmethod
    def load(cls, path):
        """The cluster a save() described, its running daemons attached by pid."""
        with open(path) as f:
            st = json.load(f)
        c = cls(st["base"], st["build_dir"], members=len(st["members"]), name=st["name"],
                fence_after=st["fence_after"], with_nodes=st["with_nodes"],
                sms_conf=st["sms_conf"], ports=[m["ports"] for m in st["members"]],
                radius_conf=st.get("radius_conf", ""), extra_conf=st.get("extra_conf", ""),
                addresses=[m.get("address", "127.0.0.1") for m in st["members"]],
                witnesses=[m["id"] for m in st["members"] if m["witness"]],
                balancers=[m["id"] for m in st["members"] if m["balancer"]])
        c.stats_password = st["stats_password"]
        c.radius_secret = st.get("radius_secret", c.radius_secret)
        c.pepper = base64.b64decode(st["pepper"])
        daemons = {"node": "node/mfa-node", "replicator": "replicator/mfa-replicator",
                   "balancer": "balancer/mfa-balancer"}
        for m, ms in zip(c.members, st["members"]):
            for name, pid in ms["pids"].items():
                proc = PidProc(pid, os.path.join(c.build_dir, daemons[name]))
                if proc.poll() is None:
                    m.procs[name] = proc
        return c

    def binary(self, rel):
        path = os.path.join(self.build_dir, rel)
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(f"{path} is not built")
        return path

    # -- files --

    def _owner(self, path):
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def mfactl(self, *args, member=None, timeout=120):
        """Runs mfactl with <member>'s configuration: (exit code, stdout, stderr)."""
        conf = (member or self.members[0]).conf
        p = subprocess.run([self.binary("appliance/mfactl"), "-c", conf, *args],
                           capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def create(self):
        """Writes the PKI, the key file and every member's configuration."""
        os.makedirs(self.base, exist_ok=True)
        os.chmod(self.base, 0o755)
        pki = os.path.join(self.base, "pki")
        mfactl = self.binary("appliance/mfactl")
        subprocess.run([mfactl, "pki", "init", "--dir", pki, "--cluster", self.name],
                       check=True, capture_output=True, text=True)
        os.chmod(pki, 0o755)
        # The operator's own client certificate, for mfactl and the tests.
        subprocess.run([mfactl, "pki", "issue", "--dir", pki, "--name", "admin", "--dns",
                        "admin"], check=True, capture_output=True, text=True)
        raw = {k: secrets.token_bytes(32) for k in ("p", "s")}
        self.pepper = raw["p"]
        keys = {k: base64.b64encode(v).decode() for k, v in raw.items()}
        key_text = (f'version = 1;\npepper = ( {{ id = 1; key = "{keys["p"]}"; }} );\n'
                    f'seal = ( {{ id = 1; key = "{keys["s"]}"; }} );\n')
        for m in self.members:
            os.makedirs(os.path.join(m.dir, "run"), exist_ok=True)
            os.makedirs(os.path.join(m.dir, "pki"), exist_ok=True)
            subprocess.run([mfactl, "pki", "issue", "--dir", pki, "--name", m.id, "--ip",
                            m.address, "--out", os.path.join(m.dir, "pki", "member")]
                           + (["--owner", self.user] if os.geteuid() == 0 else []),
                           check=True, capture_output=True, text=True)
            kf = os.path.join(m.dir, "keys.conf")
            fd = os.open(kf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key_text)
            with open(m.conf, "w") as f:
                f.write(self.conf_text(m))
            for path in (m.dir, os.path.join(m.dir, "run"), os.path.join(m.dir, "pki"), kf):
                self._owner(path)
        return self

    def conf_text(self, m):
        members = ",\n    ".join(
            f'{{ id = "{x.id}"; address = "{x.address}"; ports = {{ '
            + " ".join(f"{k} = {v};" for k, v in x.ports.items()) + " }; }"
            for x in self.members)
        nas = (f',\n                {{ name = "nas"; address = "{self.radius_nas}"; '
               f'secret = "{self.radius_secret}"; }}' if self.radius_nas else "")
        return f"""# Member {m.id} of the "{self.name}" cluster, written by appliance/cluster.py.
version = 1;
cluster = {{
  name = "{self.name}";
  fence_after = {self.fence_after};
  tls = {{ ca = "{self.ca}"; }};
  members = (
    {members}
  );
}};
appliance = {{
  member = "{m.id}";
  user = "{self.user}";
  key_file = "{m.dir}/keys.conf";
  data_dir = "{m.dir}";
  run_dir = "{m.dir}/run";
  tls = {{ cert = "{m.dir}/pki/member.crt"; key = "{m.dir}/pki/member.key"; }};
  drain_timeout = 5;
}};
log = {{ level = "info"; }};
node = {{
  db = {{ sslmode = "verify-ca"; connect_timeout_ms = 2000; query_timeout_ms = 2000; }};
  sms = {{ file = "{m.outbox}"; {self.sms_conf} }};
  auth_log = {{ spool_dir = "{m.dir}/spool"; }};
  radius = {{
    clients = ( {{ name = "loopback"; address = "127.0.0.0/8"; secret = "{self.radius_secret}"; }},
                {{ name = "loopback6"; address = "::1"; secret = "{self.radius_secret}"; }}{nas} );
    {self.radius_conf}
  }};
  {self.node_conf}
}};
balancer = {{
  enabled = {"true" if m.balancer else "false"};
  stats = {{ password = "{self.stats_password}"; }};
  check_inter_ms = 500;
}};
replicator = {{
  fsync = false;
  witness = {"true" if m.witness else "false"};
  {self.replicator_conf}
}};
{self.extra_conf}
"""

    def rewrite_conf(self, extra_conf=None):
        """Writes every member's configuration again (with new top-level
        sections when <extra_conf> is given); daemons read it when restarted."""
        if extra_conf is not None:
            self.extra_conf = extra_conf
        for m in self.members:
            with open(m.conf, "w") as f:
                f.write(self.conf_text(m))
            self._owner(m.conf)

    def db_password(self, role):
        return db_password(self.pepper, role)

    def tls_context(self):
        if not self._tls:
            ctx = ssl.create_default_context(cafile=self.ca)
            ctx.check_hostname = False  # certificates name 127.0.0.1 by IP; the CA is ours
            pki = os.path.join(self.base, "pki")
            ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
            self._tls = ctx
        return self._tls

    # -- the cluster as a whole --

    def start(self, timeout=120):
        for m in self.members:
            m.start_replicator()
        self.wait_healthy(timeout)
        if self.with_nodes:
            for m in self.data_members():
                m.start_node()
            for m in self.data_members():
                wait_for(lambda m=m: m.node("GET", "/ready")[0] == 200, 30, f"{m.id} node ready")
        for m in self.members:
            if m.balancer:
                m.start_balancer()
        for m in self.members:
            if m.balancer:
                wait_for(lambda m=m: m.balancer_api()[1]["haproxy"]["running"], 30,
                         f"{m.id} balancer and HAProxy")
                # The master is up before its worker listens: ask through it.
                wait_for(lambda m=m: m.api("GET", "/health")[0] == 200, 30,
                         f"{m.id} HAProxy serving")
        return self

    def data_members(self):
        return [m for m in self.members if not m.witness]

    def statuses(self):
        out = {}
        for m in self.members:
            try:
                out[m.id] = m.status()
            except (OSError, ValueError, http.client.HTTPException):
                out[m.id] = None
        return out

    def primary(self):
        """The member that is a writable primary, or None."""
        found = [m for m, s in self.statuses().items() if s and s.get("writable")]
        return self.by_id[found[0]] if len(found) == 1 else None

    def healthy(self, members=None):
        """One writable primary and every other member streaming from it."""
        st = self.statuses()
        ids = members or [m.id for m in self.members if not m.witness]
        prim = [i for i in ids if st.get(i) and st[i].get("writable")]
        if len(prim) != 1:
            return False
        return all(st.get(i) and st[i]["role"] == "standby" and st[i].get("streaming")
                   and st[i].get("upstream") == prim[0] for i in ids if i != prim[0])

    def wait_healthy(self, timeout=60, members=None):
        try:
            wait_for(lambda: self.healthy(members), timeout, "cluster healthy", interval=0.1)
        except TimeoutError:
            raise TimeoutError("cluster not healthy; statuses:\n" +
                               json.dumps(self.statuses(), indent=1)[:6000] +
                               "".join(f"\n--- {m.id} replicator.log\n{m.log()[-3000:]}"
                                       for m in self.members))

    def stop(self):
        for m in self.members:
            try:
                m.stop()
            except Exception:
                pass
