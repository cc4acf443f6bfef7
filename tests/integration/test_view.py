"""What a person sees of a real build of the 2026 shape (cross-compiled, packaged): the plain lines and the
summary off a terminal, the live view under a pseudo-terminal, and a real compiler failure."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from builders.recipe import load_recipe
from tests.fixtures.pipeline import REPO, SHAPE_1_36, Pipeline, make_pipeline, step_states
from tests.unit.test_view import without_styles

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def recipe_steps(pipeline: Pipeline) -> set[str]:
    recipe = load_recipe(pipeline.root / "recipes" / f"{pipeline.recipe}.toml")
    packages = ("cri-o", "cri-o-conmon", "cri-o-cni-plugins", "cri-tools", "cri-o-runc", "cri-o-crun")
    steps = {f"{kind}:crio-1.36:{c}" for c in recipe.components for kind in ("source", "compile")}
    made_once = {"preflight:crio-1.36", "image:crio-1.36", "govolume:crio-1.36", "tarball:crio-1.36", "sums:crio-1.36"}
    return steps | {f"deb:crio-1.36:{p}" for p in packages} | made_once


def summary(output: str) -> dict[str, tuple[str, str, str]]:
    """The table at the end: file -> (size, sha256 prefix, target)."""
    rows = {}
    for line in output.splitlines():
        m = re.match(r"^(\S+) +(\d+(?:\.\d)? [KM]?B) +([0-9a-f]{12}) +(.+?)\s*$", line)
        if m:
            rows[m[1]] = (m[2], m[3], m[4])
    return rows


def sums(pipeline: Pipeline) -> dict[str, str]:
    return {name: digest for digest, name in (line.split() for line in (pipeline.artifacts / "SHA256SUMS").read_text().splitlines())}


def test_a_real_build_prints_one_line_when_each_step_starts_and_ends_and_a_table_of_what_it_made(pipeline_1_36: Pipeline, built_1_36) -> None:
    out = built_1_36.stdout
    states = step_states(out)
    go = [s for s in states if s.startswith("go:")]
    assert go and set(states) == recipe_steps(pipeline_1_36) | set(go), out
    machine_wide = {"image:crio-1.36", "govolume:crio-1.36"}  # the engine's: made by an earlier test, or now
    assert {states[s] for s in machine_wide} <= {"done", "up to date"}, out
    assert {state for step, state in states.items() if step not in machine_wide} == {"done"}, out
    lines = [line.split()[1:3] if line.split()[1] != "up" else ["up to date", line.split()[4]] for line in out.splitlines() if re.match(r"^\d\d:\d\d:\d\d (start|done|up to date) ", line)]
    order = [name for state, name in lines if state != "start"]
    assert order.index("image:crio-1.36") < order.index("govolume:crio-1.36") < order.index("compile:crio-1.36:conmon")
    assert order.index("source:crio-1.36:conmon") < order.index("compile:crio-1.36:conmon") < order.index("deb:crio-1.36:cri-o-conmon") < order.index("sums:crio-1.36")
    assert all(lines.count(["start", name]) == 1 for name in states if states[name] == "done")
    assert "+ make" not in out + built_1_36.stderr, "the compilers' lines go to the logs"
    assert "+ make" in (pipeline_1_36.artifacts / "logs" / "compile-conmon.log").read_text()
    rows = summary(out)
    produced = {Path(name).name: row for name, row in rows.items()}
    assert set(produced) == set(sums(pipeline_1_36)), out
    for name, digest in sums(pipeline_1_36).items():
        size, prefix, target = produced[name]
        assert prefix == digest[:12] and target == "debian trixie arm64"
        assert size == human((pipeline_1_36.artifacts / name).stat().st_size)
    up_to_date = sum(states[s] == "up to date" for s in machine_wide)
    assert re.search(rf"^\d\d:\d\d:\d\d total +\d.*: \d+ steps run, {up_to_date} up to date$", out, re.M), out


def human(n: int) -> str:
    return f"{n} B" if n < 1000 else f"{n / 1e3:.1f} KB" if n < 1e6 else f"{n / 1e6:.1f} MB"


def test_a_build_with_nothing_to_do_says_so_for_every_step_and_still_shows_the_table(pipeline_1_36: Pipeline, built_1_36) -> None:
    result = pipeline_1_36.doit("build:crio-1.36")
    assert result.returncode == 0, result.stdout + result.stderr
    states = step_states(result.stdout)
    assert {s for s, state in states.items() if state != "up to date"} == {"preflight:crio-1.36"}  # it checks the engine every time
    assert {Path(n).name for n in summary(result.stdout)} == set(sums(pipeline_1_36))
    assert len(result.stdout.splitlines()) <= len(states) + len(summary(result.stdout)) + 8, result.stdout  # a line a step, the table


def test_on_a_terminal_a_real_build_draws_one_live_view(pipeline_1_36: Pipeline, built_1_36) -> None:
    env = {k: v for k, v in (os.environ | pipeline_1_36.env).items() if k not in ("CI", "CRIOBUILD_VERBOSE")} | {"TERM": "xterm-256color"}
    forget = [sys.executable, "-m", "doit", "forget", "--db-file", str(pipeline_1_36.root / "doit.db"), "compile:crio-1.36:cri-o"]  # its go build runs for seconds: long enough to be drawn
    subprocess.run(forget, cwd=REPO, env=env, check=True, capture_output=True)
    shutil.rmtree(pipeline_1_36.root / "cache" / "builds", ignore_errors=True)  # else the store's build is reused, without a make
    argv = pipeline_1_36.doit_argv("build:crio-1.36")
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(REPO), env=env, dimensions=(50, 160), encoding="utf-8", timeout=900)
    child.expect(pexpect.EOF)
    child.close()
    drawn = child.before
    (pipeline_1_36.root / "live-view.txt").write_text(drawn)
    assert child.exitstatus == 0, drawn[-3000:]
    assert not step_states(drawn), "no plain lines on a terminal"
    plain = without_styles(drawn)
    compiled = (pipeline_1_36.artifacts / "logs" / "compile-cri-o.log").read_text().splitlines()[1:]  # after its header
    drawn_lines = [line.strip()[:40] for line in compiled if len(line.strip()) > 8 and line.strip()[:40] in plain]
    assert drawn_lines, "the running compile's last lines"
    final = without_styles(drawn.split("\x1b[?25h")[0].rsplit("criobuild · ", 1)[-1])
    assert re.search(r"✓ +\d+\.\d s +compile:crio-1\.36:cri-o\b", final), final
    assert re.search(r"= +compile:crio-1\.36:conmon\b", final), final
    assert re.search(r"= +image:crio-1\.36\b", final) and re.search(r"= +govolume:crio-1\.36\b", final), final  # made, so up to date
    assert re.search(r"cri-o_1\.36\.1-1~deb13_arm64\.deb +\d+\.\d [KM]B +[0-9a-f]{12} +debian trixie arm64", plain), plain[-3000:]


@pytest.fixture
def breaking_patch(tmp_path: Path, upstreams, go_tarballs, http_server) -> Pipeline:
    """A pipeline of its own whose recipe patches conmon with an #error: gcc fails the compile step."""
    pipeline = make_pipeline(tmp_path, "cross", upstreams, go_tarballs, http_server, SHAPE_1_36)
    tree = tmp_path / "conmon"
    subprocess.run(["git", "clone", "-q", "--branch", SHAPE_1_36["conmon_tag"], upstreams["conmon"].url, str(tree)], check=True)
    with (tree / "src" / "globals.c").open("a") as f:
        f.write('#error "this patch breaks the build on purpose"\n')
    patch = subprocess.run(["git", "diff"], cwd=tree, capture_output=True, text=True, check=True).stdout
    (tmp_path / "recipes" / "patches").mkdir()
    (tmp_path / "recipes" / "patches" / "break-conmon.patch").write_text(patch)
    recipe = tmp_path / "recipes" / "crio-1.36.toml"
    recipe.write_text(recipe.read_text().replace("[components.conmon]\n", '[components.conmon]\npatches = ["break-conmon.patch"]\n'))
    return pipeline


def test_a_real_compiler_failure_ends_with_its_words_the_log_and_nothing_after(breaking_patch: Pipeline, docker_engine) -> None:
    from builders.container import leftover_containers

    result = breaking_patch.doit("compile:crio-1.36:conmon")
    assert result.returncode == 1
    assert step_states(result.stdout)["compile:crio-1.36:conmon"] == "failed"
    err = result.stderr.strip().splitlines()
    assert re.match(r"✗ compile:crio-1\.36:conmon failed after \d", err[0]), result.stderr
    assert err[1].startswith("--- the last ") and err[1].endswith("lines of " + str(breaking_patch.artifacts / "logs" / "compile-conmon.log") + ":")
    tail = err[2:err.index("---")]
    assert len(tail) <= 30 and any('#error "this patch breaks the build on purpose"' in line for line in tail), result.stderr
    assert any("`make" in line and "failed because it returned" in line for line in err), result.stderr
    assert err[-2].strip() == "hint: its output is above"
    assert err[-1] == f"full log: {breaking_patch.artifacts / 'logs' / 'compile-conmon.log'}"
    assert leftover_containers(docker_engine, breaking_patch.env["CRIOBUILD_ARTIFACTS"]) == []
    assert not (breaking_patch.artifacts / "staging" / "conmon.json").exists()


def test_packaging_says_no_warning_about_build_ids_and_leaves_no_debug_link(pipeline_1_36: Pipeline, built_1_36, tmp_path: Path) -> None:
    for log in (pipeline_1_36.artifacts / "logs").glob("deb-*.log"):
        text = log.read_text()
        assert "dh_strip --no-automatic-dbgsym" in text and "warning" not in text.lower(), (log.name, text[-2000:])
    deb = pipeline_1_36.artifacts / "cri-o-cni-plugins_1.8.0-1~deb13_arm64.deb"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    sections = subprocess.run(["readelf", "-S", "-W", str(tmp_path / "usr/lib/cni/bridge")], capture_output=True, text=True, check=True).stdout
    assert ".gnu_debuglink" not in sections and ".symtab" not in sections, "stripped, without a link to a debug file no package has"
