"""The VM image (appliance/image/build, docs/image.md): its root file system
is built from this tree's package (debootstrap, bookworm, the dependencies
from Debian's archive), and then, inside it with chroot: the programs run
and print their version, the installed default configuration passes every
daemon's check, nothing per-machine or secret is left in it (with a
negative control proving that check can fail), and the first-boot unit is
installed, enabled, verified by systemd, and does its job.

The root file system is built in <MFA_BUILD_DIR>/image-test and removed
afterwards; downloads stay in <MFA_BUILD_DIR>/image-cache for the next run.
Root on Debian with debootstrap and Debian's archive reachable.
"""

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from debpkg import SRC, build_deb, run

DAEMONS = ("mfa-node", "mfa-replicator", "mfa-balancer")
PROGRAMS = DAEMONS + ("mfactl",)
CONF = "/etc/mfa-appliance/appliance.conf"
FIRSTBOOT = "mfa-firstboot.service"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("dpkg"),
    reason="builds a Debian root file system: root on Debian with debootstrap only")


@pytest.fixture(scope="module")
def deb(build_dir):
    return build_deb(build_dir)


@pytest.fixture(scope="module")
def rootfs(build_dir, deb):
    out = os.path.join(build_dir, "image-test")
    cache = os.path.join(build_dir, "image-cache")
    build = run([os.path.join(SRC, "appliance", "image", "build"), "--deb", deb,
                 "--out", out, "--cache", cache], timeout=840, check=False)
    # Whatever the outcome, the build leaves nothing mounted.
    assert mounts_under(out) == []
    assert build.returncode == 0, f"image build failed:\n{build.stdout}\n{build.stderr}"
    yield os.path.join(out, "rootfs")
    assert mounts_under(out) == []
    run(["rm", "-rf", "--one-file-system", out])


def mounts_under(path):
    targets = run(["findmnt", "-rn", "-o", "TARGET"]).stdout.split()
    return [t for t in targets if t == path or t.startswith(path + "/")]


def chroot(root, *cmd, check=True):
    return run(["chroot", root, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "LC_ALL=C.UTF-8", *cmd], check=check)


# ---- what the image holds ----

def test_programs_print_their_version(rootfs, deb):
    version = run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip()
    for prog in PROGRAMS:
        out = chroot(rootfs, prog, "--version").stdout
        assert out.strip() == f"{prog} {version}", out


def test_default_config_passes_every_daemons_check(rootfs):
    # As the user the units run the daemons as: the file is 0640 root:mfa.
    for daemon in DAEMONS:
        p = chroot(rootfs, "runuser", "-u", "mfa", "--", daemon, "--check-config", "-c", CONF,
                   check=False)
        assert p.returncode == 0, f"{daemon}: {p.stderr}"
        assert f"{CONF}: configuration OK" in p.stdout


def test_dependencies_came_from_the_archive(rootfs):
    status = chroot(rootfs, "dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\\n",
                    "mfa-appliance", "haproxy", "postgresql-15", "openssh-server",
                    "systemd-sysv").stdout
    for line in status.splitlines():
        assert line.split()[1] == "ii", status
    assert len(status.splitlines()) == 5, status
    # Debian's "main" cluster was not made: 5432 is the appliance's.
    assert not os.path.exists(os.path.join(rootfs, "etc/postgresql/15"))
    assert not os.path.exists(os.path.join(rootfs, "var/lib/postgresql/15/main"))
    # The chroot's service ban and dpkg's unsafe I/O went with the build.
    assert not os.path.exists(os.path.join(rootfs, "usr/sbin/policy-rc.d"))
    assert not os.path.exists(os.path.join(rootfs, "etc/dpkg/dpkg.cfg.d/mfa-image-build"))


def test_a_failed_build_fails_and_leaves_nothing_mounted(build_dir, deb, rootfs):
    # After the module's build the base system comes from the cache, so this
    # gets quickly to apt, with /proc, /sys, /dev and the cache mounted in
    # the chroot, and fails there: the security archive cannot be reached.
    out = os.path.join(build_dir, "image-fail")
    try:
        p = run([os.path.join(SRC, "appliance", "image", "build"), "--deb", deb, "--out", out,
                 "--cache", os.path.join(build_dir, "image-cache"),
                 "--security", "http://127.0.0.1:9/debian-security"], timeout=300, check=False)
        assert p.returncode != 0 and "apt failed" in p.stderr, p.stdout + p.stderr
        assert "installing" in p.stdout  # it got as far as the mounts
        assert mounts_under(out) == []
    finally:
        run(["rm", "-rf", "--one-file-system", out])


# ---- nothing per-machine or secret ----

SECRET_PATTERNS = (
    "etc/ssh/ssh_host_*",                # ssh-keygen -A at first boot
    "etc/mfa-appliance/keys.conf",       # mfactl setup
    "etc/mfa-appliance/pki",             # mfactl setup
    "etc/ssl/private/*",                 # ssl-cert's snakeoil key
    "var/lib/systemd/random-seed",
    "var/lib/systemd/credential.secret",
    "var/lib/dbus/machine-id",
    "root/.bash_history",
    "root/.ssh/id_*",
)


def leftovers(root):
    """What in <root> is per-machine or secret: [] for a clean image."""
    found = []
    mid = os.path.join(root, "etc/machine-id")
    if not os.path.isfile(mid) or os.path.getsize(mid) != 0:
        found.append("etc/machine-id is not an empty file")
    for pattern in SECRET_PATTERNS:
        found += [os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pattern))]
    for d in ("var/lib/apt/lists", "var/cache/apt", "var/log", "tmp", "var/tmp"):
        for dirpath, _, names in os.walk(os.path.join(root, d)):
            found += [os.path.relpath(os.path.join(dirpath, n), root) for n in names
                      if not os.path.islink(os.path.join(dirpath, n)) and n != "lock"]
    if os.path.isfile(os.path.join(root, "etc/resolv.conf")) and not os.path.islink(
            os.path.join(root, "etc/resolv.conf")):
        found.append("etc/resolv.conf is the build host's")
    shadow = os.path.join(root, "etc/shadow")
    for line in open(shadow) if os.path.isfile(shadow) else []:
        user, pw = line.split(":")[:2]
        if pw not in ("*", "!*", "!") and not pw.startswith("!"):
            found.append(f"etc/shadow: {user} has a password")
    return found


def test_nothing_per_machine_or_secret(rootfs):
    assert leftovers(rootfs) == []


def clean_tree(d):
    os.makedirs(os.path.join(d, "etc/ssh"))
    open(os.path.join(d, "etc/machine-id"), "w").close()
    with open(os.path.join(d, "etc/shadow"), "w") as f:
        f.write("root:*:20000:0:99999:7:::\nmfa:!:20000::::::\n")


def test_leftover_check_catches_each_leftover(tmp_path):
    # The negative control: a clean tree passes, and each kind of leftover
    # planted in it is flagged.
    clean = str(tmp_path / "clean")
    clean_tree(clean)
    assert leftovers(clean) == []
    plants = {
        "etc/ssh/ssh_host_ed25519_key": "key",
        "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
        "etc/mfa-appliance/keys.conf": "version = 1;\n",
        "etc/mfa-appliance/pki/ca.key": "key",
        "etc/ssl/private/ssl-cert-snakeoil.key": "key",
        "var/lib/systemd/random-seed": "seed",
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease": "x",
        "var/cache/apt/archives/haproxy_2.6_amd64.deb": "x",
        "var/log/dpkg.log": "x",
        "etc/resolv.conf": "nameserver 10.0.0.1\n",
        "etc/shadow": "root:$y$j9T$abc$def:20000:0:99999:7:::\n",
    }
    for path, content in plants.items():
        d = str(tmp_path / path.replace("/", "_"))
        clean_tree(d)
        full = os.path.join(d, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(content)
        assert leftovers(d) != [], path


# ---- first boot ----

def test_firstboot_unit_installed_enabled_and_verified(rootfs):
    def enabled(unit):
        return run(["systemctl", f"--root={rootfs}", "is-enabled", unit],
                   check=False).stdout.strip()
    assert enabled(FIRSTBOOT) == "enabled"
    assert enabled("ssh.service") == "enabled"
    # The daemons wait for mfactl setup; Debian's own HAProxy and
    # PostgreSQL units stay off (the daemons run both).
    for unit in [f"{d}.service" for d in DAEMONS] + ["haproxy.service", "postgresql.service"]:
        assert enabled(unit) == "disabled", unit
    p = run(["systemd-analyze", "verify", f"--root={rootfs}", "--man=no", FIRSTBOOT]
            + [f"{d}.service" for d in DAEMONS], check=False,
            env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    assert p.returncode == 0 and (p.stdout + p.stderr).strip() == "", p.stdout + p.stderr


@pytest.fixture
def booted_copy(rootfs):
    """The root file system under a throwaway overlay: changes go there."""
    work = tempfile.mkdtemp(prefix="mfa-image-")
    upper, wd, merged = (os.path.join(work, n) for n in ("upper", "work", "merged"))
    for d in (upper, wd, merged):
        os.mkdir(d)
    p = run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={rootfs},upperdir={upper},workdir={wd}", merged], check=False)
    if p.returncode != 0:
        shutil.rmtree(work)
        pytest.skip(f"no overlay mounts here: {p.stderr.strip()}")
    try:
        yield merged
    finally:
        run(["umount", merged])
        shutil.rmtree(work)


def test_firstboot_makes_host_keys_and_says_what_next(booted_copy):
    root = booted_copy
    p = chroot(root, "/usr/lib/mfa-appliance/firstboot")
    keys = sorted(glob.glob(os.path.join(root, "etc/ssh/ssh_host_*_key")))
    assert [os.path.basename(k) for k in keys] == [
        "ssh_host_ecdsa_key", "ssh_host_ed25519_key", "ssh_host_rsa_key"]
    assert os.path.getsize(os.path.join(root, "etc/machine-id")) > 0
    motd = open(os.path.join(root, "etc/motd")).read()
    assert "mfactl setup --primary" in motd and "mfactl setup --join" in motd
    assert "mfactl setup --primary" in p.stdout  # and on the console
    assert os.path.exists(os.path.join(root, "var/lib/mfa-appliance/.firstboot-done"))
    assert os.path.exists(os.path.join(root, "etc/ssl/private/ssl-cert-snakeoil.key"))
    # It never makes the cluster's secrets: setup does, and a joiner takes
    # the first member's.
    assert not os.path.exists(os.path.join(root, "etc/mfa-appliance/keys.conf"))
    assert not os.path.exists(os.path.join(root, "etc/mfa-appliance/pki"))
    # sshd accepts its configuration with them (/run/sshd: the unit's
    # RuntimeDirectory on a real boot).
    os.makedirs(os.path.join(root, "run/sshd"), exist_ok=True)
    chroot(root, "/usr/sbin/sshd", "-t")
    # Again: what exists is kept.
    before = open(keys[1], "rb").read()
    chroot(root, "/usr/lib/mfa-appliance/firstboot")
    assert open(keys[1], "rb").read() == before


# ---- the disk image, booted (opt-in: MFA_IMAGE_BOOT=1) ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(os.environ.get("MFA_IMAGE_BOOT") != "1"
                    or not shutil.which("qemu-system-x86_64") or not shutil.which("sfdisk"),
                    reason="boots the disk image in QEMU (minutes): MFA_IMAGE_BOOT=1, with "
                           "qemu-system-x86 and fdisk installed")
def test_disk_image_boots_and_first_boot_lets_a_key_in(build_dir, deb, tmp_path):
    out = os.path.join(build_dir, "image-boot")
    key = str(tmp_path / "id_ed25519")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    build = run([os.path.join(SRC, "appliance", "image", "build"), "--deb", deb, "--out", out,
                 "--cache", os.path.join(build_dir, "image-cache"), "--disk",
                 "--authorized-keys", key + ".pub"], timeout=900, check=False)
    assert mounts_under(out) == []
    assert build.returncode == 0, f"image build failed:\n{build.stdout}\n{build.stderr}"
    assert run(["losetup", "-j", os.path.join(out, "mfa-appliance.raw")]).stdout == ""

    port = free_port()
    console = str(tmp_path / "console.log")
    # TCG: works wherever QEMU does (KVM may be missing or nested); -snapshot
    # leaves the image as built.
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "1024", "-snapshot",
         "-drive", f"file={os.path.join(out, 'mfa-appliance.qcow2')},if=virtio",
         "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22",
         "-display", "none", "-monitor", "none", "-serial", f"file:{console}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ssh = ["ssh", "-i", key, "-p", str(port), "-o", "StrictHostKeyChecking=no",
           "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}", "-o", "BatchMode=yes",
           "-o", "ConnectTimeout=10", "root@127.0.0.1"]
    try:
        deadline = time.monotonic() + 600
        while True:
            p = run(ssh + ["test -e /var/lib/mfa-appliance/.firstboot-done"], check=False,
                    timeout=60)
            if p.returncode == 0:
                break
            assert qemu.poll() is None, "QEMU exited:\n" + open(console, errors="replace").read()
            assert time.monotonic() < deadline, \
                "no SSH login within 10 min:\n" + open(console, errors="replace").read()[-4000:]
            time.sleep(2)
        # First boot made three host keys and printed their fingerprints on
        # the console; sshd showed us one of them.
        listed = run(ssh + ["for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $k; done"])
        fingerprints = re.findall(r"SHA256:\S+", listed.stdout)
        text = open(console, errors="replace").read()
        assert len(fingerprints) == 3 and all(f in text for f in fingerprints), listed.stdout
        seen = run(["ssh-keygen", "-lf", str(tmp_path / "known_hosts")]).stdout
        assert re.findall(r"SHA256:\S+", seen)[0] in fingerprints, seen
        assert "mfactl setup --primary" in text
        checks = run(ssh + ["test -s /etc/machine-id && systemctl is-active mfa-firstboot "
                            "&& mfa-node --version && mfa-node --check-config >/dev/null "
                            "&& test ! -e /etc/mfa-appliance/keys.conf && cat /etc/motd"])
        assert "active" in checks.stdout and "mfactl setup --join" in checks.stdout
    finally:
        qemu.terminate()
        qemu.wait(timeout=30)
        run(["rm", "-rf", "--one-file-system", out])
