"""mfa-node sign-ins against a real primary + standby: SMS challenges, TOTP
with replay protection across nodes, read-your-writes, lockout and
throttling, and the primary going away (read-only writes, offline replay
marks and lockout, the auth log replayed exactly once, also after SIGKILL)."""

import re
import signal
import time

import pytest

import otp_ref
from pgcluster import wait_for


def make_user(node, username, **fields):
    body = {"username": username, **fields}
    status, doc = node.api("POST", "/api/v1/users", body)
    assert status == 201, doc
    return doc


def enrol_totp(node, username):
    status, doc = node.api("POST", f"/api/v1/users/{username}/totp")
    assert status == 201, doc
    assert doc["otpauth_uri"].startswith("otpauth://totp/")
    return otp_ref.b32decode(doc["secret"])


def auth(node, key, **body):
    return node.request("POST", "/api/v1/auth", body, key=key)


def verify(node, key, challenge_id, code):
    return node.request("POST", f"/api/v1/challenges/{challenge_id}/verify", {"otp": code},
                        key=key)


def last_code(node, phone):
    msgs = [m for m in node.sms() if m["to"] == phone]
    assert msgs, f"no SMS to {phone} in {node.outbox}"
    return re.search(r"\b(\d{6})\b", msgs[-1]["text"]).group(1)


def test_sms_challenge_flow(node_cluster):
    n1, key = node_cluster.nodes[0], node_cluster.auth_key
    make_user(n1, "alice", method="sms", phone="+4917012345678", pin="1234")

    status, doc = auth(n1, key, username="alice", pin="1234")
    assert status == 200 and doc["result"] == "challenge", doc
    cid = doc["challenge_id"]
    assert cid.startswith("n1-") and doc["expires_in"] > 0
    code = last_code(n1, "+4917012345678")
    wrong = "000000" if code != "000000" else "111111"

    status, doc = verify(n1, key, cid, wrong)
    assert (status, doc["result"], doc["reason"], doc["attempts_left"]) == \
        (200, "rejected", "wrong_code", 2)
    status, doc = verify(n1, key, cid, code)
    assert (status, doc["result"]) == (200, "accepted"), doc
    # One-time: the same code again is refused, and the challenge is gone.
    status, doc = verify(n1, key, cid, code)
    assert status == 410 and doc["error"] == "challenge_expired"

    # Attempts exhausted: after three wrong codes even the right one fails.
    status, doc = auth(n1, key, username="alice", pin="1234")
    cid = doc["challenge_id"]
    code = last_code(n1, "+4917012345678")
    results = [verify(n1, key, cid, wrong)[1] for _ in range(3)]
    assert [r.get("reason") for r in results] == ["wrong_code", "wrong_code",
                                                  "attempts_exhausted"]
    assert verify(n1, key, cid, code)[0] == 410

    # Those wrong codes count toward lockout (the success before cleared the
    # count): three so far, two wrong PINs make five.
    assert auth(n1, key, username="alice", pin="9999")[1]["reason"] == "wrong_pin"
    assert auth(n1, key, username="alice", pin="9999")[1]["reason"] == "wrong_pin"
    assert auth(n1, key, username="alice", pin="1234")[1]["reason"] == "locked_out"

    # A wrong or missing PIN never sends an SMS.
    make_user(n1, "alice2", method="sms", phone="+4917012345679", pin="1234")
    before = len(n1.sms())
    assert auth(n1, key, username="alice2", pin="9999")[1]["reason"] == "wrong_pin"
    assert auth(n1, key, username="alice2")[1]["reason"] == "pin_required"
    assert len(n1.sms()) == before
    # The code is not in the node's log.
    assert code not in n1.log()


def test_sms_challenge_expires(node_cluster_factory):
    cluster = node_cluster_factory("challenge = { ttl = 2; };")
    n1, key = cluster.nodes[0], cluster.auth_key
    make_user(n1, "bob", method="sms", phone="+15550001111")
    status, doc = auth(n1, key, username="bob")
    assert doc["result"] == "challenge"
    code = last_code(n1, "+15550001111")
    time.sleep(2.5)  # the TTL is the behaviour under test
    status, doc = verify(n1, key, doc["challenge_id"], code)
    assert status == 410 and doc["error"] == "challenge_expired"


def test_a_challenge_of_another_node_is_expired_here(node_cluster):
    n1, n2, key = node_cluster.nodes[0], node_cluster.nodes[1], node_cluster.auth_key
    make_user(n1, "carol", method="sms", phone="+15550002222")
    doc = auth(n1, key, username="carol")[1]
    status, doc = verify(n2, key, doc["challenge_id"], "123456")
    assert status == 410 and doc["error"] == "challenge_expired"


def test_totp_accepted_once_cluster_wide(node_cluster):
    n1, n2, key = node_cluster.nodes[0], node_cluster.nodes[1], node_cluster.auth_key
    make_user(n1, "dave", method="totp")
    seed = enrol_totp(n1, "dave")
    # Read your writes: the very next request, on the standby's node.
    code = otp_ref.totp(seed)
    status, doc = auth(n2, key, username="dave", otp=code)
    assert (status, doc["result"]) == (200, "accepted"), doc
    # The same code again: refused here and on the other node.
    assert auth(n2, key, username="dave", otp=code)[1]["reason"] == "replayed"
    assert auth(n1, key, username="dave", otp=code)[1]["reason"] == "replayed"
    # The next step's code (within the drift window) is accepted once.
    nxt = otp_ref.totp(seed, step_offset=1)
    assert auth(n1, key, username="dave", otp=nxt)[1]["result"] == "accepted"
    assert auth(n2, key, username="dave", otp=nxt)[1]["reason"] == "replayed"
    # A code from far away is wrong.
    far = otp_ref.totp(seed, step_offset=-20)
    assert auth(n1, key, username="dave", otp=far)[1]["reason"] == "wrong_code"


def test_user_created_through_n1_signs_in_through_n2_at_once(node_cluster):
    n1, n2, key = node_cluster.nodes[0], node_cluster.nodes[1], node_cluster.auth_key
    for i in range(5):
        make_user(n1, f"rw{i}", method="sms", phone=f"+1555000{i:04d}", pin="4321")
        status, doc = auth(n2, key, username=f"rw{i}", pin="4321")
        assert doc["result"] == "challenge", doc


def test_lockout_is_per_address_and_throttle_per_address(node_cluster):
    n1, key = node_cluster.nodes[0], node_cluster.auth_key
    make_user(n1, "erin", method="sms", phone="+15550003333", pin="2468")
    for _ in range(5):
        assert auth(n1, key, username="erin", pin="0000",
                    client_ip="198.51.100.7")[1]["reason"] == "wrong_pin"
    # Locked from that address, even with the right PIN ...
    doc = auth(n1, key, username="erin", pin="2468", client_ip="198.51.100.7")[1]
    assert doc["reason"] == "locked_out"
    # ... but the stranger did not lock erin out from her own address.
    assert auth(n1, key, username="erin", pin="2468",
                client_ip="203.0.113.9")[1]["result"] == "challenge"
    # An address that keeps failing is throttled (30 failures a minute).
    answers = [auth(n1, key, username=f"nobody{i}", client_ip="192.0.2.50")
               for i in range(40)]
    assert answers[0][1]["reason"] == "unknown_user"
    assert answers[-1][0] == 429 and answers[-1][1]["reason"] == "throttled"


def test_bad_input_gets_clear_errors(node_cluster):
    n1, key = node_cluster.nodes[0], node_cluster.auth_key
    cases = [
        ({"username": 5}, "username"),
        ({"username": "a b"}, "username"),
        ({"username": "x", "method": "fax"}, "method"),
        ({"username": "x", "otp": 123456}, "otp"),
        ({"username": "x", "client_ip": "not-an-ip"}, "client_ip"),
        ({}, "username"),
    ]
    for body, field in cases:
        status, doc = auth(n1, key, **body)
        assert status == 400 and doc["error"] == "bad_request" and field in doc["detail"], doc
    assert n1.request("POST", "/api/v1/auth", "{nope", key=key,
                      headers={"Content-Type": "application/json"})[0] == 400
    assert n1.request("POST", "/api/v1/auth", {"username": "x"})[0] == 401
    assert n1.request("POST", "/api/v1/challenges/zz/verify", {"otp": "1"}, key=key)[0] == 400
    assert n1.request("GET", "/api/v1/challenges/n1-AAAAAAAAAAAAAAAAAAAAAA", key=key)[0] == 410
    assert n1.request("POST", "/api/v1/auth", {"username": "x" * 5000}, key=key)[0] == 400
    assert n1.status()["role"] == "primary"


def auth_log_rows(cluster, node_id):
    return cluster.pg.primary.query(
        "SELECT username, result, reason, boot_epoch, seq FROM auth_log WHERE node_id = %s "
        "ORDER BY boot_epoch, seq", (node_id,), dbname="mfa")


def test_primary_gone_sign_ins_go_on_and_nothing_is_lost(node_cluster):
    cluster = node_cluster
    n1, n2, key = cluster.nodes[0], cluster.nodes[1], cluster.auth_key
    make_user(n1, "frank", method="totp")
    seed = enrol_totp(n1, "frank")
    make_user(n1, "gina", method="totp")
    gina_seed = enrol_totp(n1, "gina")

    cluster.pg.primary.stop()
    wait_for(lambda: not n2.status()["writable"], 15, "n2 sees no primary")
    decisions = []

    def signin(**body):
        doc = auth(n2, key, **body)[1]
        decisions.append((body["username"], doc["result"], doc.get("reason") or ""))
        return doc

    # Sign-ins keep working from the standby; replay is still refused.
    code = otp_ref.totp(seed)
    assert signin(username="frank", otp=code)["result"] == "accepted"
    assert signin(username="frank", otp=code)["reason"] == "replayed"
    # Writes answer read_only at once.
    start = time.monotonic()
    status, doc = n2.api("POST", "/api/v1/users", {"username": "late", "method": "totp"})
    assert status == 503 and doc["error"] == "read_only"
    assert time.monotonic() - start < 1.0
    # Lockout still locks, with the tighter offline limit (3).
    for _ in range(3):
        assert signin(username="gina", otp="000000")["reason"] == "wrong_code"
    assert signin(username="gina", otp=otp_ref.totp(gina_seed))["reason"] == "locked_out"

    # The node dies without warning and comes back; the spool survives.
    n2.stop(signal.SIGKILL)
    n2.start()
    later = otp_ref.totp(seed, step_offset=1)
    assert signin(username="frank", otp=later)["result"] == "accepted"

    # The primary returns: writes work again by themselves, and the auth log
    # holds every decision made meanwhile, exactly once.
    cluster.pg.primary.start()
    wait_for(lambda: n2.status()["writable"], 30, "n2 writable again")
    # Before the merge reached the primary, this node's own marks still hold.
    assert signin(username="frank", otp=later)["reason"] == "replayed"
    wait_for(lambda: len(auth_log_rows(cluster, "n2")) >= len(decisions), 30,
             "n2's auth log shipped")
    rows = auth_log_rows(cluster, "n2")
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted(decisions)
    assert len({(r[3], r[4]) for r in rows}) == len(rows)
    assert len({r[3] for r in rows}) == 2  # two boot epochs: before and after SIGKILL
    # The offline replay marks were merged: the codes used offline stay used.
    wait_for(lambda: "auth.merged" in n2.log(), 15, "n2 merged its offline marks")
    assert auth(n1, key, username="frank", otp=code)[1]["reason"] == "replayed"
    status, doc = n2.api("POST", "/api/v1/users", {"username": "late", "method": "totp"})
    assert status == 201, doc
