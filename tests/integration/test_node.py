"""The emulated node (`doit node:<recipe>`, builders/vm.py) with the fixture packages of the 2026 shape for trixie
arm64: Debian's own arm64 kernel booted by qemu-system-aarch64 with a disk of the target made from our .debs,
systemd as PID 1, the pod test driving it through the QEMU guest agent.

The fixture crio cannot serve the CRI (the pod itself runs with real CRI-O by hand and in the release
workflow), so what is checked here is everything around it, as test_pod.py does natively: the boot, the
install by apt, the services under systemd, the failure a user gets when crio does not answer, and that
nothing is left: no QEMU, no disk, no container."""
from __future__ import annotations

import re
import subprocess

import pytest

from tests.fixtures.pipeline import Pipeline

pytestmark = [pytest.mark.docker, pytest.mark.emulation, pytest.mark.slow]


def test_the_emulated_node_boots_the_packages_under_systemd_and_leaves_nothing(pipeline_1_36: Pipeline, built_1_36, docker_engine) -> None:
    result = pipeline_1_36.doit("node:crio-1.36")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pod test of crio-1.36 on an emulated arm64 node: crio does not answer on its socket; its journal says:" in result.stderr, result.stderr
    assert "this is the cri-o test fixture: it has no daemon" in result.stderr  # the fixture crio, started by systemd in the node
    log = (pipeline_1_36.artifacts / "logs" / "node.log").read_text()
    assert re.search(r"\+ qemu-system-aarch64 -M virt .* -kernel \S+/vmlinuz -initrd \S+/initrd.img ", log), log[-3000:]
    assert re.search(r"the emulated node's guest agent answers \d+ s after QEMU started", log)
    assert "systemd: running" in log or "systemd: degraded" in log
    assert "cri-o_1.36.1-1~deb13_arm64.deb" in log and "Setting up cri-o (1.36.1-1~deb13)" in log  # installed by apt
    console = (pipeline_1_36.artifacts / "logs" / "node-console.log").read_text(errors="replace")
    assert "Linux version" in console and ("aarch64" in console or "arm64" in console)
    assert "Reached target" in console and "reboot: Power down" in console  # booted by systemd, powered off at the end
    assert "Detected virtualization docker" not in console  # a machine, not a container: systemd mounts securityfs, runs udev
    nodes = pipeline_1_36.root / "cache" / "nodes"
    assert subprocess.run(["pgrep", "-f", f"qemu-system-aarch64 .*{nodes}"], capture_output=True).returncode == 1, "no QEMU of this run is left"
    assert list(nodes.glob("*")) == []  # the disk went with it
    owner = str(pipeline_1_36.artifacts)
    assert docker_engine.containers.list(all=True, filters={"label": f"io.criobuild={owner}"}) == []
    assert docker_engine.containers.list(all=True, filters={"label": f"io.criobuild={owner}/crio-1.36"}) == []
