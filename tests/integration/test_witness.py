"""A two-member cluster with a witness (a third voter that runs no
PostgreSQL): the primary keeps writing while it sees the witness, fences
itself when it sees neither, and a failover counts the witness as a voter."""

import os
import sys
import tempfile
import time

import psycopg2
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402

FENCE_AFTER = 2


@pytest.fixture(scope="module")
def cl():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix="mfa-wi-", dir="/tmp")
    c = Cluster(base, build, members=3, fence_after=FENCE_AFTER, with_nodes=False,
                witnesses=["n3"])
    c.create()
    try:
        c.start(timeout=120)
        yield c
    finally:
        c.stop()
        if not os.environ.get("MFA_KEEP"):
            import shutil
            shutil.rmtree(base, ignore_errors=True)


def accepts(m):
    try:
        conn = psycopg2.connect(m.dsn(), connect_timeout=2)
    except psycopg2.Error:
        return False
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            cur.execute("CREATE TABLE IF NOT EXISTS witness_probe (t timestamptz)")
            cur.execute("INSERT INTO witness_probe VALUES (now())")
        return True
    except psycopg2.Error:
        return False
    finally:
        conn.close()


def test_witness_runs_no_postgres(cl):
    w = cl.by_id["n3"].status()
    assert w["role"] == "witness" and w["postgres"]["running"] is False
    assert not os.path.exists(cl.by_id["n3"].pgdata)
    prim = cl.primary()
    assert prim is not None and all(sb["id"] != "n3" for sb in prim.status()["standbys"])


def test_primary_keeps_writing_with_the_witness(cl):
    prim = cl.primary()
    other = next(m for m in cl.data_members() if m is not prim)
    other.freeze()
    try:
        t0 = time.monotonic()
        # Past fence_after with a margin: it must still write, seeing the witness.
        while time.monotonic() - t0 < FENCE_AFTER + 1.5:
            assert accepts(prim), "the primary fenced itself though it sees the witness"
            time.sleep(0.2)
        assert prim.status()["fenced"] is False
    finally:
        other.thaw()
    cl.wait_healthy(30)


def test_primary_fences_without_witness_and_standby(cl):
    prim = cl.primary()
    others = [m for m in cl.members if m is not prim]
    for m in others:
        m.freeze()
    try:
        t0 = time.monotonic()
        wait_for(lambda: not accepts(prim), FENCE_AFTER + 3, "fenced", interval=0.05)
        print(f"\nfenced {time.monotonic() - t0:.2f} s after losing standby and witness")
    finally:
        for m in others:
            m.thaw()
    wait_for(lambda: accepts(prim), 15, "writes again")
    cl.wait_healthy(30)


def test_failover_with_witness(cl):
    prim = cl.primary()
    other = next(m for m in cl.data_members() if m is not prim)
    prim.kill()
    rc, out, err = cl.mfactl("failover", "--to", other.id, member=other, timeout=60)
    assert rc == 0, f"{out}\n{err}"
    wait_for(lambda: accepts(other), 15, "the new primary writes")
    assert other.status()["role"] == "primary"
