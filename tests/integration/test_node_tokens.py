"""POST /api/v1/tokens/import on mfa-node (node/tokens_import.c) against a
real primary and standby: CSV seed files and PSKC files (plain and
encrypted, written by pskc_ref.py with Python's own XML, PBKDF2, AES-CBC
and HMAC) imported through either node, their codes accepted at once
through the other (remote_apply); the seeds sealed bound to their serials; one audit
row per token and never a seed in it; all or nothing (a serial in the
cluster already: 409, an unknown user: 422); bad files, a missing or wrong
passphrase, a wrong content type, the scope, the body limit; the event loop
answering while a PBKDF2 of millions of iterations runs; the passphrase in
no log; and, without a primary, 503 read_only."""

import base64
import glob
import json
import os
import secrets
import socket
import threading
import time

import pytest

import otp_ref
from nodes import NodeCluster
from pgcluster import wait_for
from pskc_ref import csv_file, pskc_file, totp_code
from test_node_users import db, open_seal, sync_standby

T = "/api/v1/tokens/import"
CSV = "text/csv"
PSKC_TYPE = "application/pskc+xml"


@pytest.fixture(scope="module")
def cluster(tool, build_dir):
    """n1 on the primary, n2 on its synchronous standby (remote_apply waits for it)."""
    c = NodeCluster(os.path.join(build_dir, "node", "mfa-node"), tool("mfa-schema-apply"))
    try:
        yield sync_standby(c.start())
    finally:
        c.close()


def post(node, body, ctype, key=None, headers=None, timeout=30):
    h = {"Content-Type": ctype} if ctype else {}
    h.update(headers or {})
    return node.api("POST", T, body, key=key, headers=h, timeout=timeout)


def add_user(node, name, method, **extra):
    status, doc = node.api("POST", "/api/v1/users", {"username": name, "method": method, **extra})
    assert status == 201, doc


def signin(node, user, code):
    status, doc = node.api("POST", "/api/v1/auth", {"username": user, "otp": code})
    assert status in (200, 401, 403), (status, doc)
    return doc


def accepted(node, user, code):
    doc = signin(node, user, code)
    assert doc.get("result") == "accepted", (node.id, user, doc)


def token_count(cluster):
    return db(cluster, "SELECT count(*) FROM oath_tokens")[0][0]


def audit(cluster, serial):
    return db(cluster, "SELECT actor, node_id, detail FROM admin_audit"
                       " WHERE action = 'token.import' AND target = %s", (serial,))


def test_csv_import_through_the_standby_signs_in_at_once(cluster):
    n1, n2 = cluster.nodes
    add_user(n1, "carol", "totp")
    add_user(n1, "dave", "hotp")
    add_user(n1, "erin", "sms", phone="+15550100")
    s1, s2, s3, s4 = (secrets.token_bytes(n) for n in (20, 20, 32, 20))
    body = csv_file([
        dict(serial="API-T1", seed=base64.b32encode(s1).decode().rstrip("=").lower(),
             type="totp", digits="6", period="30", counter="", algorithm="", user="carol"),
        dict(serial="API-H1", seed=s2.hex(), type="HOTP", digits="6", period="", counter="5",
             algorithm="SHA1", user="DAVE"),
        dict(serial="API-T2", seed=s3.hex().upper(), type="totp", digits="8", period="30",
             counter="", algorithm="SHA256", user=""),
        dict(serial="API-T3", seed=s4.hex(), type="totp", digits="6", period="30",
             counter="", algorithm="", user="erin"),
    ])
    # through the standby's node: the write goes to the primary, remote_apply
    status, doc = post(n2, body, "text/csv; charset=utf-8")
    assert status == 201, doc
    assert doc == {"imported": 4, "assigned": 3,
                   "serials": ["API-T1", "API-H1", "API-T2", "API-T3"],
                   "method_mismatch": ["erin"]}

    # read-your-writes: both nodes accept the codes right after the answer
    accepted(n2, "carol", totp_code(s1))
    accepted(n2, "dave", otp_ref.hotp(s2, 5))
    accepted(n1, "dave", otp_ref.hotp(s2, 6))
    assert signin(n1, "dave", otp_ref.hotp(s2, 5))["result"] != "accepted"

    rows = db(cluster, "SELECT t.serial, t.kind, t.algorithm, t.digits, t.period, t.counter,"
                       " u.username, t.seed_sealed FROM oath_tokens t"
                       " LEFT JOIN users u ON u.id = t.user_id ORDER BY t.serial")
    got = {r[0]: r[1:7] for r in rows}
    assert got["API-T2"] == ("totp", "SHA256", 8, 30, 0, None)
    assert got["API-T3"][5] == "erin"
    assert got["API-H1"][0] == "hotp" and got["API-H1"][5] == "dave"
    seeds = {"API-T1": s1, "API-H1": s2, "API-T2": s3, "API-T3": s4}
    for serial, *_rest, sealed in rows:
        assert open_seal(cluster.key_file, sealed, serial) == seeds[serial]  # bound to it
        with pytest.raises(Exception):
            open_seal(cluster.key_file, sealed, serial + "x")

    # one audit row per token, the API key's name as actor, never a seed
    for serial, user in (("API-T1", "carol"), ("API-H1", "dave"), ("API-T2", None),
                         ("API-T3", "erin")):
        (actor, node_id, detail), = audit(cluster, serial)
        assert (actor, node_id) == ("test-admin", "n2")
        assert detail == {"user": user, "kind": "hotp" if "H" in serial else "totp",
                          "format": "csv"}
    text = json.dumps(db(cluster, "SELECT * FROM admin_audit", None), default=str).lower()
    for s in seeds.values():
        assert s.hex() not in text and base64.b32encode(s).decode()[:16].lower() not in text
    for node in (n1, n2):
        log = node.log()
        for s in seeds.values():
            assert s.hex() not in log.lower()


@pytest.mark.parametrize("suite", [None, "aes128-sha1", "aes256-sha256"])
def test_pskc_plain_and_encrypted(cluster, suite):
    n1, n2 = cluster.nodes
    tag = (suite or "plain").lower()
    tuser, huser = f"pt-{tag}", f"ph-{tag}"
    add_user(n1, tuser, "totp")
    add_user(n1, huser, "hotp")
    st, sh = secrets.token_bytes(20), secrets.token_bytes(20)
    passphrase = f"pass-{secrets.token_hex(12)}" if suite else None
    body = pskc_file([dict(serial=f"PSKC-T-{tag}", kind="totp", seed=st, user=tuser),
                      dict(serial=f"PSKC-H-{tag}", kind="hotp", seed=sh, counter=3,
                           user=huser.upper()),
                      dict(serial=f"PSKC-N-{tag}", kind="totp", seed=secrets.token_bytes(20),
                           digits=8, period=60)],
                     passphrase, suite or "aes128-sha1")
    headers = {"X-PSKC-Passphrase": passphrase} if passphrase else None
    status, doc = post(n1, body, PSKC_TYPE, headers=headers)
    assert status == 201, doc
    assert doc["imported"] == 3 and doc["assigned"] == 2 and doc["method_mismatch"] == []
    assert doc["serials"] == [f"PSKC-T-{tag}", f"PSKC-H-{tag}", f"PSKC-N-{tag}"]
    accepted(n2, tuser, totp_code(st))  # imported through n1, signs in through n2
    accepted(n2, huser, otp_ref.hotp(sh, 3))
    assert db(cluster, "SELECT digits, period FROM oath_tokens WHERE serial = %s",
              (f"PSKC-N-{tag}",)) == [(8, 60)]
    (_, _, detail), = audit(cluster, f"PSKC-H-{tag}")
    assert detail == {"user": huser, "kind": "hotp", "format": "pskc"}
    if passphrase:
        assert_nowhere_in_logs(cluster, passphrase)


def assert_nowhere_in_logs(cluster, needle):
    """<needle> is in no log file of the cluster: the nodes' and PostgreSQL's."""
    files = [n.logfile for n in cluster.nodes]
    files += glob.glob(os.path.join(cluster.base, "**", "*.log"), recursive=True)
    files += glob.glob(os.path.join(cluster.base, "**", "log", "*"), recursive=True)
    assert len(files) > 2
    for path in files:
        with open(path, "rb") as f:
            assert needle.encode() not in f.read(), path


def test_pskc_passphrase_missing_or_wrong(cluster):
    n1, n2 = cluster.nodes
    add_user(n1, "pw-user", "totp")
    passphrase = f"right-{secrets.token_hex(12)}"
    wrong = f"wrong-{secrets.token_hex(12)}"
    seed = secrets.token_bytes(20)
    body = pskc_file([dict(serial="PW-1", kind="totp", seed=seed, user="pw-user")], passphrase)
    before = token_count(cluster)

    status, doc = post(n1, body, PSKC_TYPE)
    assert status == 400 and doc["error"] == "passphrase_required", doc
    assert "X-PSKC-Passphrase" in doc["detail"]

    status, doc = post(n2, body, PSKC_TYPE, headers={"X-PSKC-Passphrase": wrong})
    assert status == 400 and doc["error"] == "wrong_passphrase", doc
    assert "wrong passphrase, or the file was altered" in doc["detail"]

    assert token_count(cluster) == before

    status, doc = post(n2, body, PSKC_TYPE, headers={"X-PSKC-Passphrase": passphrase})
    assert status == 201 and doc["serials"] == ["PW-1"], doc
    accepted(n1, "pw-user", totp_code(seed))
    for p in (passphrase, wrong):
        assert_nowhere_in_logs(cluster, p)


def test_all_or_nothing(cluster):
    n1, n2 = cluster.nodes
    add_user(n1, "aon", "totp")
    s = secrets.token_bytes(20)
    first = csv_file([dict(serial="AON-1", seed=s.hex(), type="totp", user="aon")])
    assert post(n1, first, CSV)[0] == 201
    before = token_count(cluster)
    audits = db(cluster, "SELECT count(*) FROM admin_audit")[0][0]

    # a serial the cluster has: nothing of the file is written
    body = csv_file([dict(serial="AON-2", seed=secrets.token_hex(20), type="totp", user="aon"),
                     dict(serial="AON-1", seed=secrets.token_hex(20), type="totp", user=""),
                     dict(serial="AON-3", seed=secrets.token_hex(20), type="hotp", user="")])
    status, doc = post(n2, body, CSV)
    assert status == 409 and doc["error"] == "conflict", doc
    assert doc["serials"] == ["AON-1"] and '"AON-1"' in doc["detail"]
    assert "nothing was imported" in doc["detail"]

    # a user the cluster does not know: the same
    body = csv_file([dict(serial="AON-4", seed=secrets.token_hex(20), type="totp", user="aon"),
                     dict(serial="AON-5", seed=secrets.token_hex(20), type="totp",
                          user="ghost"),
                     dict(serial="AON-6", seed=secrets.token_hex(20), type="totp",
                          user="Ghost"),
                     dict(serial="AON-7", seed=secrets.token_hex(20), type="totp",
                          user="phantom")])
    status, doc = post(n1, body, CSV)
    assert status == 422 and doc["error"] == "unknown_users", doc
    assert sorted(u.lower() for u in doc["users"]) == ["ghost", "phantom"]
    assert "no such users" in doc["detail"]

    assert token_count(cluster) == before
    assert db(cluster, "SELECT count(*) FROM admin_audit")[0][0] == audits
    accepted(n1, "aon", totp_code(s))  # the first token is still the one


def test_bad_requests(cluster):
    n1, n2 = cluster.nodes
    before = token_count(cluster)
    good = csv_file([dict(serial="BAD-1", seed=secrets.token_hex(20), type="totp")])

    # a bad CSV file: the reader's sentence, naming the line
    body = b"serial,seed,type\r\nBAD-2,%s,totp\r\nBAD-3,zz!,totp\r\n" % \
        secrets.token_hex(20).encode()
    status, doc = post(n1, body, CSV)
    assert status == 400 and doc["error"] == "bad_file", doc
    assert "line 3" in doc["detail"]
    status, doc = post(n1, b"serial,seed,type,colour\r\n", CSV)
    assert status == 400 and doc["error"] == "bad_file" and "colour" in doc["detail"], doc
    status, doc = post(n1, b"", CSV)
    assert status == 400 and doc["error"] == "bad_file", doc

    # a bad PSKC file: naming the key package
    pskc = pskc_file([dict(serial="BAD-4", kind="totp", seed=secrets.token_bytes(20)),
                      dict(serial="BAD-5", kind="totp", seed=b"short")])
    status, doc = post(n2, pskc, PSKC_TYPE)
    assert status == 400 and doc["error"] == "bad_file", doc
    assert "key package 2" in doc["detail"]
    status, doc = post(n2, b"<not xml", PSKC_TYPE)
    assert status == 400 and doc["error"] == "bad_file", doc
    # CSV sent as PSKC: read as what it says it is
    status, doc = post(n2, good, PSKC_TYPE)
    assert status == 400 and doc["error"] == "bad_file", doc

    # the content type
    for ctype in ("application/json", "text/plain", "application/xml", None):
        status, doc = post(n1, good, ctype)
        assert status == 415 and doc["error"] == "unsupported_media_type", (ctype, doc)
        assert "text/csv" in doc["detail"] and "application/pskc+xml" in doc["detail"]

    # the scope: an auth key may not import, no key is 401
    status, doc = post(n1, good, CSV, key=cluster.auth_key)
    assert status == 403, doc
    status, doc = n1.request("POST", T, good, headers={"Content-Type": CSV})
    assert status == 401, doc

    # over node.http.max_body (1 MiB by default): 413 from the HTTP server,
    # told by Content-Length before a byte of the body (as test_node_users.py)
    with socket.create_connection(("127.0.0.1", n1.port), timeout=10) as sock:
        sock.sendall((f"POST {T} HTTP/1.1\r\nHost: x\r\nContent-Type: {CSV}\r\n"
                      f"Authorization: Bearer {cluster.admin_key}\r\n"
                      f"Content-Length: {1048576 + 1}\r\n\r\n").encode())
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]

    # a header-only file is a valid file of no tokens
    status, doc = post(n1, b"serial,seed,type\r\n", CSV)
    assert status == 201 and doc["imported"] == 0 and doc["serials"] == [], doc
    assert token_count(cluster) == before


def test_pbkdf2_runs_off_the_event_loop(cluster):
    """A file whose key takes millions of PBKDF2 iterations: the node answers
    /health at once meanwhile, and a second import is told to wait."""
    n1, _ = cluster.nodes
    add_user(n1, "slow", "totp")
    passphrase = f"slow-{secrets.token_hex(8)}"
    seed = secrets.token_bytes(20)
    start = time.monotonic()
    body = pskc_file([dict(serial="SLOW-1", kind="totp", seed=seed, user="slow")], passphrase,
                     "aes256-sha256", iterations=3_000_000)
    python_took = time.monotonic() - start
    result = {}

    def run():
        # The probes below may take the node's one import slot first: a client
        # told 429 busy tries again, as the answer says.
        t0 = time.monotonic()
        while True:
            result["reply"] = post(n1, body, PSKC_TYPE,
                                   headers={"X-PSKC-Passphrase": passphrase}, timeout=120)
            if result["reply"][0] != 429 or time.monotonic() - t0 > 60:
                break
        result["took"] = time.monotonic() - t0

    th = threading.Thread(target=run)
    th.start()
    worst, busy = 0.0, None
    while th.is_alive():
        t0 = time.monotonic()
        assert n1.request("GET", "/health")[0] == 200
        worst = max(worst, time.monotonic() - t0)
        status, doc = post(n1, b"serial,seed,type\r\nX,zz!,totp\r\n", CSV)
        assert status in (400, 429), doc
        if status == 429:
            busy = doc
    th.join()
    status, doc = result["reply"]
    assert status == 201 and doc["serials"] == ["SLOW-1"], doc
    print(f"PBKDF2 3M: python {python_took:.2f} s, import {result['took']:.2f} s, "
          f"slowest /health meanwhile {worst * 1000:.0f} ms")
    assert worst < 0.5, worst
    if result["took"] > 0.5:  # long enough for the probes to have met it
        assert busy and busy["error"] == "busy", busy
    accepted(n1, "slow", totp_code(seed))
    assert_nowhere_in_logs(cluster, passphrase)


def test_without_a_primary_imports_are_read_only(node_cluster):
    n1, n2 = node_cluster.nodes
    node_cluster.pg.primary.stop()
    body = csv_file([dict(serial="RO-1", seed=secrets.token_hex(20), type="totp")])
    for node in (n2, n1):
        wait_for(lambda node=node: post(node, body, CSV)[0] == 503, 10, f"{node.id} read_only")
        status, doc = post(node, body, CSV)
        assert status == 503 and doc["error"] == "read_only", doc
