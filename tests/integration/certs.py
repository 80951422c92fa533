"""A throwaway PKI for tests, made with the openssl command: CAs, and
certificates they sign for servers and clients."""

import os
import subprocess

CLIENT_EXT = ["extendedKeyUsage=clientAuth"]


def server_ext(ip="127.0.0.1", dns="localhost"):
    """Extensions of a server certificate for <ip> (and <dns> unless None)."""
    san = f"IP:{ip}" + (f",DNS:{dns}" if dns else "")
    return [f"subjectAltName={san}", "extendedKeyUsage=serverAuth"]


def _openssl(d, *args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d, timeout=60)


def make_ca(d, name="ca"):
    """Creates <d>/<name>.key and <d>/<name>.crt; returns (key, crt)."""
    key, crt = os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.crt")
    _openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN=test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, crt


def issue(d, ca, name, ext_lines):
    """Issues <d>/<name>.crt and .key (CN=<name>) signed by <ca> (key, crt) with the
    extension lines <ext_lines>; returns (key, crt)."""
    key, csr, crt, ext = (os.path.join(d, f"{name}.{e}") for e in ("key", "csr", "crt", "ext"))
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n" + "".join(line + "\n" for line in ext_lines))
    _openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    _openssl(d, "x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial",
             "-out", crt, "-days", "2", "-extfile", ext)
    return key, crt
