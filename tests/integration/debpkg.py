"""The Debian package, built once per build directory for the tests that
need it (test_package, test_image): a Release build of this tree in
<MFA_BUILD_DIR>/pkg-release (configured once, reused) packed by CPack."""

import os
import subprocess

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run(cmd, timeout=300, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}\nstdout:\n{p.stdout}\n"
                             f"stderr:\n{p.stderr}")
    return p


def build_deb(build_dir):
    """Builds the .deb; returns its path."""
    out = os.path.join(build_dir, "pkg-release")
    run(["cmake", "-S", SRC, "-B", out, "-DCMAKE_BUILD_TYPE=Release", "-DSANITIZE=OFF",
         "-DBUILD_TESTING=OFF"])
    run(["cmake", "--build", out, "-j2"], timeout=600)
    for old in os.listdir(out):
        if old.endswith(".deb"):
            os.unlink(os.path.join(out, old))
    run(["cpack", "-G", "DEB"], cwd=out)
    debs = [f for f in os.listdir(out) if f.endswith(".deb")]
    assert len(debs) == 1, debs
    return os.path.join(out, debs[0])
