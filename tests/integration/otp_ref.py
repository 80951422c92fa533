"""An independent RFC 4226 / RFC 6238 implementation for the tests, so the
node's codes are checked against something that is not its own code."""

import base64
import hashlib
import hmac
import struct
import time


def hotp(key, counter, digits=6, algo=hashlib.sha1):
    mac = hmac.new(key, struct.pack(">Q", counter), algo).digest()
    offset = mac[-1] & 0x0F  # RFC 4226 §5.3 dynamic truncation
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


def totp(key, at=None, step_offset=0, period=30, digits=6):
    step = int((time.time() if at is None else at) // period) + step_offset
    return hotp(key, step, digits)


def b32decode(secret):
    return base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))


class TotpApp:
    """A TOTP app for tests that sign in many times with one seed: each code is
    from a time step after the last one used (the node's replay guard), within
    a window of +-9 steps (the node's totp_window must be that wide)."""

    def __init__(self, secret):
        self.key = b32decode(secret)
        self.last = None

    def code(self):
        now = int(time.time() // 30)
        step = now - 8 if self.last is None else max(self.last + 1, now - 8)
        assert step <= now + 9, "out of TOTP steps in the window"
        self.last = step
        return hotp(self.key, step)


# RFC 6238 Appendix B, SHA-1: the reference itself must be right.
assert hotp(b"12345678901234567890", 59 // 30, 8) == "94287082"
