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


# RFC 6238 Appendix B, SHA-1: the reference itself must be right.
assert hotp(b"12345678901234567890", 59 // 30, 8) == "94287082"
