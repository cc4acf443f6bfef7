"""Faults a person or a CI runner causes, on real builds of the 2026 fixture shape (cross-compiled): Ctrl-C,
SIGTERM and SIGKILL at each moment of a build, two builds at once, an engine that stops answering, a full disk.
After each: no container, no temporary file or directory, and the next run finishes."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders.container import LABEL
from tests.fixtures.pipeline import REPO, SHAPE_1_36, Pipeline, make_pipeline, step_states

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def fresh(tmp_path, upstreams, go_tarballs, http_server) -> Pipeline:
    """A pipeline of its own (nothing built yet), its Go already in its cache."""
    p = make_pipeline(tmp_path, "cross", upstreams, go_tarballs, http_server, SHAPE_1_36)
    assert p.doit(f"go:{go_tarballs.version}-amd64").returncode == 0
    return p


def containers_of(pipeline: Pipeline, docker_engine) -> list[str]:
    owner = pipeline.env["CRIOBUILD_ARTIFACTS"]
    return [f"{c.name} {c.status}" for c in docker_engine.containers.list(all=True, filters={"label": f"{LABEL}={owner}"})]


def temporary_names(pipeline: Pipeline) -> list[str]:
    """Every temporary file or directory under the cache and the artifacts, however deep."""
    found = []
    for root in (pipeline.root / "cache", pipeline.root / "artifacts"):
        for path in root.rglob("*"):
            if path.name.endswith((".partial", ".part", ".tmp")) or (path.is_dir() and re.match(r"^\.?deb-", path.name)):
                found.append(str(path.relative_to(pipeline.root)))
    return found


def work_trees(pipeline: Pipeline) -> list[str]:
    work = pipeline.root / "cache" / "work"
    return [str(p.relative_to(work)) for p in work.glob("*/*") if not p.name.endswith(".lock")] if work.exists() else []


def doit_with_fault(pipeline: Pipeline, moment: str, signame: str, step_prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tests.fixtures.faults", moment, signame, step_prefix, "--", "--db-file", str(pipeline.root / "doit.db"), *args]
    result = subprocess.run(argv, cwd=REPO, env=os.environ | pipeline.env, capture_output=True, text=True, timeout=900,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    (pipeline.root / f"fault-{moment}-{signame}.log").write_text(result.stdout + result.stderr)
    return result


def assert_nothing_left(pipeline: Pipeline, docker_engine) -> None:
    assert containers_of(pipeline, docker_engine) == []
    assert temporary_names(pipeline) == []
    assert work_trees(pipeline) == []


@pytest.mark.parametrize(
    ("moment", "signame", "step"),
    [
        ("create", "INT", "compile:"), ("start", "TERM", "compile:"), ("exec", "INT", "compile:"),
        ("checkout", "TERM", "compile:"), ("copy", "INT", "deb:"), ("create", "TERM", "deb:"),
    ],
)  # fmt: skip
def test_a_signal_at_any_moment_ends_the_run_with_its_status_and_leaves_nothing(fresh: Pipeline, docker_engine, moment, signame, step) -> None:
    if step == "deb:":
        assert fresh.doit("compile:crio-1.36:conmon").returncode == 0
    result = doit_with_fault(fresh, moment, signame, step, "deb:crio-1.36:cri-o-conmon")
    signum = getattr(signal, f"SIG{signame}")
    assert result.returncode == -signum, result.stdout + result.stderr  # the signal's own status, as a shell shows (130, 143)
    assert "Traceback" not in result.stderr, result.stderr
    interrupted = f"{step}crio-1.36:" + ("cri-o-conmon" if step == "deb:" else "conmon")  # deb: tasks are named by package
    assert re.search(rf"✗ interrupted during {interrupted} after ", result.stderr), result.stderr
    assert_nothing_left(fresh, docker_engine)
    staging = fresh.artifacts / "staging"
    if step == "compile:":
        assert not (staging / "conmon.json").exists() and not (staging / "conmon").exists()
    again = fresh.doit("deb:crio-1.36:cri-o-conmon")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (fresh.artifacts / "staging" / "conmon.json").exists()
    assert_nothing_left(fresh, docker_engine)


def test_ctrl_c_ends_the_whole_run_also_with_continue(fresh: Pipeline, docker_engine) -> None:
    result = doit_with_fault(fresh, "exec", "INT", "compile:crio-1.36:conmon", "--continue", "compile:crio-1.36:conmon", "compile:crio-1.36:runc")
    assert result.returncode == -signal.SIGINT, result.stdout + result.stderr
    states = step_states(result.stdout)
    assert "compile:crio-1.36:runc" not in states, result.stdout  # never started
    assert_nothing_left(fresh, docker_engine)


def test_kill_9_leaves_no_container_and_the_rerun_keeps_what_finished_and_cleans_up(fresh: Pipeline, docker_engine) -> None:
    log = (fresh.root / "killed.log").open("w")
    proc = subprocess.Popen(fresh.doit_argv("compile:crio-1.36:conmon", "compile:crio-1.36:runc"), cwd=REPO, env=os.environ | fresh.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        runc_log = fresh.artifacts / "logs" / "compile-runc.log"
        wait_for(lambda: runc_log.exists() and "+ " in runc_log.read_text(), proc, timeout=600)
        assert containers_of(fresh, docker_engine), "runc should be building in a container"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    deadline = time.monotonic() + 30
    while containers_of(fresh, docker_engine) and time.monotonic() < deadline:  # its lifeline closed with the process
        time.sleep(0.5)
    assert containers_of(fresh, docker_engine) == []
    assert temporary_names(fresh) or work_trees(fresh), "a killed build leaves its partial tree for the next run"
    again = fresh.doit("compile:crio-1.36:conmon", "compile:crio-1.36:runc")
    assert again.returncode == 0, again.stdout + again.stderr
    states = step_states(again.stdout)
    assert states["compile:crio-1.36:conmon"] == "up to date", again.stdout  # finished before the kill: not redone
    assert states["compile:crio-1.36:runc"] == "done", again.stdout
    assert "interrupted runs left" in again.stdout, again.stdout
    assert_nothing_left(fresh, docker_engine)


def wait_for(condition, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "doit ended before the condition was met"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def building(pipeline: Pipeline, component: str, env: dict[str, str]) -> subprocess.Popen:
    """`doit compile:<recipe>:<component>`, returned once its build container runs upstream's first command."""
    step_log = pipeline.artifacts / "logs" / f"compile-{component}.log"
    step_log.unlink(missing_ok=True)
    proc = subprocess.Popen(pipeline.doit_argv(f"compile:{pipeline.recipe}:{component}"), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    wait_for(lambda: step_log.exists() and "+ " in step_log.read_text(), proc, 600)
    return proc


def test_two_runs_in_one_checkout_lose_none_of_each_others_records(fresh: Pipeline) -> None:
    components = ["cri-o", "conmon", "cni-plugins", "cri-tools", "runc", "crun"]
    runs = [subprocess.Popen(fresh.doit_argv(f"source:crio-1.36:{c}"), cwd=REPO, env=os.environ | fresh.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in components]
    assert all(run.wait(timeout=300) == 0 for run in runs), [run.stdout.read() for run in runs]
    again = fresh.doit(*(f"source:crio-1.36:{c}" for c in components))
    assert set(step_states(again.stdout).values()) == {"up to date"}, again.stdout


def test_two_builds_of_one_component_at_once_both_succeed_the_second_after_waiting(fresh: Pipeline, docker_engine, tmp_path) -> None:
    from builders.container import LABEL

    clone = dict(fresh.env, CRIOBUILD_ARTIFACTS=str(tmp_path / "other-clone-artifacts"))  # another clone, the same cache
    first = building(fresh, "cri-o", os.environ | fresh.env)
    box = docker_engine.containers.list(filters={"label": f"{LABEL}={fresh.env['CRIOBUILD_ARTIFACTS']}", "status": "running"})[0]
    box.pause()  # the first build holds on until both others wait, however fast the fixture cri-o compiles
    said = {name: tmp_path / f"{name}.out" for name in ("second", "other")}
    second_argv = [*fresh.doit_argv()[:3], "--db-file", str(tmp_path / "second.db"), "compile:crio-1.36:cri-o"]  # the same checkout
    second = subprocess.Popen(second_argv, cwd=REPO, env=os.environ | fresh.env, stdout=said["second"].open("w"), stderr=subprocess.STDOUT, text=True)
    other = subprocess.Popen(fresh.doit_argv("compile:crio-1.36:cri-o"), cwd=REPO, env=os.environ | clone, stdout=said["other"].open("w"), stderr=subprocess.STDOUT, text=True)
    try:
        for proc, out in ((second, said["second"]), (other, said["other"])):
            wait_for(lambda out=out: "waiting for another build" in out.read_text(), proc, 300)
    finally:
        box.unpause()
    first_said = first.communicate(timeout=900)[0]
    codes = [first.returncode, second.wait(timeout=900), other.wait(timeout=900)]
    outputs = [first_said, said["second"].read_text(), said["other"].read_text()]
    assert codes == [0, 0, 0], "\n----\n".join(outputs)
    assert "waiting for another build of compile:crio-1.36:cri-o" in outputs[1], outputs[1]  # the same staging tree
    assert "waiting for another build of cri-o from the same inputs" in outputs[2], outputs[2]  # the same store entry
    for artifacts in (fresh.artifacts, Path(clone["CRIOBUILD_ARTIFACTS"]) / "crio-1.36"):
        assert (artifacts / "staging" / "cri-o" / "usr/bin/crio").is_file()
    assert_nothing_left(fresh, docker_engine)


@pytest.fixture
def engine():
    """dockerd stopped (SIGSTOP) and let go on (SIGCONT) on demand, as an engine that hangs; always let go on afterwards."""
    pid = int(subprocess.run(["pidof", "-s", "dockerd"], capture_output=True, text=True, check=True).stdout)

    class Engine:
        def freeze(self) -> None:
            os.kill(pid, signal.SIGSTOP)

        def thaw(self) -> None:
            os.kill(pid, signal.SIGCONT)

    yield Engine()
    os.kill(pid, signal.SIGCONT)


def test_ctrl_c_ends_the_run_within_seconds_while_the_engine_hangs(fresh: Pipeline, docker_engine, engine) -> None:
    proc = building(fresh, "runc", os.environ | fresh.env)
    engine.freeze()
    time.sleep(2)  # the run now waits on an engine that does not answer
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - interrupted
    engine.thaw()
    assert proc.returncode == -signal.SIGINT and took < 15, (took, out, err)
    assert "Traceback" not in err and "the Docker engine does not answer (the next run removes it)" in out + err, out + err
    again = fresh.doit("compile:crio-1.36:runc")
    assert again.returncode == 0, again.stdout + again.stderr
    assert_nothing_left(fresh, docker_engine)


def test_an_engine_that_stops_answering_fails_the_step_in_bounded_time(fresh: Pipeline, docker_engine, engine) -> None:
    proc = building(fresh, "runc", os.environ | fresh.env | {"CRIOBUILD_ENGINE_TIMEOUT": "15"})
    engine.freeze()
    frozen = time.monotonic()
    out, err = proc.communicate(timeout=180)
    took = time.monotonic() - frozen
    engine.thaw()
    assert proc.returncode == 1, out + err
    assert "the Docker engine stopped answering: no reply to a ping for 15 s (CRIOBUILD_ENGINE_TIMEOUT) while compile:crio-1.36:runc ran" in err, err
    assert "Traceback" not in err and took < 60, (took, err)
    again = fresh.doit("compile:crio-1.36:runc")  # the engine answers again: the next run cleans up and builds
    assert again.returncode == 0, again.stdout + again.stderr
    assert_nothing_left(fresh, docker_engine)


@pytest.fixture
def small_disk(tmp_path):
    """A 1200 MiB filesystem of its own (tmpfs), filled on demand; unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200m", "tmpfs", str(mount)], check=True)

    def fill(leave_bytes: int) -> None:
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        with open(mount / "filler", "wb") as f:
            f.truncate(0)
            f.write(b"\0" * max(free - leave_bytes, 0))

    yield mount, fill
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_under_the_cache_says_where_and_keeps_the_healthy_clone(fresh: Pipeline, small_disk, docker_engine) -> None:
    mount, fill = small_disk
    env = dict(fresh.env, CRIOBUILD_CACHE=str(mount / "cache"), CRIOBUILD_MIN_FREE_GIB="0")
    fill(20 << 20)  # 20 MiB: less than the Go toolchain
    go = subprocess.run(fresh.doit_argv("compile:crio-1.36:conmon"), cwd=REPO, env=os.environ | env, capture_output=True, text=True)
    assert go.returncode == 1 and "Traceback" not in go.stderr, go.stdout + go.stderr
    assert f"no space left on {mount}" in go.stderr and "CRIOBUILD_CACHE" in go.stderr, go.stderr
    (mount / "filler").unlink()
    room = subprocess.run(fresh.doit_argv("source:crio-1.36:cri-o", "compile:crio-1.36:conmon"), cwd=REPO, env=os.environ | env, capture_output=True, text=True)
    assert room.returncode == 0, room.stdout + room.stderr
    clone = next((mount / "cache" / "clones").glob("*cri-o*.git"))
    before = clone.stat().st_ino
    fill(64 << 10)  # 64 KiB: the clone is there, its checkout cannot be written
    compile_ = subprocess.run(fresh.doit_argv("compile:crio-1.36:cri-o"), cwd=REPO, env=os.environ | env, capture_output=True, text=True)
    assert compile_.returncode == 1 and "Traceback" not in compile_.stderr, compile_.stdout + compile_.stderr
    assert f"no space left on {mount}" in compile_.stderr and "damaged" not in compile_.stdout + compile_.stderr, compile_.stdout + compile_.stderr
    assert clone.stat().st_ino == before, "the healthy cached clone is kept"
    assert [p for p in (mount / "cache").rglob("*.partial")] == []


def test_a_full_artifacts_disk_ends_with_the_failure_not_a_crash_of_the_view(fresh: Pipeline, small_disk) -> None:
    mount, fill = small_disk
    env = dict(fresh.env, CRIOBUILD_ARTIFACTS=str(mount / "artifacts"), CRIOBUILD_MIN_FREE_GIB="0")
    (mount / "artifacts" / "crio-1.36" / "logs").mkdir(parents=True)
    fill(0)
    result = subprocess.run(fresh.doit_argv("compile:crio-1.36:conmon"), cwd=REPO, env=os.environ | env, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"no space left on {mount}" in result.stderr and "CRIOBUILD_ARTIFACTS" in result.stderr, result.stderr


LEAVE_A_NODE = """
import os, signal, sys
from builders import lifecycle
from builders.container import Container, docker_client
lifecycle.RUNNING_STEP = "pod:crio-1.36"
box = Container(docker_client(), sys.argv[1], command=["sleep", "infinity"], owner=sys.argv[2], what="a node")  # no lifeline, as the pod test's node
box.__enter__()
with box.snapshot():
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_next_run_removes_the_containers_and_images_a_killed_run_left(fresh: Pipeline, docker_engine, trixie_arm64_base_image) -> None:
    owner = fresh.env["CRIOBUILD_ARTIFACTS"]
    killed = subprocess.run([sys.executable, "-c", LEAVE_A_NODE, trixie_arm64_base_image, owner], cwd=REPO, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(containers_of(fresh, docker_engine)) == 1
    assert len(docker_engine.images.list(filters={"label": f"{LABEL}={owner}"})) == 1
    result = fresh.doit("preflight:crio-1.36")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"note +removed container criobuild-\w+, which a run that is gone left \(pod:crio-1.36\)", result.stdout), result.stdout
    assert containers_of(fresh, docker_engine) == []
    assert docker_engine.images.list(filters={"label": f"{LABEL}={owner}"}) == []


def test_artifacts_are_readable_by_everyone_and_directories_searchable(pipeline_1_36: Pipeline, built_1_36) -> None:
    """0644 files and 0755 directories under the usual umask 022: a web server running as another user serves them."""
    modes = {}
    for path in [pipeline_1_36.artifacts, *pipeline_1_36.artifacts.rglob("*")]:
        if path.is_symlink() or "staging" in path.relative_to(pipeline_1_36.artifacts).parts[:1]:
            continue
        modes[str(path.relative_to(pipeline_1_36.artifacts))] = oct(path.stat().st_mode & 0o777)
    wrong = {p: m for p, m in modes.items() if m != ("0o755" if (pipeline_1_36.artifacts / p).is_dir() else "0o644")}
    assert wrong == {}, wrong
    assert {"SHA256SUMS", "manifest.json", "provenance.intoto.json"} <= set(modes)
    assert any(p.endswith(".deb.spdx.json") for p in modes)
