"""Cross mode gives the same arm64 results as the emulated build, from an amd64 container."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from builders.arch import Arch
from builders.elf import E_MACHINE, elf_machine
from tests.fixtures.pipeline import Pipeline, run_staged

pytestmark = [pytest.mark.docker, pytest.mark.emulation, pytest.mark.slow]
COMPONENTS = ("cri-o", "conmon", "cni-plugins", "cri-tools", "runc")
VERSION_COMMANDS = {
    "runc": ["/usr/libexec/crio/runc", "--version"],
    "cri-o": ["/usr/bin/crio", "version"],
    "conmon": ["/usr/bin/conmon", "--version"],
    "cri-tools": ["/usr/bin/crictl", "--version"],
    "cni-plugins": ["/usr/lib/cni/bridge"],
}


def staged_files(pipeline: Pipeline, component: str) -> list[str]:
    root = pipeline.artifacts / "staging" / component
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


@pytest.mark.parametrize("component", COMPONENTS)
def test_cross_stages_the_same_files_as_emulation(pipeline: Pipeline, built, cross_pipeline: Pipeline, cross_built, component: str) -> None:
    assert staged_files(cross_pipeline, component) == staged_files(pipeline, component)


@pytest.mark.parametrize("component", COMPONENTS)
def test_cross_binaries_are_aarch64(cross_pipeline: Pipeline, cross_built, component: str) -> None:
    manifest = json.loads((cross_pipeline.artifacts / "staging" / f"{component}.json").read_text())
    assert manifest["mode"] == "cross"
    root = cross_pipeline.artifacts / "staging" / component
    for binary in manifest["binaries"]:
        assert elf_machine(root / binary) == E_MACHINE[Arch.arm64], binary


@pytest.mark.parametrize("component", COMPONENTS)
def test_cross_binaries_print_the_same_versions_under_emulation(
    pipeline: Pipeline, built, cross_pipeline: Pipeline, cross_built, docker_engine, arm64_builder_image, component: str
) -> None:
    argv = VERSION_COMMANDS[component]
    emulated = run_staged(docker_engine, arm64_builder_image, pipeline.artifacts / "staging" / component, argv)
    crossed = run_staged(docker_engine, arm64_builder_image, cross_pipeline.artifacts / "staging" / component, argv)
    assert crossed == emulated
    assert re.search(r"\d+\.\d+\.\d+", crossed)


def test_cross_generates_the_same_crio_conf(pipeline: Pipeline, built, cross_pipeline: Pipeline, cross_built) -> None:
    conf = Path("etc/crio/crio.conf")
    assert (cross_pipeline.artifacts / "staging" / "cri-o" / conf).read_text() == (pipeline.artifacts / "staging" / "cri-o" / conf).read_text()


def deb_facts(pipeline: Pipeline) -> dict[str, dict[str, object]]:
    facts = {}
    for deb in sorted(pipeline.artifacts.glob("*.deb")):
        fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture", "Depends"], capture_output=True, text=True, check=True).stdout
        listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
        files = sorted(line.split()[5] for line in listing.splitlines())
        facts[deb.name] = {"fields": fields, "files": files}
    return facts


def test_cross_packages_equal_the_emulated_ones(pipeline: Pipeline, built, cross_pipeline: Pipeline, cross_built) -> None:
    debs = [f"deb:crio-1.18:{p}" for p in ("cri-o", "cri-o-conmon", "cri-o-cni-plugins", "cri-tools", "cri-o-runc")]
    for p in (pipeline, cross_pipeline):
        result = p.doit(*debs)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    emulated, crossed = deb_facts(pipeline), deb_facts(cross_pipeline)
    assert len(crossed) == 5
    assert crossed == emulated
