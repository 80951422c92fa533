"""Throwaway PostgreSQL 15 instances for the integration tests.

Each instance lives in a fresh directory under /tmp that the unprivileged
user can reach (the checkout may sit under a 0700 home), listens on a free
loopback port, runs as that user when the tests run as root (PostgreSQL
refuses root), and is stopped by its pid. No Debian cluster is involved.
"""

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "appliance"))
from cluster import children, wait_for  # noqa: E402,F401  (the launcher's, shared)

PG_BIN = "/usr/lib/postgresql/15/bin"
TEST_USER = "mfa"


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_as_user():
    """The user to run PostgreSQL as: TEST_USER when root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", TEST_USER], check=True)
    return TEST_USER


def make_base_dir(prefix):
    """A fresh directory under /tmp owned by the PostgreSQL user."""
    base = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(base, 0o755)
    user = run_as_user()
    if user:
        pw = pwd.getpwnam(user)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    return base


class PgInstance:
    """One postmaster: initdb'd as a primary, or cloned as a standby."""

    def __init__(self, base, name):
        self.base = base
        self.name = name
        self.datadir = os.path.join(base, name)
        self.port = free_port()
        self.user = run_as_user()
        self.proc = None
        self.logfile = os.path.join(base, f"{name}.log")

    def _run(self, argv, **kw):
        return subprocess.run(argv, check=True, capture_output=True, text=True,
                              user=self.user, cwd=self.base, **kw)

    def initdb(self):
        # trust on loopback only: a throwaway instance inside the test's own
        # directory; the product's instances use SCRAM and TLS.
        self._run([f"{PG_BIN}/initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust",
                   "--no-sync", "-E", "UTF8", "--locale=C"])

    def clone_from(self, primary, slot):
        """Makes this a streaming standby of <primary> through replication slot <slot>."""
        self._run([f"{PG_BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
                   "-U", "postgres", "-D", self.datadir, "-R", "-X", "stream", "-C", "-S", slot,
                   "--checkpoint=fast",
                   "--no-sync"])

    def start(self, timeout=30):
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [f"{PG_BIN}/postgres", "-D", self.datadir, "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.base}",
             "-c", "fsync=off", "-c", "hot_standby=on", "-c", "wal_level=replica",
             "-c", "max_wal_senders=10", "-c", "max_replication_slots=10"],
            stdout=log, stderr=log, user=self.user, cwd=self.base, start_new_session=True)
        log.close()
        wait_for(self._accepts, timeout, f"{self.name} accepting connections")
        return self

    def _accepts(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
        with self.connect() as conn:
            return conn is not None

    def conninfo(self, dbname="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=postgres connect_timeout=5"

    def connect(self, dbname="postgres"):
        conn = psycopg2.connect(self.conninfo(dbname))
        conn.autocommit = True
        return conn

    def query(self, sql, params=None, dbname="postgres"):
        """Runs one statement; returns its rows (or [] for a command)."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def log_tail(self, lines=20):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def freeze(self):
        """SIGSTOPs the postmaster, then every child: a host that stops answering
        without a reset. (Each backend is its own session, so killpg misses them.)"""
        os.kill(self.proc.pid, signal.SIGSTOP)
        for pid in children(self.proc.pid):
            os.kill(pid, signal.SIGSTOP)

    def thaw(self):
        for pid in children(self.proc.pid):
            os.kill(pid, signal.SIGCONT)
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self, timeout=20):
        """Fast shutdown by pid (SIGINT), then SIGKILL if it lingers."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class PgCluster:
    """A primary and zero or more streaming standbys in one temp directory."""

    def __init__(self, standbys=0):
        self.base = make_base_dir("mfa-pg-")
        self.primary = PgInstance(self.base, "primary")
        self.standbys = []
        self.primary.initdb()
        self.primary.start()
        self.primary.query("CREATE DATABASE mfa")
        for i in range(standbys):
            sb = PgInstance(self.base, f"standby{i + 1}")
            sb.clone_from(self.primary, f"standby{i + 1}")
            sb.start()
            self.standbys.append(sb)
        if standbys:
            wait_for(lambda: self.streaming() == standbys, 30, f"{standbys} standby streaming")

    def streaming(self):
        rows = self.primary.query("SELECT count(*) FROM pg_stat_replication "
                                  "WHERE state = 'streaming'")
        return rows[0][0]

    def close(self):
        for inst in self.standbys + [self.primary]:
            inst.stop()
        shutil.rmtree(self.base, ignore_errors=True)
