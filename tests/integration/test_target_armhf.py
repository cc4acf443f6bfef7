"""32-bit Raspberry Pi OS: the 2026 shape built for Debian trixie armhf (cross mode: GOARM=7, arm-linux-gnueabihf-gcc),
packaged the trixie way, and installed and run with `doit accept` in a clean trixie armhf container under qemu-arm."""
from __future__ import annotations

import json
import subprocess

import pytest

from builders.arch import Arch
from builders.elf import built_for
from tests.fixtures.pipeline import Pipeline
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
