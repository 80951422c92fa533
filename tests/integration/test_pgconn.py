"""common/pgconn (the non-blocking PostgreSQL layer) against real PostgreSQL 15,
through tests/tools/pg_probe.c: queries and prepared statements, the
per-transaction synchronous_commit levels, deadlines against a frozen server
(SIGSTOP) while the loop keeps running, and reconnection after a restart."""

import os
import re
import signal
import subprocess

from pgcluster import wait_for
from probe import LineProbe


class Probe(LineProbe):
    """mfa-pg-probe running in the background; its stdout lines are collected."""

    def __init__(self, tool, *args):
        super().__init__([tool("mfa-pg-probe"), *args])

    def finish(self, timeout=30):
        """Waits for the probe to exit; returns its exit code (all lines collected)."""
        return self.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def run_probe(tool, *args, timeout=60):
    r = subprocess.run([tool("mfa-pg-probe"), *args], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"probe failed ({r.returncode}): {r.stdout} {r.stderr}"
    return r.stdout.splitlines()


def field(line, name):
    m = re.search(rf"\b{name}=(\S+)", line)
    assert m, f"no {name}= in {line!r}"
    return m.group(1)


def test_queries_params_prepared_and_server_errors(tool, pg_primary):
    lines = run_probe(tool, pg_primary.primary.conninfo(), "query")
    assert lines[-1] == "done"
    assert lines[0] == ("unknown-prepared: pgconn_exec_prepared: unknown prepared statement "
                        "nope")
    assert lines[1:-1] == [
        'params ok rows=1 42|it\'s a "quote"',
        "prepared ok rows=1 alice x3",
        "prepared ok rows=1 bob x4",
        # registered after the connection was up: prepared before its first use
        "late-prepared ok rows=1 LATE",
        "null ok rows=1 t",
        "rows ok rows=3 1;2;3",
        'bad-sql err server error 42601: syntax error at or near "SELEC"',
        # the connection is usable after an error, and after a failed transaction
        "after-error ok rows=1 fine",
        "tx-error err server error 22012: division by zero",
        "after-tx-error ok rows=1 fine",
        # a statement the server refused fails its queries with the server's error;
        # the others registered with it were prepared all the same ("greet" above)
        'bad-prepared err prepared statement broken: server error 42601: syntax error at or '
        'near "SELEC"',
        "after-bad-prepared ok rows=1 fine",
    ]


def test_sync_level_is_set_inside_each_transaction(tool, pg_primary):
    primary = pg_primary.primary
    # a server default unlike every level, so DEFAULT visibly keeps it
    primary.query("ALTER SYSTEM SET synchronous_commit = 'remote_write'")
    primary.query("SELECT pg_reload_conf()")
    wait_for(lambda: primary.query("SHOW synchronous_commit")[0][0] == "remote_write", 10,
             "new default synchronous_commit")
    lines = run_probe(tool, primary.conninfo(), "sync")
    # SET LOCAL is seen by the statement and ends with its transaction
    assert lines == ["sync default=remote_write off=off local=local remote_apply=remote_apply "
                     "after=remote_write"]


def test_remote_apply_write_is_visible_on_standby_when_acknowledged(tool, pg_with_standby):
    primary = pg_with_standby.primary
    standby = pg_with_standby.standbys[0]
    primary.query("CREATE TABLE pgconn_probe (v text)")
    wait_for(lambda: standby.query("SELECT to_regclass('pgconn_probe') IS NOT NULL")[0][0], 30,
             "table on the standby")
    name = primary.query("SELECT application_name FROM pg_stat_replication")[0][0]
    primary.query("ALTER SYSTEM SET synchronous_standby_names = %s", (f'"{name}"',))
    primary.query("SELECT pg_reload_conf()")
    wait_for(lambda: primary.query("SELECT sync_state FROM pg_stat_replication")[0][0] == "sync",
             30, "standby synchronous")
    # The standby applies commits 3 s late: a write acknowledged before it was
    # applied there is not visible yet, so the read after REMOTE_APPLY proves the wait.
    standby.query("ALTER SYSTEM SET recovery_min_apply_delay = '3s'")
    standby.query("SELECT pg_reload_conf()")
    wait_for(lambda: standby.query("SHOW recovery_min_apply_delay")[0][0] == "3s", 10,
             "apply delay on the standby")

    lines = run_probe(tool, primary.conninfo(), "standby-read", standby.conninfo())
    assert lines[-1] == "done"
    local = next(line for line in lines if line.startswith("local "))
    remote = next(line for line in lines if line.startswith("remote_apply "))
    assert field(local, "visible") == "0", local  # acknowledged before the standby applied it
    assert int(field(local, "elapsed_ms")) < 2500, local
    assert field(remote, "visible") == "1", remote  # applied there when its callback ran
    assert int(field(remote, "elapsed_ms")) >= 2500, remote


def test_query_deadline_on_frozen_server_keeps_loop_running(tool, pg_primary):
    inst = pg_primary.primary
    deadline_ms = 2000
    probe = Probe(tool, inst.conninfo(), "deadline", str(deadline_ms))
    try:
        probe.expect(r"^ready$", 20)
        inst.freeze()
        probe.send("go")
        line = probe.expect(r"^deadline ", deadline_ms / 1000 + 15).string
        # exits at once, server still frozen: closing never waits on the server
        assert probe.finish(timeout=10) == 0
    finally:
        inst.thaw()
        probe.kill()
    elapsed = int(field(line, "elapsed_ms"))
    ticks = int(field(line, "ticks"))
    assert f"err=query timed out after {deadline_ms} ms" in line, line
    assert deadline_ms <= elapsed <= deadline_ms + 1500, line
    # the 10 ms timer kept firing while the query waited: the loop was never blocked
    assert ticks >= 0.5 * elapsed / 10, line


def test_connect_deadline_on_frozen_server(tool, pg_primary):
    inst = pg_primary.primary
    deadline_ms = 1500
    inst.freeze()
    probe = Probe(tool, inst.conninfo(), "connect-deadline", str(deadline_ms))
    try:
        conn_line = probe.expect(r"^connect-deadline ", 20).string
        query_line = probe.expect(r"^query ", 20).string
        assert probe.finish() == 0
    finally:
        inst.thaw()
        probe.kill()
    elapsed = int(field(conn_line, "elapsed_ms"))
    assert deadline_ms <= elapsed <= deadline_ms + 1500, conn_line
    assert int(field(conn_line, "ticks")) >= 0.5 * elapsed / 10, conn_line
    assert f"err=connection attempt timed out after {deadline_ms} ms" in conn_line, conn_line
    assert field(conn_line, "state") == "disconnected", conn_line
    # a query queued meanwhile fails at its own deadline, saying why
    q_elapsed = int(field(query_line, "elapsed_ms"))
    assert deadline_ms + 500 <= q_elapsed <= deadline_ms + 2000, query_line
    assert (f"err=query timed out after {deadline_ms + 500} ms (not connected: connection "
            f"attempt timed out after {deadline_ms} ms)") in query_line, query_line


def test_reconnects_by_itself_after_restart(tool, pg_primary):
    inst = pg_primary.primary
    probe = Probe(tool, inst.conninfo(), "reconnect", "120")
    try:
        probe.expect(r"^state up$", 20)
        for _ in range(3):
            probe.expect(r"^q \d+ ok \d+$", 10)
        inst.stop()
        probe.expect(r"^state down ", 10)
        probe.expect(r"^q \d+ err ", 10)  # reported, not hung
        inst.start()
        probe.expect(r"^state up$", 20)
        probe.expect(r"^q \d+ ok \d+$", 10)
        probe.send("quit")
        assert probe.finish() == 0
    finally:
        if inst.proc.poll() is not None:
            inst.start()
        probe.kill()
    outcomes = [re.match(r"^q (\d+) (ok|err)", line) for line in probe.lines]
    seqs = [int(m.group(1)) for m in outcomes if m]
    # every query was answered exactly once (pending ones by pgconn_free at the end)
    assert sorted(seqs) == list(range(1, max(seqs) + 1)), probe.lines
    errors = [line for line in probe.lines if re.match(r"^q \d+ err ", line)]
    assert any("connection lost during the query" in e or "not connected" in e
               for e in errors), errors
    stats = probe.lines[-1]
    assert stats.startswith("stats "), probe.lines[-5:]
    assert int(field(stats, "reconnects")) >= 1, stats
    assert int(field(stats, "failures")) >= 1, stats
