"""The http SMS provider (node/sms_http.c) through mfa-sms-send against Python
gateways on free 127.0.0.1 ports.

A gateway is an http.server (plain, or TLS with a throwaway CA from certs.py)
that records every request and answers with the statuses a test scripts; a
silent one accepts connections and never answers. Covered: the templated
body (JSON and form encoding) and headers, 2xx success, retries after 5xx
and transport errors but not after 4xx, the total deadline on a silent
gateway while the loop keeps ticking, CA verification, plain http refused
for anything but loopback, and shutdown with messages in flight.
"""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

import pytest

import servers as srv

TOOL = "mfa-sms-send"
PHONE = "+4917012345678"
CODE = "318642"


# ---- gateways ----

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        gw = self.server
        with gw.lock:
            gw.requests.append({"path": self.path, "headers": dict(self.headers.items()),
                                "body": body})
            status = gw.statuses.pop(0) if gw.statuses else 200
        data = json.dumps({"status": status, "echo": body}).encode()  # a gateway may echo
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Gateway(srv.HttpServer):
    """Answers POSTs with the scripted <statuses> in turn, then 200."""

    def __init__(self, statuses=(), ctx=None):
        self.statuses = list(statuses)
        self.requests = []
        self.lock = threading.Lock()
        super().__init__(Handler, ctx)

    def url(self, path="/send", host="127.0.0.1"):
        return super().url(path, host)


class SilentGateway(srv.SilentServer):
    def url(self, path="/send"):
        return super().url(path)


@pytest.fixture
def gateways():
    def make(kind="http", **kw):
        return SilentGateway() if kind == "silent" else Gateway(**kw)
    yield from srv.started(make)


@pytest.fixture(scope="module")
def pki():
    yield from srv.temp_pki(lambda d: srv.Pki(d, "gateway"), "mfa-sms-pki-")


# ---- the driver ----

RESULT = re.compile(r"^result idx=(\d+) ok=([01]) elapsed=([\d.]+) error=(.*)$")


class Run(srv.ToolRun):
    DONE = srv.done_line("sent", "failed")

    def item(self, line):
        m = RESULT.match(line)
        if not m:
            return None
        return {"idx": int(m.group(1)), "ok": m.group(2) == "1", "elapsed": float(m.group(3)),
                "error": None if m.group(4) == "-" else m.group(4)}

    @property
    def results(self):
        return self.items

    @property
    def one(self):
        assert len(self.results) == 1, self
        return self.results[0]


@pytest.fixture
def send(tool):
    path = tool(TOOL)

    def run(*args, phone=PHONE, code=CODE, expect_rc=None):
        r = srv.run_tool([path, "--kind", "http", *args, phone, code, "5"], Run)
        # The code never reaches the log, nor does the full phone number.
        assert code not in r.stderr and phone not in r.stderr, r
        if expect_rc is not None:
            assert r.rc == expect_rc, r
        if r.rc in (0, 1):
            assert r.done and r.done["in_flight"] == 0, r
            for res in r.results:
                assert res["error"] is None or code not in res["error"], r
        return r
    return run


# ---- tests ----

def test_json_body_and_headers(gateways, send):
    g = gateways()
    template = 'Your "sign-in" code: {code}\\ valid {minutes} min\n\u00e9'
    r = send("--url", g.url(), "--template", template,
             "--auth-header", "Authorization: Bearer gw-s3cret", expect_rc=0)
    assert r.one["ok"] and r.one["error"] is None, r
    [req] = g.requests
    assert req["path"] == "/send"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["Authorization"] == "Bearer gw-s3cret"
    # The default body, values JSON-escaped: it parses back to the exact text.
    assert json.loads(req["body"]) == {
        "to": PHONE, "text": f'Your "sign-in" code: {CODE}\\ valid 5 min\n\u00e9'}
    assert "gw-s3cret" not in r.stderr


def test_form_body(gateways, send):
    g = gateways()
    r = send("--url", g.url("/Messages"), "--content-type", "application/x-www-form-urlencoded",
             "--body", "To={phone}&From=MFA&Body={text}&Code={code}&Ttl={minutes}",
             "--template", "{code} is your code & more", expect_rc=0)
    assert r.one["ok"], r
    [req] = g.requests
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(req["body"], strict_parsing=True) == {
        "To": [PHONE], "From": ["MFA"], "Body": [f"{CODE} is your code & more"],
        "Code": [CODE], "Ttl": ["5"]}


def test_5xx_is_retried_until_ok(gateways, send):
    g = gateways(statuses=[500, 503])
    r = send("--url", g.url(), "--retries", "2", "--timeout-ms", "10000", expect_rc=0)
    assert r.one["ok"], r
    assert len(g.requests) == 3
    assert len({req["body"] for req in g.requests}) == 1  # the same message each time
    # Backoff 200 ms then 400 ms between the attempts.
    assert 0.55 <= r.one["elapsed"] < 5.0, r
    print(f"ok after 3 attempts in {r.one['elapsed']:.3f} s")


def test_5xx_exhausts_retries(gateways, send):
    g = gateways(statuses=[500] * 10)
    r = send("--url", g.url(), "--retries", "2", expect_rc=1)
    assert not r.one["ok"]
    assert r.one["error"] == "gateway answered HTTP 500 (3 attempts)", r
    assert len(g.requests) == 3
    assert r.done["failed"] == 1 and r.done["sent"] == 0


def test_4xx_is_not_retried(gateways, send):
    g = gateways(statuses=[400, 200])
    r = send("--url", g.url(), "--retries", "3", expect_rc=1)
    assert r.one["error"] == "gateway answered HTTP 400", r
    assert len(g.requests) == 1
    g2 = gateways(statuses=[401])
    r = send("--url", g2.url(), "--retries", "3", expect_rc=1)
    assert r.one["error"] == "gateway answered HTTP 401", r
    assert len(g2.requests) == 1


def test_transport_errors_are_retried(gateways, send):
    s = gateways("silent")
    port = s.port
    s.stop()  # nothing listens there any more: connection refused
    r = send("--url", f"http://127.0.0.1:{port}/send", "--retries", "2", "--timeout-ms", "5000",
             expect_rc=1)
    err = r.one["error"]
    assert "(3 attempts)" in err and re.search(r"onnect", err), r


def test_silent_gateway_fails_at_the_deadline(gateways, send):
    s = gateways("silent")
    r = send("--url", s.url(), "--retries", "3", "--timeout-ms", "1000", expect_rc=1)
    res = r.one
    assert not res["ok"] and re.search(r"timed out|timeout", res["error"]), r
    assert 1.0 - 0.1 <= res["elapsed"] <= 1.0 + 1.0, r
    srv.assert_loop_ran(r, res["elapsed"])
    print(f"failed at {res['elapsed']:.3f} s; ticks={r.done['ticks']} "
          f"max_gap_ms={r.done['max_gap_ms']}")


def test_https_ca_verification(pki, gateways, send):
    g = gateways(ctx=pki.server_ctx())
    r = send("--url", g.url(), "--ca", pki.ca[1], expect_rc=0)
    assert r.one["ok"], r
    assert len(g.requests) == 1

    # The gateway's certificate is not from the configured CA: refused, nothing sent.
    r = send("--url", g.url(), "--ca", pki.other_ca[1], "--retries", "1", expect_rc=1)
    assert "SSL certificate problem" in r.one["error"], r
    # Nor from the system trust store.
    r = send("--url", g.url(), expect_rc=1)
    assert "SSL certificate problem" in r.one["error"], r
    # The right CA, a name the certificate does not carry.
    r = send("--url", g.url(host="localhost"), "--ca", pki.ca[1], expect_rc=1)
    assert re.search(r"subject name|does not match|no alternative", r.one["error"]), r
    assert len(g.requests) == 1


def test_plain_http_only_to_loopback(gateways, send, pki):
    r = send("--url", "http://192.0.2.1/send", expect_rc=2)
    assert "must be https" in r.stderr, r
    r = send("--url", "http://sms.example.com/send", expect_rc=2)
    assert "must be https" in r.stderr, r
    # With a CA file, even loopback must be https.
    g = gateways()
    r = send("--url", g.url(), "--ca", pki.ca[1], expect_rc=2)
    assert "with a CA file" in r.stderr, r
    assert g.requests == []


def test_concurrent_messages(gateways, send):
    g = gateways(statuses=[200, 503, 200, 200, 200])
    r = send("--url", g.url(), "--count", "5", "--retries", "1", expect_rc=0)
    assert sorted(x["idx"] for x in r.results) == [0, 1, 2, 3, 4], r
    assert all(x["ok"] for x in r.results), r
    assert len(g.requests) == 6
    assert r.done["sent"] == 5


def test_free_with_messages_in_flight(gateways, send):
    s = gateways("silent")
    r = send("--url", s.url(), "--count", "3", "--timeout-ms", "20000", "--free-after-ms", "200",
             expect_rc=1)
    assert sorted(x["idx"] for x in r.results) == [0, 1, 2], r
    for x in r.results:
        assert not x["ok"] and x["error"] == "shutting down", r
        assert x["elapsed"] < 5.0, r
