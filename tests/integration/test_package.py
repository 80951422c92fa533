"""The Debian package: built with CPack from a Release build, its contents,
its systemd units (systemd-analyze verify, with a broken copy as the proof
that the check can fail), and a real install and purge on this machine.

The package is built in <MFA_BUILD_DIR>/pkg-release (configured once,
reused). Installing touches the machine: the test runs as root only, purges
a copy left by an aborted run first, never removes the user mfa (other tests
run PostgreSQL as that user), and leaves no package and no files behind.
"""

import grp
import os
import pwd
import re
import shutil
import stat
import tempfile

import pytest

from debpkg import build_deb, run
from pgcluster import run_as_user

PKG = "mfa-appliance"
DAEMONS = ("mfa-node", "mfa-replicator", "mfa-balancer")
PROGRAMS = DAEMONS + ("mfactl",)
UNITS = tuple(f"{d}.service" for d in DAEMONS)
UNIT_DIR = "/lib/systemd/system"
CONF = "/etc/mfa-appliance/appliance.conf"
DATA = "/var/lib/mfa-appliance"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("dpkg"),
                                reason="installs a Debian package: root on Debian only")


def installed():
    p = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", PKG], check=False)
    return p.returncode == 0 and p.stdout.strip() not in ("", "un", "pn")


def purge():
    return run(["dpkg", "--purge", PKG], timeout=120)


# ---- the package ----

@pytest.fixture(scope="module")
def deb(build_dir):
    """Builds the .deb from a Release build of this tree; returns its path."""
    return build_deb(build_dir)


@pytest.fixture(scope="module")
def tree(deb):
    """The package's files, unpacked."""
    d = tempfile.mkdtemp(prefix="mfa-pkg-")
    run(["dpkg-deb", "-x", deb, d])
    yield d
    shutil.rmtree(d)


def control(deb, field):
    return run(["dpkg-deb", "-f", deb, field]).stdout.strip()


def test_contents(deb):
    files = {line.split()[-1].lstrip(".") for line in
             run(["dpkg-deb", "-c", deb]).stdout.splitlines()}
    for prog in PROGRAMS:
        assert f"/usr/bin/{prog}" in files
    for unit in UNITS:
        assert f"{UNIT_DIR}/{unit}" in files
    assert CONF in files
    assert "/usr/share/doc/mfa-appliance/install.md" in files
    # Test tools stay out of the product.
    assert not [f for f in files if re.search(r"mfa-(testd|sms-send|pg-probe|http-fetch)", f)]

    assert control(deb, "Package") == PKG
    depends = control(deb, "Depends")
    for dep in ("adduser", "haproxy", "postgresql-15", "libc6", "libpq5", "libssl3",
                "libconfig9", "libevent-core-2.1-7", "libevent-extra-2.1-7",
                "libevent-openssl-2.1-7", "libjansson4", "libcurl4"):
        assert re.search(rf"(^|, ){re.escape(dep)}( \(|,|$)", depends), (dep, depends)

    info = run(["dpkg-deb", "-I", deb]).stdout
    for script in ("postinst", "prerm", "postrm"):
        assert re.search(rf"\*\s+{script}\s", info), f"{script} missing or not executable"
    conffiles = run(["sh", "-c", f"dpkg-deb --ctrl-tarfile '{deb}' | tar -xOf - ./conffiles"])
    assert conffiles.stdout.split() == [CONF]


def test_binaries_are_release(tree):
    # Stripped, no sanitizer runtime: the package is not built from the test build.
    for prog in PROGRAMS:
        path = os.path.join(tree, "usr/bin", prog)
        libs = run(["ldd", path]).stdout
        assert "libasan" not in libs and "libubsan" not in libs, libs
        assert ".symtab" not in run(["readelf", "-S", "-W", path]).stdout, f"{prog} not stripped"


# ---- the units ----

def verify_problems(unit_path):
    """systemd-analyze verify's complaints about a unit: [] when it is clean.

    verify exits 0 on unknown keys and bad values (it only warns), so any
    output at all counts as a problem."""
    p = run(["systemd-analyze", "verify", "--man=no", unit_path], check=False,
            env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    if p.returncode != 0 and not lines:
        lines = [f"exit {p.returncode}"]
    return lines


def unit_copy(tree, unit, tmp, edit=lambda s: s):
    """A copy of <unit> whose ExecStart points into the unpacked tree."""
    text = open(os.path.join(tree, UNIT_DIR.lstrip("/"), unit)).read()
    text = text.replace("ExecStart=/usr/bin/", f"ExecStart={tree}/usr/bin/")
    path = os.path.join(tmp, unit)
    with open(path, "w") as f:
        f.write(edit(text))
    return path


def unit_settings(path):
    settings = {}
    for line in open(path):
        m = re.match(r"^([A-Za-z]+)=(.*)$", line.strip())
        if m:
            settings.setdefault(m.group(1), []).append(m.group(2))
    return settings


def test_units_verify(tree, tmp_path):
    for unit in UNITS:
        assert verify_problems(unit_copy(tree, unit, str(tmp_path))) == [], unit


def test_units_verify_catches_a_broken_unit(tree, tmp_path):
    # The positive control: the same check fails on a misspelt key, a bad
    # value and a program that is not there.
    breakages = {
        "misspelt": lambda s: s.replace("KillMode=", "KilMode="),
        "bad value": lambda s: s.replace("Restart=on-failure", "Restart=sometimes"),
        "no program": lambda s: s.replace("/usr/bin/mfa-", "/usr/bin/no-such-mfa-"),
    }
    for what, edit in breakages.items():
        d = tmp_path / what.replace(" ", "_")
        d.mkdir()
        assert verify_problems(unit_copy(tree, "mfa-node.service", str(d), edit)) != [], what


def test_unit_settings(tree):
    for daemon in DAEMONS:
        s = unit_settings(os.path.join(tree, UNIT_DIR.lstrip("/"), f"{daemon}.service"))
        assert s["ExecStart"] == [f"/usr/bin/{daemon} -c {CONF}"]
        assert s["User"] == ["mfa"] and s["Group"] == ["mfa"]
        assert s["Restart"] == ["on-failure"]
        assert s["RuntimeDirectory"] == ["mfa-appliance"]
        # Shared by the three units, and PostgreSQL's socket and HAProxy's
        # master socket live there: a stop must not remove it.
        assert s["RuntimeDirectoryPreserve"] == ["yes"]
        assert s["StateDirectory"] == ["mfa-appliance"]
        assert s["NoNewPrivileges"] == ["yes"]
        assert s["ProtectSystem"] == ["strict"]
        assert s["PrivateTmp"] == ["yes"]
        assert s["WantedBy"] == ["multi-user.target"]
        if daemon == "mfa-balancer":
            assert s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
            assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
        else:
            assert "AmbientCapabilities" not in s
            assert s["CapabilityBoundingSet"] == [""]
        # The data plane outlives a restart of its daemon (adoption).
        assert s["KillMode"] == (["mixed"] if daemon == "mfa-node" else ["process"])


# ---- the default configuration ----

def uncommented(text):
    """The configuration with its commented-out settings switched on."""
    out = []
    setting = re.compile(r"^(\s*)#(\s*)([a-z_]+ = .*;.*|[a-z_]+ = [{(].*|[})];.*)$")
    for line in text.splitlines():
        m = setting.match(line)
        if m:
            line = m.group(1) + m.group(2) + m.group(3)
        out.append(line)
    return "\n".join(out) + "\n"


def set_keys(text):
    """The dotted keys a libconfig text sets (groups nest; lists are skipped)."""
    keys, stack, in_list = set(), [], 0
    for line in text.splitlines():
        line = re.sub(r'#.*$', "", re.sub(r'"(\\.|[^"\\])*"', '""', line)).strip()
        if not line:
            continue
        if in_list:
            in_list += line.count("(") - line.count(")")
            continue
        m = re.match(r"^([a-z_]+) = \{$", line)
        if m:
            stack.append(m.group(1))
            continue
        m = re.match(r"^([a-z_]+) = \((.*)$", line)
        if m:
            keys.add(".".join(stack + [m.group(1)]))
            in_list = 1 + m.group(2).count("(") - m.group(2).count(")")
            continue
        if line == "};":
            stack.pop()
            continue
        m = re.match(r"^([a-z_]+) = .*;$", line)
        if m:
            keys.add(".".join(stack + [m.group(1)]))
    return keys


def check_config(program, conf, user=None):
    cmd = (["runuser", "-u", user, "--"] if user else []) + [program, "-c", conf,
                                                             "--check-config"]
    p = run(cmd, check=False)
    assert p.returncode == 0, f"{cmd}: {p.stderr}"
    assert "configuration OK" in p.stdout
    return [ln for ln in p.stdout.splitlines() if not ln.startswith("#")]


def test_default_config_passes_and_documents_every_key(tree, tmp_path):
    conf = os.path.join(tree, CONF.lstrip("/"))
    for daemon in DAEMONS:
        check_config(os.path.join(tree, "usr/bin", daemon), conf)
    node = os.path.join(tree, "usr/bin/mfa-node")
    dump = check_config(node, conf)

    # With every commented-out setting switched on, the effective values are
    # the same: the comments show the program's defaults.
    full = tmp_path / "full.conf"
    full.write_text(uncommented(open(conf).read()))
    assert check_config(node, str(full)) == dump

    # And every key the program knows is among them.
    known = {re.sub(r"\[\d+\]", "", ln.split(" = ")[0]) for ln in dump}
    known = {k for k in known if not k.startswith("cluster.members.")}
    missing = sorted(known - set_keys(full.read_text()))
    assert missing == [], f"keys not in packaging/appliance.conf: {missing}"


# ---- install and purge ----

@pytest.fixture
def no_service_starts():
    """A policy-rc.d that forbids starting services, as packaging/install-deps."""
    policy = "/usr/sbin/policy-rc.d"
    placed = False
    if not os.path.exists(policy):
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        placed = True
    yield
    if placed:
        os.unlink(policy)


def owner(path):
    st = os.stat(path)
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


def test_install_and_purge(deb, no_service_starts):
    if installed():
        if os.path.isdir(DATA) and run(["find", DATA, "-maxdepth", "3", "-name",
                                        "PG_VERSION"]).stdout.strip():
            pytest.skip(f"{PKG} is installed here with a database: not touching it")
        purge()  # left by an aborted run
    # The other tests make the user mfa on demand; make it now, their way,
    # so that the postinst never races them for it (and never replaces it).
    run_as_user()
    user_before = pwd.getpwnam("mfa")

    try:
        dpkg = run(["dpkg", "-i", deb], timeout=180)
        assert installed()
        # A PostgreSQL cluster of Debian's own on 5432 is named, not touched.
        lsc = run(["pg_lsclusters", "-h"], check=False).stdout if shutil.which(
            "pg_lsclusters") else ""
        if any(ln.split()[2:3] == ["5432"] for ln in lsc.splitlines()):
            assert "uses port 5432" in dpkg.stderr, dpkg.stderr
        assert run(["dpkg-query", "-W", "-f=${Status}", PKG]).stdout == "install ok installed"

        pw = pwd.getpwnam("mfa")
        assert pw == user_before  # an existing user is kept as it is
        assert owner(DATA) == ("mfa", "mfa", 0o750)
        assert owner(CONF) == ("root", "mfa", 0o640)
        for unit in UNITS:
            assert os.path.isfile(os.path.join(UNIT_DIR, unit))
            # Not enabled on install.
            assert not os.path.exists(f"/etc/systemd/system/multi-user.target.wants/{unit}")
        for prog in PROGRAMS:
            p = run([f"/usr/bin/{prog}", "--version"])
            assert p.stdout.startswith(prog), p.stdout
        # The installed default configuration, from the default path, as root
        # and as the user the units run the daemons as.
        for daemon in DAEMONS:
            run([f"/usr/bin/{daemon}", "--check-config"])
            check_config(f"/usr/bin/{daemon}", CONF, user="mfa")
        for unit in UNITS:
            assert verify_problems(os.path.join(UNIT_DIR, unit)) == [], unit
        # Keys made at setup are the operator's: purge keeps them, and says so.
        keys = os.path.join(os.path.dirname(CONF), "keys.conf")
        ca_key = os.path.join(os.path.dirname(CONF), "pki", "ca.key")
        os.makedirs(os.path.dirname(ca_key))
        for path in (keys, ca_key):
            with open(path, "w") as f:
                f.write("made at setup\n")
        p = purge()
        assert "keeping /etc/mfa-appliance/keys.conf and pki/" in p.stderr, p.stderr
        assert os.path.isfile(keys) and os.path.isfile(ca_key)
        shutil.rmtree(os.path.dirname(CONF))
    finally:
        if installed():
            purge()

    assert not installed()
    status = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", PKG], check=False)
    assert status.returncode != 0 or status.stdout.strip() in ("un", "pn")
    leftovers = [p for p in
                 [f"/usr/bin/{prog}" for prog in PROGRAMS]
                 + [os.path.join(UNIT_DIR, u) for u in UNITS]
                 + ["/etc/mfa-appliance", DATA, "/run/mfa-appliance",
                    "/usr/share/doc/mfa-appliance"]
                 if os.path.lexists(p)]
    assert leftovers == []
    # Debian policy: purge never removes the user.
    assert pwd.getpwnam("mfa") == user_before
