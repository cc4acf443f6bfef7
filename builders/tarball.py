"""The release tarball, SHA256SUMS and manifest.json of a recipe (being written: issue 7)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .recipe import COMPONENTS, Recipe
from .settings import Settings


def tarball_path(recipe: Recipe, settings: Settings) -> Path:
    """Named the way upstream names its bundles: cri-o.<arch>.v<version>.tar.gz."""
    return settings.artifacts / recipe.name / f"cri-o.{recipe.target.arch}.v{recipe.crio.version}.tar.gz"


def make_tarball(recipe: Recipe, settings: Settings) -> None:
    raise NotImplementedError


def write_sums_and_manifest(recipe: Recipe, settings: Settings) -> None:
    raise NotImplementedError


def tarball_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    from .build import staging_manifest
    from .tasks import as_action

    return {
        "name": recipe.name,
        "doc": f"release tarball {tarball_path(recipe, settings).name} with an install script",
        "actions": [(as_action(make_tarball), [recipe, settings])],
        "file_dep": [staging_manifest(settings, recipe, c) for c in COMPONENTS],
        "targets": [tarball_path(recipe, settings)],
        "verbosity": 2,
    }


def sums_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    from .deb import deb_path
    from .tasks import as_action

    artifacts = [deb_path(recipe, c, settings) for c in COMPONENTS] + [tarball_path(recipe, settings)]
    out = settings.artifacts / recipe.name
    return {
        "name": recipe.name,
        "doc": "SHA256SUMS and manifest.json over every artifact of the recipe",
        "actions": [(as_action(write_sums_and_manifest), [recipe, settings])],
        "file_dep": artifacts,
        "targets": [out / "SHA256SUMS", out / "manifest.json"],
        "verbosity": 2,
    }
