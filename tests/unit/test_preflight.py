"""Preflight: each thing that stops a build is named with its fix before any work starts."""
from __future__ import annotations

import json
import re
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from builders.arch import Arch, host_arch
from builders.container import daemon_problem, docker_client
from builders.errors import BuildError, ContainerError
from builders.images import bootstrap_base
from builders.recipe import Target
from builders.tools import hint_for
from builders.images import check_binfmt
from builders.modes import check_disk, resolve_mode
from builders.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_no_docker_daemon_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(ContainerError) as info:
        docker_client()
    assert "cannot talk to the Docker daemon because it does not answer" in str(info.value)
    assert "systemctl start docker" in str(info.value)


def test_socket_permission_problem_names_the_docker_group() -> None:
    # The text docker-py raises when the socket refuses a user outside the docker group.
    message, hint = daemon_problem("Error while fetching server API version: ('Connection aborted.', PermissionError(13, 'Permission denied'))")
    assert "socket refused this user" in message
    assert "usermod -aG docker" in hint


def test_missing_binfmt_registration_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(ContainerError) as info:
        check_binfmt(Arch.arm64, root=tmp_path)
    text = str(info.value)
    assert "qemu-aarch64 is not registered in binfmt_misc" in text
    assert "apt-get install qemu-user-static" in text


def test_disabled_binfmt_registration_says_how_to_enable(tmp_path: Path) -> None:
    (tmp_path / "qemu-aarch64").write_text("disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n")
    with pytest.raises(ContainerError, match="update-binfmts --enable qemu-aarch64"):
        check_binfmt(Arch.arm64, root=tmp_path)


def test_registered_binfmt_passes(tmp_path: Path) -> None:
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")
    check_binfmt(Arch.arm64, root=tmp_path)


def test_too_little_disk_says_how_much_is_free_and_needed(tmp_path: Path) -> None:
    settings = replace(load_settings({"CRIOBUILD_CACHE": str(tmp_path / "cache"), "CRIOBUILD_ARTIFACTS": str(tmp_path / "a")}), min_free_gib=100_000)
    with pytest.raises(ContainerError) as info:
        check_disk(settings)
    assert "too little disk for a build" in str(info.value)
    assert "GiB free and a build needs 100000 GiB" in str(info.value)


def test_native_mode_is_refused_on_a_foreign_host(tmp_path: Path) -> None:
    foreign = Arch.amd64 if host_arch() == Arch.arm64 else Arch.arm64
    mode = resolve_mode("native", foreign)
    settings = load_settings({"CRIOBUILD_CACHE": str(tmp_path), "CRIOBUILD_MIN_FREE_GIB": "0"})
    with pytest.raises(ContainerError, match=f"native mode cannot build {foreign} because this host is {host_arch()}"):
        mode.preflight(settings)


def test_auto_mode_cross_compiles_on_x86_and_builds_natively_on_arm64() -> None:
    expected = "native" if host_arch() == Arch.arm64 else "cross"
    assert resolve_mode("auto", Arch.arm64).name == expected


@pytest.mark.parametrize("requested", ["auto", "cross", "qemu", "native"])
def test_every_mode_builds_the_hosts_own_architecture_natively(requested: str) -> None:
    mode = resolve_mode(requested, host_arch())  # trixie-amd64 on an x86_64 host: nothing to cross or emulate
    assert mode.name == "native" and mode.env().get("CC") is None and mode.toolchain_arch(host_arch()) == host_arch()


def test_unknown_mode_setting_is_refused() -> None:
    with pytest.raises(Exception, match="CRIOBUILD_MODE='fast' is not allowed"):
        load_settings({"CRIOBUILD_MODE": "fast"})


@pytest.mark.parametrize("failure, retried", [
    ("crio-1.18 cri-o: `make binaries` failed because it returned 2\n/usr/bin/aarch64-linux-gnu-ld: cannot find -lseccomp", True),
    ("crio-1.18 crun: `./configure` failed because it returned 1\nconfigure: error: cannot run test program while cross compiling", True),
    ("crio-1.18 cri-o: `make binaries` failed because it returned 2\nserver/server.go:12:2: undefined: foo", False),
    ("crio-1.18 cri-tools: `install -D -m 755 _output/crictl /out/usr/bin` failed because it returned 1\ninstall: cannot stat '_output/crictl'", False),
    ("crio-1.18 cri-o: `make docs` failed because it returned 2\nmake: *** No rule to make target 'docs'.  Stop.", False),
])  # fmt: skip
def test_auto_mode_retries_under_emulation_only_what_emulation_can_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys, failure: str, retried: bool) -> None:
    from builders import build
    from builders.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes" / "crio-1.18.toml")
    tried = []

    def build_with(mode, recipe, name, settings):
        tried.append(mode.name)
        if mode.name == "cross":
            raise ContainerError(failure)

    monkeypatch.setattr(build, "build_with", build_with)
    monkeypatch.setattr(build, "prepare_builder", lambda mode, recipe, settings: tried.append(f"prepare {mode.name}"))
    monkeypatch.setattr("builders.modes.host_arch", lambda: Arch.amd64)  # an x86_64 host, wherever this runs
    auto = load_settings({"CRIOBUILD_MODE": "auto", "CRIOBUILD_CACHE": str(tmp_path)})
    if retried:
        build.build_component(recipe, "cri-o", auto)
        assert tried == ["cross", "prepare qemu", "qemu"]  # the emulated builder and Go are made first
        assert "cross mode could not build cri-o" in capsys.readouterr().err
    else:
        with pytest.raises(ContainerError, match=re.escape(failure.splitlines()[-1])):
            build.build_component(recipe, "cri-o", auto)
        assert tried == ["cross"]
    tried.clear()
    with pytest.raises(ContainerError):  # asked for cross: never emulated
        build.build_component(recipe, "cri-o", load_settings({"CRIOBUILD_MODE": "cross", "CRIOBUILD_CACHE": str(tmp_path)}))
    assert tried == ["cross"]


# --------------------------------------------------------------------------- the host's tools, and their own words


def stand_in(bin_dir: Path, name: str, script: str) -> None:
    """A program of that name on PATH that does what script says."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def only_on_path(monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> None:
    """PATH is bin_dir and the basics (sh, cat), nothing the test did not put there."""
    basics = bin_dir / "basics"
    basics.mkdir(parents=True, exist_ok=True)
    for tool in ("sh", "cat"):
        (basics / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", f"{bin_dir}:{basics}")


def bootstrap_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mmdebstrap: str, docker: str = "cat >/dev/null\nexit 0\n",
                   mirror: str = "http://deb.debian.org/debian") -> ContainerError:
    """bootstrap_base of the host's architecture with stand-ins for mmdebstrap and docker; the error it raises."""
    bins = tmp_path / "bin"
    stand_in(bins, "mmdebstrap", mmdebstrap)
    stand_in(bins, "docker", docker)
    only_on_path(monkeypatch, bins)
    target = Target(distro="debian", suite="bookworm", arch=host_arch(), mirror=mirror)
    with pytest.raises(ContainerError) as info:
        bootstrap_base(target, "criobuild/base:test")
    return info.value


def test_a_failing_mmdebstrap_reaches_the_user_in_its_own_words_with_a_matching_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    error = bootstrap_with(monkeypatch, tmp_path, "echo 'I: chroot architecture armhf is equal to the host architecture' >&2\n"
                           "echo 'E: apt-get update failed: Temporary failure resolving deb.example.invalid' >&2\nexit 25\n",
                           mirror="http://deb.example.invalid/debian")
    text = str(error)
    assert "mmdebstrap returned 25" in text
    assert "E: apt-get update failed: Temporary failure resolving deb.example.invalid" in text
    assert "hint: check that http://deb.example.invalid/debian is reachable" in text


def test_mmdebstraps_arch_test_complaint_gets_the_install_command_as_its_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    error = bootstrap_with(monkeypatch, tmp_path, "echo 'E: install arch-test for foreign architecture support' >&2\nexit 25\n")
    assert "E: install arch-test for foreign architecture support" in str(error)
    assert str(error).endswith("hint: sudo apt-get install arch-test")


def test_bootstrapping_a_foreign_architecture_without_arch_test_is_refused_before_mmdebstrap_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bins = tmp_path / "bin"
    stand_in(bins, "mmdebstrap", f"touch {tmp_path}/mmdebstrap-ran\nexit 0\n")
    only_on_path(monkeypatch, bins)
    foreign = Arch.amd64 if host_arch() == Arch.arm64 else Arch.arm64
    target = Target(distro="debian", suite="bookworm", arch=foreign, mirror="http://deb.debian.org/debian")
    with pytest.raises(BuildError) as info:
        bootstrap_base(target, "criobuild/base:test")
    assert f"cannot bootstrap the bookworm {foreign} base image because arch-test is not installed" in str(info.value)
    assert "hint: sudo apt-get install arch-test" in str(info.value)
    assert not (tmp_path / "mmdebstrap-ran").exists()


def test_a_failing_docker_import_says_what_docker_said(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    error = bootstrap_with(monkeypatch, tmp_path, "echo 'not really a tarball'\nexit 0\n",
                           docker="cat >/dev/null\necho 'Error response from daemon: archive/tar: invalid tar header' >&2\nexit 1\n")
    assert "`docker import` returned 1:\nError response from daemon: archive/tar: invalid tar header" in str(error)


def test_the_hint_follows_the_last_cause_in_the_output() -> None:
    hints = [("Failed to fetch", "network"), ("Unable to locate package", "package")]
    assert hint_for("W: Failed to fetch x\nE: Unable to locate package foo\n", hints, "default") == "package"
    assert hint_for("E: something else\n", hints, "default") == "default"


# --------------------------------------------------------------------------- doit as a user runs it


def doit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=REPO, capture_output=True, text=True, env=os.environ | env, timeout=300)


def test_check_kernel_json_writes_exactly_one_json_document_to_stdout(tmp_path: Path) -> None:
    config = REPO / "tests/fixtures/kernel/debian-bookworm-arm64-6.1.config"
    result = doit("--db-file", str(tmp_path / "db"), "check:kernel", "--json", "--config", str(config), "--crio-version", "1.18.6", env={})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["verdict"], report["config_source"]) == ("ok", str(config))


@pytest.fixture
def silent_engine() -> Iterator[str]:
    """A TCP port that accepts connections and never answers, like a hung or firewalled Docker engine."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def test_a_build_against_an_engine_that_does_not_answer_stops_before_any_download_or_clone(tmp_path: Path, silent_engine: str) -> None:
    env = {
        "DOCKER_HOST": silent_engine, "CRIOBUILD_CACHE": str(tmp_path / "cache"), "CRIOBUILD_ARTIFACTS": str(tmp_path / "artifacts"),
        "CRIOBUILD_GO_MIRROR": "http://127.0.0.1:9/go", "CRIOBUILD_MIN_FREE_GIB": "0",
    }  # fmt: skip
    result = doit("--db-file", str(tmp_path / "db"), "build:crio-1.18", env=env)
    assert result.returncode != 0
    assert "cannot talk to the Docker daemon because it does not answer" in result.stderr
    assert "Read timed out" in result.stderr  # Docker's own words
    assert "preflight:crio-1.18" in result.stderr
    assert not (tmp_path / "cache").exists(), "nothing may be downloaded or cloned before the engine answers"
