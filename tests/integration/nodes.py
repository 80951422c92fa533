"""mfa-node processes on a throwaway PostgreSQL cluster, for the integration
tests: a primary and its standby, the schema, a shared key file, an admin
and an auth API key, and one node per database (n1 on the primary, n2 on
the standby), each with its own config, SMS outbox, spool and log."""

import base64
import hashlib
import http.client
import json
import os
import pwd
import secrets
import signal
import subprocess

from pgcluster import PgCluster, free_port, make_base_dir, run_as_user, wait_for

PORT_KEYS = ["api", "stats", "health", "balancer_control", "radius", "node", "node_radius",
             "replicator"]


def new_api_key():
    """A key as the node makes them, and the SHA-256 hex the database keeps."""
    key = "mfa_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return key, hashlib.sha256(key.encode()).hexdigest()


def write_key_file(path, owner):
    """Writes a key file (pepper and seal key id 1); returns the raw keys {p, s}."""
    raw = {kind: secrets.token_bytes(32) for kind in ("p", "s")}
    keys = {kind: base64.b64encode(v).decode() for kind, v in raw.items()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'version = 1;\npepper = ( {{ id = 1; key = "{keys["p"]}"; }} );\n'
                f'seal = ( {{ id = 1; key = "{keys["s"]}"; }} );\n')
    if owner:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return raw


class Node:
    """One mfa-node process."""

    def __init__(self, cluster, member):
        self.cluster = cluster
        self.id = member["id"]
        self.port = member["ports"]["node"]
        self.dir = os.path.join(cluster.base, self.id)
        self.outbox = os.path.join(self.dir, "sms-outbox.jsonl")
        self.logfile = os.path.join(self.dir, "node.log")
        self.conf = os.path.join(self.dir, "appliance.conf")
        self.proc = None

    def start(self, env=None, wait=True):
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen([self.cluster.binary, "-c", self.conf], stdout=log,
                                         stderr=log, env={**os.environ, **(env or {})})
        if wait:
            wait_for(lambda: self.request("GET", "/ready")[0] == 200, 30,
                     f"{self.id} ready")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def request(self, method, path, body=None, key=None, headers=None, timeout=10):
        """Returns (status, parsed JSON or raw bytes)."""
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError(f"{self.id} exited:\n{self.log()[-3000:]}")
        h = dict(headers or {})
        if key:
            h["Authorization"] = f"Bearer {key}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.getheader("Content-Type", "").startswith("application/json"):
            return resp.status, json.loads(data)
        return resp.status, data

    def api(self, method, path, body=None, key=None, **kw):
        return self.request(method, path, body, key or self.cluster.admin_key, **kw)

    def status(self):
        return self.request("GET", "/status")[1]

    def sms(self):
        """The messages in this node's outbox, oldest first."""
        if not os.path.exists(self.outbox):
            return []
        with open(self.outbox) as f:
            return [json.loads(line) for line in f if line.strip()]


class NodeCluster:
    """PostgreSQL primary + standby(s) with one mfa-node on each."""

    def __init__(self, binary, schema_tool, standbys=1, node_conf="", tls=None):
        """<tls>: None, or {"ca", "cert", "key"} paths the nodes get as
        cluster.tls.ca and appliance.tls.cert/key (readable by the nodes' user)."""
        self.tls = tls
        self.pg = PgCluster(standbys=standbys)
        self.base = self.pg.base
        self.binary = binary
        self.owner = pwd.getpwnam(run_as_user()) if run_as_user() else None
        subprocess.run([schema_tool, self.pg.primary.conninfo("mfa")], check=True,
                       capture_output=True, timeout=60)
        if standbys:
            # As the replicator keeps it: admin writes (remote_apply) wait for
            # the standbys, so what one node wrote another reads at once.
            self.pg.primary.query("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (*)'")
            self.pg.primary.query("SELECT pg_reload_conf()")
        self.admin_key, admin_hash = new_api_key()
        self.auth_key, auth_hash = new_api_key()
        # The first admin key is made at setup, straight in the database.
        self.pg.primary.query(
            "INSERT INTO api_keys (name, scope, key_hash, prefix) VALUES "
            "('test-admin', 'admin', %s, 'mfa_'), ('test-auth', 'auth', %s, 'mfa_')",
            (admin_hash, auth_hash), dbname="mfa")
        self.key_file = os.path.join(self.base, "keys.conf")
        self.keys = write_key_file(self.key_file, self.owner)
        instances = [self.pg.primary] + self.pg.standbys
        self.members = []
        taken = {inst.port for inst in instances}
        for i, inst in enumerate(instances):
            ports = {}
            for k in PORT_KEYS:  # free_port() may hand out one port twice
                while (p := free_port()) in taken:
                    pass
                taken.add(p)
                ports[k] = p
            ports["postgres"] = inst.port
            self.members.append({"id": f"n{i + 1}", "ports": ports})
        self.nodes = []
        for m in self.members:
            node = Node(self, m)
            os.makedirs(node.dir)
            with open(node.conf, "w") as f:
                f.write(self.conf_text(m["id"], node, node_conf))
            if self.owner:
                os.chown(node.dir, self.owner.pw_uid, self.owner.pw_gid)
            self.nodes.append(node)

    def conf_text(self, member_id, node, extra):
        # The node's own SMS outbox joins an `sms` group the caller gives.
        sms = f'sms = {{ file = "{node.outbox}"; }};'
        if "sms = {" in extra:
            extra = extra.replace("sms = {", f'sms = {{ file = "{node.outbox}";', 1)
            sms = ""
        members = ",\n    ".join(
            f'{{ id = "{m["id"]}"; address = "127.0.0.1"; ports = {{ '
            + " ".join(f"{k} = {v};" for k, v in m["ports"].items()) + " }; }"
            for m in self.members)
        cluster_tls = appliance_tls = ""
        if self.tls:
            cluster_tls = f'tls = {{ ca = "{self.tls["ca"]}"; }};'
            appliance_tls = f'tls = {{ cert = "{self.tls["cert"]}"; key = "{self.tls["key"]}"; }};'
        return f"""version = 1;
cluster = {{
  name = "test";
  members = (
    {members}
  );
  {cluster_tls}
}};
appliance = {{
  member = "{member_id}";
  {appliance_tls}
  user = "{run_as_user() or pwd.getpwuid(os.getuid()).pw_name}";
  key_file = "{self.key_file}";
  data_dir = "{node.dir}";
  run_dir = "{node.dir}";
  drain_timeout = 5;
}};
log = {{ level = "debug"; }};
node = {{
  db = {{ user = "postgres"; sslmode = "disable"; connect_timeout_ms = 2000;
          query_timeout_ms = 2000; }};
  {sms}
  auth_log = {{ spool_dir = "{node.dir}/spool"; }};
  {extra}
}};
"""

    def seal(self, seed, serial):
        """A seed sealed as common/seal.c does (AES-256-GCM, AAD "s1$1$" + serial),
        to put tokens straight into the database."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        nonce = secrets.token_bytes(12)
        box = AESGCM(self.keys["s"]).encrypt(nonce, seed, b"s1$1$" + serial.encode())
        return "s1$1$" + base64.urlsafe_b64encode(nonce + box).decode().rstrip("=")

    def start(self):
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            wait_for(lambda n=n: n.status()["writable"], 30, f"{n.id} writable")
        return self

    def close(self):
        for n in self.nodes:
            try:
                n.stop(signal.SIGKILL, 5)
            except Exception:
                pass
        self.pg.close()
