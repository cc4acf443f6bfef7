"""Install acceptance: a recipe's .debs installed with apt in a clean container of its target, then run.

`doit accept:crio-1.18` copies the recipe's .debs into a fresh container of the target's base image (the
same one the builds start from, with nothing added), lets apt install them and pull their dependencies
from the distribution's mirror, checks that dpkg has each at the expected version, and runs each component's version command
(`crio --version`, `conmon --version`, `crictl --version`, the runtimes' `--version`), which must print
the pinned versions.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any


from .actions import logged_actions, step_log
from .arch import host_arch
from .container import Container
from .errors import ContainerError
from .files import temporary_dir
from .components import upstream
from .recipe import Recipe
from .settings import Settings
from .view import say

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}


def accept_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    from .deb import deb_path

    return {
        "name": recipe.name,
        "doc": f"install {recipe.name}'s .debs with apt in a clean {recipe.target.suite} {recipe.target.arch} container and run crio/conmon/crictl --version",
        **logged_actions(accept, [recipe, settings], step_log(settings, recipe.name, "accept"), f"accept:{recipe.name}"),
        "file_dep": [deb_path(recipe, c, settings) for c in recipe.components],
    }


def accept(recipe: Recipe, settings: Settings) -> None:
    from .container import docker_client
    from .deb import built_debs, deb_version, package_name
    from .images import ensure_base_image

    debs = built_debs(recipe, settings, "the install acceptance")
    client = docker_client()
    image = ensure_base_image(client, recipe.target, settings.base_source)
    what = f"accept {recipe.name}"
    with temporary_dir(settings.cache, "accept") as tmp:
        for deb in debs:
            shutil.copy2(deb, tmp)
        with Container(client, image, what=what, network="bridge", owner=str(settings.artifacts)) as box:
            box.copy_into(Path(tmp), "/tmp/debs")
            box.call(["apt-get", "update", "-q"], env=APT_ENV)
            box.call(["apt-get", "install", "-y", "-q", "--no-install-recommends", *(f"/tmp/debs/{d.name}" for d in debs)], env=APT_ENV)
            packages = [package_name(c) for c in recipe.components]
            installed = box.output(["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Status}\n", *packages])
            for c in recipe.components:
                want = f"{package_name(c)} {deb_version(recipe, c)} installed"
                if want not in installed.splitlines():
                    raise ContainerError(f"{what}: dpkg does not have `{want}` because it reports:\n{installed}", hint="see artifacts/<recipe>/logs/accept.log")
            emulated = recipe.target.arch != host_arch()
            for c, pin in recipe.components.items():
                if upstream(c).version_command:
                    read_only = emulated and upstream(c).emulated_read_only
                    check_version(box, list(upstream(c).version_command), pin.version, what, read_only)
                upstream(c).check_installed(box, recipe, what)
    say(f"{what}: {', '.join(d.name for d in debs)} install on {recipe.target.distro} {recipe.target.suite} {recipe.target.arch} and run")


def check_version(box: Container, argv: list[str], version: str, what: str, read_only: bool = False) -> None:
    if read_only:
        code, out = box.run_read_only(argv, env=APT_ENV)
        box.say(f"+ {' '.join(argv)}  (emulated: in a read-only copy of this container)\n{out}", end="")
    else:
        result = box.container.exec_run(argv, environment=APT_ENV)
        code, out = result.exit_code, result.output.decode(errors="replace")
        box.say(f"+ {' '.join(argv)}\n{out}", end="")
    version = version.removesuffix("-dev")  # a snapshot (1.37.0-dev) prints its release
    printed = printed_versions(out)
    if code != 0 or version not in printed:
        why = f"it returned {code}" if code != 0 else f"its output names version {', '.join(printed)}, not {version}" if printed else f"its output names no version ({version} expected)"
        raise ContainerError(f"{what}: `{' '.join(argv)}` failed because {why}:\n{out.strip()}", hint="see artifacts/<recipe>/logs/accept.log")


# "crio version 1.36.1", "Version:  1.36.1", "crictl version v1.36.0", "runc version 1.0.0-rc10"; not "spec: 1.0.1-dev"
# nor "GoVersion: go1.24.13".
VERSION_LINE = re.compile(r"^[ \t]*(?:[\w.-]+[ \t]+)?version:?[ \t]+v?(\S+)", re.I | re.M)


def printed_versions(output: str) -> list[str]:
    """The versions a program's --version output names, each whole: 1.2 is not 1.20.3."""
    return VERSION_LINE.findall(output)
