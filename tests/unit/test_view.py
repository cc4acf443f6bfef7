"""The build's view, run by real doit on a small dodo.py of logged steps: plain lines off a terminal, the live
view under a pseudo-terminal, the failure block and the summary table."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from builders.view import last_lines, not_repeated, seconds

REPO = Path(__file__).resolve().parents[2]

DODO = '''
import json, os, time
from pathlib import Path
from builders.errors import BuildError
from builders.actions import logged_actions
from builders.view import say, transfer

ROOT = Path(__file__).parent
DOIT_CONFIG = {"default_tasks": ["build"], "verbosity": 2, "reporter": __import__("builders.view").view.BuildView}


def fetch():
    print("fetching the toolchain")
    with transfer("go1.26.linux-arm64.tar.gz", 3000) as advance:
        for _ in range(3):
            time.sleep(float(os.environ.get("SLOW", "0")))
            advance(1000)
    say("the toolchain is checked")
    (ROOT / "go.done").touch()


def compile_it():
    for i in range(50):
        print(f"compiler line {i}")
        time.sleep(float(os.environ.get("SLOW", "0")) / 10)
    if os.environ.get("FAIL"):
        raise BuildError("compile of conmon failed because make returned 2\\ncompiler line 48\\ncompiler line 49", hint="read the compiler's words above")
    (ROOT / "out").mkdir(exist_ok=True)
    (ROOT / "out/conmon_2.1.13-1_arm64.deb").write_bytes(b"x" * 2500)


def sums():
    deb = ROOT / "out/conmon_2.1.13-1_arm64.deb"
    digest = __import__("hashlib").sha256(deb.read_bytes()).hexdigest()
    (ROOT / "out/SHA256SUMS").write_text(f"{digest}  {deb.name}\\n")
    print("SHA256SUMS: 1 file")


def task_fetch():
    return {**logged_actions(fetch, [], ROOT / "artifacts/logs/go-1.26-arm64.log"), "targets": [str(ROOT / "go.done")], "uptodate": [True]}


def task_compile():
    return {**logged_actions(compile_it, [], ROOT / "artifacts/crio-1.36/logs/compile-conmon.log"), "file_dep": [str(ROOT / "go.done")],
            "targets": [str(ROOT / "out/conmon_2.1.13-1_arm64.deb")]}


def task_sums():
    s = logged_actions(sums, [], ROOT / "artifacts/crio-1.36/logs/sums.log")
    s["meta"] |= {"sums": str(ROOT / "out/SHA256SUMS"), "target": "debian trixie arm64"}
    return {**s, "file_dep": [str(ROOT / "out/conmon_2.1.13-1_arm64.deb")], "targets": [str(ROOT / "out/SHA256SUMS")]}


def task_build():
    return {"actions": None, "task_dep": ["sums"]}


def task_report():
    return {"actions": [lambda: print(json.dumps({"ready": True}))], "verbosity": 2, "uptodate": [False]}
'''
STEP_LINE = re.compile(r"^\d\d:\d\d:\d\d (start|done|up to date|failed|not run|note|criobuild|total) +(.*)$")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dodo.py").write_text(DODO)
    return tmp_path


def doit(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "CRIOBUILD_VERBOSE"} | {"PYTHONPATH": str(REPO)} | env
    return subprocess.run([sys.executable, "-m", "doit", "--db-file", str(project / "db"), *args], cwd=project, env=environ, capture_output=True, text=True, timeout=120)


def step_lines(output: str) -> list[tuple[str, str]]:
    return [m.groups() for m in map(STEP_LINE.match, output.splitlines()) if m]


def test_off_a_terminal_each_step_has_a_timestamped_start_and_end_line_and_its_output_goes_to_its_log(project: Path) -> None:
    result = doit(project, "build")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = step_lines(result.stdout)
    assert lines[0] == ("criobuild", "3 steps; logs in artifacts/crio-1.36/logs/, artifacts/logs/")
    states = [(state, text.split(" (")[0]) for state, text in lines[1:] if state in ("start", "done")]
    assert states == [("start", "fetch"), ("done", "fetch"), ("start", "compile"), ("done", "compile"), ("start", "sums"), ("done", "sums")]
    assert re.search(r"^\d\d:\d\d:\d\d done       compile \(\d+\.\d s\)$", result.stdout, re.M), result.stdout
    assert ("note", "the toolchain is checked") in lines
    assert any(state == "note" and re.fullmatch(r"downloaded go1.26.linux-arm64.tar.gz: 0.0 MB in 0.0 s, \d+\.\d MB/s", text) for state, text in lines), lines
    assert "compiler line" not in result.stdout + result.stderr, "a step's output goes to its log only"
    assert result.stderr == ""
    log = (project / "artifacts/crio-1.36/logs/compile-conmon.log").read_text()
    assert log.splitlines() == [f"compiler line {i}" for i in range(50)]
    fetch_log = (project / "artifacts/logs/go-1.26-arm64.log").read_text()
    assert "downloading go1.26.linux-arm64.tar.gz (0.0 MB)" in fetch_log and "0.0 MB of 0.0 MB" in fetch_log


def test_the_summary_lists_what_was_produced_with_size_sha256_and_target_also_when_all_is_up_to_date(project: Path) -> None:
    first = doit(project, "build")
    again = doit(project, "build")
    assert first.returncode == again.returncode == 0, again.stdout + again.stderr
    digest = hashlib.sha256(b"x" * 2500).hexdigest()
    for result in (first, again):
        table = result.stdout.splitlines()
        header = next(i for i, line in enumerate(table) if line.split() == ["file", "size", "sha256", "target"])
        assert table[header - 1].strip() == "out/"  # the directory, as its title
        assert table[header + 1].split() == ["conmon_2.1.13-1_arm64.deb", "2.5", "KB", digest[:12], "debian", "trixie", "arm64"]
    assert [s for s, _ in step_lines(again.stdout) if s not in ("criobuild", "total")] == ["up to date"] * 3
    assert step_lines(again.stdout)[-1][0] == "total" and step_lines(again.stdout)[-1][1].endswith(": 0 steps run, 3 up to date")
    assert step_lines(first.stdout)[-1][1].endswith(": 3 steps run, 0 up to date")


def test_a_failure_ends_the_output_with_the_step_its_last_30_lines_the_log_and_the_hint(project: Path) -> None:
    result = doit(project, "build", FAIL="1")
    assert result.returncode == 1
    assert ("failed", result.stdout.splitlines()[-1].split(None, 2)[2]) in step_lines(result.stdout)
    assert "compile (" in result.stdout.splitlines()[-1]
    err = result.stderr.strip().splitlines()
    assert re.match(r"✗ compile failed after \d+\.\d s$", err[0]), result.stderr
    assert err[1] == "--- the last 30 lines of artifacts/crio-1.36/logs/compile-conmon.log:"
    assert [line.strip() for line in err[2:32]] == [f"compiler line {i}" for i in range(20, 50)]
    assert err[32:] == [
        "---",
        "compile of conmon failed because make returned 2",  # the lines the tail already shows are not repeated
        "  hint: read the compiler's words above",
        "full log: artifacts/crio-1.36/logs/compile-conmon.log",
    ]
    log = (project / "artifacts/crio-1.36/logs/compile-conmon.log").read_text()
    assert log.endswith("error: compile of conmon failed because make returned 2\ncompiler line 48\ncompiler line 49\n  hint: read the compiler's words above\n")
    assert not (project / "out/SHA256SUMS").exists()


def test_verbose_streams_every_line_as_well(project: Path) -> None:
    result = doit(project, "build", CRIOBUILD_VERBOSE="1")
    assert result.returncode == 0
    assert "compiler line 49" in result.stdout
    assert ("done", "sums") in [(s, t.split(" (")[0]) for s, t in step_lines(result.stdout)]
    assert (project / "artifacts/crio-1.36/logs/compile-conmon.log").read_text().count("compiler line") == 50


def test_a_task_that_is_not_a_step_keeps_standard_output_to_itself(project: Path) -> None:
    result = doit(project, "report")
    assert (result.returncode, result.stdout, result.stderr) == (0, '{"ready": true}\n', "")


def test_on_a_terminal_one_live_view_draws_the_steps_their_state_the_running_lines_and_the_download(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CRIOBUILD_VERBOSE", "CI", "TERM")} | {"PYTHONPATH": str(REPO), "SLOW": "0.5", "TERM": "xterm-256color"}
    child = pexpect.spawn(sys.executable, ["-m", "doit", "--db-file", str(project / "db"), "build"], cwd=str(project), env=env, dimensions=(40, 120), encoding="utf-8", timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    drawn = child.before
    assert child.exitstatus == 0, drawn
    assert "\x1b[" in drawn and "\x1b[?25l" in drawn, "the view redraws in place (cursor hidden while it runs)"
    assert not step_lines(drawn), "no plain lines on a terminal"
    assert re.search(r"criobuild · \d+\.\d s · logs in artifacts/crio-1.36/logs/", drawn)
    assert "go1.26.linux-arm64.tar.gz: 1.0 MB" not in drawn and "go1.26.linux-arm64.tar.gz: 0.0 MB of 0.0 MB" in drawn, "the download's bytes"
    assert "compiler line" in drawn, "the running step's last lines"
    final = without_styles(drawn.split("\x1b[?25h")[0].rsplit("criobuild · ", 1)[-1])  # the last frame, left on screen
    for name in ("fetch", "compile", "sums"):
        assert re.search(rf"✓ +\d+\.\d s +{name}\b", final), (name, final)
    assert "the toolchain is checked" in drawn
    assert re.search(r"conmon_2.1.13-1_arm64.deb +2.5 KB +[0-9a-f]{12} +debian trixie arm64", without_styles(drawn))
    assert re.search(r"total \d+\.\d s: 3 steps run, 0 up to date", drawn)


def without_styles(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_last_lines_reads_a_log_as_a_terminal_shows_it(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("one\n\n  \ntwo\nprogress 10%\rprogress 60%\rprogress 100%\n")
    assert last_lines(log, 2) == ["two", "progress 100%"]
    assert last_lines(tmp_path / "missing.log", 5) == []


def test_the_error_does_not_repeat_the_lines_the_tail_shows_but_keeps_its_hint() -> None:
    message = "build failed because make returned 2\nerror: x undefined\n  hint: its output is above"
    assert not_repeated(message, ["error: x undefined", "  hint: its output is above"]) == "build failed because make returned 2\n  hint: its output is above"


def test_durations_read_as_a_person_says_them() -> None:
    assert [seconds(s) for s in (0.04, 12.34, 60, 132.4, 3725)] == ["0.0 s", "12.3 s", "1 min 00 s", "2 min 12 s", "1 h 02 min"]
