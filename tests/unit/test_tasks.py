"""The task graph: what each step depends on decides what a changed pin rebuilds."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from builders.arch import Arch
from builders.recipe import load_recipe
from builders.settings import load_settings
from builders.tasks import build_task, compile_task

REPO = Path(__file__).resolve().parents[2]
RECIPE = load_recipe(REPO / "recipes" / "crio-1.18.toml")
COMPONENTS = tuple(RECIPE.components)


def settings(tmp_path: Path, mode: str = "qemu"):
    return load_settings({"CRIOBUILD_CACHE": str(tmp_path / "c"), "CRIOBUILD_ARTIFACTS": str(tmp_path / "a"), "CRIOBUILD_MODE": mode})


def test_compile_depends_on_its_source_pin_and_the_toolchain_and_targets_its_staging_manifest(tmp_path: Path) -> None:
    task = compile_task(RECIPE, "conmon", settings(tmp_path))
    assert task["name"] == "crio-1.18:conmon"
    deps = [str(p) for p in task["file_dep"]]
    assert deps[0].endswith("crio-1.18/.stamps/source-conmon")
    assert "go1.14.15.linux-arm64" in deps[1]
    assert [str(t) for t in task["targets"]] == [str(tmp_path / "a" / "crio-1.18" / "staging" / "conmon.json")]


def test_cross_builds_with_the_hosts_toolchain(tmp_path: Path) -> None:
    task = compile_task(RECIPE, "conmon", settings(tmp_path, "cross"))
    assert any("linux-amd64" in str(p) for p in task["file_dep"])


def test_a_pin_change_reaches_only_its_own_component() -> None:
    repinned = replace(RECIPE, components=RECIPE.components | {"conmon": replace(RECIPE.components["conmon"], commit="a" * 40)})
    for component in COMPONENTS:
        changed = repinned.fingerprint(component, Arch.arm64) != RECIPE.fingerprint(component, Arch.arm64)
        assert changed == (component == "conmon"), component


def test_the_other_architectures_go_checksum_rebuilds_nothing() -> None:
    other = replace(RECIPE, go=replace(RECIPE.go, sha256=RECIPE.go.sha256 | {Arch.amd64: "b" * 64}))
    assert all(other.fingerprint(c, Arch.arm64) == RECIPE.fingerprint(c, Arch.arm64) for c in COMPONENTS)
    assert all(other.fingerprint(c, Arch.amd64) != RECIPE.fingerprint(c, Arch.amd64) for c in COMPONENTS)


def test_a_components_own_go_rebuilds_only_that_component() -> None:
    r129 = load_recipe(REPO / "recipes" / "crio-1.29.toml")
    runc = r129.components["runc"]
    repinned = replace(r129, components=r129.components | {"runc": replace(runc, go=replace(runc.go, sha256=runc.go.sha256 | {Arch.arm64: "c" * 64}))})
    for component in r129.components:
        changed = repinned.fingerprint(component, Arch.arm64) != r129.fingerprint(component, Arch.arm64)
        assert changed == (component == "runc"), component
    assert "go1.23.12.linux-arm64" in str(compile_task(r129, "runc", load_settings({"CRIOBUILD_MODE": "qemu"}))["file_dep"][1])


def test_crio_conf_settings_rebuild_cri_o_only() -> None:
    cgroupfs = replace(RECIPE, cgroup_manager="cgroupfs")
    assert cgroupfs.fingerprint("cri-o", Arch.arm64) != RECIPE.fingerprint("cri-o", Arch.arm64)
    assert cgroupfs.fingerprint("conmon", Arch.arm64) == RECIPE.fingerprint("conmon", Arch.arm64)


def test_a_change_to_what_a_component_module_runs_builds_that_component_again(tmp_path: Path, monkeypatch) -> None:
    from builders.components import cri_o

    def compared(component: str) -> dict:
        return compile_task(RECIPE, component, settings(tmp_path))["uptodate"][0].config

    before = {c: compared(c) for c in COMPONENTS}
    monkeypatch.setattr(cri_o, "build_tags", lambda pin: [*pin.buildtags, "no_dynamic_plugins"])  # as a new era's tag does
    assert {c: compared(c) != before[c] for c in COMPONENTS} == {c: c == "cri-o" for c in COMPONENTS}


def test_build_ends_with_the_checksums(tmp_path: Path) -> None:
    assert build_task(RECIPE, settings(tmp_path))["task_dep"] == ["sums:crio-1.18"]


def test_an_engine_that_goes_away_mid_step_is_one_error_in_its_own_words_not_a_traceback_chain() -> None:
    import requests
    from doit.exceptions import TaskFailed

    from builders.actions import as_action

    def step() -> None:
        raise requests.exceptions.ConnectionError("('Connection aborted.', ConnectionRefusedError(111, 'Connection refused'))")

    failed = as_action(step, name="compile:crio-1.36:cri-o")()
    assert isinstance(failed, TaskFailed)
    text = failed.get_msg()
    assert text.startswith("the Docker engine failed compile:crio-1.36:cri-o because it does not answer (('Connection aborted.'")
    assert "hint: start it" in text and "Traceback" not in text


def test_a_full_disk_in_any_step_names_the_path_and_what_is_free(tmp_path: Path, monkeypatch) -> None:
    import errno

    from doit.exceptions import TaskFailed

    from builders.actions import as_action

    monkeypatch.setenv("CRIOBUILD_CACHE", str(tmp_path / "cache"))

    def step() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "toolchains" / "go.tar.gz"))

    failed = as_action(step)()
    assert isinstance(failed, TaskFailed)
    assert failed.get_msg().startswith(f"no space left on {tmp_path} (")
    assert "CRIOBUILD_CACHE" in failed.get_msg() and "CRIOBUILD_ARTIFACTS" in failed.get_msg()
