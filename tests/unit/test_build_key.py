"""The content key of a component build (builders/build.py: content_key): what goes into a build decides it."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from builders.arch import Arch
from builders.build import content_key
from builders.modes import Cross, Qemu
from builders.recipe import Patch, load_recipe

REPO = Path(__file__).resolve().parents[2]
R133 = load_recipe(REPO / "recipes" / "crio-1.33.toml")
R134 = load_recipe(REPO / "recipes" / "crio-1.34.toml")
CROSS = Cross("cross", Arch.arm64)  # whatever this host is
IMAGE = "criobuild/builder:debian-trixie-amd64-0123456789ab"


def key(recipe=R133, component="conmon", mode=CROSS, image=IMAGE) -> str:
    return content_key(recipe, component, mode, image)


def repinned(recipe, component, **changes):
    return replace(recipe, components=recipe.components | {component: replace(recipe.components[component], **changes)})


def test_two_recipes_that_pin_the_same_build_share_its_key() -> None:
    assert R133.components["conmon"] == R134.components["conmon"] and R133.go == R134.go  # conmon v2.1.13, Go 1.24.13
    assert key(R133, "conmon") == key(R134, "conmon")
    assert key(R133, "cni-plugins") == key(R134, "cni-plugins")
    assert key(R133, "cri-o") != key(R134, "cri-o")  # another cri-o commit, and its drop-in names its recipe
    assert len(key()) == 64 and key() == key()


def test_the_recipe_name_alone_does_not_change_a_companions_key() -> None:
    assert key(replace(R133, name="crio-9.99", path=Path("/elsewhere/crio-9.99.toml"))) == key()


@pytest.mark.parametrize("changed", [
    "commit", "patch", "patch text", "go version", "go sha256", "suite", "arch", "mode", "builder image", "buildtags", "commands",
])  # fmt: skip
def test_changing_any_input_changes_the_key(changed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, mode, image = R133, CROSS, IMAGE
    pin, before = recipe.components["conmon"], key()
    if changed == "commit":
        recipe = repinned(recipe, "conmon", commit="a" * 40)
    elif changed == "patch":
        recipe = repinned(recipe, "conmon", patches=(Patch(path=tmp_path / "fix.patch", sha256="b" * 64),))
    elif changed == "patch text":
        one = repinned(recipe, "conmon", patches=(Patch(path=tmp_path / "fix.patch", sha256="b" * 64),))
        other = repinned(recipe, "conmon", patches=(Patch(path=tmp_path / "fix.patch", sha256="c" * 64),))
        assert key(one) != key(other)
        return
    elif changed == "go version":
        recipe = replace(recipe, go=replace(recipe.go, version="1.24.99"))
    elif changed == "go sha256":  # of the toolchain that builds it: the host's in cross mode
        arch = mode.toolchain_arch(recipe.target.arch)
        recipe = replace(recipe, go=replace(recipe.go, sha256=recipe.go.sha256 | {arch: "d" * 64}))
    elif changed == "suite":
        recipe = replace(recipe, target=replace(recipe.target, suite="bookworm"))
    elif changed == "arch":
        recipe = replace(recipe, target=replace(recipe.target, arch=Arch.armhf))
        mode = Cross("cross", Arch.armhf)
    elif changed == "mode":
        mode = Qemu("qemu", Arch.arm64)
    elif changed == "builder image":
        image = "criobuild/builder:debian-trixie-amd64-ba9876543210"
    elif changed == "buildtags":
        recipe = repinned(recipe, "conmon", buildtags=(*pin.buildtags, "extra"))
    elif changed == "commands":  # what the tool's component module runs
        from builders.components import conmon

        monkeypatch.setattr(conmon.Conmon, "commands", lambda self, recipe, pin: [conmon.make("PREFIX=/usr")])
    assert key(recipe, "conmon", mode, image) != before


def test_the_other_architectures_go_checksum_changes_nothing() -> None:
    unused = next(a for a in R133.go.sha256 if a != CROSS.toolchain_arch(Arch.arm64))
    assert key(replace(R133, go=replace(R133.go, sha256=R133.go.sha256 | {unused: "e" * 64}))) == key()


def test_a_new_staging_format_changes_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from builders import build

    before = key()
    monkeypatch.setattr(build, "STAGING_FORMAT", build.STAGING_FORMAT + 1)
    assert key() != before
