"""32-bit Raspberry Pi OS: the 2026 shape built for Debian trixie armhf (cross mode: GOARM=7, arm-linux-gnueabihf-gcc),
packaged the trixie way, and installed and run with `doit accept` in a clean trixie armhf container under qemu-arm;
and one component (runc: Go and cgo) built under qemu-arm with the recipe's 32-bit Go, as a 32-bit Pi builds natively."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from builders.arch import Arch
from builders.container import Container
from builders.elf import built_for
from builders.images import ensure_base_image
from builders.recipe import Target
from tests.fixtures.pipeline import SHAPE_1_36, Pipeline, make_pipeline, run_staged
from tests.integration.test_deb import members

pytestmark = [pytest.mark.docker, pytest.mark.emulation, pytest.mark.slow]


def test_every_binary_is_32_bit_hard_float_arm_for_armv7(pipeline_armhf: Pipeline, built_armhf) -> None:
    staging = pipeline_armhf.artifacts / "staging"
    for component in ("cri-o", "conmon", "cni-plugins", "cri-tools", "runc", "crun"):
        manifest = json.loads((staging / f"{component}.json").read_text())
        for binary in manifest["binaries"]:
            assert built_for(staging / component / binary, Arch.armhf) is None, binary
    settings = subprocess.run(["go", "version", "-m", str(staging / "cri-o/usr/bin/crio")], capture_output=True, text=True, check=True).stdout
    assert "GOARCH=arm" in settings and "GOARM=7" in settings  # Pi 2 and later


def test_the_packages_are_armhf_for_trixie_with_units_where_its_debhelper_reads_them(pipeline_armhf: Pipeline, built_armhf) -> None:
    debs = sorted(p.name for p in pipeline_armhf.artifacts.glob("*.deb"))
    assert all(name.endswith("~deb13_armhf.deb") for name in debs) and len(debs) == 6, debs
    crio = members(pipeline_armhf.artifacts / "cri-o_1.36.1-1~deb13_armhf.deb")
    assert "/usr/lib/systemd/system/crio.service" in crio and "/lib/systemd/system/crio.service" not in crio
    assert (pipeline_armhf.artifacts / "cri-o.armhf.v1.36.1.tar.gz").is_file()


def test_doit_accept_installs_and_runs_them_on_trixie_armhf(pipeline_armhf: Pipeline, built_armhf) -> None:
    result = pipeline_armhf.doit("accept:crio-1.36")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (pipeline_armhf.artifacts / "logs" / "accept.log").read_text()
    assert "crio version 1.36.1" in log and "crun version 1.26" in log
    assert "crio config: default runtime crun, crun /usr/libexec/crio/crun, runc /usr/libexec/crio/runc" in log
    assert "install on debian trixie armhf and run" in result.stdout


# What the fixture runc needs: cgo against libseccomp, git for its version, go-md2man for `make man`. The emulated
# builder installs only these (apt under qemu-arm is the slow part), not the whole recipe's build dependencies.
RUNC_PACKAGES = ("gcc", "git", "go-md2man", "libc6-dev", "libseccomp-dev", "make", "pkg-config")


@pytest.fixture(scope="module")
def qemu_armhf(tmp_path_factory, upstreams, go_tarballs, http_server) -> Pipeline:
    shape = SHAPE_1_36 | {"suite": "trixie", "arch": "armhf", "packages": RUNC_PACKAGES}
    return make_pipeline(tmp_path_factory.mktemp("qemu-armhf"), "qemu", upstreams, go_tarballs, http_server, shape)


def test_runc_builds_under_qemu_arm_with_the_recipes_32_bit_go_and_runs(qemu_armhf: Pipeline, go_tarballs, docker_engine) -> None:
    started = time.monotonic()
    result = qemu_armhf.doit("compile:crio-1.36:runc")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"compile:crio-1.36:runc under qemu-arm: {time.monotonic() - started:.0f} s")
    staging = qemu_armhf.artifacts / "staging"
    assert json.loads((staging / "runc.json").read_text())["mode"] == "qemu"
    # The Go that ran is the recipe's armv6l tarball, checked against its armhf pin; the host's was never fetched.
    toolchains = qemu_armhf.root / "cache" / "toolchains"
    marker = json.loads((toolchains / f"go{go_tarballs.version}.linux-armv6l" / ".criobuild-complete").read_text())
    assert marker["sha256"] == go_tarballs.sha256[Arch.armhf] and marker["url"].endswith(f"go{go_tarballs.version}.linux-armv6l.tar.gz")
    assert sorted(p.name for p in toolchains.iterdir() if p.is_dir()) == [f"go{go_tarballs.version}.linux-armv6l"]
    runc = staging / "runc/usr/libexec/crio/runc"
    assert built_for(runc, Arch.armhf) is None
    settings = subprocess.run(["go", "version", "-m", str(runc)], capture_output=True, text=True, check=True).stdout
    assert f"go{go_tarballs.version}" in settings and "GOARCH=arm" in settings and "GOARM=7" in settings
    base = ensure_base_image(docker_engine, Target(distro="debian", suite="trixie", arch=Arch.armhf, mirror="http://deb.debian.org/debian"), "bootstrap")
    out = run_staged(docker_engine, base, staging / "runc", ["/usr/libexec/crio/runc", "--version"])
    assert out.splitlines()[0] == "runc version 1.4.3", out


def test_the_tarballs_install_names_the_armhf_library_packages_apt_has(pipeline_armhf: Pipeline, built_armhf, docker_engine, tmp_path) -> None:
    """trixie armhf's glib is libglib2.0-0t64 (the 64-bit time_t transition): the hint `./install` prints is the
    package the build's dpkg named, and apt installs it."""
    tarball = pipeline_armhf.artifacts / "cri-o.armhf.v1.36.1.tar.gz"
    (tmp_path / "upload").mkdir()
    (tmp_path / "upload" / tarball.name).write_bytes(tarball.read_bytes())
    base = ensure_base_image(docker_engine, Target(distro="debian", suite="trixie", arch=Arch.armhf, mirror="http://deb.debian.org/debian"), "bootstrap")
    with Container(docker_engine, base, network="bridge", what="install the armhf tarball") as box:
        box.copy_into(tmp_path / "upload", "/work")
        out = box.output(["sh", "-c", f"cd /work && tar -xzf {tarball.name} && cd cri-o && ./install"])
        assert "These shared libraries are missing: libglib-2.0.so.0\n" in out, out
        hint = next(line.strip() for line in out.splitlines() if "sudo apt-get install" in line)
        assert "libglib2.0-0t64" in hint.split() and "libglib2.0-0" not in hint.split(), hint
        box.call(["apt-get", "update", "-q"])
        box.call(["sh", "-c", f"DEBIAN_FRONTEND=noninteractive {hint.removeprefix('sudo ')} -y -q --no-install-recommends"])
        assert "shared libraries are missing" not in box.output(["sh", "-c", "cd /work/cri-o && ./install"])
