"""The daemon skeleton and HTTP server of common/, through mfa-testd: TLS
with and without client certificates, limits and JSON errors, reload by
parse-validate-swap, drain on SIGTERM, dropping root."""

import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

import certs
from pgcluster import TEST_USER, free_port, make_base_dir, run_as_user, wait_for


def timed(fn, *args, **kw):
    """Runs fn; returns (its result, seconds it took)."""
    start = time.monotonic()
    result = fn(*args, **kw)
    return result, time.monotonic() - start


class Background(threading.Thread):
    """Runs fn(*args) in a thread; .result holds (value, seconds) or the exception."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args, self.result = fn, args, None
        self.start()

    def run(self):
        try:
            self.result = timed(self.fn, *self.args)
        except Exception as e:  # kept for the assertion
            self.result = e


def conf_text(port, base, level="info", drain_timeout=30, tls_min="1.2"):
    return f"""
version = 1;
cluster = {{
  name = "test";
  members = ( {{ id = "n1"; address = "127.0.0.1"; ports = {{ node = {port}; }}; }} );
  tls = {{ ca = "{base}/ca.crt"; min_version = "{tls_min}"; }};
}};
appliance = {{
  member = "n1";
  user = "{TEST_USER}";
  tls = {{ cert = "{base}/n1.crt"; key = "{base}/n1.key"; }};
  drain_timeout = {drain_timeout};
}};
log = {{ level = "{level}"; }};
"""


class TestDaemon:
    __test__ = False
    """One mfa-testd process with its own config, PKI and log in a temp dir."""

    def __init__(self, binary, env=None, tls_min="1.2"):
        self.base = make_base_dir("mfa-testd-")
        self.port = free_port()
        self.conf = os.path.join(self.base, "appliance.conf")
        self.logfile = os.path.join(self.base, "testd.log")
        self.ca = certs.make_ca(self.base)
        certs.issue(self.base, self.ca, "n1", certs.server_ext())
        self.client = certs.issue(self.base, self.ca, "client1", certs.CLIENT_EXT)
        user = run_as_user()
        if user:  # the daemon reads its key after dropping root
            pw = pwd.getpwnam(user)
            for f in os.listdir(self.base):
                os.chown(os.path.join(self.base, f), pw.pw_uid, pw.pw_gid)
        self.write_conf(conf_text(self.port, self.base, tls_min=tls_min))
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen([binary, "-c", self.conf], stdout=log, stderr=log,
                                         env={**os.environ, **(env or {})})
        self.tls = (env or {}).get("TESTD_TLS") == "1"
        wait_for(self.healthy, 20, "mfa-testd answering /health")

    def write_conf(self, text):
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf)

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def context(self, client_cert=True):
        ctx = ssl.create_default_context(cafile=self.ca[1])
        if client_cert:
            ctx.load_cert_chain(self.client[1], self.client[0])
        return ctx

    def request(self, method, path, body=None, headers=None, ctx=None, timeout=10):
        if self.proc.poll() is not None:
            raise RuntimeError(f"mfa-testd exited: {self.log()}")
        if self.tls:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=ctx or self.context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheader("Content-Type"), data
        finally:
            conn.close()

    def healthy(self):
        return self.request("GET", "/health")[0] == 200

    def in_flight(self):
        return self.metric("mfa_http_in_flight")

    def metric(self, name):
        _, _, data = self.request("GET", "/metrics")
        for line in data.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no {name} in /metrics")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def testd_factory(tool):
    started = []

    def start(env=None, **kw):
        t = TestDaemon(tool("mfa-testd"), env, **kw)
        started.append(t)
        return t
    yield start
    for t in started:
        t.close()


def json_of(data):
    return json.loads(data.decode())


def test_tls_with_a_client_certificate_required(testd_factory):
    t = testd_factory({"TESTD_TLS": "1", "TESTD_CLIENT_CERT": "require"})
    status, _, data = t.request("GET", "/whoami", ctx=t.context(client_cert=True))
    assert status == 200 and json_of(data) == {"name": "client1"}
    # Without a client certificate the handshake is refused.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        t.request("GET", "/whoami", ctx=t.context(client_cert=False))
    # Plain HTTP on the TLS port gets no HTTP answer.
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionResetError, OSError)):
        conn.request("GET", "/health")
        conn.getresponse()
    conn.close()
    assert t.healthy()


def test_tls_without_client_certificates(testd_factory):
    t = testd_factory({"TESTD_TLS": "1"})
    status, _, data = t.request("GET", "/whoami", ctx=t.context(client_cert=False))
    assert status == 401 and json_of(data)["error"] == "no_client_certificate"
    assert t.healthy()


def test_tls_minimum_version_is_enforced(testd_factory):
    """cluster.tls.min_version = "1.3": a client that stops at TLS 1.2 is refused
    (OpenSSL's own defaults would let 1.2 through, so only the setting refuses it)."""
    t = testd_factory({"TESTD_TLS": "1"}, tls_min="1.3")
    ctx = t.context(client_cert=False)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        t.request("GET", "/health", ctx=ctx)
    conn = http.client.HTTPSConnection("127.0.0.1", t.port, timeout=5,
                                       context=t.context(client_cert=False))
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    assert conn.sock.version() == "TLSv1.3"
    conn.close()


def test_body_over_the_limit_is_refused_and_the_server_goes_on(testd_factory):
    t = testd_factory({"TESTD_MAX_BODY": "1024"})
    big = json.dumps({"pad": "x" * 2048})
    status, _, _ = t.request("POST", "/echo", body=big,
                             headers={"Content-Type": "application/json"})
    assert status == 413
    assert t.healthy()
    status, ctype, data = t.request("POST", "/echo", body='{"a": [1, 2]}',
                                    headers={"Content-Type": "application/json"})
    assert status == 200 and ctype == "application/json"
    assert json_of(data) == {"echo": {"a": [1, 2]}}


def test_a_client_that_stops_sending_is_cut_off_at_the_timeout(testd_factory):
    t = testd_factory({"TESTD_TIMEOUT_MS": "1000"})
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never end
        start = time.monotonic()
        assert t.healthy()  # others are served meanwhile
        assert s.recv(4096) == b""  # closed by the server
        assert 0.5 < time.monotonic() - start < 5


@pytest.mark.parametrize("method,path,body,ctype,status,code", [
    ("POST", "/echo", "{not json", "application/json", 400, "bad_request"),
    ("POST", "/echo", "[1, 2]", "application/json", 400, "bad_request"),
    ("POST", "/echo", '{"a": 1, "a": 2}', "application/json", 400, "bad_request"),
    ("POST", "/echo", '{"a": 1}', "text/plain", 415, "unsupported_media_type"),
    ("GET", "/nowhere", None, None, 404, "not_found"),
    ("DELETE", "/health", None, None, 405, "method_not_allowed"),
    ("GET", "/slow?ms=-5", None, None, 400, "bad_request"),
])
def test_errors_are_uniform_json(testd_factory, method, path, body, ctype, status, code):
    t = testd_factory()
    headers = {"Content-Type": ctype} if ctype else {}
    got, got_type, data = t.request(method, path, body=body, headers=headers)
    assert got == status and got_type == "application/json"
    doc = json_of(data)
    assert doc["error"] == code and isinstance(doc["detail"], str) and doc["detail"]


def test_sighup_with_a_broken_config_keeps_the_old_one(testd_factory):
    t = testd_factory()
    assert json_of(t.request("GET", "/config")[2])["log_level"] == "info"
    t.write_conf("cluster = { name = ")
    t.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config.reload_refused" in t.log(), 10, "the reload refused")
    assert json_of(t.request("GET", "/config")[2])["log_level"] == "info"
    # A good file is taken, and a key that needs a restart is named.
    t.write_conf(conf_text(t.port + 1, t.base, level="debug", drain_timeout=7))
    t.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: json_of(t.request("GET", "/config")[2])["log_level"] == "debug", 10,
             "the new log level in use")
    assert json_of(t.request("GET", "/config")[2])["drain_timeout"] == 7
    assert "config.restart_needed" in t.log() and "cluster.members changed" in t.log()


def test_a_reload_the_program_refuses_keeps_the_old_config(testd_factory):
    t = testd_factory({"TESTD_REFUSE_RELOAD": "1"})
    t.write_conf(conf_text(t.port, t.base, level="debug"))
    t.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config.reload_refused" in t.log(), 10, "the reload refused")
    assert "refuses new configurations" in t.log()
    assert json_of(t.request("GET", "/config")[2])["log_level"] == "info"


def test_sigterm_drains_the_request_in_flight(testd_factory):
    t = testd_factory()
    job = Background(t.request, "GET", "/slow?ms=1500", None, None, None, 30)
    wait_for(lambda: t.in_flight() == 1, 10, "the slow request in flight")
    t.proc.send_signal(signal.SIGTERM)

    def refused():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", t.port)) != 0
    wait_for(refused, 5, "the listener closed")
    job.join(20)
    assert not isinstance(job.result, Exception), job.result
    assert job.result[0][0] == 200, t.log()
    assert t.proc.wait(10) == 0
    assert "shutdown.drained" in t.log()


@pytest.mark.parametrize("path", ["/slow?ms=20000", "/work?ms=20000"])
def test_a_second_sigterm_exits_at_once(testd_factory, path):
    t = testd_factory()
    job = Background(t.request, "GET", path, None, None, None, 30)
    wait_for(lambda: t.in_flight() == 1, 10, "the slow request in flight")
    t.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "shutdown.drain" in t.log(), 5, "the drain started")
    start = time.monotonic()
    t.proc.send_signal(signal.SIGTERM)
    # Status 1: forced, and no sanitizer report (that would be another status).
    assert t.proc.wait(5) == 1, t.log()
    assert time.monotonic() - start < 3
    assert "shutdown.now in_flight=1" in t.log()
    job.join(10)
    # The request was cut off, not answered.
    assert isinstance(job.result, Exception), job.result


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping root needs root")
def test_a_drain_that_times_out_exits_1(testd_factory):
    t = testd_factory()
    t.write_conf(conf_text(t.port, t.base, drain_timeout=1))
    t.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: json_of(t.request("GET", "/config")[2])["drain_timeout"] == 1, 10,
             "drain_timeout 1 in use")
    job = Background(t.request, "GET", "/slow?ms=20000", None, None, None, 30)
    wait_for(lambda: t.in_flight() == 1, 10, "the slow request in flight")
    t.proc.send_signal(signal.SIGTERM)
    assert t.proc.wait(10) == 1, t.log()
    assert "shutdown.timeout dropped=1" in t.log()
    job.join(10)


def test_started_as_root_it_serves_as_the_unprivileged_user(testd_factory):
    t = testd_factory()
    with open(f"/proc/{t.proc.pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {str(pwd.getpwnam(TEST_USER).pw_uid)}


def test_command_line(tool, tmp_path):
    binary = tool("mfa-testd")
    out = subprocess.run([binary, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("mfa-testd ")
    good = tmp_path / "good.conf"
    good.write_text(conf_text(free_port(), str(tmp_path)))
    out = subprocess.run([binary, "-c", str(good), "--check-config"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert 'cluster.name = "test";' in out.stdout and "configuration OK" in out.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text(conf_text(free_port(), str(tmp_path)).replace("level", "levle"))
    out = subprocess.run([binary, "-c", str(bad), "--check-config"], capture_output=True,
                         text=True)
    assert out.returncode == 1
    assert f"{bad}:" in out.stderr and "log.levle: unknown key" in out.stderr
    out = subprocess.run([binary, "--bogus"], capture_output=True, text=True)
    assert out.returncode == 2 and "usage:" in out.stderr


def assert_loop_answers_while(t, job):
    """While <job> (a Background) runs, /health must keep answering fast."""
    answered = 0
    while job.is_alive():
        (status, _, _), took = timed(t.request, "GET", "/health", timeout=5)
        assert status == 200 and took < 0.5, f"/health took {took:.2f}s"
        answered += 1
    assert answered >= 3
    return answered


def test_blocking_work_runs_on_a_worker_not_the_loop(testd_factory):
    t = testd_factory()
    job = Background(t.request, "GET", "/work?ms=1500")
    wait_for(lambda: t.in_flight() == 1, 10, "the job in flight")
    answered = assert_loop_answers_while(t, job)
    job.join()
    assert not isinstance(job.result, Exception), job.result
    (status, _, data), took = job.result
    assert status == 200 and json_of(data) == {"worked_ms": 1500} and took >= 1.4
    print(f"/health answered {answered} times during a 1.5 s blocking job")


def test_a_query_to_a_frozen_database_times_out_while_the_loop_serves(testd_factory,
                                                                       pg_primary):
    db = pg_primary.primary
    t = testd_factory({"TESTD_PG_CONNINFO": db.conninfo()})
    wait_for(lambda: t.request("GET", "/pg")[0] == 200, 20, "the first query")
    db.freeze()
    try:
        job = Background(t.request, "GET", "/pg?timeout_ms=1500")
        answered = assert_loop_answers_while(t, job)
        job.join()
        (status, _, data), took = job.result
        assert status == 504, data
        assert json_of(data)["error"] == "database_unavailable"
        assert 1.4 <= took < 3.0, f"the query failed after {took:.2f}s, deadline 1.5 s"
        print(f"query deadline 1.5 s: failed after {took:.2f}s; /health answered {answered} "
              "times meanwhile")
    finally:
        db.thaw()
    # The connection was dropped at the deadline and comes back by itself.
    wait_for(lambda: t.request("GET", "/pg")[0] == 200, 20, "queries again after thawing")
    assert t.metric("mfa_pg_timeouts_total") == 1
    assert t.metric("mfa_pg_reconnects_total") >= 1
