"""More of mfa-node: API keys created, scoped and revoked through the API,
the process endpoints, HOTP with lookahead and replay, and the SMS limits."""

import re
import secrets

import otp_ref
from pgcluster import wait_for


def test_api_keys_are_created_scoped_and_revoked(node_cluster):
    n1, n2 = node_cluster.nodes
    status, doc = n1.api("POST", "/api/v1/api-keys", {"name": "vpn", "scope": "auth"})
    assert status == 201 and doc["key"].startswith("mfa_") and doc["scope"] == "auth"
    key, key_id = doc["key"], doc["id"]
    # Works at once on the node that made it, within a second on the other.
    assert n1.request("POST", "/api/v1/auth", {"username": "nobody"}, key=key)[0] == 200
    wait_for(lambda: n2.request("POST", "/api/v1/auth", {"username": "nobody"},
                                key=key)[0] == 200, 5, "the new key on n2")
    # Scope auth may not administer.
    assert n1.request("GET", "/api/v1/users", key=key)[0] == 403
    # The key is never listed, only its prefix; the database has only its hash.
    status, doc = n1.api("GET", "/api/v1/api-keys")
    listed = [k for k in doc["api_keys"] if k["id"] == key_id][0]
    assert "key" not in listed and key.startswith(listed["prefix"])
    rows = node_cluster.pg.primary.query("SELECT key_hash FROM api_keys WHERE id = %s",
                                         (key_id,), dbname="mfa")
    assert rows[0][0] != key and len(rows[0][0]) == 64
    # Revoked: refused on both nodes within a second or two.
    status, doc = n1.api("DELETE", f"/api/v1/api-keys/{key_id}")
    assert status == 200 and doc["revoked"] is True
    assert n1.request("POST", "/api/v1/auth", {"username": "nobody"}, key=key)[0] == 401
    wait_for(lambda: n2.request("POST", "/api/v1/auth", {"username": "nobody"},
                                key=key)[0] == 401, 5, "the revoked key refused on n2")
    assert n1.api("DELETE", f"/api/v1/api-keys/{key_id}")[0] == 404
    assert n1.api("POST", "/api/v1/api-keys", {"name": "x", "scope": "root"})[0] == 400
    # Both changes are in the audit log, by the admin key's name.
    audit = node_cluster.pg.primary.query(
        "SELECT actor, action FROM admin_audit WHERE action LIKE 'api_key.%%' ORDER BY id",
        dbname="mfa")
    assert audit == [("test-admin", "api_key.create"), ("test-admin", "api_key.revoke")]


def test_process_endpoints(node_cluster):
    n1, n2 = node_cluster.nodes
    assert n1.request("GET", "/health") == (200, {"status": "ok"})
    assert n2.request("GET", "/ready")[0] == 200
    s1, s2 = n1.status(), n2.status()
    assert (s1["node_id"], s1["role"], s1["writable"]) == ("n1", "primary", True)
    assert (s2["node_id"], s2["role"], s2["writable"]) == ("n2", "standby", True)
    assert s2["primary"] == f"127.0.0.1:{node_cluster.pg.primary.port}"
    assert s2["lag_bytes"] >= 0 and "challenges" in s2 and "version" in s2
    status, text = n1.request("GET", "/metrics")
    text = text.decode()
    assert status == 200 and re.search(r'^mfa_auth_total\{result="accepted"\} \d+$', text, re.M)
    assert "# TYPE mfa_challenges_live gauge" in text


def test_hotp_lookahead_and_replay(node_cluster):
    n1, n2 = node_cluster.nodes
    key = node_cluster.auth_key
    assert n1.api("POST", "/api/v1/users", {"username": "hank", "method": "hotp"})[0] == 201
    seed, serial = secrets.token_bytes(20), "hw-0001"
    node_cluster.pg.primary.query(
        "INSERT INTO oath_tokens (serial, kind, seed_sealed, user_id)"
        " SELECT %s, 'hotp', %s, id FROM users WHERE username = 'hank'",
        (serial, node_cluster.seal(seed, serial)), dbname="mfa")

    def auth(node, counter):
        return node.request("POST", "/api/v1/auth",
                            {"username": "hank", "otp": otp_ref.hotp(seed, counter)},
                            key=key)[1]

    assert auth(n1, 0)["result"] == "accepted"
    # Refused on the other node. Whether it says so as "replayed" (its standby
    # had not yet replayed the new counter, the primary's update refused it) or
    # "wrong_code" (the counter had moved past it) depends on replication timing.
    doc = auth(n2, 0)
    assert doc["result"] == "rejected" and doc["reason"] in ("replayed", "wrong_code")
    # A token pressed a few times unseen: within the lookahead, and it resyncs.
    assert auth(n2, 5)["result"] == "accepted"
    assert auth(n1, 3)["reason"] in ("replayed", "wrong_code")
    assert auth(n1, 6)["result"] == "accepted"
    # Beyond the lookahead (10) it is wrong.
    assert auth(n1, 30)["reason"] == "wrong_code"
    rows = node_cluster.pg.primary.query("SELECT counter FROM oath_tokens WHERE serial = %s",
                                         (serial,), dbname="mfa")
    assert rows == [(7,)]


def test_sms_limits_per_user_and_cluster(node_cluster_factory):
    cluster = node_cluster_factory(
        "sms = { per_user_per_hour = 2; per_phone_per_hour = 2; cluster_per_hour = 5; };")
    n1, n2 = cluster.nodes
    key = cluster.auth_key
    for i in range(4):
        assert n1.api("POST", "/api/v1/users",
                      {"username": f"s{i}", "method": "sms", "phone": f"+1555123000{i}"})[0] == 201

    def start(node, user):
        return node.request("POST", "/api/v1/auth", {"username": user}, key=key)

    assert start(n1, "s0")[1]["result"] == "challenge"
    assert start(n1, "s0")[1]["result"] == "challenge"
    # The third in the hour, even through another node, is refused.
    wait_for(lambda: cluster.pg.standbys[0].query(
        "SELECT count(*) FROM sms_sends", dbname="mfa")[0][0] == 2, 10, "sends replicated")
    status, doc = start(n2, "s0")
    assert status == 429 and doc["reason"] == "sms_rate_limited"
    # The cluster-wide cap (5 an hour) stops the sixth whoever asks.
    results = [start(n1, u)[1] for u in ("s1", "s1", "s2")]
    assert all(r["result"] == "challenge" for r in results)
    status, doc = start(n1, "s3")
    assert status == 503 and doc["reason"] == "sms_cap_reached"
    assert len(n1.sms()) == 5


def test_parallel_sms_starts_respect_the_per_user_limit(node_cluster_factory):
    import concurrent.futures
    cluster = node_cluster_factory("sms = { per_user_per_hour = 5; };")
    n2, key = cluster.nodes[1], cluster.auth_key
    assert cluster.nodes[0].api("POST", "/api/v1/users", {"username": "pat", "method": "sms",
                                                          "phone": "+15557770000"})[0] == 201
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(
            lambda _: n2.request("POST", "/api/v1/auth", {"username": "pat"}, key=key),
            range(30)))
    challenges = [a for a in answers if a[1]["result"] == "challenge"]
    limited = [a for a in answers if a[0] == 429]
    assert len(challenges) == 5 and len(limited) == 25, answers
    assert limited[0][1]["error"] == "sms_rate_limited" and limited[0][1]["detail"]
    assert len(n2.sms()) == 5


def test_verify_counts_against_the_address_that_signed_in(node_cluster):
    n1, key = node_cluster.nodes[0], node_cluster.auth_key
    n1.api("POST", "/api/v1/users", {"username": "quinn", "method": "sms",
                                     "phone": "+15557770001"})
    doc = n1.request("POST", "/api/v1/auth", {"username": "quinn",
                                              "client_ip": "203.0.113.66"}, key=key)[1]
    assert n1.request("POST", f"/api/v1/challenges/{doc['challenge_id']}/verify",
                      {"otp": "000000"}, key=key)[1]["reason"] == "wrong_code"
    rows = wait_for(lambda: node_cluster.pg.primary.query(
        "SELECT client_ip, failures FROM lockouts WHERE username = 'quinn'", dbname="mfa"),
        10, "the failure recorded")
    assert rows == [("203.0.113.66", 1)]


def test_a_totp_user_with_a_pin_must_give_it(node_cluster):
    n1, key = node_cluster.nodes[0], node_cluster.auth_key
    n1.api("POST", "/api/v1/users", {"username": "rita", "method": "totp", "pin": "8642"})
    status, doc = n1.api("POST", "/api/v1/users/rita/totp")
    seed = otp_ref.b32decode(doc["secret"])

    def auth(**body):
        return n1.request("POST", "/api/v1/auth", {"username": "rita", **body}, key=key)[1]

    assert auth(otp=otp_ref.totp(seed))["reason"] == "pin_required"
    assert auth(otp=otp_ref.totp(seed), pin="0000")["reason"] == "wrong_pin"
    assert auth(otp=otp_ref.totp(seed), pin="8642")["result"] == "accepted"


def test_admin_writes_wait_until_the_standby_applied_them(node_cluster):
    import threading
    n1, n2 = node_cluster.nodes
    standby = node_cluster.pg.standbys[0]
    standby.query("SELECT pg_wal_replay_pause()")
    done = []
    t = threading.Thread(target=lambda: done.append(
        n1.api("POST", "/api/v1/users", {"username": "sam", "method": "totp"}, timeout=30)))
    try:
        t.start()
        t.join(1.5)
        assert not done, "acknowledged before the standby applied it"
    finally:
        standby.query("SELECT pg_wal_replay_resume()")
    t.join(30)
    assert done and done[0][0] == 201, done
    assert n2.api("GET", "/api/v1/users/sam")[0] == 200


def test_a_key_file_others_can_read_stops_the_start(node_cluster_factory):
    import os
    cluster = node_cluster_factory(start=False)
    n1 = cluster.nodes[0]
    os.chmod(cluster.key_file, 0o640)
    n1.start(wait=False)
    assert n1.proc.wait(30) == 1
    assert "chmod 600" in n1.log() and cluster.key_file in n1.log()
    os.chmod(cluster.key_file, 0o600)
    n1.start()
    assert n1.status()["node_id"] == "n1"
