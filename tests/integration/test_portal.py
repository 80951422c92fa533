"""The user portal (docs/portal.md) over HTTP, straight against mfa-node: a
primary and a standby with a node each. Sessions and their cookie, CSRF,
sign-in with a PIN then TOTP or SMS (codes computed here, otp_ref.py), the
settings forms (phone, app and PIN with the current PIN), TOTP enrolment,
lockout shared with the API, no portal for users without a PIN, "Start
again", late answers of the engine (held with a row lock on the primary)
that must not mix two sign-ins, the read-only refusal with the primary
stopped, escaping, and no secret in the logs."""

import base64
import html
import http.client
import re
import secrets
import threading
import time
import urllib.parse

import otp_ref
from pgcluster import wait_for

ENDED = ("Your session has ended (it timed out, or the server holding it went away). "
         "Please sign in again.")
READ_ONLY = "Changes are paused until the primary server is back; nothing was changed."


class Browser:
    """A cookie jar and a form filler over one node's port; follows 303s."""

    def __init__(self, node, headers=None):
        self.node = node
        self.sid = None
        self.headers = dict(headers or {})
        self.last = None

    def raw(self, method, path, form=None, headers=None):
        h = {**self.headers, **(headers or {})}
        if self.sid:
            h["Cookie"] = f"mfa_sid={self.sid}"
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            text = resp.read().decode()
        finally:
            conn.close()
        cookie = resp.getheader("Set-Cookie")
        if cookie:
            self.sid = re.match(r"mfa_sid=([^;]+)", cookie).group(1)
        return resp, text

    def go(self, method, path, form=None):
        resp, text = self.raw(method, path, form)
        while resp.status == 303:
            resp, text = self.raw("GET", resp.getheader("Location"))
        self.last = text
        return resp, text

    def csrf(self, text=None):
        return re.search(r'name="csrf" value="([^"]+)"', text or self.last).group(1)

    def submit(self, path, **fields):
        return self.go("POST", path, {"csrf": self.csrf(), **fields})


def by_id(text, ident):
    m = re.search(rf'id="{ident}"[^>]*>(.*?)</', text, re.S)
    return html.unescape(m.group(1)) if m else None


def make_user(node, username, **fields):
    status, doc = node.api("POST", "/api/v1/users", {"username": username, **fields})
    assert status == 201, doc


def totp_user(node, username, pin="2468"):
    make_user(node, username, method="totp", pin=pin)
    status, doc = node.api("POST", f"/api/v1/users/{username}/totp")
    assert status == 201, doc
    return otp_ref.b32decode(doc["secret"])


def totp_now(seed, offset=0):
    return otp_ref.totp(seed, int(time.time()) + offset)


def sign_in_totp(b, username, pin, seed):
    b.go("GET", "/portal/")
    resp, text = b.submit("/portal/signin", username=username, pin=pin)
    assert 'id="factor"' in text, text
    assert "Enter the code from your authenticator app" in text
    resp, text = b.submit("/portal/factor", code=totp_now(seed))
    assert 'id="profile"' in text, text
    return text


def test_sign_in_totp_settings_and_sign_out(node_cluster):
    n1 = node_cluster.nodes[0]
    seed = totp_user(n1, "tess")
    b = Browser(n1, {"X-Forwarded-Proto": "https"})

    resp, text = b.raw("GET", "/portal/")
    assert resp.status == 200
    cookie = resp.getheader("Set-Cookie")
    assert re.fullmatch(r"mfa_sid=n1-[A-Za-z0-9_-]{22}; Path=/portal/; HttpOnly; "
                        r"SameSite=Strict; Secure", cookie), cookie
    assert resp.getheader("X-MFA-Node") == "n1"
    assert "frame-ancestors 'none'" in resp.getheader("Content-Security-Policy")
    assert resp.getheader("X-Frame-Options") == "DENY"
    assert resp.getheader("Referrer-Policy") == "no-referrer"
    assert "<footer>Served by n1</footer>" in text
    assert 'id="signin"' in text
    # Anonymous sign-in page sessions are not what a drain waits for.
    assert n1.status()["sessions"] == 0
    first_sid = b.sid

    b.last = text
    resp, text = b.submit("/portal/signin", username="tess", pin="2468")
    assert 'id="factor"' in text
    assert n1.status()["sessions"] == 1
    # The id changes at the PIN step too: one planted before cannot be the half-done sign-in.
    half_sid = b.sid
    assert half_sid != first_sid
    planted = Browser(n1)
    planted.sid = first_sid
    assert 'id="factor"' not in planted.go("GET", "/portal/factor")[1]
    code = totp_now(seed)
    resp, text = b.submit("/portal/factor", code=code)
    assert 'id="profile"' in text, text
    assert b.sid not in (first_sid, half_sid), "the session id must change at sign-in"
    assert by_id(text, "method") == "totp"

    # The old id is worthless now.
    old = Browser(n1)
    old.sid = first_sid
    resp, text = old.go("GET", "/portal/home")
    assert ENDED in text and 'id="signin"' in text

    # Changing the phone takes the current PIN.
    b.submit("/portal/phone", phone="+4915112345678")
    assert by_id(b.last, "error") == "Your current PIN is not right."
    b.submit("/portal/phone", phone="+4915112345678", current_pin="1111")
    assert by_id(b.last, "error") == "Your current PIN is not right."
    assert by_id(b.last, "phone") == ""
    b.submit("/portal/phone", phone="+4915112345678", current_pin="2468")
    assert by_id(b.last, "notice") == "Your phone number was changed."
    assert by_id(b.last, "phone") == "+4915112345678"
    b.submit("/portal/phone", phone="12 34", current_pin="2468")
    assert "3 to 20 digits" in by_id(b.last, "error")
    b.submit("/portal/method", method="sms")
    assert by_id(b.last, "method") == "sms"
    b.submit("/portal/method", method="hotp")
    assert by_id(b.last, "error") == "That method cannot be used with your account."

    b.submit("/portal/pin", current_pin="2468", new_pin="1357", new_pin2="1357")
    assert by_id(b.last, "notice") == "Your PIN was changed.", b.last
    b.submit("/portal/pin", current_pin="2468", new_pin="1111", new_pin2="1111")
    assert by_id(b.last, "error") == "Your current PIN is not right."
    b.submit("/portal/pin", current_pin="1357", new_pin="12", new_pin2="12")
    assert by_id(b.last, "error") == "The new PIN must be 4 to 8 digits."
    b.submit("/portal/pin", current_pin="", new_pin="1111", new_pin2="1111")
    assert by_id(b.last, "error") == "Your current PIN is not right."

    # A signed-in POST with another token: 403, and nothing changed.
    resp, text = b.raw("POST", "/portal/phone", {"csrf": "y" * 43, "phone": "+4900000",
                                                "current_pin": "1357"})
    assert resp.status == 403 and "This form has expired. Please try again." in text
    assert by_id(b.go("GET", "/portal/home")[1], "phone") == "+4915112345678"

    # Recent sign-ins come from the auth log, once it reached the database.
    wait_for(lambda: "<tbody><tr>" in b.go("GET", "/portal/home")[1], 20, "recent sign-ins")
    rows = re.search(r"<tbody>(.*)</tbody>", b.last, re.S).group(1)
    assert "accepted" in rows and "totp" in rows

    resp, text = b.submit("/portal/signout")
    assert by_id(text, "notice") == "You are signed out." and 'id="signin"' in text
    assert n1.status()["sessions"] == 0

    # Every secret stayed out of the log.
    log = n1.log()
    for secret in ("2468", "1357", code, base64.b32encode(seed).decode().rstrip("="), b.sid,
                   first_sid):
        assert secret not in log, secret


def test_csrf_and_unknown_sessions(node_cluster):
    n1 = node_cluster.nodes[0]
    b = Browser(n1)
    b.go("GET", "/portal/")
    resp, text = b.raw("POST", "/portal/signin", {"username": "x", "pin": "1234"})
    assert resp.status == 403 and "This form has expired. Please try again." in text
    assert 'href="/portal/"' in text
    resp, text = b.raw("POST", "/portal/signin", {"username": "x", "pin": "1", "csrf": "x" * 43})
    assert resp.status == 403

    # A session of another node (it died; HAProxy sent the request here), or a made-up one.
    for sid in ("n9-AAAAAAAAAAAAAAAAAAAAAA", "n1-AAAAAAAAAAAAAAAAAAAAAA", "garbage<>"):
        c = Browser(n1)
        c.sid = sid
        resp, text = c.raw("GET", "/portal/home")
        assert resp.status == 200 and ENDED in text and 'id="signin"' in text
        assert c.sid != sid and c.sid.startswith("n1-")
        # Plain HTTP (no X-Forwarded-Proto: https): the cookie is not marked Secure.
        assert "Secure" not in resp.getheader("Set-Cookie")
        c.sid = sid
        resp, text = c.raw("POST", "/portal/pin", {"csrf": "x", "current_pin": "1"})
        assert resp.status == 303 and resp.getheader("Location") == "/portal/"
        assert c.sid != sid

    resp, text = b.raw("GET", "/portal/nothing")
    assert resp.status == 404
    # Only a web form is read: a longer type that starts the same is not one.
    resp, text = b.raw("POST", "/portal/signin", {"csrf": b.csrf(), "username": "x"},
                       {"Content-Type": "application/x-www-form-urlencodedX"})
    assert resp.status == 415


def test_wrong_pin_counts_toward_the_api_lockout(node_cluster):
    n1, key = node_cluster.nodes[0], node_cluster.auth_key
    seed = totp_user(n1, "lock", pin="9753")
    b = Browser(n1)
    b.go("GET", "/portal/")
    for _ in range(5):
        b.submit("/portal/signin", username="lock", pin="0000")
        assert by_id(b.last, "error") == "Wrong username or PIN."
    # The API sees the same lockout (same user, same client address).
    status, doc = n1.request("POST", "/api/v1/auth",
                             {"username": "lock", "pin": "9753", "otp": totp_now(seed)}, key=key)
    assert doc["reason"] == "locked_out", doc
    b.submit("/portal/signin", username="lock", pin="9753")
    assert "locked" in by_id(b.last, "error")
    # An unknown user reads the same as a wrong PIN.
    b.submit("/portal/signin", username="nobody", pin="1234")
    assert by_id(b.last, "error") == "Wrong username or PIN."

    # The lock is of this user from this address: HAProxy's X-Forwarded-For
    # (believed from loopback) names another person, who signs in.
    other = Browser(n1, {"X-Forwarded-For": "192.0.2.7"})
    sign_in_totp(other, "lock", "9753", seed)
    wait_for(lambda: "192.0.2.7" in other.go("GET", "/portal/home")[1], 20,
             "the sign-in's address in the recent list")


def test_sms_sign_in(node_cluster):
    n1 = node_cluster.nodes[0]
    make_user(n1, "sam", method="sms", phone="+4917099991234", pin="4321")
    b = Browser(n1)
    b.go("GET", "/portal/")
    b.submit("/portal/signin", username="sam", pin="4321")
    assert "Enter the code we sent to your phone ending 1234" in b.last
    code = re.search(r"\b(\d{6})\b", n1.sms()[-1]["text"]).group(1)
    b.submit("/portal/factor", code="000000" if code != "000000" else "111111")
    assert by_id(b.last, "error") == "That code is not right. Please try again."
    b.submit("/portal/factor", code=code)
    assert by_id(b.last, "phone") == "+4917099991234"
    assert code not in n1.log()


def test_totp_enrolment_and_escaping(node_cluster):
    n1 = node_cluster.nodes[0]
    seed = totp_user(n1, "eve", pin="1470")
    status, doc = n1.api("PATCH", "/api/v1/users/eve", {"display_name": "<script>x</script>"})
    assert status == 200, doc
    b = Browser(n1)
    text = sign_in_totp(b, "eve", "1470", seed)
    assert "<script>x</script>" not in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text

    resp, text = b.go("GET", "/portal/totp")
    secret = by_id(text, "totp-secret")
    uri = by_id(text, "otpauth-uri")
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert '<svg id="qr"' in text
    # The pending seed stays the same until confirmed, and is nowhere in the database.
    assert by_id(b.go("GET", "/portal/totp")[1], "totp-secret") == secret
    new_seed = otp_ref.b32decode(secret)
    b.submit("/portal/totp", code="000000" if totp_now(new_seed) != "000000" else "111111",
             current_pin="1470")
    assert by_id(b.last, "error").startswith("That code is not right.")
    assert by_id(b.last, "totp-secret") == secret
    # Confirming takes the current PIN; a wrong one keeps the pending seed.
    b.submit("/portal/totp", code=totp_now(new_seed), current_pin="0000")
    assert by_id(b.last, "error") == "Your current PIN is not right."
    assert by_id(b.last, "totp-secret") == secret
    b.submit("/portal/totp", code=totp_now(new_seed), current_pin="1470")
    assert by_id(b.last, "notice") == "Authenticator app set up.", b.last
    assert by_id(b.last, "method") == "totp"
    b.submit("/portal/signout")

    # The new app signs in; the old one does not (its token was replaced).
    c = Browser(n1)
    c.go("GET", "/portal/")
    c.submit("/portal/signin", username="eve", pin="1470")
    c.submit("/portal/factor", code=totp_now(seed, 30))
    assert by_id(c.last, "error") is not None
    c.submit("/portal/factor", code=totp_now(new_seed, 30))
    assert 'id="profile"' in c.last, c.last
    assert secret not in n1.log()


def test_read_only_without_primary(node_cluster):
    n1, n2 = node_cluster.nodes
    seed = totp_user(n1, "rosa", pin="8642")
    node_cluster.pg.primary.stop()
    wait_for(lambda: not n2.status()["writable"], 15, "n2 sees no primary")

    b = Browser(n2)
    text = sign_in_totp(b, "rosa", "8642", seed)
    assert 'id="banner-read-only"' in text
    for path, form in (("/portal/phone", {"phone": "+123456", "current_pin": "8642"}),
                       ("/portal/method", {"method": "totp"}),
                       ("/portal/pin", {"current_pin": "8642", "new_pin": "1234",
                                        "new_pin2": "1234"})):
        resp, text = b.submit(path, **form)
        assert resp.status == 200, (path, resp.status)
        assert by_id(text, "error") == READ_ONLY
        assert 'id="banner-read-only"' in text
    resp, text = b.go("GET", "/portal/totp")
    new_seed = otp_ref.b32decode(by_id(text, "totp-secret"))
    resp, text = b.submit("/portal/totp", code=totp_now(new_seed), current_pin="8642")
    assert resp.status == 200 and by_id(text, "error") == READ_ONLY


def test_max_sessions(node_cluster_factory):
    cluster = node_cluster_factory("portal = { max_sessions = 2; };")
    n1 = cluster.nodes[0]
    seed = totp_user(n1, "max", pin="1593")
    signed_in = Browser(n1)
    sign_in_totp(signed_in, "max", "1593", seed)

    # One slot left: each new visitor pushes out the anonymous one before it.
    first = Browser(n1)
    assert first.go("GET", "/portal/")[0].status == 200
    second = Browser(n1)
    assert second.go("GET", "/portal/")[0].status == 200
    resp, text = first.go("GET", "/portal/")
    assert ENDED in text
    # The signed-in session was never the one to go.
    assert 'id="profile"' in signed_in.go("GET", "/portal/home")[1]

    # All signed in: new visitors are turned away with a page, not a crash.
    first.submit("/portal/signin", username="max", pin="1593")
    first.submit("/portal/factor", code=totp_now(seed, 30))
    assert 'id="profile"' in first.last, first.last
    resp, text = Browser(n1).go("GET", "/portal/")
    assert resp.status == 503 and "too many sessions" in text
    assert n1.status()["sessions"] == 2


def test_hotp_sign_in_methods_offered_and_wrong_codes_lock(node_cluster):
    n1 = node_cluster.nodes[0]
    make_user(n1, "hank", method="hotp", pin="5791")
    seed, serial = secrets.token_bytes(20), "hw-portal-1"
    node_cluster.pg.primary.query(
        "INSERT INTO oath_tokens (serial, kind, seed_sealed, user_id)"
        " SELECT %s, 'hotp', %s, id FROM users WHERE username = 'hank'",
        (serial, node_cluster.seal(seed, serial)), dbname="mfa")
    b = Browser(n1)
    b.go("GET", "/portal/")
    b.submit("/portal/signin", username="hank", pin="5791")
    assert "Enter the code from your token" in b.last
    b.submit("/portal/factor", code=otp_ref.hotp(seed, 0))
    assert by_id(b.last, "method") == "hotp"
    # Only what the user can use: no phone, no app, a token.
    options = re.findall(r'<option value="(\w+)"', b.last)
    assert options == ["hotp"]
    b.submit("/portal/signout")

    # Wrong codes on the factor page count toward the same lockout.
    for _ in range(5):
        b.submit("/portal/signin", username="hank", pin="5791")
        if 'id="factor"' not in b.last:
            break
        b.submit("/portal/factor", code="000000" if otp_ref.hotp(seed, 1) != "000000" else "1")
    b.submit("/portal/signin", username="hank", pin="5791")
    assert "locked" in (by_id(b.last, "error") or ""), b.last


def test_wrong_current_pins_lock_the_user(node_cluster):
    n1, key = node_cluster.nodes[0], node_cluster.auth_key
    seed = totp_user(n1, "clara", pin="3579")
    b = Browser(n1)
    sign_in_totp(b, "clara", "3579", seed)
    for _ in range(5):
        b.submit("/portal/pin", current_pin="0000", new_pin="1234", new_pin2="1234")
        assert by_id(b.last, "error") == "Your current PIN is not right."
    status, doc = n1.request("POST", "/api/v1/auth",
                             {"username": "clara", "pin": "3579", "otp": totp_now(seed, 30)},
                             key=key)
    assert doc["reason"] == "locked_out", doc


def test_users_without_a_pin_cannot_use_the_portal(node_cluster):
    n1, key = node_cluster.nodes[0], node_cluster.auth_key
    make_user(n1, "paula", method="sms", phone="+4917011115678")
    sent = len(n1.sms())
    b = Browser(n1)
    b.go("GET", "/portal/")
    for pin in ("", "1234", "", "", ""):
        b.submit("/portal/signin", username="paula", pin=pin)
        # Not found, no phone shown, no code sent: as for a wrong PIN.
        assert by_id(b.last, "error") == "Wrong username or PIN.", b.last
        assert "5678" not in b.last and 'id="factor"' not in b.last
    assert len(n1.sms()) == sent
    # Each try counted as a failure: the user is locked (the API says so too).
    status, doc = n1.request("POST", "/api/v1/auth", {"username": "paula"}, key=key)
    assert doc["reason"] == "locked_out", doc


def test_start_again_ends_a_half_done_sign_in(node_cluster):
    n1 = node_cluster.nodes[0]
    totp_user(n1, "stan", pin="1212")
    b = Browser(n1)
    b.go("GET", "/portal/")
    b.submit("/portal/signin", username="stan", pin="1212")
    assert 'id="restart"' in b.last and 'href="/portal/"' not in b.last
    # The sign-in page sends a half-done sign-in back to the code page ...
    assert 'id="factor"' in b.go("GET", "/portal/")[1]
    assert n1.status()["sessions"] == 1
    # ... so "Start again" is a form that ends it.
    resp, text = b.submit("/portal/restart")
    assert 'id="signin"' in text and 'id="factor"' not in text
    assert n1.status()["sessions"] == 0
    assert 'id="signin"' in b.go("GET", "/portal/factor")[1]


class TokenLock:
    """Holds <username>'s token row locked on the primary, so the engine's
    marking of a code as used (a primary write) waits until release()."""

    def __init__(self, cluster, username):
        self.conn = cluster.pg.primary.connect("mfa")
        self.conn.autocommit = False
        with self.conn.cursor() as cur:
            cur.execute("SELECT t.id FROM oath_tokens t JOIN users u ON u.id = t.user_id"
                        " WHERE u.username = %s FOR UPDATE OF t", (username,))
        self.cluster = cluster

    def wait_blocked(self):
        wait_for(lambda: self.cluster.pg.primary.query(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND pid <> pg_backend_pid()")[0][0] > 0, 15, "the code check waits on the lock")

    def release(self):
        self.conn.rollback()
        self.conn.close()


def post_in_background(b, path, **fields):
    """POSTs a form without waiting; join() the thread for (resp, text)."""
    out = {}
    form = {"csrf": b.csrf(), **fields}
    t = threading.Thread(target=lambda: out.update(r=b.raw("POST", path, form)))
    t.start()
    return t, out


def test_a_late_answer_cannot_mix_two_sign_ins(node_cluster):
    n1 = node_cluster.nodes[0]
    seed_a = totp_user(n1, "alice", pin="1111")
    totp_user(n1, "bob", pin="2222")
    # One user per scenario below: each marks its code's step used.
    seed_c = totp_user(n1, "carl", pin="3333")
    seed_d = totp_user(n1, "dora", pin="4444")

    # A's code is being checked (slow: held on the primary); B's username and
    # PIN on the same session are refused until that answer is in, which
    # signs in A, never B.
    b = Browser(n1)
    b.go("GET", "/portal/")
    b.submit("/portal/signin", username="alice", pin="1111")
    lock = TokenLock(node_cluster, "alice")
    try:
        t, out = post_in_background(b, "/portal/factor", code=totp_now(seed_a))
        lock.wait_blocked()
        resp, text = b.raw("POST", "/portal/signin",
                           {"csrf": b.csrf(), "username": "bob", "pin": "2222"})
        assert resp.status == 303
        assert "still being checked" in b.go("GET", resp.getheader("Location"))[1]
    finally:
        lock.release()
    t.join(20)
    resp, _ = out["r"]
    assert resp.status == 303 and resp.getheader("Location") == "/portal/home"
    assert by_id(b.go("GET", "/portal/home")[1], "username") == "alice"

    # "Start again" while the code is checked: the late acceptance is dropped.
    c = Browser(n1)
    c.go("GET", "/portal/")
    c.submit("/portal/signin", username="carl", pin="3333")
    lock = TokenLock(node_cluster, "carl")
    try:
        t, out = post_in_background(c, "/portal/factor", code=totp_now(seed_c))
        lock.wait_blocked()
        c.submit("/portal/restart")
        assert 'id="signin"' in c.last
    finally:
        lock.release()
    t.join(20)
    resp, _ = out["r"]
    assert resp.status == 303 and resp.getheader("Location") == "/portal/"
    assert 'id="profile"' not in c.go("GET", "/portal/home")[1]
    assert n1.status()["sessions"] == 1  # b's

    # Signed out while the code is checked: the late answer sets no cookie
    # (it would replace the new session's).
    d = Browser(n1)
    d.go("GET", "/portal/")
    d.submit("/portal/signin", username="dora", pin="4444")
    lock = TokenLock(node_cluster, "dora")
    try:
        t, out = post_in_background(d, "/portal/factor", code=totp_now(seed_d))
        lock.wait_blocked()
        d.submit("/portal/signout")
        fresh = d.sid
    finally:
        lock.release()
    t.join(20)
    resp, _ = out["r"]
    assert resp.status == 303 and resp.getheader("Set-Cookie") is None
    assert d.sid == fresh
