"""httpclient (common/httpclient.c) through mfa-http-fetch against Python servers.

A throwaway PKI (made with the openssl command) and http.server/ssl servers on
free 127.0.0.1 ports, run in threads of this process and stopped in teardown:
plain HTTP and JSON, CA verification and host name checks, mutual TLS, the
TLS minimum version, deadlines on a server that never answers (while the
client's loop keeps ticking), concurrency, and the response body limit.
"""

import json
import os
import re
import ssl
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import pytest

import certs
import servers as srv

TOOL = "mfa-http-fetch"


# ---- PKI ----

class Pki(srv.Pki):
    def __init__(self, d):
        super().__init__(d)
        self.client = certs.issue(d, self.ca, "client", certs.CLIENT_EXT)
        self.rogue_client = certs.issue(d, self.other_ca, "rogue", certs.CLIENT_EXT)


@pytest.fixture(scope="module")
def pki():
    yield from srv.temp_pki(Pki, "mfa-hc-")


# ---- servers ----

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, *args):
        pass

    def _send(self, status, body, ctype="application/json", chunked=False):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 1000):
                part = data[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/hello":
            self._send(200, "hello", "text/plain")
        elif url.path == "/big":
            self._send(200, b"x" * int(q["n"]), "application/octet-stream",
                       chunked=q.get("chunked") == "1")
        elif url.path == "/slow":
            time.sleep(int(q["ms"]) / 1000)
            self._send(200, "slow", "text/plain")
        elif url.path == "/json":
            self._send(200, json.dumps({"ok": True, "n": 3}))
        elif url.path == "/notjson":
            self._send(200, "<html>nope</html>", "text/html")
        elif url.path == "/missing":
            self._send(404, json.dumps({"error": "not_found"}))
        else:
            self._send(500, "unknown test path", "text/plain")

    def _echo(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        self._send(200, json.dumps({
            "method": self.command,
            "content_type": self.headers.get("Content-Type"),
            "accept": self.headers.get("Accept"),
            "content_length": self.headers.get("Content-Length"),
            "body": body,
            "json": parsed,
        }))

    do_POST = do_PUT = do_DELETE = do_PATCH = _echo


@pytest.fixture
def servers():
    """Starts servers on demand; stops them all at the end of the test."""
    def make(kind="http", **kw):
        return srv.SilentServer() if kind == "hang" else srv.HttpServer(Handler, kw.get("ctx"))
    yield from srv.started(make)


# ---- the client ----

LINE = re.compile(r"^response idx=(\d+) status=(\d+) body_len=(\d+) elapsed=([\d.]+)(.*)$")
EXTRA = re.compile(r'^(?: json=(\S*))?(?: json_error="(.*?)")?(?: body=(.*))?$')


class Result(srv.ToolRun):
    DONE = srv.done_line("requests", "failures")

    def item(self, line):
        m = LINE.match(line)
        if not m:
            return None
        extra, _, error = m.group(5).partition(" error=")
        e = EXTRA.match(extra)
        assert e, line
        return {
            "idx": int(m.group(1)), "status": int(m.group(2)),
            "body_len": int(m.group(3)), "elapsed": float(m.group(4)),
            "json": json.loads(e.group(1)) if e.group(1) not in (None, "-") else None,
            "json_error": e.group(2), "body": e.group(3),
            "error": None if error == "-" else error,
        }

    @property
    def responses(self):  # in completion order
        return self.items

    def by_idx(self, i):
        [r] = [r for r in self.responses if r["idx"] == i]
        return r


@pytest.fixture
def fetch(tool):
    path = tool(TOOL)

    def run(*args, env=None, expect_rc=None):
        r = srv.run_tool([path, *args], Result, env=env)
        assert r.rc in (0, 1), r
        if expect_rc is not None:
            assert r.rc == expect_rc, r
        return r
    return run


def _tls_args(pki, client=True, ca=None):
    args = ["--ca", ca or pki.ca[1]]
    if client:
        args += ["--cert", pki.client[1], "--key", pki.client[0]]
    return args


# ---- (a) plain HTTP and JSON ----

def test_plain_get_post_and_json(servers, fetch):
    s = servers()
    r = fetch("--print-body", s.url("/hello"), expect_rc=0)
    [resp] = r.responses
    assert (resp["status"], resp["body_len"], resp["body"], resp["error"]) == (200, 5, "hello", None)
    assert r.done["requests"] == 1 and r.done["failures"] == 0 and r.done["in_flight"] == 0

    sent = {"user": "alice", "n": [1, 2, None], "ok": True}
    r = fetch("--json", "-X", "POST", "-d", json.dumps(sent), s.url("/echo"), expect_rc=0)
    [resp] = r.responses
    assert resp["status"] == 200 and resp["error"] is None, r
    got = resp["json"]
    assert got["method"] == "POST" and got["json"] == sent
    assert got["content_type"] == "application/json" and got["accept"] == "application/json"

    # Raw body with the caller's own content type; PUT and DELETE.
    r = fetch("--print-body", "-X", "PUT", "-H", "Content-Type: text/plain", "-d", "abc",
              s.url("/echo"), expect_rc=0)
    echoed = json.loads(r.responses[0]["body"])
    assert (echoed["method"], echoed["body"], echoed["content_type"]) == ("PUT", "abc",
                                                                           "text/plain")
    r = fetch("--json", "-X", "DELETE", s.url("/echo"), expect_rc=0)
    assert r.responses[0]["json"]["method"] == "DELETE"
    # A POST without a body says so (Content-Length: 0) and invents no content type.
    r = fetch("--json", "-X", "POST", s.url("/echo"), expect_rc=0)
    got = r.responses[0]["json"]
    assert got["content_length"] == "0" and got["body"] == ""
    assert got["content_type"] is None and got["accept"] == "application/json"

    # An HTTP error status is a response, not a transport failure; a body that
    # is not JSON is reported as such.
    r = fetch("--json", s.url("/missing"), s.url("/notjson"), s.url("/json"), expect_rc=0)
    missing, notjson, ok = r.by_idx(0), r.by_idx(1), r.by_idx(2)
    assert missing["status"] == 404 and missing["error"] is None
    assert missing["json"] == {"error": "not_found"}
    assert notjson["status"] == 200 and notjson["json"] is None
    assert notjson["json_error"].startswith("invalid JSON")
    assert ok["json"] == {"ok": True, "n": 3}


def test_transport_failures_are_reported(servers, fetch):
    hang = servers("hang")
    free_port = hang.port
    hang.stop()  # nothing listens there any more
    r = fetch("--timeout-ms", "3000", f"http://127.0.0.1:{free_port}/", "ftp://127.0.0.1/x",
              "file:///etc/passwd", expect_rc=1)
    refused, ftp, file_ = r.by_idx(0), r.by_idx(1), r.by_idx(2)
    assert refused["status"] == 0 and "onnect" in refused["error"], r
    assert ftp["status"] == 0 and "not supported" in ftp["error"], r
    assert file_["status"] == 0 and "not supported" in file_["error"], r
    assert r.done["failures"] == 3 and r.done["in_flight"] == 0


# ---- (b) server verification ----

def test_https_ca_verification(pki, servers, fetch):
    s = servers(ctx=pki.server_ctx())
    r = fetch(*_tls_args(pki, client=False), "--print-body", s.url("/hello"), expect_rc=0)
    assert r.responses[0]["status"] == 200 and r.responses[0]["body"] == "hello"

    # A server certificate from another CA.
    r = fetch(*_tls_args(pki, client=False, ca=pki.other_ca[1]), s.url("/hello"), expect_rc=1)
    resp = r.responses[0]
    assert resp["status"] == 0
    assert "SSL certificate problem" in resp["error"], r

    # The right CA, a name the certificate does not carry (host check is on).
    r = fetch(*_tls_args(pki, client=False), s.url("/hello", host="localhost"), expect_rc=1)
    assert r.responses[0]["status"] == 0
    assert re.search(r"subject name|does not match|no alternative", r.responses[0]["error"]), r

    # A client with TLS settings refuses to send anything in clear.
    plain = servers()
    r = fetch(*_tls_args(pki, client=False), plain.url("/hello"), expect_rc=1)
    assert "https only" in r.responses[0]["error"], r


def test_bad_tls_settings_fail_at_start(pki, fetch, tool):
    path = tool(TOOL)
    cases = [
        (["--ca", os.path.join(pki.dir, "nope.crt")], "No such file"),
        (["--ca", pki.ca[1], "--cert", pki.client[1], "--key", pki.rogue_client[0]],
         "does not match"),
        (["--ca", pki.ca[1], "--ciphers", "NOSUCHCIPHER"], "selects no cipher"),
    ]
    for args, msg in cases:
        p = subprocess.run([path, *args, "https://127.0.0.1:1/"], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 2 and msg in p.stderr, (args, p.stderr)
        assert "Sanitizer" not in p.stderr, p.stderr


# ---- (c) mutual TLS ----

def test_mutual_tls(pki, servers, fetch):
    s = servers(ctx=pki.server_ctx(require_client=True))
    r = fetch(*_tls_args(pki), "--print-body", s.url("/hello"), expect_rc=0)
    assert r.responses[0]["status"] == 200 and r.responses[0]["body"] == "hello", r

    # No client certificate: the server refuses the handshake.
    r = fetch(*_tls_args(pki, client=False), s.url("/hello"), expect_rc=1)
    assert r.responses[0]["status"] == 0 and r.responses[0]["error"], r

    # A client certificate from another CA.
    r = fetch("--ca", pki.ca[1], "--cert", pki.rogue_client[1], "--key", pki.rogue_client[0],
              s.url("/hello"), expect_rc=1)
    assert r.responses[0]["status"] == 0 and r.responses[0]["error"], r
    assert len(s.tls_errors) >= 2, s.tls_errors


# ---- (d) minimum TLS version ----

PERMISSIVE_OPENSSL_CONF = """\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = DEFAULT:@SECLEVEL=0
"""

TLS11_PROBE = """\
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(sys.argv[1])
ctx.minimum_version = ssl.TLSVersion.TLSv1
ctx.maximum_version = ssl.TLSVersion.TLSv1_1
ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        print(s.version())
"""


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls11_server_is_refused(pki, servers, fetch):
    try:
        ctx = pki.server_ctx(min_version=ssl.TLSVersion.TLSv1,
                             max_version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")
    except (ssl.SSLError, ValueError) as e:
        pytest.skip(f"Python's OpenSSL cannot configure a TLS 1.1 server: {e}")
    s = servers(ctx=ctx)
    conf = os.path.join(pki.dir, "permissive.cnf")
    with open(conf, "w") as f:
        f.write(PERMISSIVE_OPENSSL_CONF)
    env = {"OPENSSL_CONF": conf}
    # Positive control: with this OpenSSL configuration a TLS 1.1 handshake
    # with that server works, so only httpclient's minimum can refuse it.
    probe = subprocess.run([sys.executable, "-c", TLS11_PROBE, pki.ca[1], str(s.port)],
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, **env))
    if probe.returncode != 0 or probe.stdout.strip() != "TLSv1.1":
        pytest.skip("this OpenSSL will not speak TLS 1.1 even at security level 0: "
                    f"{probe.stderr.strip().splitlines()[-1:]}")
    r = fetch(*_tls_args(pki, client=False), s.url("/hello"), env=env, expect_rc=1)
    resp = r.responses[0]
    assert resp["status"] == 0
    assert re.search(r"version|protocol", resp["error"], re.I), r


def test_min_tls13(pki, servers, fetch):
    tls12 = servers(ctx=pki.server_ctx(max_version=ssl.TLSVersion.TLSv1_2))
    tls13 = servers(ctx=pki.server_ctx())
    # TLS 1.2 is fine by default ...
    r = fetch(*_tls_args(pki, client=False), tls12.url("/hello"), expect_rc=0)
    assert r.responses[0]["status"] == 200
    # ... and refused with min_tls = 1.3, which still talks to a TLS 1.3 server.
    r = fetch(*_tls_args(pki, client=False), "--tls13", tls12.url("/hello"), tls13.url("/hello"),
              expect_rc=1)
    assert r.by_idx(0)["status"] == 0
    assert re.search(r"version|protocol", r.by_idx(0)["error"], re.I), r
    assert r.by_idx(1)["status"] == 200 and r.by_idx(1)["error"] is None, r


# ---- (e) deadlines and concurrency ----

def test_deadline_on_silent_server(servers, fetch):
    hang = servers("hang")
    r = fetch("--timeout-ms", "1500", hang.url("/"), expect_rc=1)
    resp = r.responses[0]
    assert resp["status"] == 0 and "timed out" in resp["error"], r
    assert 1.5 - 0.1 <= resp["elapsed"] <= 1.5 + 1.0, r
    srv.assert_loop_ran(r, resp["elapsed"])


def test_connect_deadline_covers_tls_handshake(pki, servers, fetch):
    hang = servers("hang")
    r = fetch(*_tls_args(pki), "--timeout-ms", "6000", "--connect-timeout-ms", "1000",
              hang.url("/", scheme="https"), expect_rc=1)
    resp = r.responses[0]
    assert resp["status"] == 0 and re.search(r"timed out|timeout", resp["error"]), r
    assert 1.0 - 0.1 <= resp["elapsed"] <= 1.0 + 1.0, r
    srv.assert_loop_ran(r, resp["elapsed"])


def test_concurrent_requests_are_independent(servers, fetch):
    hang = servers("hang")
    s = servers()
    urls = [hang.url("/a"), s.url("/slow?ms=300"), hang.url("/b"), s.url("/hello"),
            hang.url("/c")]
    r = fetch("--timeout-ms", "2000", *urls, expect_rc=1)
    assert sorted(x["idx"] for x in r.responses) == [0, 1, 2, 3, 4], r
    fast = [r.by_idx(1), r.by_idx(3)]
    slow = [r.by_idx(0), r.by_idx(2), r.by_idx(4)]
    for x in fast:
        assert x["status"] == 200 and x["elapsed"] < 1.0, r
    for x in slow:
        assert x["status"] == 0 and "timed out" in x["error"], r
        assert 1.9 <= x["elapsed"] <= 3.0, r
    # The answers came first, while the silent ones were still waiting, and the
    # three deadlines ran side by side, not one after the other.
    assert {x["idx"] for x in r.responses[:2]} == {1, 3}, r
    assert r.done["total"] < 3.5, r
    assert hang.accepted == 3
    assert r.done["requests"] == 5 and r.done["failures"] == 3 and r.done["in_flight"] == 0
    srv.assert_loop_ran(r, r.done["total"])


def test_free_with_requests_pending(servers, fetch):
    hang = servers("hang")
    s = servers()
    # The first answer frees the client: the two still waiting end at once.
    r = fetch("--timeout-ms", "20000", "--close-after-first", hang.url("/a"), s.url("/hello"),
              hang.url("/b"), expect_rc=1)
    assert r.responses[0]["idx"] == 1 and r.responses[0]["status"] == 200, r
    for i in (0, 2):
        assert r.by_idx(i)["error"] == "client closed" and r.by_idx(i)["elapsed"] < 5, r


# ---- (f) response body limit ----

@pytest.mark.parametrize("chunked", ["0", "1"])
def test_body_limit(servers, fetch, chunked):
    s = servers()
    r = fetch("--max-body", "4096", s.url(f"/big?n=4096&chunked={chunked}"),
              s.url(f"/big?n=4097&chunked={chunked}"), s.url(f"/big?n=200000&chunked={chunked}"),
              expect_rc=1)
    ok, over, way_over = r.by_idx(0), r.by_idx(1), r.by_idx(2)
    assert ok["status"] == 200 and ok["body_len"] == 4096 and ok["error"] is None, r
    for x in (over, way_over):
        assert x["status"] == 0 and x["body_len"] == 0, r
        assert x["error"] == "response body exceeds the limit of 4096 bytes", r
