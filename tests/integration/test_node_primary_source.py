"""Where mfa-node sends its writes (node/primary.c, node/db.c): to the member
its local mfa-replicator names as primary in GET /status, asked every 250 ms
over mutual TLS; to none when it names none; and, while the replicator does
not answer usably, to the primary its local database streams from, as
before. A fake replicator stands in for the real one: an HTTPS server on
n2's ports.replicator that wants a client certificate from the test CA.
Also: the database password derived from the key file (an empty
node.db.password) against a role that needs it, and a node whose TLS files
are unusable running on its database alone."""

import base64
import hashlib
import hmac
import json
import os
import pwd
import shutil
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import pytest

import certs
from nodes import NodeCluster
from pgcluster import make_base_dir, run_as_user, wait_for

U = "/api/v1/users"


class StatusHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: stop() leaves none open

    def do_GET(self):
        srv = self.server
        cert = self.connection.getpeercert()
        srv.clients.append(dict(x[0] for x in cert["subject"])["commonName"])
        status, body = (200, json.dumps(srv.answer).encode()) if srv.raw is None else srv.raw
        if self.path != "/status":
            status, body = 404, b'{"error": "not_found"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class FakeReplicator(ThreadingHTTPServer):
    """GET /status on 127.0.0.1:<port> over TLS with <ctx>. Answers 200 with
    `answer` as JSON, or (status, raw body) when `raw` is set; `clients` lists
    the common names of the client certificates it was shown."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, port, ctx, primary):
        self.ctx = ctx
        self.answer = {"member": "n2", "role": "standby", "primary": primary}
        self.raw = None
        self.clients = []
        super().__init__(("127.0.0.1", port), StatusHandler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def finish_request(self, request, client_address):
        request.settimeout(5)
        try:
            request = self.ctx.wrap_socket(request, server_side=True)
            super().finish_request(request, client_address)
        except (ssl.SSLError, OSError):
            pass
        finally:
            request.close()

    def stop(self):
        self.shutdown()
        self.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def pki():
    """A CA, a member certificate (the nodes' client certificate) and the fake
    replicator's server certificate, readable by the nodes' user."""
    d = make_base_dir("mfa-pki-")
    ca = certs.make_ca(d)
    member = certs.issue(d, ca, "member", ["subjectAltName=IP:127.0.0.1",
                                           "extendedKeyUsage=serverAuth,clientAuth"])
    server = certs.issue(d, ca, "replicator", certs.server_ext())
    if run_as_user():
        pw = pwd.getpwnam(run_as_user())
        for f in os.listdir(d):
            os.chown(os.path.join(d, f), pw.pw_uid, pw.pw_gid)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server[1], server[0])
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(ca[1])
    yield {"ca": ca[1], "cert": member[1], "key": member[0], "ctx": ctx}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(pki, tool, build_dir):
    """n1 on the primary (no replicator listens on its port) and n2 on the
    standby, whose fake replicator the tests start; both with TLS files."""
    c = NodeCluster(os.path.join(build_dir, "node", "mfa-node"), tool("mfa-schema-apply"),
                    tls={k: pki[k] for k in ("ca", "cert", "key")})
    c.replicators = []
    try:
        c.replicator = start_replicator(c, pki, "n1")
        yield c.start()
    finally:
        for r in c.replicators:
            r.stop()
        c.close()


def start_replicator(cluster, pki, primary):
    r = FakeReplicator(cluster.members[1]["ports"]["replicator"], pki["ctx"], primary)
    cluster.replicators.append(r)
    return r


def source(node):
    return node.status()["primary_source"]


NAMES = iter(range(1, 1000000))


def write(node):
    """Creates a user through <node>: (status, answer, seconds it took)."""
    start = time.monotonic()
    status, doc = node.api("POST", U, {"username": f"w{next(NAMES)}", "method": "totp"})
    return status, doc, time.monotonic() - start


def test_the_replicator_names_the_primary_and_the_database_stands_in(cluster, pki):
    n1, n2 = cluster.nodes
    primary = f"127.0.0.1:{cluster.pg.primary.port}"
    r = cluster.replicator

    # (a) the replicator says n1: n2 follows it, and writes through n2 work
    wait_for(lambda: source(n2) == "replicator", 5, "n2 follows its replicator")
    s2 = n2.status()
    assert (s2["primary"], s2["writable"]) == (primary, True)
    assert "member" in r.clients  # it showed the member certificate
    s1 = n1.status()  # nothing answers on n1's replicator port: its database says
    assert (s1["primary_source"], s1["primary"], s1["writable"]) == ("database", primary, True)
    assert "db.primary_source replicator=off" not in n1.log() + n2.log()
    assert write(n2)[0] == 201
    assert "db.primary_source from=database to=replicator" in n2.log()

    # (b) it says null: within about a second, writes through n2 answer read_only, at once
    r.answer["primary"] = None
    changed = time.monotonic()
    wait_for(lambda: write(n2)[0] == 503, 3, "n2 read_only")
    assert time.monotonic() - changed < 1.5
    status, doc, took = write(n2)
    assert status == 503 and doc["error"] == "read_only" and took < 1.0, (status, doc, took)
    s2 = n2.status()
    assert (s2["primary_source"], s2["primary"], s2["writable"]) == ("replicator", None, False)
    assert n2.api("GET", U)[0] == 200  # reads go on
    assert write(n1)[0] == 201  # n1 is unmoved

    # (c) the replicator stops: n2 falls back on its database, and writes work again
    r.stop()
    wait_for(lambda: source(n2) == "database", 3, "n2 back on its database")
    wait_for(lambda: n2.status()["writable"], 5, "n2 writable")
    assert n2.status()["primary"] == primary
    assert write(n2)[0] == 201
    assert "db.primary_source from=replicator to=database" in n2.log()

    # ...and follows the replicator again once it answers
    cluster.replicator = start_replicator(cluster, pki, "n1")
    wait_for(lambda: source(n2) == "replicator", 5, "n2 follows its replicator again")
    assert n2.log().count("db.primary_source from=database to=replicator") == 2
    assert write(n2)[0] == 201


def test_an_answer_that_is_not_usable_is_no_answer(cluster):
    n2 = cluster.nodes[1]
    r = cluster.replicator
    wait_for(lambda: source(n2) == "replicator", 5, "n2 follows its replicator")
    bad = [(500, b'{"error": "internal"}'), (200, b"not json"), (200, b"[]"),
           (200, b'{"role": "standby"}'), (200, b'{"primary": 1}'),
           (200, b'{"primary": "n9"}'), (200, b"")]
    for raw in bad:
        r.raw = raw
        wait_for(lambda: source(n2) == "database", 3, f"n2 on its database after {raw}")
        assert n2.status()["writable"]
        r.raw = None
        wait_for(lambda: source(n2) == "replicator", 3, "n2 on its replicator again")
    log = n2.log()
    assert "HTTP 500" in log and "is not a member" in log


def restart_with(cluster, node, **changes):
    """Restarts <node> with its configuration text edited: {old: new}."""
    with open(node.conf) as f:
        text = f.read()
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    node.stop()
    with open(node.conf, "w") as f:
        f.write(text)
    node.start()


def test_unusable_tls_files_leave_the_database_alone_in_charge(cluster):
    n1 = cluster.nodes[0]
    restart_with(cluster, n1, **{cluster.tls["key"]: "/nonexistent/member.key"})
    log = n1.log()
    assert log.count("db.primary_source replicator=off reason=") == 1
    assert "/nonexistent/member.key" in log
    wait_for(lambda: n1.status()["writable"], 10, "n1 writable")
    assert n1.status()["primary_source"] == "database"
    assert write(n1)[0] == 201


def test_the_database_password_comes_from_the_key_file(cluster):
    """A role that must log in with a password (SCRAM) on the primary: n1,
    given no node.db.password, connects with the one derived from the key
    file (docs/replication.md)."""
    n1 = cluster.nodes[0]
    pg = cluster.pg.primary
    role = "mfa_pw"
    mac = hmac.new(cluster.keys["p"], b"mfa-appliance db password\0" + role.encode(),
                   hashlib.sha256).digest()
    password = base64.urlsafe_b64encode(mac).decode().rstrip("=")
    pg.query(f"CREATE ROLE {role} LOGIN PASSWORD %s IN ROLE pg_read_all_stats, "
             "pg_read_all_data, pg_write_all_data", (password,))
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    with open(hba) as f:
        rules = f.read()
    with open(hba, "w") as f:
        f.write(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + rules)
    pg.query("SELECT pg_reload_conf()")
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(f"host=127.0.0.1 port={pg.port} dbname=mfa user={role} password=wrong "
                         "connect_timeout=5").close()

    restart_with(cluster, n1, **{'db = { user = "postgres";': f'db = {{ user = "{role}";'})
    wait_for(lambda: n1.status()["writable"], 10, "n1 writable as mfa_pw")
    assert write(n1)[0] == 201
    assert pg.query("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                    "AND application_name = 'mfa-node-n1'", (role,))[0][0] >= 1
    assert password not in n1.log()
