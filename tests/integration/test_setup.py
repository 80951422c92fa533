"""`mfactl setup` on two "hosts" on loopback: --primary creates the cluster on
A (its replicator makes it alone, with the one-shot permission), --invite
makes B's join bundle, --join fetches the key file and the cluster section
from A's replicator over mutual TLS, and B becomes a streaming standby with
the same keys — a user enrolled through A's node signs in through B's.
Running both setups again changes nothing; a bundle from another CA, a
client without a member's certificate and a configuration that disagrees
are refused, with nothing written. The one-shot permission is safe: beside
a running cluster it copies the primary instead of making a second cluster,
`--primary` on a host whose data was wiped (or while another member has data)
is refused, and a bootstrap cut short is made again. A witness's certificate
gets no keys.

The daemons are started by the test (--no-start), on the ports of the
configuration files the test writes, as appliance/cluster.py lays them out.
"""

import base64
import hashlib
import http.client
import json
import os
import pwd
import re
import secrets
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402
from otp_ref import b32decode, totp  # noqa: E402
from test_failover import sql  # noqa: E402

NAME = "setup-test"


def host_conf(c, m):
    """cluster.py's configuration for member <m>, with the CA in its own host's pki/."""
    return c.conf_text(m).replace(c.ca, os.path.join(m.dir, "pki", "ca.crt"))


def run_setup(c, m, *args):
    p = subprocess.run([c.binary("appliance/mfactl"), "-c", m.conf, "setup", *args],
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def snapshot(*dirs):
    """{path: (mtime_ns, bytes)} of every file under <dirs>, but PostgreSQL's and the logs."""
    out = {}
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            subdirs[:] = [s for s in subdirs if s not in ("pgdata", "run", "spool")]
            for f in files:
                if f.endswith(".log") or f.startswith("replicator.state") or \
                        f.startswith("sms-outbox"):
                    continue
                p = os.path.join(root, f)
                with open(p, "rb") as fh:
                    out[p] = (os.stat(p).st_mtime_ns, fh.read())
    return out


def keys_of(path):
    with open(path) as f:
        text = f.read()
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    out = {}
    for kind in ("pepper", "seal"):
        block = re.search(kind + r"\s*=\s*\((.*?)\);", text, re.S).group(1)
        out[kind] = sorted(re.findall(r'id = (\d+); key = "([^"]+)"', block))
    return out


def pepper_of(path):
    with open(path) as f:
        return base64.b64decode(re.search(r'pepper = \(\s*\{ id = 1; key = "([^"]+)"',
                                          f.read()).group(1))


@pytest.fixture(scope="module")
def hosts():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix="mfa-setup-", dir="/tmp")
    os.chmod(base, 0o755)
    c = Cluster(base, build, members=3, name=NAME, fence_after=2)
    for m in c.members:
        os.makedirs(os.path.join(m.dir, "run"))
        for p in (m.dir, os.path.join(m.dir, "run")):
            c._owner(p)
        with open(m.conf, "w") as f:
            f.write(host_conf(c, m))
    try:
        yield c
    finally:
        c.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def joined(hosts):
    """A set up with --primary and running, B joined and streaming from it."""
    c = hosts
    a, b, third = c.members
    rc, out, err = run_setup(c, a, "--primary", "--cluster", NAME, "--id", "n1", "--address",
                         "127.0.0.1", "--no-start")
    assert rc == 0, out + err
    for what in ("key file", "cluster CA", "member certificate", "bootstrap permission"):
        assert re.search(rf"made\s+{what}", out), out
    assert re.search(r"kept\s+configuration", out), out
    allow = os.path.join(a.dir, "bootstrap.allow")
    assert open(allow).read() == "member=n1\n"

    # The tests' own client certificate (cluster.py's tls_context) from A's CA.
    os.makedirs(os.path.join(c.base, "pki"))
    shutil.copy(os.path.join(a.dir, "pki", "ca.crt"), c.ca)
    subprocess.run([c.binary("appliance/mfactl"), "pki", "issue", "--dir",
                    os.path.join(a.dir, "pki"), "--name", "admin", "--dns", "admin", "--out",
                    os.path.join(c.base, "pki", "admin")], check=True, capture_output=True)
    c.pepper = pepper_of(os.path.join(a.dir, "keys.conf"))

    # n2 and n3 are listed but absent: only the permission lets n1 create the
    # cluster. Alone it does not see a majority: it fences itself until n2 comes.
    a.start_replicator()
    wait_for(lambda: a.status().get("role") == "primary", 120, "n1 primary", interval=0.2)
    wait_for(lambda: not os.path.exists(allow), 10, "the permission spent")
    a.start_node()
    wait_for(lambda: a.node("GET", "/ready")[0] == 200, 30, "n1 node ready")

    bundle = os.path.join(c.base, "n2.join")
    rc, out, err = run_setup(c, a, "--invite", "n2", "--address", "127.0.0.1", "--out", bundle,
                         "--no-start")
    assert rc == 0, out + err
    assert stat.S_IMODE(os.stat(bundle).st_mode) == 0o600
    assert re.search(r"kept\s+configuration", out), out

    rc, out, err = run_setup(c, b, "--join", f"127.0.0.1:{a.ports['replicator']}", "--bundle",
                         bundle, "--no-start")
    assert rc == 0, out + err
    for what in ("cluster CA", "member certificate", "key file"):
        assert re.search(rf"made\s+{what}", out), out
    b.start_replicator()
    # n2's replicator answering gives n1 its majority back: writable, n2 copies it.
    c.wait_healthy(180, members=["n1", "n2"])
    b.start_node()
    wait_for(lambda: b.node("GET", "/ready")[0] == 200, 30, "n2 node ready")
    c.bundle = bundle

    # n3: a join that was interrupted after it wrote the CA certificate completes.
    bundle3 = os.path.join(c.base, "n3.join")
    rc, out, err = run_setup(c, a, "--invite", "n3", "--address", "127.0.0.1", "--out",
                             bundle3, "--no-start")
    assert rc == 0, out + err
    os.makedirs(os.path.join(third.dir, "pki"))
    shutil.copy(os.path.join(a.dir, "pki", "ca.crt"), os.path.join(third.dir, "pki", "ca.crt"))
    rc, out, err = run_setup(c, third, "--join", f"127.0.0.1:{b.ports['replicator']}",
                             "--bundle", bundle3, "--no-start")
    assert rc == 0, out + err
    assert re.search(r"kept\s+cluster CA", out), out
    for what in ("member certificate", "key file"):
        assert re.search(rf"made\s+{what}", out), out
    third.start_replicator()
    c.wait_healthy(180)
    return c


def test_join_gets_the_same_keys_and_private_files(joined):
    a, b, third = joined.members
    for m in (b, third):
        assert keys_of(os.path.join(a.dir, "keys.conf")) == \
            keys_of(os.path.join(m.dir, "keys.conf"))
    for p in (os.path.join(b.dir, "keys.conf"), os.path.join(b.dir, "pki", "member.key"),
              os.path.join(a.dir, "keys.conf"), os.path.join(a.dir, "pki", "ca.key")):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
    # The joiner has the CA's certificate, never its key.
    assert not os.path.exists(os.path.join(b.dir, "pki", "ca.key"))
    st = b.status()
    assert st["role"] == "standby" and st["streaming"] and st["upstream"] == "n1"


def test_user_made_through_a_signs_in_through_b(joined):
    a, b = joined.members[:2]
    key = "mfa_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    sql(a, "INSERT INTO api_keys (name, scope, key_hash, prefix) VALUES "
        "('setup-admin', 'admin', %s, 'mfa_')", (hashlib.sha256(key.encode()).hexdigest(),))
    for m in (a, b):
        wait_for(lambda m=m: m.node("GET", "/api/v1/users?limit=1", key=key)[0] == 200, 20,
                 f"{m.id} accepts the key")
    st, doc = a.node("POST", "/api/v1/users", {"username": "sam", "method": "totp",
                                               "pin": "4812"}, key=key)
    assert st == 201, doc
    st, doc = a.node("POST", "/api/v1/users/sam/totp", {}, key=key)
    assert st in (200, 201), doc
    seed = b32decode(doc["secret"])
    # The PIN's keyed hash (pepper) and the sealed seed (seal key) open on B.
    st, doc = b.node("POST", "/api/v1/auth", {"username": "sam", "pin": "4812",
                                              "otp": totp(seed)}, key=key)
    assert st == 200 and doc["result"] == "accepted", doc


def test_running_both_again_changes_nothing(joined):
    a, b = joined.members[:2]
    before = snapshot(a.dir, b.dir)
    rc, out, err = run_setup(joined, a, "--primary", "--cluster", NAME, "--id", "n1", "--address",
                         "127.0.0.1", "--no-start")
    assert rc == 0, out + err
    assert "made" not in out, out
    assert re.search(r"kept\s+cluster \(has data\)", out), out
    rc, out, err = run_setup(joined, b, "--join", f"127.0.0.1:{a.ports['replicator']}", "--bundle",
                         joined.bundle, "--no-start")
    assert rc == 0, out + err
    assert "made" not in out, out
    assert snapshot(a.dir, b.dir) == before
    assert not os.path.exists(os.path.join(a.dir, "bootstrap.allow"))


def test_a_bundle_from_another_ca_is_refused(joined, tmp_path):
    a, b = joined.members[:2]
    # Another "cluster": its own CA, its own bundle for n2.
    other = tmp_path / "other"
    other.mkdir()
    conf = other / "appliance.conf"
    text = host_conf(joined, a).replace(a.dir, str(other))
    conf.write_text(text)
    mfactl = joined.binary("appliance/mfactl")
    p = subprocess.run([mfactl, "-c", str(conf), "setup", "--primary", "--cluster", NAME,
                        "--id", "n1", "--address", "127.0.0.1", "--no-start"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    foreign = str(tmp_path / "foreign.join")
    p = subprocess.run([mfactl, "-c", str(conf), "setup", "--invite", "n2", "--address",
                        "127.0.0.1", "--out", foreign, "--no-start"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr

    # A fresh host C that tries to join A with it: refused, nothing written.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    cconf = fresh / "appliance.conf"
    cconf.write_text(host_conf(joined, b).replace(b.dir, str(fresh)))
    before = sorted(os.listdir(fresh))
    p = subprocess.run([mfactl, "-c", str(cconf), "setup", "--join",
                        f"127.0.0.1:{a.ports['replicator']}", "--bundle", foreign,
                        "--no-start"], capture_output=True, text=True)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "certificate" in p.stderr or "SSL" in p.stderr, p.stderr
    assert sorted(os.listdir(fresh)) == before

    # B, already joined, with the foreign bundle: its CA differs, refused too.
    before = snapshot(b.dir)
    p = subprocess.run([mfactl, "-c", b.conf, "setup", "--join",
                        f"127.0.0.1:{a.ports['replicator']}", "--bundle", foreign,
                        "--no-start"], capture_output=True, text=True)
    assert p.returncode == 3, p.stdout + p.stderr
    assert snapshot(b.dir) == before


def join_request(a, cert=None):
    ctx = ssl.create_default_context(cafile=os.path.join(a.dir, "pki", "ca.crt"))
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(cert + ".crt", cert + ".key")
    conn = http.client.HTTPSConnection("127.0.0.1", a.ports["replicator"], timeout=5,
                                       context=ctx)
    try:
        conn.request("GET", "/join")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_join_endpoint_wants_a_members_certificate(joined):
    a, b = joined.members[:2]
    # No client certificate: the handshake is refused.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        join_request(a)
    # The cluster CA's, but not a member's (CN=admin): 403, no keys.
    st, doc = join_request(a, os.path.join(joined.base, "pki", "admin"))
    assert st == 403 and doc["error"] == "not_member" and "key_file" not in doc
    # A member's: the keys and the cluster section.
    st, doc = join_request(a, os.path.join(b.dir, "pki", "member"))
    assert st == 200 and doc["member"] == "n2" and doc["cluster"]["name"] == NAME
    assert [m["id"] for m in doc["cluster"]["members"]] == ["n1", "n2", "n3"]
    assert "pepper" in doc["key_file"]
    assert "key = " not in a.log() and doc["key_file"] not in a.log()


def test_disagreeing_flags_are_refused(joined):
    a = joined.members[0]
    before = snapshot(a.dir)
    rc, out, err = run_setup(joined, a, "--primary", "--cluster", "another", "--id", "n1",
                         "--address", "127.0.0.1", "--no-start")
    assert rc == 3 and "refused" in err, out + err
    rc, out, err = run_setup(joined, a, "--invite", "n2", "--address", "127.0.0.9", "--no-start")
    assert rc == 3 and "refused" in err, out + err
    rc, out, err = run_setup(joined, a, "--primary", "--cluster", NAME, "--id", "n1")
    assert rc == 2 and "--address" in err
    assert snapshot(a.dir) == before


def test_invite_adds_a_new_member_to_the_configuration(joined, tmp_path):
    a = joined.members[0]
    conf = tmp_path / "a.conf"
    shutil.copy(a.conf, conf)
    original = conf.read_text()
    out_file = str(tmp_path / "n4.join")
    p = subprocess.run([joined.binary("appliance/mfactl"), "-c", str(conf), "setup", "--invite",
                        "n4", "--address", "127.0.0.4", "--out", out_file, "--no-start"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"made\s+configuration", p.stdout), p.stdout
    assert '{ id = "n4"; address = "127.0.0.4"; }' in p.stdout
    text = conf.read_text()
    assert '{ id = "n4"; address = "127.0.0.4"; }' in text
    # Everything but the members list is as it was (comments, other sections).
    assert text.split("members = (")[0] == original.split("members = (")[0]
    assert text.split("appliance = {")[1] == original.split("appliance = {")[1]
    with open(out_file) as f:
        bundle = json.load(f)
    assert bundle["member"] == "n4" and "BEGIN CERTIFICATE" in bundle["cert"]


def test_without_no_start_it_enables_the_units_and_waits(joined, tmp_path):
    """The start step with a stand-in systemctl on PATH (the daemons already run):
    the units it enables, then the wait on the member's own /status."""
    a, b = joined.members[:2]
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}")
    mfactl = joined.binary("appliance/mfactl")
    p = subprocess.run([mfactl, "-c", a.conf, "setup", "--primary", "--cluster", NAME, "--id",
                        "n1", "--address", "127.0.0.1", "--wait", "30"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "member n1 is primary" in p.stdout, p.stdout
    p = subprocess.run([mfactl, "-c", b.conf, "setup", "--join",
                        f"127.0.0.1:{a.ports['replicator']}", "--bundle", joined.bundle,
                        "--wait", "30"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "member n2 is a streaming standby" in p.stdout, p.stdout
    units = "enable --now mfa-replicator.service mfa-node.service mfa-balancer.service"
    assert calls.read_text().splitlines() == [units, units]
    # A member that never gets there: the wait ends at its deadline, exit 1.
    b.freeze()
    try:
        p = subprocess.run([mfactl, "-c", b.conf, "setup", "--join",
                            f"127.0.0.1:{a.ports['replicator']}", "--bundle", joined.bundle,
                            "--wait", "2"], capture_output=True, text=True, env=env,
                           timeout=60)
    finally:
        b.thaw()
    assert p.returncode == 1 and "not streaming after 2 s" in p.stderr, p.stdout + p.stderr


def sysid(m):
    return m.status().get("system_identifier")


def test_a_permission_beside_a_running_cluster_copies_it(joined):
    """n3 emptied and given a bootstrap.allow naming it, while n1 runs as primary:
    it must wait for its peers' answers, see n1's data and copy it — never initdb
    a second cluster on its first tick, before any peer has answered."""
    a, b, third = joined.members
    want = sysid(a)
    assert want
    third.stop()
    shutil.rmtree(third.pgdata)
    os.makedirs(third.pgdata, mode=0o700)
    joined._owner(third.pgdata)
    allow = os.path.join(third.dir, "bootstrap.allow")
    with open(allow, "w") as f:
        f.write("member=n3\n")
    joined._owner(allow)
    offset = len(third.log())
    third.start_replicator()
    wait_for(lambda: third.status().get("role") == "standby" and third.status().get("streaming"),
             180, "n3 a streaming standby again", interval=0.2)
    assert sysid(third) == want
    log = third.log()[offset:]
    assert "name=bootstrap" not in log and "initdb" not in log, log
    assert "bootstrap.allow ignored=n1" in log or "name=clone" in log, log
    # A copy of the cluster voids the permission: an emptied disk later copies again.
    wait_for(lambda: not os.path.exists(allow), 10, "the permission removed after the copy")
    joined.wait_healthy(120)


def test_a_witness_gets_no_keys(joined):
    """n3 restarted as a witness: once n1 has seen it report that role, its
    certificate may no longer fetch the keys (403 witness)."""
    a, b, third = joined.members
    with open(third.conf) as f:
        original = f.read()
    third.stop()
    with open(third.conf, "w") as f:
        f.write(original.replace("witness = false;", "witness = true;"))
    try:
        third.start_replicator()
        wait_for(lambda: any(p["id"] == "n3" and p["role"] == "witness"
                             for p in a.status()["peers"]), 30, "n1 sees n3 as a witness")
        st, doc = join_request(a, os.path.join(third.dir, "pki", "member"))
        assert st == 403 and doc["error"] == "witness" and "key_file" not in doc, doc
        assert "api.join refused=witness member=n3" in a.log()
        # A data member's certificate still gets them.
        st, doc = join_request(a, os.path.join(b.dir, "pki", "member"))
        assert st == 200 and "pepper" in doc["key_file"]
    finally:
        third.stop()
        with open(third.conf, "w") as f:
            f.write(original)
        third.start_replicator()
    joined.wait_healthy(120)


def other_host(joined, tmp_path, name, pki_from=None):
    """A host beside the cluster: A's configuration with its own directory (and,
    with <pki_from>, a copy of that member's pki/)."""
    a = joined.members[0]
    d = tmp_path / name
    d.mkdir()
    conf = d / "appliance.conf"
    conf.write_text(host_conf(joined, a).replace(a.dir, str(d)))
    if pki_from:
        shutil.copytree(os.path.join(pki_from.dir, "pki"), d / "pki")
    return d, str(conf)


def test_primary_again_on_a_wiped_host_is_refused(joined, tmp_path):
    """A host that made a cluster (key file kept) whose data is gone: a new
    permission would make a second cluster. Refused unless --force."""
    mfactl = joined.binary("appliance/mfactl")
    d, conf = other_host(joined, tmp_path, "wiped")
    args = [mfactl, "-c", conf, "setup", "--primary", "--cluster", NAME, "--id", "n1",
            "--address", "127.0.0.1", "--no-start"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    allow = d / "bootstrap.allow"
    keys = d / "keys.conf"
    # The permission is written before the key file (an interrupted run leaves no
    # key file without a permission).
    out = p.stdout
    assert re.search(r"made\s+bootstrap permission", out).start() < \
        re.search(r"made\s+key file", out).start(), out
    # Its replicator made the cluster (the permission spent), then the disk was wiped.
    allow.unlink()
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "already made a cluster" in p.stderr and "--force" in p.stderr, p.stderr
    assert not allow.exists() and keys.exists()
    p = subprocess.run(args + ["--force"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert allow.read_text() == "member=n1\n"
    assert re.search(r"kept\s+key file", p.stdout), p.stdout


def test_primary_is_refused_while_another_member_has_data(joined, tmp_path):
    """n1 re-imaged with its pki/ kept but no key file, no data: --primary asks
    the other members first; n2 and n3 answer with data: refused, no
    permission and no key file written."""
    a = joined.members[0]
    mfactl = joined.binary("appliance/mfactl")
    d, conf = other_host(joined, tmp_path, "reimaged", pki_from=a)
    p = subprocess.run([mfactl, "-c", conf, "setup", "--primary", "--cluster", NAME, "--id", "n1",
                        "--address", "127.0.0.1", "--no-start"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "has data" in p.stderr and "--join" in p.stderr, p.stderr
    assert not (d / "bootstrap.allow").exists() and not (d / "keys.conf").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_a_kept_key_file_is_given_back_to_the_daemons_user(joined):
    """A key file copied in as root (and a data directory made by hand) is kept,
    but given to appliance.user again: the replicator must read it."""
    a = joined.members[0]
    pw = pwd.getpwnam(joined.user)
    keys = os.path.join(a.dir, "keys.conf")
    for path in (keys, a.dir):
        os.chown(path, 0, 0)
    rc, out, err = run_setup(joined, a, "--primary", "--cluster", NAME, "--id", "n1",
                             "--address", "127.0.0.1", "--no-start")
    assert rc == 0, out + err
    assert re.search(r"kept\s+key file", out), out
    for path in (keys, a.dir):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), path


def test_setup_refuses_json(joined):
    a = joined.members[0]
    p = subprocess.run([joined.binary("appliance/mfactl"), "-c", a.conf, "--json", "setup",
                        "--primary", "--cluster", NAME, "--id", "n1", "--address", "127.0.0.1"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--json" in p.stderr, p.stdout + p.stderr


def test_an_unfinished_bootstrap_is_made_again():
    """A bootstrap cut short after initdb (the replicator restarted, or the setup
    of the roles failed) leaves data and the bootstrap marker, the permission
    still in place: the replicator wipes that data and makes the cluster again,
    instead of sitting on a half-made cluster with its permission gone."""
    build = os.environ["MFA_BUILD_DIR"]
    base = tempfile.mkdtemp(prefix="mfa-setup-redo-", dir="/tmp")
    os.chmod(base, 0o755)
    c = Cluster(base, build, members=1, name="redo", fence_after=2)
    m = c.members[0]
    try:
        os.makedirs(os.path.join(m.dir, "run"))
        for p in (m.dir, os.path.join(m.dir, "run")):
            c._owner(p)
        with open(m.conf, "w") as f:
            f.write(host_conf(c, m))
        rc, out, err = run_setup(c, m, "--primary", "--cluster", "redo", "--id", "n1",
                                 "--address", "127.0.0.1", "--no-start")
        assert rc == 0, out + err
        os.makedirs(os.path.join(c.base, "pki"))
        shutil.copy(os.path.join(m.dir, "pki", "ca.crt"), c.ca)
        subprocess.run([c.binary("appliance/mfactl"), "pki", "issue", "--dir",
                        os.path.join(m.dir, "pki"), "--name", "admin", "--dns", "admin", "--out",
                        os.path.join(c.base, "pki", "admin")], check=True, capture_output=True)
        # What an interrupted bootstrap leaves: data, and the marker written before initdb.
        marker = os.path.join(m.dir, "pg", "bootstrap-in-progress")
        junk = os.path.join(m.pgdata, "half-made")
        os.makedirs(m.pgdata, mode=0o700)
        os.makedirs(os.path.dirname(marker), mode=0o700)
        for path in (os.path.join(m.pgdata, "PG_VERSION"), junk, marker):
            with open(path, "w") as f:
                f.write("16\n" if path.endswith("PG_VERSION") else "")
        for path in (m.pgdata, os.path.dirname(marker), os.path.join(m.pgdata, "PG_VERSION"),
                     junk, marker):
            c._owner(path)
        m.start_replicator()
        wait_for(lambda: m.status().get("role") == "primary", 120, "n1 primary", interval=0.2)
        log = m.log()
        assert "bootstrap.interrupted" in log, log
        assert not os.path.exists(junk) and not os.path.exists(marker)
        assert not os.path.exists(os.path.join(m.dir, "bootstrap.allow"))
        assert m.status().get("system_identifier")
    finally:
        c.stop()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)
