"""The admin users API of mfa-node (node/users*.c) against a real primary and
standby: create, get, list with paging, update, disable, enable, delete;
case-insensitive uniqueness; every validation error a 400 that names the
field; scopes; PINs stored only hashed; read-your-writes across nodes
(remote_apply); the audit log; the CSV import and its per-row report; the
body limit; TOTP enrolment (the seed opened independently of the C code);
the audit and auth logs; and, with the primary stopped, writes answering
read_only at once while reads go on."""

import base64
import hashlib
import hmac
import os
import re
import socket
import struct
import time
import urllib.parse

import pytest

try:  # Debian's python3-cryptography, to open a sealed seed independently of the C code
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:
    AESGCM = None

from nodes import NodeCluster
from pgcluster import wait_for

U = "/api/v1/users"


def sync_standby(cluster):
    """Makes the standby synchronous, as mfa-replicator keeps it (DESIGN §5),
    so that remote_apply waits for it: read-your-writes through n2."""
    cluster.pg.primary.query("ALTER SYSTEM SET synchronous_standby_names = '*'")
    cluster.pg.primary.query("SELECT pg_reload_conf()")
    wait_for(lambda: cluster.pg.primary.query(
        "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")[0][0] == 1,
        30, "standby synchronous")
    return cluster


@pytest.fixture(scope="module")
def cluster(tool, build_dir):
    """One n1 (primary) + n2 (standby) cluster for the tests that do not stop
    anything; built as the node_cluster fixture builds it."""
    c = NodeCluster(os.path.join(build_dir, "node", "mfa-node"), tool("mfa-schema-apply"))
    try:
        yield sync_standby(c.start())
    finally:
        c.close()


def path(username, action=None):
    p = f"{U}/{urllib.parse.quote(username, safe='')}"
    return f"{p}/{action}" if action else p


def db(cluster, sql, params=None):
    return cluster.pg.primary.query(sql, params, dbname="mfa")


def db_now(cluster):
    return db(cluster, "SELECT to_json(now())::text")[0][0].strip('"')


def csv_post(node, text, key=None, ctype="text/csv"):
    return node.api("POST", f"{U}/import", text.encode(), key=key,
                    headers={"Content-Type": ctype})


def totp(secret_b32, t, digits=6, period=30):
    """RFC 6238 §4 TOTP over HMAC-SHA-1 (RFC 4226 §5.3 dynamic truncation)."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", t // period), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 10 ** digits
    return f"{code:0{digits}d}"


def test_totp_helper_matches_rfc6238():
    # RFC 6238 Appendix B, SHA-1, seed "12345678901234567890"
    secret = base64.b32encode(b"12345678901234567890").decode().rstrip("=")
    assert totp(secret, 59, 8) == "94287082"
    assert totp(secret, 1111111109, 8) == "07081804"
    assert totp(secret, 20000000000, 8) == "65353130"


def test_create_get_update_disable_enable_delete(cluster):
    n1, n2 = cluster.nodes
    status, user = n1.api("POST", U, {"username": "Alice", "display_name": "Alice A",
                                      "email": "alice@example.com", "phone": "+15550001",
                                      "method": "sms"})
    assert status == 201, user
    assert user["username"] == "Alice" and user["method"] == "sms"
    assert user["display_name"] == "Alice A" and user["phone"] == "+15550001"
    assert user["has_pin"] is False and user["disabled"] is False
    assert "pin_hash" not in user and "pin" not in user
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", user["created_at"])

    # found by any case, through either node
    for node, name in ((n1, "alice"), (n2, "ALICE"), (n1, "Alice")):
        status, got = node.api("GET", path(name))
        assert status == 200 and got == user

    status, upd = n2.api("PATCH", path("alice"), {"display_name": "Alice B", "method": "totp",
                                                  "email": None})
    assert status == 200, upd
    assert (upd["display_name"], upd["method"], upd["email"]) == ("Alice B", "totp", "")
    assert upd["phone"] == "+15550001" and upd["username"] == "Alice"
    assert n1.api("GET", path("alice"))[1]["display_name"] == "Alice B"

    status, dis = n1.api("POST", path("alice", "disable"))
    assert status == 200 and dis["disabled"] is True
    assert n2.api("GET", path("alice"))[1]["disabled"] is True
    status, en = n2.api("POST", path("alice", "enable"))
    assert status == 200 and en["disabled"] is False
    status, p = n1.api("PATCH", path("alice"), {"disabled": True})
    assert status == 200 and p["disabled"] is True
    assert db(cluster, "SELECT disabled FROM users WHERE username = 'Alice'") == [(True,)]

    status, body = n1.api("DELETE", path("ALICE"))
    assert status == 200 and body == {"username": "Alice", "deleted": True}
    for node in (n1, n2):
        status, body = node.api("GET", path("alice"))
        assert status == 404 and body["error"] == "not_found"
    for method, p, body in (("DELETE", path("alice"), None),
                            ("PATCH", path("alice"), {"display_name": "x"}),
                            ("POST", path("alice", "disable"), None),
                            ("POST", path("alice", "enable"), None),
                            ("POST", path("alice", "totp"), None)):
        status, resp = n1.api(method, p, body)
        assert status == 404 and resp["error"] == "not_found", (method, p, resp)
    assert db(cluster, "SELECT count(*) FROM users WHERE lower(username) = 'alice'") == [(0,)]


def test_usernames_with_reserved_characters_in_the_path(cluster):
    n1, n2 = cluster.nodes
    name = "o'brien/x@example.com?a=b#c%20"
    assert n1.api("POST", U, {"username": name, "method": "totp"})[0] == 201
    status, got = n2.api("GET", path(name))
    assert status == 200 and got["username"] == name
    status, got = n1.api("POST", path(name.upper(), "disable"))
    assert status == 200 and got["username"] == name and got["disabled"] is True
    assert n1.api("DELETE", path(name))[0] == 200


def test_duplicate_username_in_any_case_is_a_conflict(cluster):
    n1, n2 = cluster.nodes
    assert n1.api("POST", U, {"username": "Dup", "method": "totp"})[0] == 201
    for node, name in ((n1, "Dup"), (n1, "dup"), (n2, "DUP")):
        status, body = node.api("POST", U, {"username": name, "method": "hotp"})
        assert status == 409 and body["error"] == "conflict", body
    assert db(cluster, "SELECT username, method FROM users WHERE lower(username) = 'dup'") == \
        [("Dup", "totp")]


def list_all(node, limit, after=None, stop=None):
    """Pages through GET /users; returns the usernames and the number of pages."""
    seen, pages = [], 0
    while True:
        q = f"{U}?limit={limit}" + (f"&after={urllib.parse.quote(after, safe='')}"
                                     if after else "")
        status, page = node.api("GET", q)
        assert status == 200, page
        assert len(page["users"]) <= limit
        pages += 1
        seen += [u["username"] for u in page["users"]]
        if page["next"] is None:
            return seen, pages
        assert page["next"] == page["users"][-1]["username"] and len(page["users"]) == limit
        after = page["next"]
        if stop and not stop(after):
            return seen, pages


def test_list_pages_through_every_user_in_order(cluster):
    n1, n2 = cluster.nodes
    for name in ("page-c", "Page-A", "page-e", "PAGE-b", "page-d"):
        assert n1.api("POST", U, {"username": name, "method": "totp"})[0] == 201
    # pages of 2 from just before the prefix, on the standby's node
    seen, pages = list_all(n2, 2, after="page-", stop=lambda a: a.lower().startswith("page-"))
    assert [s for s in seen if s.lower().startswith("page-")] == \
        ["Page-A", "PAGE-b", "page-c", "page-d", "page-e"]
    assert pages >= 3
    # every user, in the order of lower(username)
    all_db = [r[0] for r in db(cluster, "SELECT username FROM users ORDER BY lower(username)")]
    assert list_all(n1, 3)[0] == all_db
    assert list_all(n2, 1000)[0] == all_db
    # the default limit is 100
    status, page = n1.api("GET", U)
    assert status == 200 and page["users"] and len(page["users"]) == min(100, len(all_db))
    assert (page["next"] is None) == (len(all_db) <= 100)
    status, page = n1.api("GET", f"{U}?limit=1&after=page-c")
    assert status == 200 and [u["username"] for u in page["users"]] == ["page-d"]
    assert page["next"] == "page-d"
    for q in ("limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=", "after=a%20b",
              "limit=99999999999999999999"):
        status, body = n1.api("GET", f"{U}?{q}")
        assert status == 400 and body["error"] == "bad_request", (q, body)
        assert body["detail"].startswith(("limit", "after")), body


INVALID_CREATES = [
    ({"method": "totp"}, "username"),
    ({"username": "", "method": "totp"}, "username"),
    ({"username": "a b", "method": "totp"}, "username"),
    ({"username": "tab\there", "method": "totp"}, "username"),
    ({"username": "nbsp\u00a0x", "method": "totp"}, "username"),
    ({"username": "x" * 129, "method": "totp"}, "username"),
    ({"username": 42, "method": "totp"}, "username"),
    ({"username": None, "method": "totp"}, "username"),
    ({"username": "v1"}, "method"),
    ({"username": "v1", "method": "push"}, "method"),
    ({"username": "v1", "method": "email"}, "method"),
    ({"username": "v1", "method": 1}, "method"),
    ({"username": "v1", "method": "sms"}, "phone"),
    ({"username": "v1", "method": "sms", "phone": ""}, "phone"),
    ({"username": "v1", "method": "totp", "phone": "12"}, "phone"),
    ({"username": "v1", "method": "totp", "phone": "+1 555 0100"}, "phone"),
    ({"username": "v1", "method": "totp", "phone": "1" * 21}, "phone"),
    ({"username": "v1", "method": "totp", "phone": 15550100}, "phone"),
    ({"username": "v1", "method": "totp", "email": "nobody"}, "email"),
    ({"username": "v1", "method": "totp", "email": "a@" + "x" * 256}, "email"),
    ({"username": "v1", "method": "totp", "email": ["a@b"]}, "email"),
    ({"username": "v1", "method": "totp", "display_name": "x" * 257}, "display_name"),
    ({"username": "v1", "method": "totp", "display_name": "bell\u0007"}, "display_name"),
    ({"username": "v1", "method": "totp", "display_name": 7}, "display_name"),
    ({"username": "v1", "method": "totp", "pin": "123"}, "pin"),
    ({"username": "v1", "method": "totp", "pin": "123456789"}, "pin"),
    ({"username": "v1", "method": "totp", "pin": "12a4"}, "pin"),
    ({"username": "v1", "method": "totp", "pin": 1234}, "pin"),
    ({"username": "v1", "method": "totp", "pinn": "1234"}, "unknown field \"pinn\""),
    ({"username": "v1", "method": "totp", "disabled": True}, "unknown field \"disabled\""),
]


@pytest.mark.parametrize("body,field", INVALID_CREATES)
def test_invalid_create_is_400_naming_the_field(cluster, body, field):
    n1 = cluster.nodes[0]
    status, resp = n1.api("POST", U, body)
    assert status == 400 and resp["error"] == "bad_request", resp
    assert resp["detail"].startswith(field), resp
    assert db(cluster, "SELECT count(*) FROM users WHERE username = 'v1'") == [(0,)]


def test_invalid_requests_are_4xx_and_change_nothing(cluster):
    n1, n2 = cluster.nodes
    assert n1.api("POST", U, {"username": "valid", "method": "totp", "pin": "1234"})[0] == 201
    before = db(cluster, "SELECT * FROM users WHERE username = 'valid'")
    audit = db(cluster, "SELECT count(*) FROM admin_audit")
    cases = [
        ("PATCH", path("valid"), {}, 400, ""),
        ("PATCH", path("valid"), {"username": "other"}, 400, "username"),
        ("PATCH", path("valid"), {"method": "sms"}, 400, "phone"),
        ("PATCH", path("valid"), {"method": "sms", "phone": ""}, 400, "phone"),
        ("PATCH", path("valid"), {"phone": "x"}, 400, "phone"),
        ("PATCH", path("valid"), {"disabled": "yes"}, 400, "disabled"),
        ("PATCH", path("valid"), {"pin": 1234}, 400, "pin"),
        ("PATCH", path("valid"), {"bogus": 1}, 400, "unknown field"),
        ("PATCH", path("valid"), {"method": "push"}, 400, "method"),
        ("GET", f"{U}/a%20b", None, 400, "the username in the path"),
        ("GET", f"{U}/a%00b", None, 400, ""),
        ("POST", U, {"username": "nul\u0000x", "method": "totp"}, 400, ""),
        ("GET", f"{U}/{'x' * 129}", None, 400, "the username in the path"),
        ("GET", f"{U}/valid/extra", None, 404, ""),
        ("GET", f"{U}/", None, 404, ""),
        ("POST", path("valid", "explode"), None, 404, ""),
        ("POST", path("valid"), None, 405, ""),
        ("DELETE", f"{U}/valid/x", None, 404, ""),
    ]
    for method, p, body, want, field in cases:
        status, resp = n1.api(method, p, body)
        assert status == want, (method, p, resp)
        assert resp["error"], resp
        assert resp["detail"].startswith(field), (method, p, resp)
    # not JSON, not an object, the wrong type
    for body, ctype, want in (("{", "application/json", 400), ("[1]", "application/json", 400),
                              ('{"username":"v2","method":"totp"}', "text/plain", 415)):
        status, resp = n1.api("POST", U, body, headers={"Content-Type": ctype})
        assert status == want, resp
    assert db(cluster, "SELECT * FROM users WHERE username = 'valid'") == before
    assert db(cluster, "SELECT count(*) FROM admin_audit") == audit
    assert db(cluster, "SELECT count(*) FROM users WHERE username = 'v2'") == [(0,)]
    assert n2.api("GET", path("valid"))[0] == 200


def test_scopes(cluster):
    n1 = cluster.nodes[0]
    assert n1.api("POST", U, {"username": "scoped", "method": "totp"})[0] == 201
    calls = [("GET", U, None), ("POST", U, {"username": "s2", "method": "totp"}),
             ("GET", path("scoped"), None), ("PATCH", path("scoped"), {"display_name": "x"}),
             ("DELETE", path("scoped"), None), ("POST", path("scoped", "disable"), None),
             ("POST", path("scoped", "enable"), None), ("POST", path("scoped", "totp"), None),
             ("POST", f"{U}/import", "username,method\ns3,totp\n"),
             ("GET", "/api/v1/audit-log", None), ("GET", "/api/v1/auth-log", None)]
    for method, p, body in calls:
        headers = {"Content-Type": "text/csv"} if isinstance(body, str) else None
        status, resp = n1.request(method, p, body, headers=headers)
        assert status == 401 and resp["error"] == "unauthorized", (method, p, resp)
        status, resp = n1.request(method, p, body, key="mfa_" + "A" * 43, headers=headers)
        assert status == 401, (method, p, resp)
        status, resp = n1.request(method, p, body, key=cluster.auth_key, headers=headers)
        assert status == 403 and resp["error"] == "forbidden", (method, p, resp)
    assert db(cluster, "SELECT count(*) FROM users WHERE username IN ('s2', 's3')") == [(0,)]
    assert db(cluster, "SELECT disabled, method FROM users WHERE username = 'scoped'") == \
        [(False, "totp")]
    assert db(cluster, "SELECT count(*) FROM oath_tokens o JOIN users u ON u.id = o.user_id"
                       " WHERE u.username = 'scoped'") == [(0,)]


def test_pin_is_stored_only_as_a_keyed_hash(cluster):
    n1, n2 = cluster.nodes
    since = db_now(cluster)
    status, user = n1.api("POST", U, {"username": "pinned", "method": "totp", "pin": "4711"})
    assert status == 201 and user["has_pin"] is True
    assert "4711" not in str(user) and "pin_hash" not in user
    (h1,), = db(cluster, "SELECT pin_hash FROM users WHERE username = 'pinned'")
    assert re.match(r"^pin1\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$", h1), h1
    assert "4711" not in h1
    # the same PIN for someone else: a fresh salt, another hash
    assert n1.api("POST", U, {"username": "pinned2", "method": "totp", "pin": "4711"})[0] == 201
    (h2,), = db(cluster, "SELECT pin_hash FROM users WHERE username = 'pinned2'")
    assert h2 != h1

    status, user = n2.api("PATCH", path("pinned"), {"pin": "90210"})
    assert status == 200 and user["has_pin"] is True
    (h3,), = db(cluster, "SELECT pin_hash FROM users WHERE username = 'pinned'")
    assert h3.startswith("pin1$") and h3 != h1
    status, user = n1.api("GET", path("pinned"))
    assert status == 200 and user["has_pin"] is True and "pin_hash" not in user
    status, page = n1.api("GET", U)
    assert all("pin_hash" not in u for u in page["users"])
    status, user = n1.api("PATCH", path("pinned"), {"pin": None})
    assert status == 200 and user["has_pin"] is False
    assert db(cluster, "SELECT pin_hash FROM users WHERE username = 'pinned'") == [(None,)]

    # neither the audit log nor the node logs hold a PIN
    rows = db(cluster, "SELECT action, detail::text FROM admin_audit WHERE at >= %s "
                       "AND target LIKE 'pinned%%' ORDER BY id", (since,))
    assert [r[0] for r in rows] == ["user.create", "user.create", "user.update", "user.update"]
    assert all("4711" not in d and "90210" not in d and "pin1$" not in d for _, d in rows)
    assert '"pin": "set"' in rows[2][1] and '"pin": "removed"' in rows[3][1]
    for node in (n1, n2):
        assert "4711" not in node.log() and "90210" not in node.log()


def test_a_user_created_through_n1_is_read_through_n2_at_once(cluster):
    n1, n2 = cluster.nodes
    for i in range(10):
        name = f"ryw{i}"
        status, made = n1.api("POST", U, {"username": name, "method": "sms",
                                          "phone": f"+1555{i:04d}"})
        assert status == 201
        status, got = n2.api("GET", path(name))
        assert status == 200 and got == made
        # and a change through n2 is read through n1 and n2 at once
        status, upd = n2.api("PATCH", path(name), {"display_name": f"R {i}"})
        assert status == 200
        assert n2.api("GET", path(name))[1]["display_name"] == f"R {i}"
        assert n1.api("GET", path(name))[1]["display_name"] == f"R {i}"
        assert n1.api("DELETE", path(name))[0] == 200
        assert n2.api("GET", path(name))[0] == 404


def test_audit_log_records_every_change_without_secrets(cluster):
    n1, n2 = cluster.nodes
    since = db_now(cluster)
    assert n1.api("POST", U, {"username": "aud", "method": "sms", "phone": "+4930123",
                              "pin": "2468"})[0] == 201
    assert n2.api("PATCH", path("aud"), {"email": "aud@example.com", "pin": "1357"})[0] == 200
    assert n1.api("POST", path("aud", "disable"))[0] == 200
    assert n2.api("POST", path("aud", "enable"))[0] == 200
    status, enrol = n1.api("POST", path("aud", "totp"))
    assert status == 201
    assert csv_post(n1, "username,method,pin\naud-imp,totp,8642\n")[0] == 200
    assert n1.api("DELETE", path("aud"))[0] == 200

    status, log = n2.api("GET", f"/api/v1/audit-log?since={urllib.parse.quote(since)}")
    assert status == 200, log
    mine = [e for e in log["entries"] if e["target"] in ("aud", "aud-imp")]
    assert [(e["action"], e["target"], e["node_id"]) for e in mine] == [
        ("user.create", "aud", "n1"), ("user.update", "aud", "n2"),
        ("user.disable", "aud", "n1"), ("user.enable", "aud", "n2"),
        ("user.totp_enrol", "aud", "n1"), ("user.import", "aud-imp", "n1"),
        ("user.delete", "aud", "n1")]
    assert all(e["actor"] == "test-admin" for e in mine)
    assert mine[1]["detail"]["fields"] == ["email", "pin"]
    assert mine[4]["detail"]["serial"] == enrol["serial"]
    text = str(mine)
    for secret in ("2468", "1357", "8642", enrol["secret"], enrol["secret"].lower()):
        assert secret not in text
    times = [e["at"] for e in log["entries"]]
    assert times == sorted(times) and all(t >= since[:19] for t in times)


def test_log_paging_and_since_validation(cluster):
    n1, n2 = cluster.nodes
    since = db_now(cluster)
    # one import: many audit rows with the same timestamp
    rows = "".join(f"same{i:02d},totp\n" for i in range(7))
    assert csv_post(n1, "username,method\n" + rows)[1]["created"] == 7
    got, q = [], f"since={urllib.parse.quote(since)}&limit=3"
    for _ in range(20):
        status, page = n2.api("GET", f"/api/v1/audit-log?{q}")
        assert status == 200, page
        assert len(page["entries"]) <= 3
        got += page["entries"]
        if "next_since" not in page:
            break
        q = (f"since={urllib.parse.quote(page['next_since'])}&after={page['next_after']}"
             f"&limit=3")
    ids = [e["id"] for e in got]
    assert len(ids) == len(set(ids))
    assert sorted(e["target"] for e in got if e["action"] == "user.import") == \
        [f"same{i:02d}" for i in range(7)]
    # a raw '+' in the offset (decoded to a space) is still taken as '+'
    status, page = n1.api("GET", "/api/v1/audit-log?since=2000-01-01T00:00:00+00:00&limit=1")
    assert status == 200 and len(page["entries"]) == 1 and "next_since" in page
    for q in ("since=yesterday", "since=2024-02-30", "since=2024-01-01T25:00:00Z",
              "since=2024-01-01T00:00:00%27;--", "limit=0", "limit=1001", "after=5",
              "since=2024-01-01&after=x"):
        for p in ("/api/v1/audit-log", "/api/v1/auth-log"):
            status, body = n1.api("GET", f"{p}?{q}")
            assert status == 400 and body["error"] == "bad_request", (p, q, body)
            assert body["detail"].startswith(("since", "limit", "after")), body


def test_auth_log_reads_the_shipped_records(cluster):
    n1, n2 = cluster.nodes
    db(cluster, "INSERT INTO auth_log (node_id, boot_epoch, seq, at, username, method, result,"
                " reason, client_ip) VALUES"
                " ('n9', 1, 1, '2031-01-01T00:00:01Z', 'logged', 'totp', 'accepted', '', '10.0.0.1'),"
                " ('n9', 1, 2, '2031-01-01T00:00:02Z', 'LOGGED', 'totp', 'rejected', 'bad_otp',"
                "  NULL),"
                " ('n9', 1, 3, '2031-01-01T00:00:03Z', 'other', 'sms', 'challenge', '', NULL)")
    status, log = wait_for(
        lambda: (lambda r: r if len(r[1].get("entries", [])) == 3 else None)(
            n2.api("GET", "/api/v1/auth-log?since=2031-01-01T00:00:00Z")), 10, "replicated")
    assert status == 200
    e = log["entries"]
    assert [x["seq"] for x in e] == [1, 2, 3]
    assert e[0]["client_ip"] == "10.0.0.1" and e[0]["result"] == "accepted"
    assert e[1]["reason"] == "bad_otp" and e[1]["client_ip"] is None
    status, log = n1.api("GET", "/api/v1/auth-log?since=2031-01-01T00:00:01.5%2B00:00"
                                "&username=logged")
    assert status == 200 and [x["seq"] for x in log["entries"]] == [2]
    status, log = n1.api("GET", "/api/v1/auth-log?since=2031-01-01&limit=2")
    assert status == 200 and len(log["entries"]) == 2
    status, log = n1.api("GET", f"/api/v1/auth-log?since={urllib.parse.quote(log['next_since'])}"
                                f"&after={log['next_after']}")
    assert [x["seq"] for x in log["entries"]] == [3] and "next_since" not in log


def test_csv_import_reports_every_row_and_writes_only_the_good_ones(cluster):
    n1, n2 = cluster.nodes
    assert n1.api("POST", U, {"username": "imp-old", "method": "totp"})[0] == 201
    csv = ("\ufeffmethod,username,phone,pin,display_name,email\r\n"
           "sms,imp-a,+15550100,1234,\"Doe, Jane\",jane@example.com\r\n"
           "totp,imp-b,,,\"Say \"\"hi\"\"\",\r\n"
           "hotp,IMP-OLD,,,,\r\n"             # exists (another case)
           "totp,imp-c,,,\"two\nlines\",\r\n"  # a line break inside quotes: no control
                                              # characters in a display name
           "totp,imp-a,,,,\r\n"               # exists (earlier in the file)
           "push,imp-push,,,,\r\n"
           "sms,imp-nophone,,,,\r\n"
           "totp,imp bad,,,,\r\n"
           "totp,imp-pin,,12,,\r\n"
           ",imp-nomethod,,,,\r\n"
           "totp,imp-short\r\n"
           "totp,imp-long,,,,,extra\r\n"
           "totp,imp-mail,,,,nobody\r\n"
           "\r\n"
           "hotp,imp-d,123,,,\r\n")
    status, rep = csv_post(n1, csv)
    assert status == 200, rep
    got = [(r["line"], r["username"], r["result"]) for r in rep["rows"]]
    assert got == [
        (2, "imp-a", "created"), (3, "imp-b", "created"), (4, "IMP-OLD", "exists"),
        (5, "imp-c", "invalid"), (7, "imp-a", "exists"), (8, "imp-push", "invalid"),
        (9, "imp-nophone", "invalid"), (10, "imp bad", "invalid"), (11, "imp-pin", "invalid"),
        (12, "imp-nomethod", "invalid"), (13, "imp-short", "invalid"),
        (14, "imp-long", "invalid"), (15, "imp-mail", "invalid"), (17, "imp-d", "created")]
    assert (rep["created"], rep["skipped"], rep["failed"]) == (3, 2, 9)
    details = {r["username"]: r.get("detail", "") for r in rep["rows"]
               if r["result"] == "invalid"}
    assert details["imp-push"].startswith("method")
    assert details["imp-nophone"].startswith("phone")
    assert details["imp bad"].startswith("username")
    assert details["imp-pin"].startswith("pin")
    assert details["imp-nomethod"].startswith("method")
    assert "fields" in details["imp-short"] and "fields" in details["imp-long"]
    assert details["imp-mail"].startswith("email")
    assert details["imp-c"].startswith("display_name")
    assert "1234" not in str(rep)

    rows = db(cluster, "SELECT username, method, phone, display_name, email, pin_hash"
                       " FROM users WHERE username ILIKE 'imp-%%' ORDER BY username")
    assert [r[0] for r in rows] == ["imp-a", "imp-b", "imp-d", "imp-old"]
    a = rows[0]
    assert a[1:5] == ("sms", "+15550100", "Doe, Jane", "jane@example.com")
    assert a[5].startswith("pin1$") and "1234" not in a[5]
    assert rows[1][3] == 'Say "hi"'
    assert rows[3][1] == "totp"  # the existing user was left alone
    # read your writes through the other node
    assert n2.api("GET", path("imp-d"))[1]["phone"] == "123"
    audit = db(cluster, "SELECT target FROM admin_audit WHERE action = 'user.import' "
                        "AND target LIKE 'imp-%%' ORDER BY target")
    assert [r[0] for r in audit] == ["imp-a", "imp-b", "imp-d"]


def test_csv_import_disabled_column(cluster):
    """mfactl export writes a disabled column: a disabled user stays disabled."""
    n1 = cluster.nodes[0]
    csv = ("username,method,disabled\n"
           "dis-yes,totp,TRUE\n"
           "dis-no,totp,false\n"
           "dis-empty,totp,\n"
           "dis-bad,totp,maybe\n")
    status, rep = csv_post(n1, csv)
    assert status == 200, rep
    got = {r["username"]: r["result"] for r in rep["rows"]}
    assert got == {"dis-yes": "created", "dis-no": "created", "dis-empty": "created",
                   "dis-bad": "invalid"}
    assert [r.get("detail", "") for r in rep["rows"]][3].startswith("disabled")
    rows = db(cluster, "SELECT username, disabled FROM users WHERE username LIKE 'dis-%%'"
                       " ORDER BY username")
    assert rows == [("dis-empty", False), ("dis-no", False), ("dis-yes", True)]
    assert n1.api("GET", path("dis-yes"))[1]["disabled"] is True
    audit = db(cluster, "SELECT detail->>'disabled' FROM admin_audit"
                        " WHERE action = 'user.import' AND target = 'dis-yes'")
    assert audit == [("true",)]


def test_csv_import_rejects_bad_files_whole(cluster):
    n1 = cluster.nodes[0]
    count = db(cluster, "SELECT count(*) FROM users")
    cases = [
        ("username,method,colour\nbad1,totp,red\n", 400, "line 1: unknown column"),
        ("username,method,username\nbad1,totp,x\n", 400, "line 1: column username"),
        ("username,phone\nbad1,123\n", 400, "line 1: the first line"),
        ("", 400, "the file is empty"),
        ("\r\n\r\n", 400, "the file is empty"),
        ("username,method\nbad1,totp\n\"bad2,totp\n", 400, "line 3: a quoted field"),
        ("username,method\nbad1,totp\nba\"d2,totp\n", 400, "line 3: a quote"),
        ("username,method\nbad1,totp\n" + "x," * 70 + "\n", 400, "line 3: more than"),
        ("username,method\nbad1,totp\n" + "y" * 2000 + ",totp\n", 400, "line 3: field 1"),
    ]
    for text, want, detail in cases:
        status, resp = csv_post(n1, text)
        assert status == want and resp["detail"].startswith(detail), (text[:40], resp)
        assert "nothing was imported" in resp["detail"]
    status, resp = csv_post(n1, "username,method\nbad1,totp\n", ctype="application/json")
    assert status == 415
    status, resp = csv_post(n1, "username,method\nbad1,totp\n", ctype="text/plain")
    assert status == 415
    assert db(cluster, "SELECT count(*) FROM users") == count


def test_csv_import_row_limit(cluster):
    n1, n2 = cluster.nodes
    too_many = "username,method\n" + "".join(f"lim{i},totp\n" for i in range(10001))
    status, resp = csv_post(n1, too_many)
    assert status == 400 and "more than 10000 rows" in resp["detail"], resp
    assert db(cluster, "SELECT count(*) FROM users WHERE username LIKE 'lim%%'") == [(0,)]

    full = "username,method\n" + "".join(f"lim{i},totp\n" for i in range(10000))
    start = time.monotonic()
    status, rep = csv_post(n1, full, )
    took = time.monotonic() - start
    print(f"import of 10000 rows: {took:.2f} s")
    assert status == 200 and rep["created"] == 10000 and rep["failed"] == 0, rep.get("detail")
    assert took < 60
    assert db(cluster, "SELECT count(*) FROM users WHERE username LIKE 'lim%%'") == [(10000,)]
    assert db(cluster, "SELECT count(*) FROM admin_audit WHERE action = 'user.import'"
                       " AND target LIKE 'lim%%'") == [(10000,)]
    # again: all exist, nothing new
    status, rep = csv_post(n1, full)
    assert status == 200 and (rep["created"], rep["skipped"]) == (0, 10000)
    assert n2.api("GET", path("lim9999"))[0] == 200


def test_an_oversized_body_is_413(cluster):
    n1 = cluster.nodes[0]
    limit = 1048576  # node.http.max_body's default
    count = db(cluster, "SELECT count(*) FROM users")
    for p, ctype in ((f"{U}/import", "text/csv"), (U, "application/json")):
        # Only the headers: the server answers from Content-Length, before
        # reading a byte of the body (so no reset can eat its answer).
        with socket.create_connection(("127.0.0.1", n1.port), timeout=10) as s:
            s.sendall((f"POST {p} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                       f"Authorization: Bearer {cluster.admin_key}\r\n"
                       f"Content-Length: {limit + 1}\r\n\r\n").encode())
            reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
    # just under the limit is read (and judged on its content)
    body = "username,method\n" + "x" * (limit - 100) + ",totp\n"
    status, resp = csv_post(n1, body)
    assert status == 400 and resp["detail"].startswith("line 2: field 1"), resp
    assert db(cluster, "SELECT count(*) FROM users") == count
    assert n1.request("GET", "/health")[0] == 200


def open_seal(key_file, sealed, serial):
    """Opens a sealed seed as common/seal.h describes it, with Python's own
    AES-GCM: s1$<id>$<base64url(nonce 12 || ciphertext || tag 16)>, AAD
    "s1$<id>$" + serial."""
    with open(key_file) as f:
        text = f.read()
    m = re.search(r'seal\s*=\s*\(\s*\{\s*id\s*=\s*(\d+);\s*key\s*=\s*"([^"]+)"', text)
    kid, key = m.group(1), base64.b64decode(m.group(2))
    prefix, sid, body = sealed.split("$")
    assert (prefix, sid) == ("s1", kid)
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return AESGCM(key).decrypt(raw[:12], raw[12:], f"s1${sid}${serial}".encode())


def test_totp_enrolment(cluster):
    n1, n2 = cluster.nodes
    assert n1.api("POST", U, {"username": "Tom", "method": "sms", "phone": "+15550199"})[0] == 201
    status, e = n2.api("POST", path("tom", "totp"))
    assert status == 201, e
    assert re.match(r"^[A-Z2-7]{32}$", e["secret"]), e  # 20 bytes, base32 without padding
    assert e["serial"].startswith("totp-tom-")
    assert e["username"] == "Tom"
    assert e["otpauth_uri"] == (f"otpauth://totp/MFA%20Appliance:Tom?secret={e['secret']}"
                                "&issuer=MFA%20Appliance&algorithm=SHA1&digits=6&period=30")
    seed = base64.b32decode(e["secret"])
    assert len(seed) == 20
    code = totp(e["secret"], int(time.time()))
    assert re.match(r"^\d{6}$", code)

    rows = db(cluster, "SELECT o.serial, o.kind, o.algorithm, o.digits, o.period, o.seed_sealed,"
                       " u.method FROM oath_tokens o JOIN users u ON u.id = o.user_id"
                       " WHERE u.username = 'Tom'")
    assert len(rows) == 1
    serial, kind, algo, digits, period, sealed, method = rows[0]
    assert (serial, kind, algo, digits, period, method) == \
        (e["serial"], "totp", "SHA1", 6, 30, "totp")
    assert sealed.startswith("s1$")
    for clear in (e["secret"], e["secret"].lower(), seed.hex(),
                  base64.b64encode(seed).decode(), base64.urlsafe_b64encode(seed).decode()):
        assert clear not in sealed
    assert n2.api("GET", path("tom"))[1]["method"] == "totp"

    # enrolling again replaces the soft token; the old seed is gone
    status, e2 = n1.api("POST", path("TOM", "totp"))
    assert status == 201 and e2["secret"] != e["secret"] and e2["serial"] != e["serial"]
    rows = db(cluster, "SELECT o.serial, o.seed_sealed FROM oath_tokens o"
                       " JOIN users u ON u.id = o.user_id WHERE u.username = 'Tom'")
    assert [r[0] for r in rows] == [e2["serial"]]
    assert db(cluster, "SELECT count(*) FROM oath_tokens WHERE serial = %s",
              (e["serial"],)) == [(0,)]
    for node in (n1, n2):
        log = node.log()
        assert e["secret"] not in log and e2["secret"] not in log

    status, body = n1.api("POST", path("nobody-here", "totp"))
    assert status == 404 and body["error"] == "not_found"

    # the seed round-trips: the sealed value opens (with the key file, bound to
    # the serial) to exactly the bytes whose base32 we were shown
    if AESGCM is None:
        print("python3-cryptography is missing: the sealed seed was not opened")
    else:
        assert open_seal(cluster.key_file, rows[0][1], e2["serial"]) == \
            base64.b32decode(e2["secret"])
        with pytest.raises(Exception):
            open_seal(cluster.key_file, rows[0][1], e["serial"])  # bound to its serial

    # deleting the user deletes its soft token
    assert n1.api("DELETE", path("tom"))[0] == 200
    assert db(cluster, "SELECT count(*) FROM oath_tokens WHERE serial = %s",
              (e2["serial"],)) == [(0,)]


def test_without_a_primary_writes_are_read_only_at_once_and_reads_go_on(node_cluster):
    c = sync_standby(node_cluster)
    n1, n2 = c.nodes
    assert n1.api("POST", U, {"username": "ro", "method": "sms", "phone": "+15550111"})[0] == 201
    assert n2.api("GET", path("ro"))[0] == 200
    c.pg.primary.stop()

    writes = [("POST", U, {"username": "ro2", "method": "totp"}),
              ("PATCH", path("ro"), {"display_name": "x"}),
              ("DELETE", path("ro"), None),
              ("POST", path("ro", "disable"), None),
              ("POST", path("ro", "enable"), None),
              ("POST", path("ro", "totp"), None),
              ("POST", f"{U}/import", "username,method\nro3,totp\n")]

    def send(node, method, p, body):
        headers = {"Content-Type": "text/csv"} if isinstance(body, str) else None
        start = time.monotonic()
        status, resp = node.api(method, p, body, headers=headers)
        return status, resp, time.monotonic() - start

    # the nodes notice the primary is gone (its connection drops)...
    for node in (n2, n1):
        wait_for(lambda node=node: send(node, *writes[0])[0] == 503, 10,
                 f"{node.id} read_only")
    # ...and from then on every write answers read_only at once
    worst = 0
    for node in (n2, n1):
        for method, p, body in writes:
            status, resp, took = send(node, method, p, body)
            assert status == 503 and resp["error"] == "read_only", (node.id, method, p, resp)
            assert took < 1.0, (node.id, method, p, took)
            worst = max(worst, took)
    print(f"slowest read_only answer: {worst * 1000:.0f} ms")
    # the standby's node still reads
    status, user = n2.api("GET", path("RO"))
    assert status == 200 and user["display_name"] == "" and user["disabled"] is False
    status, page = n2.api("GET", U)
    assert status == 200 and [u["username"] for u in page["users"]] == ["ro"]
    status, log = n2.api("GET", "/api/v1/audit-log")
    assert status == 200 and [x["action"] for x in log["entries"]] == ["user.create"]
    assert n2.api("GET", "/api/v1/auth-log")[0] == 200
