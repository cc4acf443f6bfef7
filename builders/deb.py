"""Debian packages, one per component, made from the staging trees with debhelper (being written: issue 6)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from doit.tools import config_changed

from .recipe import Recipe
from .settings import Settings

PACKAGE_NAMES = {"cri-o": "cri-o", "conmon": "conmon", "cni-plugins": "containernetworking-plugins", "cri-tools": "cri-tools"}


# The distribution goes after "~" so a rebuild for a newer release sorts higher (deb12 < deb13) and
# any official Debian package of the same upstream version sorts above ours.
DISTRO_TAGS = {
    "bullseye": "deb11", "bookworm": "deb12", "trixie": "deb13",
    "focal": "ubuntu20.04", "jammy": "ubuntu22.04", "noble": "ubuntu24.04",
}  # fmt: skip


def upstream_version(recipe: Recipe, component: str) -> str:
    """1.18.0-rc1 -> 1.18.0~rc1 (below 1.18.0); a branch pin without a tag -> <version>+git.<commit>."""
    c = recipe.components[component]
    version = c.version.replace("-", "~")
    if c.tag is None and "+git" not in version:
        version += f"+git.{c.commit[:12]}"
    return version


def deb_version(recipe: Recipe, component: str) -> str:
    distro = DISTRO_TAGS.get(recipe.target.suite, recipe.target.suite)
    return f"{upstream_version(recipe, component)}-{recipe.revision}~{distro}"


def deb_path(recipe: Recipe, component: str, settings: Settings) -> Path:
    name = f"{PACKAGE_NAMES[component]}_{deb_version(recipe, component)}_{recipe.target.arch.to_deb()}.deb"
    return settings.artifacts / recipe.name / name


def package_deb(recipe: Recipe, component: str, settings: Settings) -> None:
    raise NotImplementedError


def deb_task(recipe: Recipe, component: str, settings: Settings) -> dict[str, Any]:
    from .build import staging_manifest
    from .tasks import as_action

    return {
        "name": f"{recipe.name}:{PACKAGE_NAMES[component]}",
        "doc": f"package {component} as {PACKAGE_NAMES[component]}_{deb_version(recipe, component)}_{recipe.target.arch.to_deb()}.deb",
        "actions": [(as_action(package_deb), [recipe, component, settings])],
        "file_dep": [staging_manifest(settings, recipe, component)],
        "targets": [deb_path(recipe, component, settings)],
        "uptodate": [config_changed({"revision": recipe.revision, "maintainer": recipe.maintainer})],
        "verbosity": 2,
    }
