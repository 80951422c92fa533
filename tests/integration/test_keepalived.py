"""`mfactl keepalived` against keepalived itself: for each member of a
three-member cluster written by appliance/cluster.py (nothing started), the
generated keepalived.conf passes `keepalived --config-test` without a word,
and the same file made wrong does not (the positive control). Also the
command's own behaviour: --out writes the same text atomically with mode
0600, and bad input is refused with exit code 2 and nothing written.

keepalived is in packaging/build-deps.txt (packaging/install-deps keeps its
service from starting); without it the checks by keepalived are skipped."""

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster  # noqa: E402

KEEPALIVED = "/usr/sbin/keepalived"
ADDRESSES = {"n1": "127.0.1.1", "n2": "127.0.1.2", "n3": "127.0.1.3"}
VIP = "127.0.1.100/24"


def interface():
    """An interface keepalived accepts here: it must exist and not be a loopback."""
    names = sorted(n for n in os.listdir("/sys/class/net") if n != "lo")
    if not names:
        pytest.skip("no network interface other than lo; keepalived refuses lo for VRRP")
    return names[0]


def keepalived_version():
    p = subprocess.run([KEEPALIVED, "--version"], capture_output=True, text=True, timeout=10)
    m = re.search(r"Keepalived v(\d+)\.(\d+)\.(\d+)", p.stdout + p.stderr)
    assert m, p.stdout + p.stderr
    return tuple(int(x) for x in m.groups())


def config_test(path):
    """keepalived --config-test on <path>: (exit code, stderr)."""
    text = open(path).read()
    # keepalived before 2.2.8 (bookworm has 2.2.7) kills itself with SIGTERM
    # in --config-test when it checks a script as a user other than root
    # (acassen/keepalived#2587 and #2617, fixed by aae8e91); the daemon is
    # unaffected. Check such a copy as root: every other line is the same.
    if keepalived_version() < (2, 2, 8):
        assert "    script_user nobody\n" in text
        text = text.replace("    script_user nobody\n", "    script_user root\n")
    checked = path + ".checked"
    with open(checked, "w") as f:
        f.write(text)
    p = subprocess.run([KEEPALIVED, "--config-test", "-f", checked], capture_output=True,
                       text=True, timeout=30, start_new_session=True)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module")
def cluster(build_dir):
    base = tempfile.mkdtemp(prefix="mfa-keepalived-", dir="/tmp")
    c = Cluster(base, build_dir, members=3, name="corp-mfa",
                balancers=("n1", "n2", "n3")).create()
    yield c
    shutil.rmtree(base, ignore_errors=True)


def on_own_hosts(c):
    """Each member's configuration with the members on addresses of their own,
    as a floating address needs (the launcher puts them all on 127.0.0.1)."""
    for m in c.members:
        text = open(m.conf).read()
        for mid, addr in ADDRESSES.items():
            text = re.sub(r'(\{ id = "%s"; address = )"127\.0\.0\.1"' % mid,
                          r'\1"%s"' % addr, text)
        assert text.count("127.0.1.") == 3, text
        path = m.conf + ".ka"
        with open(path, "w") as f:
            f.write(text)
        yield m, path


def mfactl(c, conf, *args):
    p = subprocess.run([c.binary("appliance/mfactl"), "-c", conf, "keepalived", *args],
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def test_every_member_passes_config_test(cluster):
    if not os.access(KEEPALIVED, os.X_OK):
        pytest.skip(f"{KEEPALIVED} is not installed (packaging/build-deps.txt lists keepalived; "
                    "packaging/install-deps installs it)")
    ifname = interface()
    pw = os.path.join(cluster.base, "vrrp.pass")
    with open(pw, "w") as f:
        f.write("s3cret\n")
    for m, conf in on_own_hosts(cluster):
        for extra in ([], ["--password-file", pw]):
            rc, out, err = mfactl(cluster, conf, "--vip", VIP, "--interface", ifname,
                                  "--router-id", "51", *extra)
            assert rc == 0, err
            others = [a for i, a in ADDRESSES.items() if i != m.id]
            assert f"    unicast_src_ip {ADDRESSES[m.id]}\n" in out
            assert "".join(f"        {a}\n" for a in others) in out
            assert f"https://{ADDRESSES[m.id]}:{m.ports['api']}/ready" in out
            assert f"http://{ADDRESSES[m.id]}:{m.ports['health']}/" in out
            assert ("auth_pass s3cret" in out) == bool(extra)
            path = os.path.join(cluster.base, f"keepalived-{m.id}.conf")
            with open(path, "w") as f:
                f.write(out)
            rc, said = config_test(path)
            assert rc == 0 and said == "", f"{m.id}: keepalived -t: {rc}\n{said}\n{out}"

            # The positive control: keepalived does check what it is given.
            for wrong in (("virtual_router_id 51", "virtual_router_id 256"),
                          (f"        {others[0]}\n", "        127.0.1.x\n")):
                with open(path, "w") as f:
                    f.write(out.replace(*wrong))
                rc, said = config_test(path)
                assert rc != 0 and said, f"{m.id}: {wrong[1]!r} passed keepalived -t"


def test_out_file(cluster):
    m, conf = next(on_own_hosts(cluster))
    args = ["--vip", VIP, "--interface", "eth0", "--router-id", "7"]
    rc, text, err = mfactl(cluster, conf, *args)
    assert rc == 0, err
    out = os.path.join(cluster.base, "out.conf")
    rc, printed, err = mfactl(cluster, conf, *args, "--out", out)
    assert rc == 0 and printed == "", err
    assert f"wrote {out} for member {m.id}" in err
    assert open(out).read() == text
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert not os.path.exists(out + ".tmp")


@pytest.mark.parametrize("args,says", [
    ([], "are required"),
    (["--vip", "127.0.1.100", "--interface", "eth0", "--router-id", "7"], "no prefix length"),
    (["--vip", VIP, "--interface", "eth0", "--router-id", "0"], "1..255"),
    (["--vip", VIP, "--interface", "eth0", "--router-id", "7", "--priority", "255"], "1..254"),
    (["--vip", VIP, "--interface", "bad/if", "--router-id", "7"], "not an interface name"),
    (["--vip", VIP, "--interface", "eth0", "--router-id", "7", "--password-file",
      "/nonexistent/pw"], "cannot read the password file"),
    (["--vip", VIP, "--interface", "eth0", "--router-id", "7", "--peers", "n1,n9"],
     "\"n9\" is not a member"),
    (["--vip", VIP, "--interface", "eth0", "--router-id", "7", "--bogus"], "unknown option"),
])
def test_refusals(cluster, args, says):
    _, conf = next(on_own_hosts(cluster))
    out = os.path.join(cluster.base, "refused.conf")
    rc, printed, err = mfactl(cluster, conf, *args, "--out", out)
    assert rc == 2, (rc, err)
    assert says in err and printed == ""
    assert not os.path.exists(out)


def test_members_on_one_host_refused(cluster):
    """The launcher's own files (every member on 127.0.0.1): nothing to float between."""
    rc, printed, err = mfactl(cluster, cluster.members[0].conf, "--vip", "127.0.0.100/8",
                              "--interface", "eth0", "--router-id", "7")
    assert rc == 2 and printed == ""
    assert "share the address 127.0.0.1" in err
