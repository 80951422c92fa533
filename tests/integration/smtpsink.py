"""A local SMTP server for the e-mail tests (aiosmtpd, Debian's
python3-aiosmtpd), run as a subprocess of its own so that its asyncio loop
never meets the test's.

It listens on 127.0.0.1 with STARTTLS required (require_starttls: nothing but
EHLO, STARTTLS, NOOP and QUIT before TLS) and, when given a user and
password, SMTP AUTH required too. Every message is appended to a JSON-lines
file: envelope, Message-ID, whether the session was under TLS, the login, and
the raw bytes (base64). A control file makes it refuse messages (e.g. 451) or
hold each one a while after it was received and recorded but before it
answers 250 — a sender killed meanwhile has delivered without knowing it.

    sink = SmtpSink(workdir, cert, key, auth=("user", "secret"))
    sink.start()
    sink.set(fail=451)          # refuse from now on
    sink.set()                  # accept again
    sink.delivered()            # the records of accepted messages
    sink.stop()
"""

import base64
import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import time


class SmtpSink:
    def __init__(self, workdir, cert, key, auth=None, port=None):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.cert, self.key, self.auth = cert, key, auth
        self.port = port or free_port()
        self.records_path = os.path.join(workdir, "smtp-records.jsonl")
        self.control_path = os.path.join(workdir, "smtp-control.json")
        self.log_path = os.path.join(workdir, "smtp-sink.log")
        self.proc = None
        self.set()

    def start(self, timeout=15):
        args = [sys.executable if os.path.exists(sys.executable) else "/usr/bin/python3",
                os.path.abspath(__file__), "--port", str(self.port), "--cert", self.cert,
                "--key", self.key, "--records", self.records_path,
                "--control", self.control_path]
        if self.auth:
            args += ["--auth", f"{self.auth[0]}:{self.auth[1]}"]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the SMTP sink exited:\n" + self.log())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(512).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("the SMTP sink did not answer:\n" + self.log())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def set(self, fail=None, delay_s=0):
        """From the next message on: answer <fail> (a 4xx or 5xx code) instead
        of accepting, or hold each accepted message <delay_s> before the 250."""
        tmp = self.control_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"fail": fail, "delay_s": delay_s}, f)
        os.replace(tmp, self.control_path)

    def records(self):
        try:
            with open(self.records_path) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def delivered(self):
        """Accepted messages, oldest first; each with "msg" (an email.message.EmailMessage)."""
        out = []
        for r in self.records():
            if r["kind"] == "delivered":
                r["raw"] = base64.b64decode(r["raw"])
                r["msg"] = email.message_from_bytes(r["raw"], policy=email.policy.default)
                out.append(r)
        return out

    def refused(self):
        return [r for r in self.records() if r["kind"] == "refused"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the server process ----

def serve(argv):
    import argparse
    import asyncio
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--records", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--auth", default="")
    a = p.parse_args(argv)

    def control():
        try:
            with open(a.control) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def record(entry):
        entry["time"] = time.time()
        with open(a.records, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            ctl = control()
            raw = envelope.original_content or envelope.content
            if isinstance(raw, str):
                raw = raw.encode("utf-8", "surrogateescape")
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
            base = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                    "message_id": (msg.get("Message-ID") or "").strip(),
                    "tls": session.ssl is not None,
                    "login": (session.auth_data.login.decode()
                              if isinstance(session.auth_data, LoginPassword) else None)}
            if ctl.get("fail"):
                record({"kind": "refused", "code": ctl["fail"], **base})
                return f"{ctl['fail']} 4.3.0 the test sink refuses for now"
            record({"kind": "delivered", "raw": base64.b64encode(raw).decode(), **base})
            if ctl.get("delay_s"):
                await asyncio.sleep(ctl["delay_s"])
            return "250 2.0.0 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        user, _, password = a.auth.partition(":")
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
              and auth_data.password.decode() == password)
        return AuthResult(success=ok, auth_data=auth_data if ok else None)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    kwargs = {}
    if a.auth:
        kwargs = {"authenticator": authenticator, "auth_required": True,
                  "auth_require_tls": True}
    ctl = Controller(Handler(), hostname="127.0.0.1", port=a.port, tls_context=ctx,
                     require_starttls=True, **kwargs)
    ctl.start()
    print(f"smtpsink listening on 127.0.0.1:{a.port}", flush=True)
    try:
        import signal
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        ctl.stop()


if __name__ == "__main__":
    import signal
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    serve(sys.argv[1:])
