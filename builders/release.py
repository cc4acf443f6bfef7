"""What the release workflow asks before it builds (.github/workflows/release.yml and build.yml).

    python3 -m builders.release groups        groups=<JSON>: one matrix entry per target (and per 256 recipes)
    python -m builders.release keys <recipe>  key_<component>=<content key> for each component (builders/store.py)

GitHub runs at most 256 jobs per matrix. The release matrix is one entry per target, each calling build.yml,
whose own matrix is that target's recipes; a target with more than 256 recipes takes several entries. So
every matrix stays within the limit however many minors there are (11 targets: 2816 recipes before the outer
one is full). `groups` imports nothing beyond the standard library and builders.targets: the runner's own
python3 runs it before the tool is installed.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

MATRIX_LIMIT = 256  # jobs per matrix (GitHub's)
REPO = Path(__file__).resolve().parent.parent


def recipe_minors(directory: Path) -> list[str]:
    """The minors of the crio-<minor>.toml files, in version order."""
    names = (p.stem.removeprefix("crio-") for p in directory.glob("crio-*.toml"))
    return sorted(names, key=lambda n: [int(d) for d in re.findall(r"\d+", n)])


def release_targets() -> list[str]:
    """"" for a recipe's own target (Debian trixie arm64), "@<suite>-<arch>" for each other."""
    from .targets import TARGETS

    return [""] + [f"@{suite}-{arch}" for _, suite, arch in TARGETS[1:]]


def groups(minors: list[str], targets: list[str], limit: int = MATRIX_LIMIT) -> list[dict]:
    """One {"target", "recipes"} per target and run of at most limit recipes; refused past limit entries."""
    chunks = [minors[i:i + limit] for i in range(0, len(minors), limit)]
    found = [{"target": t, "recipes": chunk} for t in targets for chunk in chunks]
    if len(found) > limit:
        sys.exit(f"error: {len(minors)} recipes for {len(targets)} targets need {len(found)} matrix entries, over GitHub's {limit}")
    return found


def content_keys(recipe_name: str) -> dict[str, str]:
    """Each component's content key for this runner, as `doit compile` computes it (makes the builder image)."""
    from .build import content_key, make_builder_image
    from .modes import resolve_mode
    from .recipe import for_every_target, load_all
    from .settings import load_settings

    settings = load_settings()
    recipe = next(r for f in load_all(settings.recipes) for r in for_every_target(f) if r.name == recipe_name)
    mode = resolve_mode(settings.mode, recipe.target.arch)
    image = make_builder_image(mode, recipe, settings)
    return {name: content_key(recipe, name, mode, image) for name in recipe.components}


def main(argv: list[str]) -> None:
    if argv[:1] == ["groups"]:
        directory = Path(os.environ.get("CRIOBUILD_RECIPES") or REPO / "recipes")
        print("groups=" + json.dumps(groups(recipe_minors(directory), release_targets())))
    elif argv[:1] == ["keys"] and len(argv) == 2:
        for name, key in content_keys(argv[1]).items():
            print(f"key_{name.replace('-', '_')}={key}")
    else:
        sys.exit("usage: python -m builders.release groups | keys <recipe>")


if __name__ == "__main__":
    main(sys.argv[1:])
