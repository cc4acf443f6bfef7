"""Preflight: each thing that stops a build is named with its fix before any work starts."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from builders.arch import Arch, host_arch
from builders.container import daemon_problem, docker_client
from builders.errors import ContainerError
from builders.modes import check_binfmt, check_disk, resolve_mode
from builders.settings import load_settings


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


def test_unknown_mode_setting_is_refused() -> None:
    with pytest.raises(Exception, match="CRIOBUILD_MODE='fast' is not allowed"):
        load_settings({"CRIOBUILD_MODE": "fast"})


def test_auto_mode_falls_back_to_emulation_for_a_component_cross_cannot_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    from builders import build
    from builders.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "crio-1.18.toml")
    tried = []

    def build_with(mode, recipe, name, settings):
        tried.append(mode.name)
        if mode.name == "cross":
            raise ContainerError("crio-1.18 cri-o: `make binaries` failed because it returned 2")

    monkeypatch.setattr(build, "build_with", build_with)
    monkeypatch.setattr("builders.modes.host_arch", lambda: Arch.amd64)  # an x86_64 host, wherever this runs
    build.build_component(recipe, "cri-o", load_settings({"CRIOBUILD_MODE": "auto", "CRIOBUILD_CACHE": str(tmp_path)}))
    assert tried == ["cross", "qemu"]
    assert "cross mode could not build cri-o" in capsys.readouterr().err
    tried.clear()
    with pytest.raises(ContainerError):
        build.build_component(recipe, "cri-o", load_settings({"CRIOBUILD_MODE": "cross", "CRIOBUILD_CACHE": str(tmp_path)}))
    assert tried == ["cross"]
