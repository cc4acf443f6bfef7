"""Sources reach the build container by bind mount on a local engine, by copy for a remote one; the
result is the same either way, and a non-root user in the docker group owns everything a build leaves."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from builders.container import leftover_containers
from tests.fixtures.pipeline import REPO, Pipeline, make_pipeline

pytestmark = [pytest.mark.docker, pytest.mark.emulation, pytest.mark.slow]
USER = 1000
DOCKER_SOCKET = Path("/var/run/docker.sock")


def tree_digest(root: Path) -> dict[str, str]:
    """Every file's sha256 (a symlink's target) by path, as a user comparing two builds would."""
    digest = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            digest[str(path.relative_to(root))] = "-> " + os.readlink(path)
        elif path.is_file():
            digest[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def staged_crio(pipeline: Pipeline) -> Path:
    return pipeline.artifacts / "staging" / "cri-o"


def test_mounted_sources_are_the_default_on_a_local_engine(cross_pipeline: Pipeline, cross_built) -> None:
    assert "sources mounted" in (cross_pipeline.artifacts / "logs" / "compile-cri-o.log").read_text()


def test_copied_sources_build_the_same_cri_o_as_mounted_ones(tmp_path: Path, upstreams, go_tarballs, http_server, cross_pipeline: Pipeline, cross_built, docker_engine) -> None:
    copied = make_pipeline(tmp_path / "copy", "cross", upstreams, go_tarballs, http_server)
    copied.env["CRIOBUILD_TRANSFER"] = "copy"
    result = copied.doit("compile:crio-1.18:cri-o")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "sources copied" in (copied.artifacts / "logs" / "compile-cri-o.log").read_text()
    assert tree_digest(staged_crio(copied)) == tree_digest(staged_crio(cross_pipeline))
    assert leftover_containers(docker_engine, copied.env["CRIOBUILD_ARTIFACTS"]) == []


def as_user(argv: list[str]) -> list[str]:
    """Run argv as an unprivileged user in the docker socket's group. It may read (not write) what root
    owns, only so that this root-installed Python is reachable."""
    group = DOCKER_SOCKET.stat().st_gid
    caps = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", f"--groups={group}", *caps, *argv]


@pytest.fixture
def user_home(upstreams) -> Iterator[Path]:
    """A home the user owns, with its own copies of the upstreams that git's insteadOf points at
    (root's test directories are closed to other users, as a real user's would be)."""
    home = Path(tempfile.mkdtemp(prefix="criobuild-user-"))
    home.chmod(0o755)
    redirects = []
    for name, upstream in upstreams.items():
        mirror = home / "upstreams" / f"{name}.git"
        subprocess.run(["git", "clone", "--quiet", "--mirror", str(upstream.path), str(mirror)], check=True)
        redirects.append(f'[url "{mirror.as_uri()}"]\n\tinsteadOf = {upstream.url}\n')
    (home / ".gitconfig").write_text("".join(redirects))
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(home)], check=True)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def user_go_cache(docker_engine) -> Iterator[str]:
    name = f"criobuild-gocache-debian-bookworm-arm64-cross-u{USER}"
    yield name
    for volume in docker_engine.volumes.list(filters={"name": name}):
        volume.remove(force=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_docker_group_user_builds_the_same_artifacts_and_can_delete_all_it_left(
    user_home: Path, upstreams, go_tarballs, http_server, cross_pipeline: Pipeline, cross_built, docker_engine, user_go_cache: str
) -> None:
    root_build = cross_pipeline.doit("build:crio-1.18")
    assert root_build.returncode == 0, root_build.stdout[-4000:] + root_build.stderr[-4000:]
    mine = make_pipeline(user_home / "build", "cross", upstreams, go_tarballs, http_server)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(mine.root)], check=True)
    env = os.environ | mine.env | {"HOME": str(user_home)}
    result = subprocess.run(as_user(mine.doit_argv("build:crio-1.18")), cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    artifacts = mine.root / "artifacts"
    assert {p.lstat().st_uid for p in [artifacts, *artifacts.rglob("*")]} == {USER}
    assert tree_digest(staged_crio(mine)) == tree_digest(staged_crio(cross_pipeline))
    released = sorted(p.name for p in mine.artifacts.iterdir() if p.name.endswith((".deb", ".tar.gz")))
    assert len(released) == 6  # five .debs (cri-o-runc among them) and the tarball
    assert {name: sha256(mine.artifacts / name) for name in released} == {name: sha256(cross_pipeline.artifacts / name) for name in released}
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=mine.artifacts, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 14, check.stdout + check.stderr  # artifacts, SBOMs, manifest, provenance
    assert docker_engine.volumes.get(user_go_cache)
    assert [p for p in (mine.root / "cache" / "work").rglob("*") if not p.is_dir()] == []  # no work tree left
    assert leftover_containers(docker_engine, mine.env["CRIOBUILD_ARTIFACTS"]) == []

    removed = subprocess.run(as_user(["rm", "-rf", str(mine.root)]), capture_output=True, text=True)
    assert removed.returncode == 0, removed.stderr
    assert not mine.root.exists()
