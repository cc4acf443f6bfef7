"""doit's record of finished steps (builders/state.py): committed per task, shared by concurrent runs, and a
damaged one refused in one line with the way out. Real doit, real sqlite, a small dodo of its own."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DODO = textwrap.dedent('''
    import os, signal, time
    DOIT_CONFIG = {"backend": "criobuild", "dep_file": "state.db", "verbosity": 2}

    def task_step():
        for n in range(4):
            def act(n=n):
                open(f"out{n}", "w").write("made")
                if n == 2 and os.environ.get("KILL_AT_2"):
                    os.kill(os.getpid(), signal.SIGKILL)
            yield {"name": str(n), "actions": [act], "file_dep": ["input"], "targets": [f"out{n}"]}
''')


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dodo.py").write_text(DODO)
    (tmp_path / "input").write_text("what every step reads")
    return tmp_path


def doit(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=project, capture_output=True, text=True, env=os.environ | env)


def ran(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith(".  ")]


def test_steps_finished_before_a_kill_are_not_run_again(project: Path) -> None:
    killed = doit(project, KILL_AT_2="1")
    assert killed.returncode == -9
    assert ran(doit(project)) == ["step:2", "step:3"]


def test_concurrent_runs_keep_each_others_records(project: Path) -> None:
    runs = [subprocess.Popen([sys.executable, "-m", "doit", f"step:{n}"], cwd=project, stdout=subprocess.PIPE, text=True) for n in range(4)]
    assert [run.wait() for run in runs] == [0, 0, 0, 0]
    assert ran(doit(project)) == []


def test_a_file_that_is_no_database_gets_one_line_naming_it_and_the_reset(project: Path) -> None:
    (project / "state.db").write_bytes(b"\0garbage" * 512)
    for command in ([], ["list"], ["forget", "step:1"]):
        result = doit(project, *command)
        assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines() == [f"ERROR: doit's state file state.db cannot be read: file is not a database. Remove it to start afresh (`rm state.db*`): every step then runs once more, and the cache keeps that quick"]


def test_a_damaged_record_gets_one_line_naming_the_task(project: Path) -> None:
    assert doit(project).returncode == 0
    with sqlite3.connect(project / "state.db") as db:
        db.execute("update doit set task_data = ? where task_id = 'step:1'", ("{not json",))
    result = doit(project, "list")
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert "ERROR: doit's state file state.db cannot be read: the record of step:1 is damaged (" in result.stderr
    assert "`rm state.db*`" in result.stderr
