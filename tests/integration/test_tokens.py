"""mfactl token import|list|assign|unassign and mfactl export on real
clusters (appliance/cluster.py): seed files written by an independent
implementation (pskc_ref.py: Python's csv module; PSKC with ElementTree,
PBKDF2, AES-CBC and HMAC as RFC 6030 §6 describes) are imported, and their tokens'
codes (otp_ref.py, not the C code) are accepted by POST /api/v1/auth;
imports are all or nothing; and an export from cluster A, imported into a
fresh cluster B with its own key file, signs the same users in with the
same tokens.

The tests run in file order and build on each other: cluster A is shared
(module fixture), later tests use earlier tests' users and tokens, and the
export round trip checks every seed recorded in the global SEEDS. So a single
test run alone (`-k`) fails; run the module whole. The last test stops A's
primary."""

import base64
import csv
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile

import psycopg2
import pytest

import otp_ref
from pskc_ref import csv_file, pskc_file, read_pskc, totp_code

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402

# ---- clusters ----

def make_cluster(prefix, members):
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    c = Cluster(base, build, members=members)
    c.create()
    try:
        c.start(timeout=120)
        rc, out, err = c.mfactl("--json", "apikey", "create", "test-admin", member=c.primary())
        assert rc == 0, err
        c.admin_key = json.loads(out)["key"]
        for m in c.data_members():
            wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1",
                                        key=c.admin_key)[0] == 200, 20, f"{m.id} knows the key")
        c.tmp = os.path.join(base, "files")
        os.makedirs(c.tmp)
    except BaseException:
        stop_cluster(c, base)
        raise
    return c, base


def stop_cluster(c, base):
    c.stop()
    if not os.environ.get("MFA_KEEP"):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def ca():
    c, base = make_cluster("mfa-tok-a-", 2)
    yield c
    stop_cluster(c, base)


def api(c, method, path, body=None, member=None):
    return (member or c.primary()).node(method, path, body, key=c.admin_key)


def add_user(c, name, method, **extra):
    status, doc = api(c, "POST", "/api/v1/users", {"username": name, "method": method, **extra})
    assert status == 201, doc


def signin(c, user, code, member=None):
    status, doc = api(c, "POST", "/api/v1/auth", {"username": user, "otp": code}, member)
    assert status in (200, 401, 403), (status, doc)
    return doc


def accepted(c, user, code, member=None):
    doc = signin(c, user, code, member)
    assert doc.get("result") == "accepted", (user, doc)


def write(c, name, data, mode=0o600):
    path = os.path.join(c.tmp, name)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def mfactl(c, *args, member=None):
    return c.mfactl(*args, member=member or c.members[-1])


def token_list(c, *args, member=None):
    rc, out, err = mfactl(c, "--json", "token", "list", *args, member=member)
    assert rc == 0, err
    return {t["serial"]: t for t in json.loads(out)["tokens"]}


# A cluster-wide record of what the tests made, for the export round trip.
SEEDS = {}


# ---- import ----

def test_csv_seed_file_imports_and_its_codes_sign_in(ca):
    add_user(ca, "carol", "totp")
    add_user(ca, "dave", "hotp")
    add_user(ca, "erin", "sms", phone="+15550100")
    s1, s2, s3 = (secrets.token_bytes(n) for n in (20, 20, 32))
    SEEDS.update({"CSV-T1": s1, "CSV-H1": s2, "CSV-T2": s3})
    path = write(ca, "seeds.csv", csv_file([
        dict(serial="CSV-T1", seed=base64.b32encode(s1).decode().rstrip("=").lower(),
             type="totp", digits="6", period="30", counter="", algorithm="", user="carol"),
        dict(serial="CSV-H1", seed=s2.hex(), type="HOTP", digits="6", period="", counter="5",
             algorithm="SHA1", user="DAVE"),
        dict(serial="CSV-T2", seed=s3.hex().upper(), type="totp", digits="8", period="30",
             counter="", algorithm="SHA256", user=""),
    ]))
    rc, out, err = mfactl(ca, "token", "import", path)  # on the standby: writes go to the primary
    assert (rc, out.strip()) == (0, "imported 3 tokens (2 assigned)"), err

    # Read your writes (DESIGN §2, remote_apply): the standby's node signs in with the new
    # token at once, with no wait.
    standby = [m for m in ca.members if m is not ca.primary()][0]
    accepted(ca, "carol", totp_code(s1), member=standby)
    accepted(ca, "dave", otp_ref.hotp(s2, 5))
    accepted(ca, "dave", otp_ref.hotp(s2, 6))
    assert signin(ca, "dave", otp_ref.hotp(s2, 5))["reason"] in ("wrong_code", "replayed")
    wrong = "000000" if otp_ref.hotp(s2, 7) != "000000" else "111111"
    assert signin(ca, "dave", wrong)["reason"] == "wrong_code"

    # Unassigned until an operator says whose it is; erin signs in by SMS until then.
    listed = token_list(ca, "--unassigned")
    assert "CSV-T2" in listed and "CSV-T1" not in listed
    assert listed["CSV-T2"]["algorithm"] == "SHA256" and listed["CSV-T2"]["digits"] == 8
    rc, out, err = mfactl(ca, "token", "assign", "CSV-T2", "ERIN")
    assert rc == 0 and "assigned to erin" in out, err  # the stored name, not the typed one
    accepted(ca, "erin", totp_code(s3, 8, algo=hashlib.sha256), member=standby)  # no wait
    status, user = api(ca, "GET", "/api/v1/users/erin")
    assert user["method"] == "totp", user

    # Read on the standby (this member's database), never a seed. The HOTP counter is an
    # asynchronous write (DESIGN §2); the remote_apply assign above flushed it to the standby.
    listed = token_list(ca, member=ca.members[-1])
    assert listed["CSV-H1"]["user"] == "dave" and listed["CSV-H1"]["counter"] == 7
    assert listed["CSV-T1"]["period"] == 30 and listed["CSV-T1"]["counter"] is None
    rc, out, _ = mfactl(ca, "token", "list", "--user", "carol")
    assert rc == 0 and "CSV-T1" in out and "CSV-H1" not in out
    rc, _, err = mfactl(ca, "token", "list", "--user", "nobody-here")
    assert rc == 1 and "no user" in err, err
    dump = json.dumps(token_list(ca)) + out
    for s in (s1, s2, s3):
        assert s.hex() not in dump.lower() and base64.b32encode(s).decode()[:16] not in dump


@pytest.mark.parametrize("suite", [None, "aes128-sha1", "aes256-sha256"])
def test_pskc_file_imports_and_its_codes_sign_in(ca, suite):
    tag = (suite or "plain").upper()
    tuser, huser = f"t-{tag}".lower(), f"h-{tag}".lower()
    add_user(ca, tuser, "totp")
    add_user(ca, huser, "hotp")
    ts, hs = secrets.token_bytes(20), secrets.token_bytes(20)
    SEEDS.update({f"PSKC-T-{tag}": ts, f"PSKC-H-{tag}": hs})
    passphrase = "correct horse " + secrets.token_hex(4)
    doc = pskc_file([dict(serial=f"PSKC-T-{tag}", kind="totp", seed=ts, user=tuser),
                     dict(serial=f"PSKC-H-{tag}", kind="hotp", seed=hs, counter=3, digits=8)],
                    passphrase if suite else None, suite or "aes128-sha1", issuer="test",
                    start_time=0)
    path = write(ca, f"{tag}.pskc", doc)
    args = ["token", "import", path]
    if suite:
        rc, _, err = mfactl(ca, *args)  # no passphrase, no terminal: refused (usage)
        assert rc == 2 and "give --passphrase-file" in err, err
        rc, _, err = mfactl(ca, *args, "--passphrase-file", "/nonexistent.pass")
        assert rc == 2 and "/nonexistent.pass" in err, err
        wrong = write(ca, "wrong.pass", "not the passphrase\n")
        rc, _, err = mfactl(ca, *args, "--passphrase-file", wrong)
        assert rc == 1 and "wrong passphrase" in err, err
        assert f"PSKC-T-{tag}" not in token_list(ca)
        args += ["--passphrase-file", write(ca, "right.pass", passphrase + "\n")]
    rc, out, err = mfactl(ca, "--json", *args)
    assert rc == 0, err
    assert json.loads(out) == {"imported": 2, "assigned": 1,
                               "serials": [f"PSKC-T-{tag}", f"PSKC-H-{tag}"],
                               "superseded": []}

    accepted(ca, tuser, totp_code(ts))
    rc, out, err = mfactl(ca, "token", "assign", f"PSKC-H-{tag}", huser)
    assert rc == 0, err
    accepted(ca, huser, otp_ref.hotp(hs, 3, 8))
    accepted(ca, huser, otp_ref.hotp(hs, 4, 8))


def test_an_import_is_all_or_nothing(ca):
    # Read on the primary: a standby may still be applying the HOTP counters of the sign-ins
    # above (asynchronous writes, DESIGN §2), which would change the list under the test.
    before = token_list(ca, member=ca.primary())
    good = dict(serial="AON-1", seed=secrets.token_bytes(20).hex(), type="totp", user="")
    cases = [
        # one bad row (a seed too short) among good ones
        ([good, dict(serial="AON-2", seed="abcd", type="totp", user="")], "line 3"),
        # a serial the cluster has already
        ([good, dict(serial="CSV-T1", seed=secrets.token_bytes(20).hex(), type="totp",
                     user="")], "CSV-T1"),
        # a user the cluster does not know
        ([good, dict(serial="AON-3", seed=secrets.token_bytes(20).hex(), type="hotp",
                     user="nobody-here")], "nobody-here"),
        # the same serial twice in the file
        ([good, good], "AON-1"),
    ]
    for rows, named in cases:
        rc, out, err = mfactl(ca, "token", "import", write(ca, "bad.csv", csv_file(rows)))
        assert rc == 1 and named in err, (rows, out, err)
    assert token_list(ca, member=ca.primary()) == before
    rc, _, err = mfactl(ca, "token", "assign", "NO-SUCH", "carol")
    assert rc == 1 and "no token" in err, err
    rc, _, err = mfactl(ca, "token", "assign", "CSV-T1", "nobody-here")
    assert rc == 1 and "no user" in err, err
    rc, _, err = mfactl(ca, "token", "import", "/nonexistent.csv")
    assert rc == 1 and "/nonexistent.csv" in err
    assert mfactl(ca, "token", "frobnicate")[0] == 2


def test_unassign_and_assign_again(ca):
    rc, out, err = mfactl(ca, "token", "unassign", "CSV-T1")
    assert (rc, out.strip()) == (0, "token CSV-T1 unassigned from carol"), err
    assert signin(ca, "carol", totp_code(SEEDS["CSV-T1"]))["reason"] == "no_token"
    rc, out, err = mfactl(ca, "token", "unassign", "CSV-T1")
    assert rc == 0 and "nobody" in out, err
    rc, out, err = mfactl(ca, "token", "assign", "CSV-T1", "carol")
    assert rc == 0, err
    with psycopg2.connect(ca.primary().dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT action, detail::text FROM admin_audit WHERE action LIKE 'token.%'")
        audit = cur.fetchall()
    assert {"token.import", "token.assign", "token.unassign"} <= {a for a, _ in audit}, audit
    for s in SEEDS.values():  # counts and names, never a seed, in any encoding
        forms = (s.hex(), s.hex().upper(), base64.b32encode(s).decode().rstrip("="),
                 base64.b64encode(s).decode().rstrip("="))
        assert not any(f in d for _, d in audit for f in forms)
    # One import row per token says who got it, and one row the import's counts.
    with psycopg2.connect(ca.primary().dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT target, detail->>'user', detail->>'kind', detail->>'format'"
                    " FROM admin_audit WHERE action = 'token.import' ORDER BY id")
        rows = cur.fetchall()
    assert ("CSV-H1", "dave", "hotp", "csv") in rows and ("CSV-T2", None, "totp", "csv") in rows
    assert ("PSKC-T-AES128-SHA1", "t-aes128-sha1", "totp", "pskc") in rows
    assert sum(1 for r in rows if r[0] == "") == 4  # the summaries: one CSV, three PSKC


def test_assign_takes_no_token_from_another_user_without_move(ca):
    add_user(ca, "ivan", "sms", phone="+15550101")
    rc, _, err = mfactl(ca, "token", "assign", "CSV-T1", "ivan")
    assert rc == 1 and "belongs to carol" in err and "--move" in err, err
    assert token_list(ca)["CSV-T1"]["user"] == "carol"
    rc, out, err = mfactl(ca, "token", "assign", "CSV-T1", "ivan", "--move", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert (doc["user"], doc["previous_user"], doc["method"]) == ("ivan", "carol", "totp"), doc
    assert signin(ca, "carol", totp_code(SEEDS["CSV-T1"]))["reason"] == "no_token"
    rc, out, err = mfactl(ca, "token", "assign", "CSV-T1", "carol", "--move")
    assert rc == 0 and "taken from ivan (ivan has no totp token now)" in out, (out, err)
    # Another user's enrolled phone app: two people would share a seed.
    add_user(ca, "kim", "totp")
    status, enrol = api(ca, "POST", "/api/v1/users/kim/totp")
    assert status == 201, enrol
    rc, _, err = mfactl(ca, "token", "assign", enrol["serial"], "ivan")
    assert rc == 1 and "belongs to kim" in err, err
    rc, _, err = mfactl(ca, "token", "unassign", enrol["serial"])
    assert rc == 0, err
    rc, _, err = mfactl(ca, "token", "assign", enrol["serial"], "ivan")
    assert rc == 1 and "phone app" in err, err  # unassigned, still kim's phone
    rc, out, err = mfactl(ca, "token", "assign", enrol["serial"], "kim", "--json")
    assert rc == 0 and json.loads(out)["previous_user"] is None, err
    accepted(ca, "kim", totp_code(otp_ref.b32decode(enrol["secret"])))


def test_an_import_that_supersedes_a_token_says_so(ca):
    add_user(ca, "lena", "totp")
    status, enrol = api(ca, "POST", "/api/v1/users/lena/totp")
    assert status == 201, enrol
    seed = secrets.token_bytes(20)
    SEEDS["SUP-1"] = seed
    path = write(ca, "sup.csv", csv_file([dict(serial="SUP-1", seed=seed.hex(), type="totp",
                                               user="lena")]))
    rc, out, err = mfactl(ca, "--json", "token", "import", path)
    assert rc == 0, err
    assert json.loads(out)["superseded"] == [
        {"user": "lena", "kind": "totp", "signs_in": "SUP-1", "no_longer": [enrol["serial"]]}]
    assert f"lena: SUP-1 now signs them in (totp); \"{enrol['serial']}\" no longer does" \
        in err, err
    accepted(ca, "lena", totp_code(seed))


# ---- export, and import into a fresh cluster ----

def test_export_to_a_fresh_cluster_round_trips(ca):
    # A TOTP app enrolled through the API travels too.
    add_user(ca, "frank", "totp", display_name="Frank, Jr.", email="frank@example.org")
    status, enrol = api(ca, "POST", "/api/v1/users/frank/totp")
    assert status == 201, enrol
    frank_seed = otp_ref.b32decode(enrol["secret"])

    # A disabled user stays disabled; a user's PIN cannot travel, and the export names them.
    add_user(ca, "gina", "totp", pin="482913")
    add_user(ca, "henry", "totp")
    assert api(ca, "PATCH", "/api/v1/users/henry", {"disabled": True})[0] == 200
    henry_seed = secrets.token_bytes(20)
    SEEDS["DIS-1"] = henry_seed
    rc, _, err = mfactl(ca, "token", "import", write(ca, "dis.csv", csv_file(
        [dict(serial="DIS-1", seed=henry_seed.hex(), type="totp", user="henry")])))
    assert rc == 0, err

    users, tokens = os.path.join(ca.tmp, "users.csv"), os.path.join(ca.tmp, "tokens.pskc")
    passfile = write(ca, "export.pass", "migration passphrase 42\n")
    rc, out, err = mfactl(ca, "--json", "export", "--users", users, "--tokens", tokens,
                          "--passphrase-file", passfile)
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["had_pin"] == ["gina"] and summary["disabled_users"] == 1, summary
    # The primary's copy is read (mfactl runs on the standby here), and said.
    assert summary["member"].endswith("(primary)") and ca.primary().id in summary["member"]
    assert "1 user had a PIN" in err and "gina" in err, err
    with psycopg2.connect(ca.primary().dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT detail FROM admin_audit WHERE action = 'export' ORDER BY id")
        audit = [r[0] for r in cur.fetchall()]
    assert audit[-1] == {"users": summary["users"], "tokens": summary["tokens"],
                         "format": "pskc", "plaintext": False, "member": ca.primary().id}
    for p in (users, tokens):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    with open(users) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == ["username", "display_name", "email", "phone", "method",
                                    "pin", "disabled"]
    assert all(r["pin"] == "" for r in rows)
    assert {r["username"]: r["disabled"] for r in rows}["henry"] == "true"
    assert {r["username"]: r["disabled"] for r in rows}["gina"] == "false"
    frank = [r for r in rows if r["username"] == "frank"][0]
    assert frank["display_name"] == "Frank, Jr." and frank["method"] == "totp"
    with open(tokens, "rb") as f:
        text = f.read()
    assert base64.b64encode(frank_seed) not in text
    # Another system reads it: every seed, opened with the passphrase alone.
    opened = read_pskc(text, "migration passphrase 42")
    assert opened[enrol["serial"]] == frank_seed
    assert all(opened[serial] == seed for serial, seed in SEEDS.items()), opened.keys()

    rc, _, err = mfactl(ca, "export", "--tokens", "-", "--format", "csv")
    assert rc == 2 and "--plaintext-seeds" in err
    rc, out, err = mfactl(ca, "export", "--tokens", "-", "--format", "csv", "--plaintext-seeds")
    assert rc == 0 and "IN CLEAR" in err, err
    plain = {r["serial"]: r for r in csv.DictReader(io.StringIO(out))}
    assert bytes.fromhex(plain["CSV-H1"]["seed"]) == SEEDS["CSV-H1"]
    assert plain["CSV-H1"]["counter"] == "7" and plain["CSV-H1"]["user"] == "dave"
    with psycopg2.connect(ca.primary().dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT detail->>'plaintext' FROM admin_audit WHERE action = 'export'"
                    " ORDER BY id DESC LIMIT 1")
        assert cur.fetchone()[0] == "true"

    cb, base = make_cluster("mfa-tok-b-", 1)
    try:
        n = cb.members[0]
        with open(users, "rb") as f:
            conn = http.client.HTTPConnection(n.address, n.ports["node"], timeout=10)
            conn.request("POST", "/api/v1/users/import", body=f.read(),
                         headers={"Content-Type": "text/csv",
                                  "Authorization": f"Bearer {cb.admin_key}"})
            resp = conn.getresponse()
            report = json.loads(resp.read())
            conn.close()
        assert resp.status == 200 and report["created"] == len(rows), report
        rc, out, err = cb.mfactl("token", "import", tokens, "--passphrase-file", passfile)
        assert rc == 0 and out.startswith(f"imported {len(plain)} tokens"), err

        accepted(cb, "frank", totp_code(frank_seed))
        accepted(cb, "carol", totp_code(SEEDS["CSV-T1"]))
        accepted(cb, "erin", totp_code(SEEDS["CSV-T2"], 8, algo=hashlib.sha256))
        # HOTP counters travel: 5 and 6 were used on A, 7 is next.
        assert signin(cb, "dave", otp_ref.hotp(SEEDS["CSV-H1"], 6))["result"] != "accepted"
        accepted(cb, "dave", otp_ref.hotp(SEEDS["CSV-H1"], 7))
        accepted(cb, "h-aes256-sha256", otp_ref.hotp(SEEDS["PSKC-H-AES256-SHA256"], 5, 8))
        # henry is disabled on B too, so his token does not sign him in
        assert api(cb, "GET", "/api/v1/users/henry")[1]["disabled"] is True
        assert signin(cb, "henry", totp_code(henry_seed))["result"] != "accepted"
        assert token_list(cb).keys() == token_list(ca).keys()
    finally:
        stop_cluster(cb, base)


def test_without_a_primary_writes_are_refused_and_reads_go_on(ca):
    """Last: stops cluster A's primary."""
    primary = ca.primary()
    standby = [m for m in ca.members if m is not primary][0]
    primary.stop()
    wait_for(lambda: ca.primary() is None, 30, "no writable primary")
    path = write(ca, "late.csv", csv_file([dict(serial="LATE-1", seed=secrets.token_bytes(20).hex(),
                                                 type="totp")]))
    rc, _, err = mfactl(ca, "token", "import", path, member=standby)
    assert rc == 3 and "read_only" in err, err
    rc, _, err = mfactl(ca, "token", "unassign", "CSV-T1", member=standby)
    assert rc == 3 and "read_only" in err, err
    # An export reads the standby's copy, says so, and that it was not audited.
    rc, out, err = mfactl(ca, "export", "--users", os.path.join(ca.tmp, "late-users.csv"),
                          member=standby)
    assert rc == 0, err
    assert f"read member {standby.id} (a standby" in out, out
    assert "not audited: no writable primary" in err, err
    listed = token_list(ca, member=standby)
    assert "CSV-T1" in listed and "LATE-1" not in listed
