"""Content-keyed reuse for real: two recipes that pin the same conmon build it once (real Docker, fixture upstreams)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.pipeline import Pipeline, make_pipeline, step_states

pytestmark = [pytest.mark.docker, pytest.mark.slow]
# A file of its own added to conmon's tree: applies to any conmon commit.
PATCH = """diff --git a/PATCHED b/PATCHED
new file mode 100644
--- /dev/null
+++ b/PATCHED
@@ -0,0 +1 @@
+patched by the recipe
"""


@pytest.fixture
def two_recipes(tmp_path: Path, upstreams, go_tarballs, http_server) -> Pipeline:
    """crio-1.18 and crio-1.19: other cri-o pins, the same companions (conmon v2.0.19), cross-compiled."""
    pipeline = make_pipeline(tmp_path, "cross", upstreams, go_tarballs, http_server)
    pipeline.write_recipe(name="crio-1.19", crio_tag="v1.18.0")
    return pipeline


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Each file's mode and bytes (a symlink's target), by path under root."""
    return {str(p.relative_to(root)): (p.lstat().st_mode, str(p.readlink()).encode() if p.is_symlink() else p.read_bytes())
            for p in sorted(root.rglob("*")) if not p.is_dir() or p.is_symlink()}  # fmt: skip


def compiled(pipeline: Pipeline, task: str) -> str:
    result = pipeline.doit(task)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return step_states(result.stdout)[task]


def test_a_second_recipe_reuses_the_build_and_a_changed_patch_builds_again(two_recipes: Pipeline) -> None:
    p = two_recipes
    staging = p.root / "artifacts"
    assert compiled(p, "compile:crio-1.18:conmon") == "done"
    first = json.loads((staging / "crio-1.18/staging/conmon.json").read_text())
    key = first["content_key"]
    assert (p.root / "cache/builds" / key / "tree/usr/bin/conmon").is_file()

    assert compiled(p, "compile:crio-1.19:conmon") == "reused"
    log = (staging / "crio-1.19/logs/compile-conmon.log").read_text()
    assert f"built for crio-1.18 from the same inputs (key {key}" in log and "+ make" not in log
    assert tree(staging / "crio-1.19/staging/conmon") == tree(staging / "crio-1.18/staging/conmon") != {}
    second = json.loads((staging / "crio-1.19/staging/conmon.json").read_text())
    assert second == first | {"reused_from": "crio-1.18"}
    assert [p.name for p in (p.root / "cache/builds").iterdir() if p.name.endswith(".partial")] == []

    (p.root / "recipes/patches").mkdir()
    (p.root / "recipes/patches/mark.patch").write_text(PATCH)
    recipe = p.root / "recipes/crio-1.19.toml"
    recipe.write_text(recipe.read_text().replace("[components.conmon]\n", '[components.conmon]\npatches = ["mark.patch"]\n'))
    assert compiled(p, "compile:crio-1.19:conmon") == "done"
    log = (staging / "crio-1.19/logs/compile-conmon.log").read_text()
    assert "applied mark.patch" in log and "+ make" in log and "reusing" not in log
    patched = json.loads((staging / "crio-1.19/staging/conmon.json").read_text())
    assert patched["content_key"] != key and "reused_from" not in patched
    version = subprocess.run(["file", str(staging / "crio-1.19/staging/conmon/usr/bin/conmon")], capture_output=True, text=True).stdout
    assert "ARM aarch64" in version
