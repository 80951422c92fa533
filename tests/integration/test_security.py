"""Security checks on a running cluster (appliance/cluster.py): three members,
HAProxy and mfa-balancer on n1. docs/security.md says what each checks.

- TLS: the HTTPS front (HAProxy), the replicators' and the balancer's control
  APIs refuse TLS 1.0/1.1 and weak TLS 1.2 ciphers, and take TLS 1.2
  ECDHE-AESGCM and TLS 1.3. The client is `openssl s_client` made willing
  (@SECLEVEL=0); the same command lines reach a permissive `openssl s_server`
  started here, so a refusal is the server's doing, not the client's.
- The control APIs refuse a client without a certificate and one whose
  certificate another CA signed (even with CN=admin); the cluster's admin
  certificate gets 200.
- An `auth` key gets 403 on every admin endpoint, no key or a wrong key 401;
  the admin key gets 2xx on the same calls.
- Malformed API requests (oversized, truncated, invalid JSON, wrong types,
  deep nesting, slow bodies), to a node and through HAProxy: the right 4xx,
  and every process is still alive and answering after.
- Secrets in no log line: sign-ins over the API and RADIUS with known PINs,
  TOTP codes, SMS codes and API keys, then every log file the cluster wrote
  is searched for each of them (and for the seeds, the RADIUS secret, the key
  file's keys); a marker the test put into a log is found, so a leak would be.

The tests run in order on one cluster; the last one needs what the earlier
ones did.
"""

import base64
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import certs
import otp_ref

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, free_ports, wait_for  # noqa: E402
from test_balancer import new_key  # noqa: E402
from test_failover import sql  # noqa: E402
from test_radius import sign_in as radius_sign_in  # noqa: E402

MAX_BODY = 65536
HTTP_TIMEOUT_MS = 2000
# PINs no log could hold by chance; each belongs to one user.
PIN_TOTP, PIN_SMS, PIN_RADIUS, PIN_WRONG = "739184", "58294716", "461953", "90371628"
PHONE = "+491709876543"

# s_client arguments the front must refuse. @SECLEVEL=0 makes the client
# itself willing; the permissive control server takes every one of them.
OLD_PROTOCOLS = [["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"],
                 ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]]
WEAK_CIPHERS = [
    "ECDHE-ECDSA-AES128-SHA",     # CBC with SHA-1 (the cluster's key is ECDSA)
    "ECDHE-ECDSA-AES256-SHA384",  # CBC
    "ECDHE-ECDSA-NULL-SHA",       # no encryption at all
    "ECDHE-RSA-AES128-SHA",       # CBC with SHA-1
    "AES128-SHA",                 # RSA key exchange: no forward secrecy
    "AES256-GCM-SHA384",          # RSA key exchange, AEAD
    "NULL-SHA",                   # no encryption, no forward secrecy
]
# (DES-CBC3-SHA and RC4-SHA are not in bookworm's OpenSSL 3.0 at all: a client
# cannot offer them, so there is nothing to check.)
GOOD = [(["-tls1_2", "-cipher", "ECDHE+AESGCM"], "TLSv1.2"), (["-tls1_3"], "TLSv1.3")]


# ---- helpers ----

def s_client(port, args, cert=None, timeout=10):
    """One handshake by `openssl s_client`: (protocol, cipher) or None, and its output."""
    cmd = ["openssl", "s_client", "-brief", "-connect", f"127.0.0.1:{port}", *args]
    if cert:
        cmd += ["-cert", cert[1], "-key", cert[0]]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    out = p.stdout + p.stderr
    proto = re.search(r"^Protocol version: (\S+)$", out, re.M)
    cipher = re.search(r"^Ciphersuite: (\S+)$", out, re.M)
    if p.returncode != 0 or "CONNECTION ESTABLISHED" not in out or not proto or not cipher:
        return None, out
    return (proto.group(1), cipher.group(1)), out


def tls_http(port, ctx, request=b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             timeout=5, alert_wait=0.0):
    """A request over TLS: ("status", code) when an HTTP answer came, else
    ("refused", the SSL error's reason, or the error's text). <alert_wait>:
    seconds to wait for the server's verdict on our certificate before
    sending (in TLS 1.3 it comes after the client's handshake is done, and a
    request already sent would make the close a reset that can eat the alert)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw)
        if alert_wait:
            s.settimeout(alert_wait)
            try:
                if not s.recv(4096):
                    return "refused", "closed without an alert"
            except (socket.timeout, TimeoutError):
                pass
            s.settimeout(timeout)
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return "refused", getattr(e, "reason", None) or type(e).__name__
    finally:
        raw.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return ("status", int(m.group(1))) if m else ("refused", f"no HTTP answer: {data[:80]!r}")


def raw_http(port, data, tls_ctx=None, timeout=5, shut_wr=False, pace=None):
    """Sends <data> (bytes, or a list of pieces sent <pace> seconds apart) on a
    fresh connection and reads until the server closes: (status or None, the
    answer's bytes). A server that closes while we send is not an error."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls_ctx:
        sock = tls_ctx.wrap_socket(sock)
    answer = b""
    try:
        pieces = data if isinstance(data, list) else [data]
        try:
            for i, piece in enumerate(pieces):
                if i and pace:
                    time.sleep(pace)
                sock.sendall(piece)
            if shut_wr and not tls_ctx:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
    finally:
        sock.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return (int(m.group(1)) if m else None), answer


def post(path, body, key, ctype="application/json", extra=b""):
    """Raw bytes of a POST with <body> (bytes) and its true Content-Length."""
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + extra + b"\r\n" + body


def json_error(answer):
    """The {"error", "detail"} body of a raw answer, or None."""
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        body = re.sub(rb"(?m)^[0-9a-fA-F]+\r\n", b"", body)
    try:
        doc = json.loads(body.strip().split(b"\r\n0\r\n")[0] or b"null")
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and "error" in doc and "detail" in doc else None


def log_files(base):
    """Every log the cluster wrote under <base>: the daemons' (<member>/*.log:
    node, replicator, balancer, PostgreSQL's postgresql.log) and the auth log
    spool. Not the SMS outbox: it stands in for the SMS gateway, where a code
    must be. (HAProxy's own log goes to a pipe mfa-balancer reads, not to a file.)"""
    found = []
    for d, _, files in os.walk(base):
        for f in files:
            if f.endswith(".log") or (os.path.basename(d) == "spool" and f.endswith(".jsonl")):
                found.append(os.path.join(d, f))
    return sorted(found)


def grep(files, needle, ignore_case=False, token=False):
    """Lines of <files> holding <needle> ("path: line"); <token>: only where it
    is not part of a longer word or number."""
    pat = re.escape(needle)
    if token:
        pat = r"(?<![0-9A-Za-z])" + pat + r"(?![0-9A-Za-z])"
    rx = re.compile(pat.encode(), re.I if ignore_case else 0)
    hits = []
    for p in files:
        try:
            with open(p, "rb") as f:
                for line in f:
                    if rx.search(line):
                        hits.append(f"{p}: {line[:300]!r}")
        except OSError:
            pass
    return hits


# ---- the cluster ----

@pytest.fixture(scope="module")
def cl():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix="mfa-sec-", dir="/tmp")
    c = Cluster(base, build, members=3, balancers=["n1"],
                node_conf=f"http = {{ timeout_ms = {HTTP_TIMEOUT_MS}; max_body = {MAX_BODY}; }};"
                          " challenge = { code_digits = 8; };",
                sms_conf="per_user_per_hour = 1000; per_phone_per_hour = 1000; "
                         "cluster_per_hour = 100000;")
    c.create()
    try:
        c.start(timeout=120)
        c.lb = c.by_id["n1"]
        c.admin_key = new_key(c, "sec-admin", "admin")
        c.auth_key = new_key(c, "sec-auth", "auth")
        for m in c.members:
            wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=c.admin_key)[0]
                     == 200, 20, f"{m.id} accepts the admin key")
            wait_for(lambda m=m: m.node("POST", "/api/v1/auth", {"username": "nobody-here"},
                                        key=c.auth_key)[0] == 200, 20,
                     f"{m.id} accepts the auth key")
        # Every secret the cluster saw, for the log check: (what, text, how to match).
        c.secrets = [("admin API key", c.admin_key, {}), ("auth API key", c.auth_key, {}),
                     ("RADIUS shared secret", c.radius_secret, {}),
                     ("pepper (base64)", base64.b64encode(c.pepper).decode(), {}),
                     ("pepper (hex)", c.pepper.hex(), {"ignore_case": True}),
                     ("stats password", c.stats_password, {}),
                     ("db password of mfa", c.db_password("mfa"), {})]
        with open(os.path.join(c.lb.dir, "keys.conf")) as f:
            for k in re.findall(r'key = "([^"]+)"', f.read()):
                c.secrets.append(("key file key", k, {}))
        c.seeds = {}
        for user, pin, method, extra in (("sec-totp", PIN_TOTP, "totp", {}),
                                         ("sec-radius", PIN_RADIUS, "totp", {}),
                                         ("sec-sms", PIN_SMS, "sms", {"phone": PHONE}),
                                         ("sec-victim", "1357", "totp", {})):
            st, doc = c.lb.api("POST", "/api/v1/users", {"username": user, "method": method,
                                                         "pin": pin, **extra}, key=c.admin_key)
            assert st == 201, doc
            if method == "totp":
                st, doc = c.lb.api("POST", f"/api/v1/users/{user}/totp", {}, key=c.admin_key)
                assert st == 201, doc
                seed = otp_ref.b32decode(doc["secret"])
                c.seeds[user] = seed
                c.secrets += [(f"{user} seed (base32)", doc["secret"].rstrip("="),
                               {"ignore_case": True}),
                              (f"{user} seed (hex)", seed.hex(), {"ignore_case": True})]
        for pin in (PIN_TOTP, PIN_SMS, PIN_RADIUS):
            c.secrets.append((f"PIN {pin}", pin, {"token": True}))
        wait_for(lambda: all(s["status"] == "UP" for s in c.lb.balancer_api()[1]["servers"]),
                 20, "all servers UP")
        wait_for(lambda: radius_sign_in(c, "nobody", "x", timeout=1, retries=1)[0]
                 == "Access-Reject", 30, "the RADIUS front answers")
        yield c
    finally:
        c.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def pki():
    """A throwaway PKI that is not the cluster's: a CA, a client certificate
    it signed with CN=admin, and RSA and ECDSA certificates for the control
    server."""
    d = tempfile.mkdtemp(prefix="mfa-sec-pki-")
    ca = certs.make_ca(d, "foreign-ca")
    p = {"dir": d, "client": certs.issue(d, ca, "admin", certs.CLIENT_EXT),
         "ec": certs.issue(d, ca, "server-ec", certs.server_ext())}
    rsa_key, rsa_crt = os.path.join(d, "server-rsa.key"), os.path.join(d, "server-rsa.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    rsa_key, "-out", rsa_crt, "-days", "2", "-subj", "/CN=rsa"], check=True,
                   capture_output=True, timeout=60)
    p["rsa"] = (rsa_key, rsa_crt)
    yield p
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def permissive(pki):
    """The positive control: an `openssl s_server` that takes TLS 1.0 and every
    cipher OpenSSL still has, with an RSA and an ECDSA certificate. Its port."""
    port = free_ports(1)[0]
    p = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}",
                          "-cert", pki["rsa"][1], "-key", pki["rsa"][0],
                          "-dcert", pki["ec"][1], "-dkey", pki["ec"][0],
                          "-cipher", "ALL:eNULL:@SECLEVEL=0", "-quiet"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close()
                 or True, 10, "s_server listening")
        yield port
    finally:
        p.kill()
        p.wait(5)


def tls_endpoints(cl):
    """(name, port, needs the admin certificate) of every TLS server of the cluster."""
    eps = [("HAProxy API front n1", cl.lb.ports["api"], False),
           ("balancer control n1", cl.lb.ports["balancer_control"], True)]
    eps += [(f"replicator control {m.id}", m.ports["replicator"], True) for m in cl.members]
    return eps


def admin_cert(cl):
    pki = os.path.join(cl.base, "pki")
    return os.path.join(pki, "admin.key"), os.path.join(pki, "admin.crt")


# ---- 1. TLS versions and ciphers ----

def test_control_server_takes_what_the_cluster_must_refuse(permissive):
    """Without this the refusals below could be the client's own doing."""
    for args in OLD_PROTOCOLS:
        got, out = s_client(permissive, args)
        assert got and got[0] in ("TLSv1", "TLSv1.1"), f"{args}:\n{out}"
    for cipher in WEAK_CIPHERS:
        got, out = s_client(permissive, ["-tls1_2", "-cipher", f"{cipher}@SECLEVEL=0"])
        assert got == ("TLSv1.2", cipher), f"{cipher}:\n{out}"


def test_tls_refuses_old_protocols_and_weak_ciphers(cl):
    cert = admin_cert(cl)
    report = []
    for name, port, mtls in tls_endpoints(cl):
        c = cert if mtls else None
        for args in OLD_PROTOCOLS:
            got, out = s_client(port, args, c)
            assert got is None, f"{name} took {args}: {got}\n{out}"
        for cipher in WEAK_CIPHERS:
            got, out = s_client(port, ["-tls1_2", "-cipher", f"{cipher}@SECLEVEL=0"], c)
            assert got is None, f"{name} took {cipher}: {got}\n{out}"
        for args, proto in GOOD:
            got, out = s_client(port, args, c)
            assert got and got[0] == proto, f"{name} refused {args}:\n{out}"
            if proto == "TLSv1.2":
                assert got[1].startswith("ECDHE-") and "GCM" in got[1], got
            report.append(f"{name}: {got[0]} {got[1]}")
    print("\n" + "\n".join(report))


# ---- 2. control APIs and client certificates ----

def test_control_apis_refuse_foreign_clients(cl, pki):
    nocert = ssl.create_default_context(cafile=cl.ca)
    nocert.check_hostname = False
    nocert12 = ssl.create_default_context(cafile=cl.ca)
    nocert12.check_hostname = False
    nocert12.maximum_version = ssl.TLSVersion.TLSv1_2
    foreign = ssl.create_default_context(cafile=cl.ca)
    foreign.check_hostname = False
    foreign.load_cert_chain(pki["client"][1], pki["client"][0])
    # The server's alert, by TLS version: a missing certificate is
    # certificate_required in TLS 1.3 (RFC 8446 §4.4.2.4), handshake_failure
    # in 1.2; a certificate from another CA is unknown_ca.
    cases = [("no certificate, TLS 1.3", nocert, {"TLSV13_ALERT_CERTIFICATE_REQUIRED"}),
             ("no certificate, TLS 1.2", nocert12, {"SSLV3_ALERT_HANDSHAKE_FAILURE"}),
             ("CN=admin from another CA", foreign, {"TLSV1_ALERT_UNKNOWN_CA"})]
    for name, port, mtls in tls_endpoints(cl):
        if not mtls:
            continue
        for what, ctx, reasons in cases:
            kind, detail = tls_http(port, ctx, alert_wait=1.0)
            assert kind == "refused" and detail in reasons, f"{name}, {what}: {kind} {detail}"
        assert tls_http(port, cl.tls_context()) == ("status", 200), name
    # Writes too: a drain from a foreign client does nothing.
    body = b'{"member":"n2"}'
    req = (b"POST /drain HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
           b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert tls_http(cl.lb.ports["balancer_control"], foreign, req, alert_wait=1.0)[0] == "refused"
    assert all(s["state"] != "drain" for s in cl.lb.balancer_api()[1]["servers"])


def test_stats_page_needs_its_credentials(cl):
    """HAProxy's stats page and its Prometheus exporter: 401 without the stats
    credentials or with wrong ones; 200 with them."""
    port = cl.lb.ports["stats"]

    def get(path, auth):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} \
            if auth else {}
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()
    for path in ("/", "/metrics", "/;csv"):
        assert get(path, None) == 401, path
        assert get(path, "admin:" + cl.stats_password[:-1]) == 401, path
        assert get(path, "nobody:" + cl.stats_password) == 401, path
        assert get(path, "admin:" + cl.stats_password) == 200, path


# ---- 3. API key scopes ----

ADMIN_CALLS = [
    ("GET", "/api/v1/users?limit=5", None, 200),
    ("POST", "/api/v1/users", {"username": "sec-scope", "method": "totp"}, 201),
    ("GET", "/api/v1/users/sec-scope", None, 200),
    ("PATCH", "/api/v1/users/sec-scope", {"display_name": "Scope"}, 200),
    ("PUT", "/api/v1/users/sec-scope", {"display_name": "Scope 2"}, 200),
    ("POST", "/api/v1/users/sec-scope/disable", {}, 200),
    ("POST", "/api/v1/users/sec-scope/enable", {}, 200),
    ("POST", "/api/v1/users/sec-scope/totp", {}, 201),
    ("GET", "/api/v1/audit-log?limit=5", None, 200),
    ("GET", "/api/v1/auth-log?limit=5", None, 200),
    ("GET", "/api/v1/api-keys", None, 200),
    ("POST", "/api/v1/api-keys", {"name": "sec-made", "scope": "auth"}, 201),
    ("DELETE", "/api/v1/users/sec-scope", None, 200),
]


def call(cl, method, path, body, key, ctype=None):
    """A request through HAProxy with a raw <body> (str) or JSON: (status, JSON or bytes)."""
    conn = http.client.HTTPSConnection("127.0.0.1", cl.lb.ports["api"], timeout=10,
                                       context=cl.tls_context())
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is not None:
        headers["Content-Type"] = ctype or "application/json"
        body = body if isinstance(body, (bytes, str)) else json.dumps(body)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data or b"null")
    except ValueError:
        return resp.status, data


def test_auth_scope_cannot_administer(cl):
    wrong = "mfa_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    cl.secrets.append(("wrong API key", wrong, {}))
    calls = ADMIN_CALLS + [("POST", "/api/v1/users/import",
                            "username,method\nsec-imp,totp\n", None),
                           ("DELETE", "/api/v1/api-keys/1", None, None)]
    for method, path, body, _ in calls:
        ctype = "text/csv" if path.endswith("/import") else None
        for key, want, err in ((cl.auth_key, 403, "forbidden"), (None, 401, "unauthorized"),
                               (wrong, 401, "unauthorized"),
                               (cl.auth_key[:-1], 401, "unauthorized")):
            st, doc = call(cl, method, path, body, key, ctype)
            assert st == want and isinstance(doc, dict) and doc.get("error") == err, \
                f"{method} {path} with {'no key' if not key else key[:8]}: {st} {doc}"
    # Nothing of that happened.
    st, doc = call(cl, "GET", "/api/v1/users/sec-imp", None, cl.admin_key)
    assert st == 404, doc
    # The positive control: the admin key does each of them.
    for method, path, body, want in ADMIN_CALLS:
        st, doc = call(cl, method, path, body, cl.admin_key)
        assert st == want, f"{method} {path} as admin: {st} {doc}"
        if path == "/api/v1/api-keys" and method == "POST":
            cl.secrets.append(("API key made through the API", doc["key"], {}))
            made = doc
        if path.endswith("/totp"):
            cl.secrets.append(("sec-scope seed", doc["secret"].rstrip("="), {"ignore_case": True}))
    # The key made through the API is an auth key: it signs in, it does not administer.
    # (Nodes learn a new key within a second: wait for each, then go through HAProxy.)
    for m in cl.members:
        wait_for(lambda m=m: m.node("POST", "/api/v1/auth", {"username": "nobody"},
                                    key=made["key"])[0] == 200, 10, f"{m.id} knows the new key")
        assert m.node("GET", "/api/v1/users", key=made["key"])[0] == 403
    for _ in range(3):
        assert call(cl, "GET", "/api/v1/users", None, made["key"])[0] == 403
    st, doc = call(cl, "POST", "/api/v1/users/import", "username,method\nsec-imp,totp\n",
                   cl.admin_key, "text/csv")
    assert st == 200, doc
    st, doc = call(cl, "DELETE", f"/api/v1/api-keys/{made['id']}", None, cl.admin_key)
    assert st in (200, 204), doc
    wait_for(lambda: call(cl, "POST", "/api/v1/auth", {"username": "nobody"}, made["key"])[0]
             == 401, 10, "the revoked key stops working")


# ---- 4. malformed requests ----

def targets(cl):
    """(name, port, TLS context) of a node directly and of the HAProxy front."""
    return [("node n2", cl.by_id["n2"].ports["node"], None),
            ("HAProxy n1", cl.lb.ports["api"], cl.tls_context())]


def all_alive(cl):
    for m in cl.members:
        for name in ("node", "replicator") + (("balancer",) if m.balancer else ()):
            assert m.running(name), f"{m.id} {name} died:\n{m.log(name)[-3000:]}"
        assert m.node("GET", "/health", timeout=5)[0] == 200, m.id
    assert cl.lb.api("GET", "/health", timeout=5)[0] == 200


def test_malformed_requests(cl):
    key = cl.auth_key
    bad_json = [
        b"{not json",
        b'{"username": "sec-victim", "pin": "1357"',       # cut short
        b"",                                                # no body
        b"[]", b'"sec-victim"', b"null", b"12",             # not an object
        b'{"username": 12345}',
        b'{"username": null}',
        b'{"username": "sec-victim", "pin": ["1357"]}',
        b'{"username": "sec-victim", "pin": 1357}',
        b'{"username": "sec-victim", "otp": {"code": "123456"}}',
        b'{"username": "sec-victim", "method": 3}',
        b'{"username": "sec-victim", "client_ip": ["198.51.100.7"]}',
        b'{"username": ' + b"[" * 20000 + b"]" * 20000 + b"}",   # nested deep
        b'{"username": [' + b"[1]," * 10000 + b"[1]]}",           # wide
        b'{"username": "sec-\xff\xfe"}',                          # not UTF-8
        b'{"username": "sec-victim\\u0000x"}',                     # NUL inside
    ]
    admin_bad = [b'{"username": 7, "method": "totp"}',
                 b'{"username": "sec-x", "method": ["totp"]}',
                 b'{"username": "sec-x", "method": "totp", "pin": 1234}',
                 b'{"username": "sec-x", "method": "totp", "phone": {}}']
    for name, port, tls in targets(cl):
        for body in bad_json:
            st, ans = raw_http(port, post("/api/v1/auth", body, key), tls)
            assert st == 400 and (json_error(ans) or {}).get("error") == "bad_request", \
                f"{name} {body[:60]!r}: {ans[:400]!r}"
        for body in admin_bad:
            st, ans = raw_http(port, post("/api/v1/users", body, cl.admin_key), tls)
            assert st == 400 and (json_error(ans) or {}).get("error") == "bad_request", \
                f"{name} {body!r}: {ans[:400]!r}"
        st, ans = raw_http(port, post("/api/v1/auth", b"username=x", key,
                                      "application/x-www-form-urlencoded"), tls)
        assert st == 415 and (json_error(ans) or {}).get("error") == "unsupported_media_type", \
            f"{name}: {ans[:300]!r}"
        # Over node.http.max_body: by Content-Length, and chunked. The node
        # answers 413 and closes at once, with the rest of the body unread;
        # through HAProxy that close can be a reset that overtakes the 413
        # (about 1 in 30 here), and the client sees the connection closed
        # with no answer. Refused either way: of three tries, each is a 413 or
        # no answer at all, and at least one is a 413.
        big = b'{"username": "' + b"a" * MAX_BODY + b'"}'
        chunks = b"".join(b"%x\r\n" % 8192 + b"b" * 8192 + b"\r\n" for _ in range(10))
        chunked = (f"POST /api/v1/auth HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                   f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                   f"Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
        for what, req in (("by Content-Length", post("/api/v1/auth", big, key)),
                          ("chunked", chunked)):
            got = [raw_http(port, req, tls) for _ in range(3 if tls else 1)]
            assert all(st == 413 or (tls and not ans) for st, ans in got) and \
                any(st == 413 for st, _ in got), f"{name} {what}: {[a[:200] for _, a in got]}"
        # Over max_headers.
        st, ans = raw_http(port, b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"h" * 20000 +
                           b"\r\n\r\n", tls)
        assert st in (400, 413, 431) or st is None, f"{name} headers: {ans[:300]!r}"
        # Truncated: Content-Length says more than comes, then the client goes.
        body = b'{"username": "sec-victim", "pin": "1357"}'
        head = (f"POST /api/v1/auth HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body) + 100}\r\n\r\n")
        for shut in (False, True):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if tls:
                sock = tls.wrap_socket(sock)
            sock.sendall(head.encode() + body)
            if shut and not tls:
                sock.shutdown(socket.SHUT_WR)
            sock.close()
        # A request line that is not HTTP, and a bad method.
        assert raw_http(port, b"\x16\x03\x01\x00\x05hello\r\n\r\n", tls)[0] in (400, None)
        brew = b"BREW /api/v1/auth HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        assert raw_http(port, brew, tls)[0] in (400, 405, 501), name
    # None of it counted against the user, and everything still answers.
    st, doc = cl.by_id["n2"].node("POST", "/api/v1/auth", {
        "username": "sec-victim", "pin": "1357",
        "otp": otp_ref.totp(cl.seeds["sec-victim"])}, key=key)
    assert st == 200 and doc["result"] == "accepted", doc
    all_alive(cl)


def test_idle_and_slow_connections_are_cut_off(cl):
    """Headers then nothing: closed after node.http.timeout_ms. Meanwhile
    the node answers other requests at once."""
    n2 = cl.by_id["n2"]
    head = (f"POST /api/v1/auth HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {cl.auth_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n").encode()
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", n2.ports["node"]), timeout=10)
        s.sendall(head)
        socks.append(s)
    t0 = time.monotonic()
    for _ in range(20):
        t = time.monotonic()
        assert n2.node("GET", "/health", timeout=2)[0] == 200
        assert time.monotonic() - t < 0.5
    closed = []
    for s in socks:
        try:
            s.recv(4096)  # an answer (408) or the close
        except (ConnectionResetError, socket.timeout):
            pass
        closed.append(time.monotonic() - t0)
        s.close()
    print(f"\nidle connections closed after {max(closed):.1f} s "
          f"(timeout_ms = {HTTP_TIMEOUT_MS})")
    assert max(closed) < HTTP_TIMEOUT_MS / 1000 + 2


def slow_body(port, tls, limit, out, name):
    """Headers, then one byte of a 40-byte body a second for up to <limit> + 3
    seconds; records in <out>[name] when the server cut it off (None: never)."""
    head = ("POST /api/v1/auth HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: 40\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if tls:
        s = tls.wrap_socket(s)
    s.sendall(head)
    t0, out[name] = time.monotonic(), None
    try:
        while time.monotonic() - t0 < limit + 3:
            time.sleep(1.0)  # the test is about time: a byte a second
            s.sendall(b" ")
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        out[name] = time.monotonic() - t0
    finally:
        s.close()


# HAProxy's `timeout http-request` is 10 s; the client notices the close only
# on a send after it (a byte a second), so a few seconds of slack.
SLOW_LIMITS = {"node n2": HTTP_TIMEOUT_MS / 1000 * 2 + 1, "HAProxy n1": 14}


@pytest.mark.parametrize("which", [
    "HAProxy n1",
    pytest.param("node n2", marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="a body trickling in at 1 byte/s to a node directly is never cut off: "
        "node.http.timeout_ms is an idle timeout (evhttp's read timeout restarts with "
        "every byte). Clients reach nodes through HAProxy, which cuts it off. "
        "See docs/security.md.")),
])
def test_slowloris_body_is_cut_off(cl, which):
    """A slow body through HAProxy (limit: its `timeout http-request`, 10 s,
    with `option http-buffer-request`) or to a node (limit: twice
    node.http.timeout_ms) is cut off; the node answers others meanwhile."""
    n2 = cl.by_id["n2"]
    cut = {}
    name, port, tls = next(t for t in targets(cl) if t[0] == which)
    thread = threading.Thread(target=slow_body, args=(port, tls, SLOW_LIMITS[name], cut, name))
    thread.start()
    slow_health = []
    while thread.is_alive():
        t0 = time.monotonic()
        try:
            ok = n2.node("GET", "/health", timeout=2)[0] == 200
        except OSError:
            ok = False
        if not ok or time.monotonic() - t0 > 0.5:
            slow_health.append(time.monotonic() - t0)
        time.sleep(0.2)
    thread.join()
    # Not an assertion: only the node's cut-off is the known failure (xfail raises=AssertionError).
    if slow_health:
        pytest.fail(f"the node did not answer /health promptly meanwhile: {slow_health}")
    print(f"\nslow body to {name} cut off after (s): "
          f"{cut[name] if cut[name] is None else round(cut[name], 1)}")
    assert cut[name] is not None and cut[name] < SLOW_LIMITS[name], cut


# ---- 5. secrets in no log line ----

def test_sign_ins_with_known_secrets(cl):
    """Sign-ins whose every secret the log check below looks for."""
    codes = []
    # TOTP over the API: a wrong PIN, the right one, the same code again.
    code = otp_ref.totp(cl.seeds["sec-totp"])
    st, doc = cl.lb.api("POST", "/api/v1/auth", {"username": "sec-totp", "pin": PIN_WRONG,
                                                 "otp": code}, key=cl.auth_key)
    assert (st, doc.get("reason")) == (200, "wrong_pin"), doc
    st, doc = cl.lb.api("POST", "/api/v1/auth", {"username": "sec-totp", "pin": PIN_TOTP,
                                                 "otp": code}, key=cl.auth_key)
    assert (st, doc["result"]) == (200, "accepted"), doc
    st, doc = cl.lb.api("POST", "/api/v1/auth", {"username": "sec-totp", "pin": PIN_TOTP,
                                                 "otp": code}, key=cl.auth_key)
    assert (st, doc.get("reason")) == (200, "replayed"), doc
    codes.append(code)
    # SMS over the API: a wrong code first, then the one from the outbox.
    st, doc = cl.lb.api("POST", "/api/v1/auth", {"username": "sec-sms", "pin": PIN_SMS},
                        key=cl.auth_key)
    assert (st, doc["result"]) == (200, "challenge"), doc
    cid = doc["challenge_id"]
    node = cl.by_id[cid.split("-", 1)[0]]
    sms_code = re.search(r"\b(\d{8})\b", [m for m in node.sms() if m["to"] == PHONE][-1]["text"])
    sms_code = sms_code.group(1)
    wrong = f"{(int(sms_code) + 1) % 10**8:08d}"
    st, doc = cl.lb.api("POST", f"/api/v1/challenges/{cid}/verify", {"otp": wrong},
                        key=cl.auth_key)
    assert (st, doc["result"]) == (200, "rejected"), doc
    st, doc = cl.lb.api("POST", f"/api/v1/challenges/{cid}/verify", {"otp": sms_code},
                        key=cl.auth_key)
    assert (st, doc["result"]) == (200, "accepted"), doc
    codes += [sms_code, wrong]
    # RADIUS: PIN+TOTP through the balancer's front, then the same again (a replay).
    code = otp_ref.totp(cl.seeds["sec-radius"])
    kind, _, out = radius_sign_in(cl, "sec-radius", PIN_RADIUS + code)
    assert kind == "Access-Accept", out
    kind, _, out = radius_sign_in(cl, "sec-radius", PIN_RADIUS + code)
    assert kind == "Access-Reject", out
    codes.append(code)
    cl.secrets += [(f"OTP code {c}", c, {"token": True}) for c in codes]
    cl.secrets += [("wrong PIN", PIN_WRONG, {"token": True}),
                   ("RADIUS User-Password", PIN_RADIUS + code, {})]


def test_no_secret_in_any_log(cl):
    # The positive controls: a marker the node logs (a username it creates),
    # one PostgreSQL logs (a failing statement) and one the auth log records
    # (a sign-in of an unknown user) are each found where they should be.
    marker = "secmarker" + os.urandom(6).hex()
    st, doc = cl.lb.api("POST", "/api/v1/users", {"username": marker, "method": "totp"},
                        key=cl.admin_key)
    assert st == 201, doc
    assert cl.lb.api("DELETE", f"/api/v1/users/{marker}", key=cl.admin_key)[0] == 200
    with pytest.raises(Exception, match=marker):
        sql(cl.primary(), f"SELECT {marker}")
    st, doc = cl.lb.api("POST", "/api/v1/auth", {"username": marker}, key=cl.auth_key)
    assert st == 200 and doc.get("reason") == "unknown_user", doc

    def where():
        return {os.path.basename(h.split(": ")[0]) for h in grep(log_files(cl.base), marker)}
    wait_for(lambda: {"node.log", "postgresql.log"} <= where() and
             any(w.endswith(".jsonl") for w in where()), 10, "the marker in each kind of log")
    files = log_files(cl.base)
    print(f"\n{len(files)} log files, {sum(os.path.getsize(f) for f in files)} bytes:\n  " +
          "\n  ".join(os.path.relpath(f, cl.base) for f in files))
    assert {os.path.basename(f) for f in files} >= {"node.log", "replicator.log",
                                                    "balancer.log", "postgresql.log"}
    # Every secret, in every log (and in the auth and audit logs the API serves).
    leaks = []
    for what, text, how in cl.secrets:
        assert len(text) >= 6, what
        leaks += [f"{what}: {h}" for h in grep(files, text, **how)]

    def served_logs():
        text = ""
        for path in ("/api/v1/auth-log?limit=1000", "/api/v1/audit-log?limit=1000"):
            st, doc = cl.lb.api("GET", path, key=cl.admin_key)
            assert st == 200, doc
            text += json.dumps(doc)
        return text
    # The auth log reaches the database a moment later (shipped from a spool).
    served = wait_for(lambda: (lambda t: marker in t and t)(served_logs()), 20,
                      "the marker in the auth log")
    for what, text, how in cl.secrets:
        pat = re.escape(text)
        if how.get("token"):
            pat = r"(?<![0-9A-Za-z])" + pat + r"(?![0-9A-Za-z])"
        if re.search(pat, served, re.I if how.get("ignore_case") else 0):
            leaks.append(f"{what}: in the auth or audit log the API serves")
    print(f"{len(cl.secrets)} secrets looked for")
    assert not leaks, "\n".join(leaks[:20])
    all_alive(cl)
    # The malformed requests left no sanitizer report behind (ASan/UBSan builds).
    bad = grep(files, "AddressSanitizer") + grep(files, "runtime error:")
    assert not bad, "\n".join(bad[:10])
