"""The schema migrations on a real PostgreSQL 15, and streaming replication
to a hot standby: what is written on the primary is read on the standby."""

import subprocess
import uuid

import psycopg2
import pytest

from pgcluster import wait_for


def schema_apply(tool, inst):
    """Runs mfa-schema-apply (schema_apply() in common/) against inst's mfa database."""
    out = subprocess.run([tool("mfa-schema-apply"), inst.conninfo("mfa")], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return dict(kv.split("=") for kv in out.split())


def test_migrations_apply_once_even_when_run_concurrently(tool, pg_primary):
    argv = [tool("mfa-schema-apply"), pg_primary.primary.conninfo("mfa")]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(dict(kv.split("=") for kv in out.split()))
    latest = results[0]["latest"]
    # Each migration is its own transaction under the advisory lock, so the
    # callers may share the work between them, but every migration is applied
    # exactly once: the counts add up to the number of migrations (and the
    # rows below are each version once).
    assert sum(int(r["applied"]) for r in results) == int(latest), results
    assert all(r["version"] == latest for r in results)
    rows = pg_primary.primary.query("SELECT version FROM schema_version ORDER BY version",
                                    dbname="mfa")
    assert [r[0] for r in rows] == list(range(1, int(latest) + 1))
    tables = {r[0] for r in pg_primary.primary.query(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", dbname="mfa")}
    assert {"users", "api_keys", "oath_tokens", "auth_log", "settings",
            "schema_version"} <= tables
    # Running it again is a no-op.
    assert schema_apply(tool, pg_primary.primary)["applied"] == "0"


def test_auth_log_key_makes_replay_idempotent(tool, pg_primary):
    schema_apply(tool, pg_primary.primary)
    insert = ("INSERT INTO auth_log (node_id, boot_epoch, seq, at, username, method, result) "
              "VALUES ('n1', 7, 1, now(), 'alice', 'totp', 'accepted') "
              "ON CONFLICT ON CONSTRAINT auth_log_origin DO NOTHING")
    pg_primary.primary.query(insert, dbname="mfa")
    pg_primary.primary.query(insert, dbname="mfa")
    assert pg_primary.primary.query("SELECT count(*) FROM auth_log", dbname="mfa")[0][0] == 1


def test_row_written_on_primary_is_read_on_standby(tool, pg_with_standby):
    primary = pg_with_standby.primary
    standby = pg_with_standby.standbys[0]
    assert standby.query("SELECT pg_is_in_recovery()")[0][0] is True

    result = schema_apply(tool, primary)
    assert result["applied"] == result["latest"]
    wait_for(lambda: standby.query("SELECT max(version) FROM schema_version", dbname="mfa")
             [0][0] == int(result["latest"]), 30, "schema replayed on the standby")

    name = f"user-{uuid.uuid4().hex[:12]}"
    primary.query("INSERT INTO users (username, phone, method) VALUES (%s, '+4917012345678', "
                  "'sms')", (name,), dbname="mfa")
    row = wait_for(lambda: standby.query("SELECT username, method FROM users WHERE username = %s",
                                         (name,), dbname="mfa"),
                   30, "the new user on the standby")
    assert row == [(name, "sms")]

    # A hot standby answers reads and refuses writes.
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        standby.query("INSERT INTO users (username, method) VALUES ('x', 'totp')", dbname="mfa")
