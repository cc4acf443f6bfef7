"""doit task dictionaries. dodo.py only loops over recipes and yields these."""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from .actions import logged_actions, step_log
from .errors import BuildError
from .recipe import Recipe
from .settings import Settings

PER_RECIPE = ("build", "compile", "deb", "tarball", "sums", "preflight", "image", "govolume", "source", "accept", "pod", "node", "verify")


def check_requested(argv: list[str], recipes: list[Recipe], recipe_files: list[Recipe], directory: Path) -> None:
    """`doit build:crio-9.99` or `build:crio-1.36@nowhere-arm64`: name what exists (closest first), not doit's
    bare "Invalid parameter"."""
    names = {r.name for r in recipes}
    for arg in argv:
        step_name, sep, rest = arg.partition(":")
        wanted = rest.split(":", 1)[0]
        if arg.startswith("-") or not sep or step_name not in (*PER_RECIPE, "pin") or wanted in names:
            continue
        recipe, _, target = wanted.partition("@")
        files = [r.name for r in recipe_files]
        if recipe not in files:
            raise BuildError(f"there is no recipe {recipe!r} in {directory} (asked for by `{arg}`)", hint=f"recipes: {', '.join(closest_first(recipe, files))}")
        if step_name == "pin":
            raise BuildError(f"`{arg}`: pin takes a recipe, not a target", hint=f"doit pin:{recipe}")
        targets = [r.target.name for r in recipes if r.variant_of == recipe]
        raise BuildError(f"there is no target {target!r} for {recipe} (asked for by `{arg}`)", hint=f"targets: {', '.join(closest_first(target, targets))}; without @<target>: {next(r.target.name for r in recipe_files if r.name == recipe)}")


def requested_minors(argv: list[str]) -> list[str]:
    """The minors of `doit new:1.38` on the command line; a bare `doit new` or `new:abc` is refused."""
    words = [a for a in argv if not a.startswith("-")]
    if words[:1] == ["new"]:
        raise BuildError("`doit new` needs the CRI-O minor to write a recipe for", hint="e.g. doit new:1.38")
    minors = [a.removeprefix("new:") for a in words if a.startswith("new:")]
    for minor in minors:
        if not re.fullmatch(r"\d+\.\d+", minor):
            raise BuildError(f"`doit new:{minor}`: {minor!r} is not a CRI-O minor", hint="name it as X.Y, e.g. doit new:1.38")
    return minors


def closest_first(word: str, choices: list[str]) -> list[str]:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.3)
    return close + [c for c in choices if c not in close]


def about(recipes: list[Recipe], settings: Settings) -> dict[str, Any]:
    return {"actions": [(show_recipes, [recipes, settings])], "uptodate": [False], "verbosity": 2}


def show_recipes(recipes: list[Recipe], settings: Settings) -> None:
    """`doit` alone: one line per recipe, what it builds and the command that builds it."""
    from rich.console import Console
    from rich.table import Table

    from .components import upstream

    table = Table(title=f"criobuild: CRI-O and its companions from source, as .debs and a tarball (recipes in {settings.recipes})", title_justify="left")
    for column in ("build with", "CRI-O", "target", "OCI runtimes", "companions"):
        table.add_column(column)
    for r in recipes:
        runtimes = [f"{n} {c.version}" for n, c in r.components.items() if upstream(n).runtime]
        others = [f"{n} {c.version}" for n, c in r.components.items() if n != "cri-o" and not upstream(n).runtime]
        table.add_row(f"doit build:{r.name}", r.crio.version, f"{r.target.distro} {r.target.suite} {r.target.arch}", ", ".join(runtimes), ", ".join(others))
    console = Console(width=max(Console().width, 150))
    console.print(table)
    from .recipe import for_every_target

    others = ", ".join(r.target.name for r in for_every_target(recipes[0])[1:]) if recipes else ""
    console.print(f"Each recipe also builds for {others}: `doit build:<recipe>@<target>`, e.g. `doit build:{newest_release(recipes)}@bookworm-armhf`.\n"
                  "Also: `doit accept:<recipe>` (install and run the .debs), `doit repo`, `doit check:kernel`.\n"
                  "`doit list` shows the steps; `doit list --all build` (or compile, deb …) every recipe's tasks of one step.")


def newest_release(recipes: list[Recipe]) -> str:
    """The newest recipe pinned to a release tag (crio-1.36 while crio-1.37 follows its branch)."""
    return next((r.name for r in reversed(recipes) if r.crio.tag), "crio-1.36")


def compile_task(recipe: Recipe, component: str, settings: Settings) -> dict[str, Any]:
    from .build import STAGING_FORMAT, build_component, staging_manifest
    from .components import upstream
    from .go_toolchain import completion_marker
    from .modes import resolve_mode
    from .sources import stamp_path

    mode = resolve_mode(settings.mode, recipe.target.arch)
    go_arch = mode.toolchain_arch(recipe.target.arch)
    c = recipe.components[component]
    return {
        "name": f"{recipe.name}:{component}",
        "doc": f"build {component} {c.version} for {recipe.target.arch} in a {recipe.target.suite} container",
        **logged_actions(build_component, [recipe, component, settings], step_log(settings, recipe.name, f"compile-{component}"), f"compile:{recipe.name}:{component}"),
        "task_dep": [f"preflight:{recipe.name}", f"image:{recipe.name}", f"govolume:{recipe.name}"],  # preflight first, before the downloads and clones
        "file_dep": [stamp_path(recipe, component, settings), completion_marker(recipe.go_for(component), go_arch, settings)],
        "targets": [staging_manifest(settings, recipe, component)],
        "uptodate": [config_changed({
            "recipe": recipe.fingerprint(component, go_arch), "mode": mode.name, "build_packages": mode.build_packages(recipe), "staging": STAGING_FORMAT,
            "licenses": [repr(lic) for lic in upstream(component).licenses],  # a changed statement is checked against the source again
            "commands": [command.argv for command in upstream(component).commands(recipe, c)],  # what its module runs (cri-o's build tags): built again
        })],
    }  # fmt: skip


def image_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    from .build import builder_ready, make_builder_image
    from .modes import resolve_mode

    mode = resolve_mode(settings.mode, recipe.target.arch)
    target = mode.builder_target(recipe.target)
    return {
        "name": recipe.name,
        "doc": f"the {mode.name} builder image: {target.distro} {target.suite} {target.arch} with {recipe.name}'s build packages",
        **logged_actions(make_builder_image, [mode, recipe, settings], step_log(settings, recipe.name, "image"), f"image:{recipe.name}"),
        "task_dep": [f"preflight:{recipe.name}"],
        "uptodate": [(builder_ready, [mode, recipe], {})],
    }


def go_volume_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    from .build import go_volumes_ready, make_go_volumes
    from .go_toolchain import completion_marker
    from .modes import resolve_mode

    mode = resolve_mode(settings.mode, recipe.target.arch)
    arch = mode.toolchain_arch(recipe.target.arch)
    return {
        "name": recipe.name,
        "doc": f"the Go toolchains {recipe.name} builds with ({arch}), each in a Docker volume the builds mount read-only",
        **logged_actions(make_go_volumes, [mode, recipe, settings], step_log(settings, recipe.name, "govolume"), f"govolume:{recipe.name}"),
        "task_dep": [f"image:{recipe.name}"],
        "file_dep": sorted({completion_marker(go, arch, settings) for go in recipe.toolchains()}),
        "uptodate": [(go_volumes_ready, [mode, recipe, settings], {})],
    }


def preflight_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    return {
        "name": recipe.name,
        "doc": "check the Docker engine, QEMU, tools and disk before anything is downloaded",
        **logged_actions(preflight, [recipe, settings], step_log(settings, recipe.name, "preflight"), f"preflight:{recipe.name}"),
        "uptodate": [False],
    }


def preflight(recipe: Recipe, settings: Settings) -> None:
    """What would stop the build later, found now: the engine answers, QEMU is registered, disk, bootstrap tools."""
    from .container import docker_client
    from .images import base_image_name, check_bootstrap_tools, image_exists
    from .modes import resolve_mode

    client = docker_client()
    mode = resolve_mode(settings.mode, recipe.target.arch)
    mode.preflight(settings)
    base = mode.builder_target(recipe.target)
    if settings.base_source == "bootstrap" and not image_exists(client, base_image_name(base)):
        check_bootstrap_tools(base)


def build_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    return {
        "name": recipe.name,
        "doc": f"CRI-O {recipe.crio.version} and companions for {recipe.target.distro} {recipe.target.suite} {recipe.target.arch}: .debs, tarball, SHA256SUMS",
        "actions": None,
        "task_dep": [f"sums:{recipe.name}"],
    }
