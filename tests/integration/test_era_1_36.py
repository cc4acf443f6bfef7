"""The 2026 shape end to end on today's Raspberry Pi OS (Debian trixie arm64, the default target):
`doit build:crio-1.36` of fixture upstreams shaped like cri-o 1.36 (crun by default, conflists, a Makefile
that fetches go-md2man), conmon 2.1, cri-tools' new output path, runc with a go.mod and crun with its
libocispec submodule; cross-compiled, packaged, and installed with apt in a clean trixie arm64 container
beside Debian's own runc, crun, podman and docker.io.
"""
from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from builders.arch import Arch
from builders.elf import E_MACHINE, elf_machine
from tests.fixtures.pipeline import Pipeline
from tests.integration.test_deb import clean_container, members

pytestmark = [pytest.mark.docker, pytest.mark.emulation, pytest.mark.slow]

DEBS = [
    "cri-o-conmon_2.1.13-1~deb13_arm64.deb",
    "cri-o-cni-plugins_1.8.0-1~deb13_arm64.deb",
    "cri-o-crun_1.26-1~deb13_arm64.deb",
    "cri-o-runc_1.4.3-1~deb13_arm64.deb",
    "cri-o_1.36.1-1~deb13_arm64.deb",
    "cri-tools_1.36.0-1~deb13_arm64.deb",
]


def test_build_makes_a_deb_per_component_the_tarball_and_the_sums(pipeline_1_36: Pipeline, built_1_36) -> None:
    names = sorted(p.name for p in pipeline_1_36.artifacts.iterdir() if p.is_file())
    made = [*DEBS, "cri-o.arm64.v1.36.1.tar.gz"]
    assert names == sorted([*made, *(f"{a}.spdx.json" for a in made), "SHA256SUMS", "manifest.json", "provenance.intoto.json"])
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=pipeline_1_36.artifacts, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def staged(pipeline: Pipeline, component: str) -> Path:
    return pipeline.artifacts / "staging" / component


def test_every_staged_binary_is_aarch64(pipeline_1_36: Pipeline, built_1_36) -> None:
    for component in ("cri-o", "conmon", "cni-plugins", "cri-tools", "runc", "crun"):
        manifest = json.loads((pipeline_1_36.artifacts / "staging" / f"{component}.json").read_text())
        assert manifest["binaries"], component
        for binary in manifest["binaries"]:
            assert elf_machine(staged(pipeline_1_36, component) / binary) == E_MACHINE[Arch.arm64], binary


def test_cri_o_of_1_36_stages_its_layout_and_names_crun_first(pipeline_1_36: Pipeline, built_1_36) -> None:
    root = staged(pipeline_1_36, "cri-o")
    assert sorted(p.name for p in (root / "usr/bin").iterdir()) == ["crio", "pinns"]  # crio-status is gone since 1.29
    assert sorted(p.name for p in (root / "etc/cni/net.d").iterdir()) == ["11-crio-ipv4-bridge.conflist", "99-loopback.conflist"]
    # Debian's go-md2man wrote the pages: the Makefile's own `go install …@latest` cannot work offline.
    assert (root / "usr/share/man/man8/crio.8").read_text().startswith(".")
    drop_in = tomllib.loads((root / "etc/crio/crio.conf.d/10-crio.conf").read_text())["crio"]
    assert drop_in["runtime"]["default_runtime"] == "crun"
    runtimes = drop_in["runtime"]["runtimes"]
    assert {name: (r["runtime_path"], r["monitor_path"]) for name, r in runtimes.items()} == {
        "crun": ("/usr/libexec/crio/crun", "/usr/bin/conmon"), "runc": ("/usr/libexec/crio/runc", "/usr/bin/conmon"),
    }  # fmt: skip
    assert "conmon" not in drop_in["runtime"]  # deprecated since 1.24: monitor_path per runtime instead
    assert drop_in["image"]["pause_image"] == "registry.k8s.io/pause:3.10.1"


def test_cri_tools_and_the_runtimes_stage_what_a_user_runs(pipeline_1_36: Pipeline, built_1_36) -> None:
    assert sorted(p.name for p in (staged(pipeline_1_36, "cri-tools") / "usr/bin").iterdir()) == ["crictl", "critest"]
    assert (staged(pipeline_1_36, "runc") / "usr/share/man/man8/cri-o-runc.8").is_file()
    assert (staged(pipeline_1_36, "crun") / "usr/share/man/man1/cri-o-crun.1").is_file()
    assert (staged(pipeline_1_36, "conmon") / "usr/share/man/man8/conmon.8").is_file()  # upstream's own page from 2.0.22


def test_lintian_finds_no_errors_and_every_warning_is_overridden(pipeline_1_36: Pipeline, built_1_36) -> None:
    result = subprocess.run(["lintian", "--fail-on", "error,warning", *(str(pipeline_1_36.artifacts / d) for d in DEBS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_our_runtimes_install_beside_debians_and_crio_uses_ours(pipeline_1_36: Pipeline, built_1_36, docker_engine, trixie_arm64_base_image) -> None:
    debs = {d: pipeline_1_36.artifacts / d for d in DEBS}
    with clean_container(docker_engine, trixie_arm64_base_image) as box:
        box.put(debs, "/debs")
        box.sh("apt-get update -q && apt-get install -y -q --no-install-recommends runc crun podman docker.io && apt-get install -y -q /debs/*.deb")
        owners = box.sh("dpkg -S /usr/sbin/runc /usr/bin/crun /usr/libexec/crio/runc /usr/libexec/crio/crun | sort")
        assert owners.split("\n")[:4] == [
            "cri-o-crun: /usr/libexec/crio/crun", "cri-o-runc: /usr/libexec/crio/runc", "crun: /usr/bin/crun", "runc: /usr/sbin/runc",
        ]  # fmt: skip
        up = pipeline_1_36.upstreams
        assert box.sh("/usr/libexec/crio/crun --version").splitlines()[:2] == ["crun version 1.26", f"commit: {up['crun'].tags['1.26']}"]
        assert box.sh("/usr/libexec/crio/runc --version").splitlines()[:2] == ["runc version 1.4.3", f"commit: v1.4.3-0-g{up['runc'].tags['v1.4.3'][:7]}"]
        effective = tomllib.loads(box.sh("crio config 2>/dev/null"))["crio"]
        assert effective["runtime"]["default_runtime"] == "crun"
        assert effective["runtime"]["runtimes"]["crun"]["runtime_path"] == "/usr/libexec/crio/crun"
        assert effective["runtime"]["runtimes"]["runc"]["runtime_path"] == "/usr/libexec/crio/runc"
        assert box.sh("crictl --version").strip() == "crictl version 1.36.0"
        assert "1.36.1" in box.sh("crio --version")


def test_doit_accept_installs_runs_and_checks_the_configuration(pipeline_1_36: Pipeline, built_1_36) -> None:
    result = pipeline_1_36.doit("accept:crio-1.36")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (pipeline_1_36.artifacts / "logs" / "accept.log").read_text()
    assert "crio config: default runtime crun, crun /usr/libexec/crio/crun, runc /usr/libexec/crio/runc" in log
    assert "accept crio-1.36: " in result.stdout  # its closing line names the .debs that installed and ran


def test_an_upgrade_keeps_the_users_drop_in_and_asks_nothing(pipeline_1_36: Pipeline, built_1_36, docker_engine, trixie_arm64_base_image, tmp_path: Path) -> None:
    older = {d: pipeline_1_36.artifacts / d for d in DEBS}
    try:
        pipeline_1_36.write_recipe(crio_tag="v1.36.2")
        result = pipeline_1_36.doit("deb:crio-1.36:cri-o")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        newer = pipeline_1_36.artifacts / "cri-o_1.36.2-1~deb13_arm64.deb"
        (tmp_path / newer.name).write_bytes(newer.read_bytes())
    finally:
        pipeline_1_36.write_recipe()
        assert pipeline_1_36.doit("build:crio-1.36").returncode == 0  # the session's artifacts as the other tests expect them
    assert "etc/crio/crio.conf.d/10-crio.conf" in " ".join(members(tmp_path / newer.name))
    with clean_container(docker_engine, trixie_arm64_base_image) as box:
        box.put(older, "/debs/1.36.1")
        box.put({newer.name: tmp_path / newer.name}, "/debs/1.36.2")
        box.sh("apt-get update -q && apt-get install -y -q /debs/1.36.1/*.deb")
        box.sh("printf '[crio.image]\\npause_image = \"registry.local/pause:mine\"\\n' > /etc/crio/crio.conf.d/20-local.conf")
        before = box.sh("cat /etc/crio/crio.conf.d/10-crio.conf")
        out = box.sh("apt-get install -y -q /debs/1.36.2/*.deb </dev/null 2>&1")
        assert "Configuration file" not in out and "conffile" not in out.lower(), out
        assert box.sh("dpkg-query -W -f '${Version}' cri-o") == "1.36.2-1~deb13"
        after = box.sh("cat /etc/crio/crio.conf.d/10-crio.conf")
        assert after != before and "CRI-O 1.36.2" in after  # the package's drop-in moved on
        assert box.sh("cat /etc/crio/crio.conf.d/20-local.conf") == '[crio.image]\npause_image = "registry.local/pause:mine"\n'
        effective = tomllib.loads(box.sh("crio config 2>/dev/null"))["crio"]
        assert effective["image"]["pause_image"] == "registry.local/pause:mine"  # the user's drop-in wins
