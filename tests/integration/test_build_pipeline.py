"""The real pipeline on the fixture upstreams: `doit build:crio-1.18` in an emulated arm64 bookworm container."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import tomllib

import pytest

from builders.arch import Arch
from builders.container import leftover_containers
from builders.elf import E_MACHINE, elf_machine
from tests.fixtures.pipeline import REPO, Pipeline, make_pipeline, run_staged, step_states

pytestmark = [pytest.mark.docker, pytest.mark.emulation, pytest.mark.slow]
COMPONENTS = ("cri-o", "conmon", "cni-plugins", "cri-tools", "runc")


def ran(output: str, task: str) -> bool:
    """The view's plain line for a step that ran ("20:41:03 done       compile:crio-1.18:conmon (41.2 s)")."""
    return step_states(output).get(task) == "done"


def skipped_as_up_to_date(output: str, task: str) -> bool:
    return step_states(output).get(task) == "up to date"


@pytest.fixture
def fresh_pipeline(tmp_path, upstreams, go_tarballs, http_server, arm64_builder_image) -> Pipeline:
    """A pipeline of its own, so the build to interrupt has not run yet whatever ran before."""
    return make_pipeline(tmp_path, "qemu", upstreams, go_tarballs, http_server)


def test_an_interrupted_build_leaves_no_container_and_no_partial_staging(fresh_pipeline: Pipeline, docker_engine) -> None:
    pipeline = fresh_pipeline
    log = (pipeline.root / "interrupted.log").open("w")
    # The child gets a default SIGINT even when this pytest was started with SIGINT ignored (nohup, a background job).
    proc = subprocess.Popen(
        pipeline.doit_argv("compile:crio-1.18:conmon"), cwd=REPO, env=os.environ | pipeline.env, stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        step_log = pipeline.artifacts / "logs" / "compile-conmon.log"
        wait_for(lambda: step_log.exists() and "+ make" in step_log.read_text(), proc, timeout=600)
        assert leftover_containers(docker_engine, pipeline.env["CRIOBUILD_ARTIFACTS"]), "the build should be running in a container"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert leftover_containers(docker_engine, pipeline.env["CRIOBUILD_ARTIFACTS"]) == []
    staging = pipeline.artifacts / "staging"
    assert not (staging / "conmon.json").exists()
    assert not (staging / "conmon").exists()
    assert [p.name for p in staging.iterdir() if p.name.endswith(".partial")] == [] if staging.exists() else True


def wait_for(condition, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "doit ended before the condition was met"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_build_stages_aarch64_binaries_of_every_component(pipeline: Pipeline, built) -> None:
    staging = pipeline.artifacts / "staging"
    expected = {
        "cri-o": ["usr/bin/crio", "usr/bin/crio-status", "usr/bin/pinns"],
        "conmon": ["usr/bin/conmon"],
        "cni-plugins": ["usr/lib/cni/bridge", "usr/lib/cni/loopback", "usr/lib/cni/host-local", "usr/lib/cni/portmap"],
        "cri-tools": ["usr/bin/crictl", "usr/bin/critest"],
        "runc": ["usr/libexec/crio/runc"],
    }
    for component, files in expected.items():
        assert (staging / f"{component}.json").exists(), component
        for f in files:
            assert elf_machine(staging / component / f) == E_MACHINE[Arch.arm64], f
    assert (pipeline.artifacts / "logs" / "compile-cri-o.log").read_text().count("+ make") >= 2


def test_staged_binaries_run_under_emulation_and_print_the_pinned_versions(pipeline: Pipeline, built, docker_engine, arm64_builder_image) -> None:
    staging = pipeline.artifacts / "staging"
    crio_commit = pipeline.upstreams["cri-o"].tags["v1.18.1"]
    crio = run_staged(docker_engine, arm64_builder_image, staging / "cri-o", ["/usr/bin/crio", "version"])
    assert "1.18.1" in crio
    assert crio_commit in crio
    assert "clean" in crio and "dirty" not in crio
    conmon = run_staged(docker_engine, arm64_builder_image, staging / "conmon", ["/usr/bin/conmon", "--version"])
    assert conmon.splitlines()[:2] == ["conmon version 2.0.19", f"commit: {pipeline.upstreams['conmon'].tags['v2.0.19']}"]
    crictl = run_staged(docker_engine, arm64_builder_image, staging / "cri-tools", ["/usr/bin/crictl", "--version"])
    assert crictl.strip() == "crictl version 1.18.0"
    bridge = run_staged(docker_engine, arm64_builder_image, staging / "cni-plugins", ["/usr/lib/cni/bridge"])
    assert "CNI bridge plugin v0.8.5" in bridge
    runc = run_staged(docker_engine, arm64_builder_image, staging / "runc", ["/usr/libexec/crio/runc", "--version"])
    assert runc.splitlines()[:2] == ["runc version 1.0.0-rc10", f"commit: {pipeline.upstreams['runc'].tags['v1.0.0-rc10']}"]


def test_generated_crio_conf_has_the_recipe_settings_and_package_paths(pipeline: Pipeline, built) -> None:
    etc = pipeline.artifacts / "staging" / "cri-o" / "etc"
    drop_in = tomllib.loads((etc / "crio/crio.conf.d/10-crio.conf").read_text())["crio"]
    assert drop_in["runtime"]["cgroup_manager"] == "systemd" and drop_in["runtime"]["conmon_cgroup"] == "system.slice"
    assert drop_in["runtime"]["conmon"] == "/usr/bin/conmon"  # 1.18 has no per-runtime monitor_path yet
    assert drop_in["runtime"]["default_runtime"] == "runc"
    assert drop_in["runtime"]["runtimes"]["runc"]["runtime_path"] == "/usr/libexec/crio/runc"
    assert drop_in["image"]["pause_image"] == "k8s.gcr.io/pause:3.2"
    assert drop_in["network"]["plugin_dirs"] == ["/usr/lib/cni", "/opt/cni/bin"]
    # crio.conf is what this crio made of its defaults and that drop-in: the same values, every option.
    conf = tomllib.loads((etc / "crio/crio.conf").read_text())["crio"]
    assert conf["runtime"]["runtimes"]["runc"]["runtime_path"] == "/usr/libexec/crio/runc"
    assert (conf["runtime"]["conmon"], conf["image"]["pause_image"]) == ("/usr/bin/conmon", "k8s.gcr.io/pause:3.2")


def test_no_container_is_left_behind(pipeline: Pipeline, built, docker_engine) -> None:
    assert leftover_containers(docker_engine, pipeline.env["CRIOBUILD_ARTIFACTS"]) == []


def test_a_second_build_with_nothing_changed_rebuilds_nothing(pipeline: Pipeline, built) -> None:
    result = pipeline.doit(*(f"compile:crio-1.18:{c}" for c in COMPONENTS))
    assert result.returncode == 0, result.stderr
    for component in COMPONENTS:
        assert skipped_as_up_to_date(result.stdout, f"compile:crio-1.18:{component}"), result.stdout
    assert "+ make" not in result.stdout


def test_doit_build_makes_every_artifact_with_checksums(pipeline: Pipeline, built) -> None:
    result = pipeline.doit("build:crio-1.18")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = sorted(p.name for p in pipeline.artifacts.iterdir() if p.is_file())
    artifacts = [
        "cri-o-cni-plugins_0.8.5-1~deb12_arm64.deb",
        "cri-o-conmon_2.0.19-1~deb12_arm64.deb",
        "cri-o-runc_1.0.0~rc10-1~deb12_arm64.deb",
        "cri-o.arm64.v1.18.1.tar.gz",
        "cri-o_1.18.1-1~deb12_arm64.deb",
        "cri-tools_1.18.0-1~deb12_arm64.deb",
    ]
    assert names == sorted([*artifacts, *(f"{a}.spdx.json" for a in artifacts), "SHA256SUMS", "manifest.json", "provenance.intoto.json"])
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=pipeline.artifacts, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 14  # each artifact and its SBOM, the manifest and the provenance


def test_changing_one_pin_rebuilds_that_component_and_what_packages_it(pipeline: Pipeline, built, docker_engine, arm64_builder_image) -> None:
    assert pipeline.doit("build:crio-1.18").returncode == 0
    pipeline.write_recipe(conmon_tag="v2.0.18")
    try:
        result = pipeline.doit("build:crio-1.18")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        for task in ("compile:crio-1.18:conmon", "deb:crio-1.18:cri-o-conmon", "deb:crio-1.18:cri-o", "tarball:crio-1.18", "sums:crio-1.18"):
            assert ran(result.stdout, task), result.stdout
        for task in ("compile:crio-1.18:cri-o", "compile:crio-1.18:cni-plugins", "compile:crio-1.18:cri-tools", "deb:crio-1.18:cri-tools"):
            assert skipped_as_up_to_date(result.stdout, task), result.stdout
        conmon = run_staged(docker_engine, arm64_builder_image, pipeline.artifacts / "staging" / "conmon", ["/usr/bin/conmon", "--version"])
        assert conmon.startswith("conmon version 2.0.18")

        debs = sorted(p.name for p in pipeline.artifacts.glob("*.deb"))
        assert debs == [
            "cri-o-cni-plugins_0.8.5-1~deb12_arm64.deb", "cri-o-conmon_2.0.18-1~deb12_arm64.deb", "cri-o-runc_1.0.0~rc10-1~deb12_arm64.deb",
            "cri-o_1.18.1-1~deb12_arm64.deb", "cri-tools_1.18.0-1~deb12_arm64.deb",
        ]  # fmt: skip
        depends = subprocess.run(["dpkg-deb", "-f", pipeline.artifacts / "cri-o_1.18.1-1~deb12_arm64.deb", "Depends"], capture_output=True, text=True, check=True).stdout
        assert "cri-o-conmon (>= 2.0.18~)" in depends.split(", ")
        listed = sorted(line.split()[1] for line in (pipeline.artifacts / "SHA256SUMS").read_text().splitlines())
        made = [*debs, "cri-o.arm64.v1.18.1.tar.gz"]
        assert listed == sorted([*made, *(f"{a}.spdx.json" for a in made), "manifest.json", "provenance.intoto.json"])
        assert not list(pipeline.artifacts.glob("cri-o-conmon_2.0.19*")), "the superseded .deb goes with its SBOM"
    finally:
        pipeline.write_recipe()
        restored = pipeline.doit("build:crio-1.18")  # leave the session's staging and artifacts as the other tests expect them
        assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
