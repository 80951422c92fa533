"""Servers for the tests of the HTTP clients (mfa-http-fetch, mfa-sms-send),
and the runs of those tools.

HttpServer is an http.server on a free 127.0.0.1 port, served by a thread of
this process (TLS when given a context); SilentServer accepts connections and
never sends a byte. Pki is a throwaway CA (certs.py) with a server
certificate for 127.0.0.1 only. ToolRun parses what such a tool prints: one
line per item as it ends, then "done ticks=... in_flight=N".
"""

import os
import re
import socket
import ssl
import subprocess
import tempfile
import threading
from http.server import ThreadingHTTPServer

import certs


# ---- servers ----

class HttpServer(ThreadingHTTPServer):
    """Serves <handler> on a free 127.0.0.1 port until stop(); TLS with <ctx>.
    A connection's TLS or socket error is appended to tls_errors."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, handler, ctx=None):
        self.ctx = ctx
        self.tls_errors = []
        super().__init__(("127.0.0.1", 0), handler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path="/", host="127.0.0.1"):
        return f"{'https' if self.ctx else 'http'}://{host}:{self.port}{path}"

    def finish_request(self, request, client_address):
        request.settimeout(10)
        if self.ctx:
            try:
                request = self.ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.tls_errors.append(str(e))
                return
        try:
            super().finish_request(request, client_address)
        except (ssl.SSLError, OSError) as e:
            self.tls_errors.append(str(e))
        finally:
            request.close()

    def stop(self):
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class SilentServer:
    """Accepts connections (counted in accepted) and never sends a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            self.accepted += 1

    def url(self, path="/", scheme="http"):
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.done.set()
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def started(make):
    """For a fixture: yields start(...), which calls <make>(...) and returns the
    server; after the test, stops every server started."""
    servers = []

    def start(*args, **kw):
        s = make(*args, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


# ---- PKI ----

class Pki:
    """In <d>: a CA, another CA, and a certificate <server_name> from the first
    for the IP 127.0.0.1 only (https://localhost/ must fail the host name check)."""

    def __init__(self, d, server_name="server"):
        self.dir = d
        self.ca = certs.make_ca(d, "ca")
        self.other_ca = certs.make_ca(d, "otherca")
        self.server = certs.issue(d, self.ca, server_name, certs.server_ext(dns=None))

    def server_ctx(self, require_client=False, max_version=None, min_version=None, ciphers=None):
        """A server context with that certificate; <require_client>: clients must
        show a certificate from the CA."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server[1], self.server[0])
        if require_client:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca[1])
        if ciphers:
            ctx.set_ciphers(ciphers)
        if min_version:
            ctx.minimum_version = min_version
        if max_version:
            ctx.maximum_version = max_version
        return ctx


def temp_pki(cls, prefix):
    """For a fixture: yields cls(<a temporary directory>), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield cls(d)


# ---- the tools ----

def done_line(*counters):
    """The pattern of a tool's last line: "done ticks=N max_gap_ms=N total=S",
    then "<counter>=N" for each of <counters>, then "in_flight=N"."""
    tail = "".join(rf" {c}=(?P<{c}>\d+)" for c in (*counters, "in_flight"))
    return re.compile(r"^done ticks=(?P<ticks>\d+) max_gap_ms=(?P<max_gap_ms>\d+) "
                      r"total=(?P<total>[\d.]+)" + tail + "$")


class ToolRun:
    """A finished run of a tool: rc, stdout, stderr; items, the parsed item
    lines in the order they were printed; done, the fields of the done line
    (total a float, the rest ints) or None. A subclass sets DONE (a
    done_line()) and defines item(line): the line parsed, or None."""

    DONE = None

    def __init__(self, proc):
        self.rc, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.items, self.done = [], None
        for line in proc.stdout.splitlines():
            item = self.item(line)
            if item is not None:
                self.items.append(item)
                continue
            m = self.DONE.match(line)
            if m:
                self.done = {k: float(v) if k == "total" else int(v)
                             for k, v in m.groupdict().items()}

    def item(self, line):
        raise NotImplementedError

    def __repr__(self):
        return f"rc={self.rc}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def run_tool(argv, run_cls, env=None):
    """Runs <argv> (extra environment <env>) to its end; returns run_cls(the process)."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=90,
                       env=dict(os.environ, **(env or {})))
    r = run_cls(p)
    # ASan/LSan report leaks and errors on stderr with their own exit code.
    assert "Sanitizer" not in p.stderr, r
    return r


def assert_loop_ran(r, seconds):
    """The tool's 10 ms timer had at least half of the ticks it could have had
    in <seconds>, and never a long stall between two of them."""
    assert r.done["ticks"] >= seconds * 100 * 0.5, r
    assert r.done["max_gap_ms"] < 250, r
