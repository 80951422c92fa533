"""The auth log of mfa-node (node/authlog*.c, DESIGN §2) against a real
PostgreSQL 15, through tests/tools/authlog_probe.c: records appended to the
spool reach auth_log exactly once — in batches, after the primary was down,
after the probe was SIGKILLed (also mid-batch, and with a torn last line as a
host crash leaves it), and when the same spool is shipped twice."""

import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from pgcluster import wait_for
from probe import LineProbe


def schema_apply(tool, inst):
    subprocess.run([tool("mfa-schema-apply"), inst.conninfo("mfa")], check=True,
                   capture_output=True, text=True, timeout=60)


class Probe(LineProbe):
    """mfa-authlog-probe in the background; its stdout lines are collected."""

    def __init__(self, tool, spool, node_id, conninfo, *args):
        super().__init__([tool("mfa-authlog-probe"), spool, node_id, conninfo, *args])

    def finish(self, timeout=60):
        """Waits for the exit; returns (exit code, the fields of the "done" line)."""
        rc = self.wait(timeout)
        done = [ln for ln in self.lines if ln.startswith("done ")]
        fields = dict(kv.split("=") for kv in done[-1][5:].split()) if done else {}
        return rc, {k: int(v) for k, v in fields.items()}

    def sigkill(self):
        self.proc.kill()
        self.proc.wait(10)

    def epoch(self):
        return int(self.expect(r"^open epoch=(\d+)", 30).group(1))


@pytest.fixture
def spool():
    d = tempfile.mkdtemp(prefix="mfa-authlog-spool-")
    yield os.path.join(d, "spool")
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def db(tool, pg_primary):
    inst = pg_primary.primary
    schema_apply(tool, inst)
    return inst


def keys(db, node_id):
    """Every (boot_epoch, seq) of <node_id> in auth_log with its row count."""
    return db.query("SELECT boot_epoch, seq, count(*) FROM auth_log WHERE node_id = %s "
                    "GROUP BY boot_epoch, seq ORDER BY boot_epoch, seq", (node_id,),
                    dbname="mfa")


def assert_exactly_once(db, node_id, expected):
    """auth_log holds one row per key in <expected> ({epoch: last seq}) and nothing else."""
    rows = keys(db, node_id)
    dups = [r for r in rows if r[2] != 1]
    assert not dups, f"records stored twice: {dups[:5]}"
    want = [(e, s) for e, last in sorted(expected.items()) for s in range(1, last + 1)]
    got = [(r[0], r[1]) for r in rows]
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, f"missing {missing[:5]} extra {extra[:5]}"


def segments(spool_dir):
    return sorted(n for n in os.listdir(spool_dir) if n.startswith("seg-"))


def test_records_are_shipped_in_batches_exactly_once(tool, db, spool):
    start = time.monotonic()
    p = Probe(tool, spool, "n1", db.conninfo("mfa"), "--append", "1200", "--batch", "500",
              "--until-shipped", "--deadline", "60")
    epoch = p.epoch()
    rc, st = p.finish()
    print(f"shipped 1200 records in {time.monotonic() - start:.2f}s")
    assert rc == 0, p.lines[-5:]
    seqs = [int(m.group(1)) for m in
            (re.search(r"^appended epoch=\d+ seq=(\d+)", ln) for ln in p.lines) if m]
    assert seqs == list(range(1, 1201))
    assert st["pending"] == 0 and st["shipped"] == 1200 and st["duplicates"] == 0
    assert_exactly_once(db, "n1", {epoch: 1200})

    # the columns: as the probe wrote them; a bad address is NULL, not a failed batch
    rows = db.query("SELECT seq, username, method, result, reason, server_name, "
                    "host(server_ip), host(client_ip), challenge_id, "
                    "extract(epoch FROM now() - at) FROM auth_log WHERE node_id = 'n1' "
                    "AND seq IN (1, 2, 7, 14) ORDER BY seq", dbname="mfa")
    results = ["accepted", "rejected", "challenge", "error"]
    for seq, user, method, result, reason, server, server_ip, client_ip, chal, age in rows:
        assert user == f"probe-{seq}" and method == "totp" and reason == f"r{seq}"
        assert result == results[seq % 4] and server == "probe" and server_ip == "10.0.0.1"
        assert client_ip == (None if seq % 7 == 0 else f"192.0.2.{seq % 250}")
        assert chal == ("n1-AAAAAAAAAAAAAAAAAAAAAA" if seq % 4 == 2 else None)
        assert 0 <= age < 120
    # the position is saved; the segment is kept while it is the active one
    with open(os.path.join(spool, "shipped")) as f:
        assert f.read() == f"{epoch} 1200\n"


def test_outage_of_the_primary_is_replayed(tool, pg_primary, db, spool):
    p = Probe(tool, spool, "n2", db.conninfo("mfa"), "--append", "100", "--stdin",
              "--deadline", "120")
    epoch = p.epoch()
    p.expect(r"^status pending=0 shipped=100 ", 30)

    db.stop()
    p.send("append 300")
    p.expect(r"^appended epoch=\d+ seq=400$", 30)
    # the spool holds them while the primary is away
    p.expect(r"^status pending=300 ", 10)

    db.start()
    start = time.monotonic()
    wait_for(lambda: len(keys(db, "n2")) == 400, 60, "the records of the outage in auth_log")
    print(f"replayed 300 records {time.monotonic() - start:.2f}s after the primary returned")
    p.expect(r"^status pending=0 shipped=400 ", 30)
    p.send("quit")
    rc, st = p.finish()
    assert rc == 0
    assert st["dropped"] == 0 and st["corrupt"] == 0
    assert_exactly_once(db, "n2", {epoch: 400})


def test_sigkill_then_restart_ships_everything_once(tool, db, spool):
    p = Probe(tool, spool, "n3", db.conninfo("mfa"), "--append", "500", "--batch", "100",
              "--stdin", "--deadline", "120")
    epoch = p.epoch()
    p.expect(r"^status pending=0 shipped=500 ", 30)
    p.send("hold")
    p.expect(r"^held$", 10)
    p.send("append 500")
    p.expect(r"^appended epoch=\d+ seq=1000$", 30)
    p.sigkill()  # 500 shipped, 500 only in the spool
    assert len(keys(db, "n3")) == 500

    # and, as a host crash would leave it, a torn last line
    last = os.path.join(spool, segments(spool)[-1])
    with open(last, "a") as f:
        f.write('{"v":1,"node_id":"n3","boot_epoch":%d,"seq":1001,"at_' % epoch)

    p = Probe(tool, spool, "n3", db.conninfo("mfa"), "--append", "200", "--batch", "100",
              "--until-shipped", "--deadline", "60")
    assert p.epoch() == epoch + 1
    rc, st = p.finish()
    assert rc == 0, p.lines[-5:]
    assert st["corrupt"] == 1 and st["dropped"] == 0
    # the 500 unshipped and the 200 new; the saved position spares the 500 shipped
    assert st["shipped"] == 700 and st["duplicates"] == 0
    assert_exactly_once(db, "n3", {epoch: 1000, epoch + 1: 200})
    # the finished epoch's segments are gone; only the active one of the new epoch is left
    assert [int(n[4:24]) for n in segments(spool)] == [epoch + 1]


def test_sigkill_in_mid_shipping(tool, db, spool):
    p = Probe(tool, spool, "n4", db.conninfo("mfa"), "--append", "3000", "--batch", "50",
              "--deadline", "120")
    epoch = p.epoch()
    p.expect(r"^appended epoch=\d+ seq=3000$", 60)
    m = p.expect(r"^status pending=(\d+) shipped=(\d+) ", 60, where=lambda m: int(m.group(2)) > 0)
    p.sigkill()  # most likely with a batch on the wire
    print(f"killed with pending={m.group(1)} shipped={m.group(2)}")

    p = Probe(tool, spool, "n4", db.conninfo("mfa"), "--batch", "50", "--until-shipped",
              "--deadline", "60")
    assert p.epoch() == epoch + 1
    rc, st = p.finish()
    assert rc == 0, p.lines[-5:]
    print(f"after restart: shipped={st['shipped']} duplicates={st['duplicates']}")
    assert_exactly_once(db, "n4", {epoch: 3000})


def test_shipping_the_same_spool_twice_stores_each_record_once(tool, db, spool):
    p = Probe(tool, spool, "n5", db.conninfo("mfa"), "--append", "300", "--until-shipped",
              "--deadline", "60")
    epoch = p.epoch()
    assert p.finish()[0] == 0
    assert_exactly_once(db, "n5", {epoch: 300})

    # forget how far shipping got, in the spool and in two copies of it
    copies = [spool, spool + "-copy1", spool + "-copy2"]
    for c in copies[1:]:
        shutil.copytree(spool, c)
    for c in copies:
        os.unlink(os.path.join(c, "shipped"))

    p = Probe(tool, spool, "n5", db.conninfo("mfa"), "--until-shipped", "--deadline", "60")
    rc, st = p.finish()
    assert rc == 0
    assert st["shipped"] == 300 and st["duplicates"] == 300
    assert_exactly_once(db, "n5", {epoch: 300})
    assert segments(spool) == []  # shipped and no longer active: removed

    # two shippers of the same records at once: the unique key still holds
    probes = [Probe(tool, c, "n5", db.conninfo("mfa"), "--batch", "20", "--until-shipped",
                    "--deadline", "60") for c in copies[1:]]
    for q in probes:
        rc, st = q.finish()
        assert rc == 0 and st["duplicates"] == 300
    assert_exactly_once(db, "n5", {epoch: 300})
    for c in copies[1:]:
        shutil.rmtree(c, ignore_errors=True)
