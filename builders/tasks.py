"""doit task dictionaries. dodo.py only loops over recipes and yields these."""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed
from doit.tools import config_changed

from .errors import BuildError
from .recipe import Recipe
from .settings import Settings
from .view import step_output


def as_action(func: Callable[..., Any], log: Path | None = None) -> Callable[..., Any]:
    """Turn a user error into a clean doit failure; bugs keep their traceback. With a log, everything the
    action prints goes there (see builders.view)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with step_output(log):
            try:
                result = func(*args, **kwargs)
            except BuildError as e:
                return TaskFailed(str(e))
            except KeyboardInterrupt:
                return TaskFailed("interrupted")
        return None if result is None or result is True else result

    return wrapper


def step(func: Callable[..., Any], args: list[Any], log: Path) -> dict[str, Any]:
    """A task's action and meta when it is a step of a build: the view shows it, its output goes to log."""
    return {"actions": [(as_action(func, log), args)], "meta": {"log": str(log)}, "verbosity": 2}


def step_log(settings: Settings, owner: str, name: str) -> Path:
    """artifacts/<recipe>/logs/<step>.log (owner "" for the steps recipes share: artifacts/logs/)."""
    return settings.artifacts / owner / "logs" / f"{name}.log"


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


STAGING_FORMAT = 2  # what a staging manifest records; a new one builds again (2: linked libraries, base image)


def compile_task(recipe: Recipe, component: str, settings: Settings) -> dict[str, Any]:
    from .build import build_component, staging_manifest
    from .go_toolchain import completion_marker
    from .modes import resolve_mode
    from .sources import stamp_path

    mode = resolve_mode(settings.mode, recipe.target.arch)
    go_arch = mode.toolchain_arch(recipe.target.arch)
    c = recipe.components[component]
    return {
        "name": f"{recipe.name}:{component}",
        "doc": f"build {component} {c.version} for {recipe.target.arch} in a {recipe.target.suite} container",
        **step(build_component, [recipe, component, settings], step_log(settings, recipe.name, f"compile-{component}")),
        "task_dep": [f"preflight:{recipe.name}"],  # first, before the downloads and clones file_dep brings
        "file_dep": [stamp_path(recipe, component, settings), completion_marker(recipe.go_for(component), go_arch, settings)],
        "targets": [staging_manifest(settings, recipe, component)],
        "uptodate": [config_changed({"recipe": recipe.fingerprint(component, go_arch), "mode": mode.name, "packages": mode.packages(recipe), "staging": STAGING_FORMAT})],
    }


def preflight_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    return {
        "name": recipe.name,
        "doc": "check the Docker engine, QEMU, tools and disk before anything is downloaded",
        **step(preflight, [recipe, settings], step_log(settings, recipe.name, "preflight")),
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
