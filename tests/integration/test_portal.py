"""The user portal (docs/portal.md) over HTTP, straight against mfa-node: a
primary and a standby with a node each. Sessions and their cookie, CSRF,
sign-in with a PIN then TOTP or SMS (codes computed here, otp_ref.py), the
settings forms, TOTP enrolment, lockout shared with the API, the read-only
refusal with the primary stopped, escaping, and no secret in the logs."""

import base64
import html
import http.client
import re
import secrets
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
    code = totp_now(seed)
    resp, text = b.submit("/portal/factor", code=code)
    assert 'id="profile"' in text, text
    assert b.sid != first_sid, "the session id must change at sign-in"
    assert by_id(text, "method") == "totp"

    # The old id is worthless now.
    old = Browser(n1)
    old.sid = first_sid
    resp, text = old.go("GET", "/portal/home")
    assert ENDED in text and 'id="signin"' in text

    b.submit("/portal/phone", phone="+4915112345678")
    assert by_id(b.last, "notice") == "Your phone number was changed."
    assert by_id(b.last, "phone") == "+4915112345678"
    b.submit("/portal/phone", phone="12 34")
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
    b.submit("/portal/totp", code="000000" if totp_now(new_seed) != "000000" else "111111")
    assert by_id(b.last, "error").startswith("That code is not right.")
    assert by_id(b.last, "totp-secret") == secret
    b.submit("/portal/totp", code=totp_now(new_seed))
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
    for path, form in (("/portal/phone", {"phone": "+123456"}),
                       ("/portal/method", {"method": "totp"}),
                       ("/portal/pin", {"current_pin": "8642", "new_pin": "1234",
                                        "new_pin2": "1234"})):
        resp, text = b.submit(path, **form)
        assert resp.status == 200, (path, resp.status)
        assert by_id(text, "error") == READ_ONLY
        assert 'id="banner-read-only"' in text
    resp, text = b.go("GET", "/portal/totp")
    new_seed = otp_ref.b32decode(by_id(text, "totp-secret"))
    resp, text = b.submit("/portal/totp", code=totp_now(new_seed))
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
