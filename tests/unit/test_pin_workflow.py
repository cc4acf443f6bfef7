"""The pin workflow (.github/workflows/pin.yml): actionlint passes, it runs weekly and by hand, every `doit`
task it runs exists, and the pull request it opens carries the recipes and the lines `doit pin` printed."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.unit.test_release_workflow import REPO, actionlint, doit_commands, doit_task_names

WORKFLOW = REPO / ".github" / "workflows" / "pin.yml"


def load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps() -> list[dict]:
    return load()["jobs"]["pin"]["steps"]


def step(name: str) -> dict:
    return next(s for s in steps() if s.get("name") == name)


def test_actionlint_passes() -> None:
    result = subprocess.run([actionlint(), "-no-color", str(WORKFLOW)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_weekly_and_by_hand() -> None:
    triggers = load()[True]  # YAML 1.1 reads the key `on` as true
    assert len(triggers["schedule"]) == 1 and len(triggers["schedule"][0]["cron"].split()) == 5
    assert triggers["schedule"][0]["cron"].split()[2:] == ["*", "*", "1"]  # once a week
    assert "workflow_dispatch" in triggers


def test_runs_doit_pin_for_every_recipe_and_the_task_exists(tmp_path: Path) -> None:
    commands = [[a for a in args if not re.match(r"\d*>", a)] for args in doit_commands(load(), recipes=[])]  # 2>&1: a redirection
    assert commands == [["--continue", "pin"]]  # the whole group: one pin:<recipe> per recipe, the others go on past a failure
    names = doit_task_names(tmp_path)
    recipes = sorted(p.stem for p in (REPO / "recipes").glob("crio-*.toml"))
    assert "pin" in names and {f"pin:{r}" for r in recipes} <= names


def test_opens_a_pull_request_with_the_recipes_and_fails_after_it_when_a_pin_failed() -> None:
    pin = step("new patch pins")
    assert pin["continue-on-error"] is True and pin["shell"] == "bash"  # bash: pipefail, so tee keeps doit's status
    pr = step("pull request")
    assert pr["uses"].startswith("peter-evans/create-pull-request@")
    assert pr["with"]["add-paths"] == "recipes/*.toml" and pr["with"]["body-path"] == "pin-pr.md"
    names = [s.get("name") for s in steps()]
    last = step("fail if a recipe could not be pinned")
    assert names.index("pull request") < names.index(last["name"]) and last["if"] == "steps.pin.outcome == 'failure'"
    assert load()["permissions"] == {"contents": "write", "pull-requests": "write"}


def test_the_pull_request_lists_what_changed_per_recipe(tmp_path: Path) -> None:
    """The text step on lines as `doit pin` prints them (builders/sources.py pin_task)."""
    (tmp_path / "pin.log").write_text(
        ".  pin:crio-1.36\n"
        "crio-1.36: cri-o: v1.36.3 (b24632a) -> v1.36.4 (0123456)\n"
        "review with: git diff recipes/crio-1.36.toml\n"
        "crio-1.37: pins are already the newest; recipes/crio-1.37.toml unchanged\n"
    )
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step("pull request text")["run"]], cwd=tmp_path, env=env, check=True)
    body = (tmp_path / "pin-pr.md").read_text()
    assert "crio-1.36: cri-o: v1.36.3 (b24632a) -> v1.36.4 (0123456)" in body and "crio-1.37" not in body
    assert not (tmp_path / "pin.log").exists()
