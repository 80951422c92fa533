"""Seed files for the token tests (test_tokens.py, test_node_tokens.py),
written and read by an independent implementation: PSKC (RFC 6030) with
Python's ElementTree, PBKDF2, AES-CBC and HMAC as §6 describes, CSV with the
csv module, and TOTP codes from otp_ref.py, so the C import and export code
is checked against something that is not its own code."""

import base64
import csv
import hashlib
import hmac
import io
import secrets
import time
import xml.etree.ElementTree as ET

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import otp_ref

PSKC = "urn:ietf:params:xml:ns:keyprov:pskc"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
XENC11 = "http://www.w3.org/2009/xmlenc11#"
PKCS5 = "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#"
for prefix, uri in (("pskc", PSKC), ("ds", DS), ("xenc", XENC), ("xenc11", XENC11),
                    ("pkcs5", PKCS5)):
    ET.register_namespace(prefix, uri)

# RFC 6030 §6.2 and the XML Encryption / Signature algorithm URIs.
SUITES = {
    "aes128-sha1": dict(cipher=XENC + "aes128-cbc", keylen=16, mac=DS + "hmac-sha1",
                        mac_hash=hashlib.sha1, prf=None, prf_hash="sha1"),
    "aes256-sha256": dict(cipher=XENC + "aes256-cbc", keylen=32,
                          mac="http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
                          mac_hash=hashlib.sha256,
                          prf="http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
                          prf_hash="sha256"),
}


def q(ns, tag):
    return f"{{{ns}}}{tag}"


def sub(parent, ns, tag, text=None, **attrs):
    e = ET.SubElement(parent, q(ns, tag), attrs)
    if text is not None:
        e.text = str(text)
    return e


def cbc_encrypt(key, plain):
    iv = secrets.token_bytes(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + enc.update(data) + enc.finalize()


def pskc_file(tokens, passphrase=None, suite="aes128-sha1", iterations=1000, issuer=None,
              start_time=None):
    """A PSKC 1.0 document (RFC 6030) of <tokens> (dicts: serial, kind, seed,
    digits, period, counter, user); the secrets encrypted under <passphrase>
    as §6.2 and its Figure 7 show (PBKDF2 of <iterations> -> AES-CBC, a MAC key
    encrypted the same way, a ValueMAC over IV || ciphertext of each secret),
    or in PlainValue. With <issuer>, each Key names it; with <start_time>,
    each TOTP key carries it as its Time (T0)."""
    root = ET.Element(q(PSKC, "KeyContainer"), {"Version": "1.0"})
    if passphrase:
        s = SUITES[suite]
        salt = secrets.token_bytes(8)
        key = hashlib.pbkdf2_hmac(s["prf_hash"], passphrase.encode(), salt, iterations,
                                  s["keylen"])
        ek = sub(root, PSKC, "EncryptionKey")
        dk = sub(ek, XENC11, "DerivedKey")
        kdm = sub(dk, XENC11, "KeyDerivationMethod", Algorithm=PKCS5 + "pbkdf2")
        params = sub(kdm, PKCS5, "PBKDF2-params")
        # Figure 7: the parameters' children in no namespace.
        salt_e = ET.SubElement(ET.SubElement(params, "Salt"), "Specified")
        salt_e.text = base64.b64encode(salt).decode()
        ET.SubElement(params, "IterationCount").text = str(iterations)
        ET.SubElement(params, "KeyLength").text = str(s["keylen"])
        if s["prf"]:
            ET.SubElement(params, "PRF", Algorithm=s["prf"])
        sub(sub(dk, XENC, "ReferenceList"), XENC, "DataReference", URI="#ED")
        sub(dk, XENC11, "MasterKeyName", "test passphrase")
        mac_key = secrets.token_bytes(s["mac_hash"]().digest_size)
        mm = sub(root, PSKC, "MACMethod", Algorithm=s["mac"])
        mk = sub(mm, PSKC, "MACKey")
        sub(mk, XENC, "EncryptionMethod", Algorithm=s["cipher"])
        sub(sub(mk, XENC, "CipherData"), XENC, "CipherValue",
            base64.b64encode(cbc_encrypt(key, mac_key)).decode())
    for t in tokens:
        kp = sub(root, PSKC, "KeyPackage")
        di = sub(kp, PSKC, "DeviceInfo")
        sub(di, PSKC, "Manufacturer", "TestVendor")
        sub(di, PSKC, "SerialNo", t["serial"])
        k = sub(kp, PSKC, "Key", Id=t["serial"], Algorithm=f"{PSKC}:{t['kind']}")
        if issuer is not None:
            sub(k, PSKC, "Issuer", issuer)
        ap = sub(k, PSKC, "AlgorithmParameters")
        sub(ap, PSKC, "ResponseFormat", Length=str(t.get("digits", 6)), Encoding="DECIMAL")
        data = sub(k, PSKC, "Data")
        secret = sub(data, PSKC, "Secret")
        if passphrase:
            ev = sub(secret, PSKC, "EncryptedValue")
            sub(ev, XENC, "EncryptionMethod", Algorithm=s["cipher"])
            value = cbc_encrypt(key, t["seed"])
            sub(sub(ev, XENC, "CipherData"), XENC, "CipherValue",
                base64.b64encode(value).decode())
            sub(secret, PSKC, "ValueMAC",
                base64.b64encode(hmac.new(mac_key, value, s["mac_hash"]).digest()).decode())
        else:
            sub(secret, PSKC, "PlainValue", base64.b64encode(t["seed"]).decode())
        if t["kind"] == "hotp":
            sub(sub(data, PSKC, "Counter"), PSKC, "PlainValue", t.get("counter", 0))
        else:
            if start_time is not None:
                sub(sub(data, PSKC, "Time"), PSKC, "PlainValue", start_time)
            sub(sub(data, PSKC, "TimeInterval"), PSKC, "PlainValue", t.get("period", 30))
        if t.get("user"):
            sub(k, PSKC, "UserId", t["user"])
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)


def read_pskc(text, passphrase):
    """The seeds of an encrypted PSKC document, by serial, opened as RFC 6030
    §6.2 says (the MAC of every value checked): how another system reads
    what mfactl export writes."""
    ns = {"pskc": PSKC, "xenc": XENC, "xenc11": XENC11, "pkcs5": PKCS5}
    root = ET.fromstring(text)
    params = root.find("pskc:EncryptionKey/xenc11:DerivedKey/xenc11:KeyDerivationMethod/"
                       "pkcs5:PBKDF2-params", ns)
    prf = params.find("PRF")
    prf_hash = "sha256" if prf is not None and prf.get("Algorithm", "").endswith("sha256") \
        else "sha1"
    key = hashlib.pbkdf2_hmac(prf_hash, passphrase.encode(),
                              base64.b64decode(params.find("Salt/Specified").text),
                              int(params.find("IterationCount").text),
                              int(params.find("KeyLength").text))

    def decrypt(value):
        dec = Cipher(algorithms.AES(key), modes.CBC(value[:16])).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(dec.update(value[16:]) + dec.finalize()) + unpadder.finalize()

    mm = root.find("pskc:MACMethod", ns)
    mac_hash = hashlib.sha256 if mm.get("Algorithm").endswith("sha256") else hashlib.sha1
    mac_key = decrypt(base64.b64decode(mm.find("pskc:MACKey/xenc:CipherData/xenc:CipherValue",
                                               ns).text))
    seeds = {}
    for kp in root.findall("pskc:KeyPackage", ns):
        secret = kp.find("pskc:Key/pskc:Data/pskc:Secret", ns)
        value = base64.b64decode(secret.find("pskc:EncryptedValue/xenc:CipherData/"
                                             "xenc:CipherValue", ns).text)
        mac = base64.b64decode(secret.find("pskc:ValueMAC", ns).text)
        assert hmac.compare_digest(hmac.new(mac_key, value, mac_hash).digest(), mac)
        seeds[kp.find("pskc:DeviceInfo/pskc:SerialNo", ns).text] = decrypt(value)
    return seeds


def csv_file(rows):
    """A CSV seed file (docs/tokens.md) of <rows> (dicts with the columns as keys)."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0].keys()), lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue().encode()


def totp_code(seed, digits=6, period=30, algo=hashlib.sha1, at=None):
    return otp_ref.hotp(seed, int((time.time() if at is None else at) // period), digits, algo)
