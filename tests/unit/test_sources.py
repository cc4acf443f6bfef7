"""builders.sources against tiny local fixture upstreams (plain git repositories); never the network."""
from __future__ import annotations

import difflib
import http.server
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from doit.exceptions import TaskFailed

from builders import sources
from builders.errors import NoSpace, SourceError
from builders.recipe import Component, load_recipe
from builders.settings import REPO_ROOT, Settings, load_settings

# A Makefile that reads git the way cri-o's does (COMMIT_NO, GIT_TREE_STATE) and cri-tools' does (describe).
MAKEFILE = """\
COMMIT_NO := $(shell git rev-parse HEAD 2> /dev/null || true)
GIT_TREE_STATE := $(if $(shell git status --porcelain --untracked-files=no),dirty,clean)
VERSION := $(shell git describe --tags --dirty --always)
version:
\t@echo "commit=$(COMMIT_NO) tree=$(GIT_TREE_STATE) version=$(VERSION)"
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Upstream:
    path: Path
    url: str
    tags: dict[str, str]
    branch: str
    branch_tip: str
    side_commit: str      # on branch "side" only, not on the release branch
    long_tip: str         # tip of branch "long", 70 commits past long_pin
    long_pin: str

    def component(self, tag: str | None = "v1.18.2", branch: str | None = "release-1.18", commit: str | None = None,
                  name: str = "cri-o", repo: str | None = None) -> Component:
        commit = commit or (self.tags[tag] if tag else self.branch_tip)
        return Component(name=name, repo=repo or self.url, commit=commit, version=(tag or "v0.0.0")[1:],
                         branch=branch, tag=tag)

    def move(self, n: int = 1) -> str:
        """Add n commits to the release branch; return its new tip."""
        git(self.path, "checkout", "-q", self.branch)
        for i in range(n):
            commit_file(self.path, f"later-{i}.txt", f"later {i}\n", f"later {i}")
        self.branch_tip = git(self.path, "rev-parse", "HEAD")
        return self.branch_tip


def commit_file(repo: Path, name: str, content: str, message: str) -> str:
    (repo / name).write_text(content)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_upstream(root: Path, name: str = "cri-o") -> Upstream:
    """main (v1.17.0, v1.19.0), release-1.18 (v1.18.0, v1.18.1 annotated, v1.18.2 annotated, 3 later
    commits, a v1.18.3-rc.1 on the tip), side (one commit off release-1.18), long (70 commits past a pin)."""
    path = root / name
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "Makefile").write_text(MAKEFILE)
    git(path, "add", "Makefile")
    tags: dict[str, str] = {}
    tags["v1.17.0"] = commit_file(path, "main.go", "package main\n", "initial")
    git(path, "tag", "v1.17.0")
    git(path, "checkout", "-q", "-b", "release-1.18")
    tags["v1.18.0"] = commit_file(path, "VERSION", "1.18.0\n", "release 1.18.0")
    git(path, "tag", "v1.18.0")
    tags["v1.18.1"] = commit_file(path, "VERSION", "1.18.1\n", "release 1.18.1")
    git(path, "tag", "-a", "-m", "v1.18.1", "v1.18.1")
    tags["v1.18.2"] = commit_file(path, "VERSION", "1.18.2\n", "release 1.18.2")
    git(path, "tag", "-a", "-m", "v1.18.2", "v1.18.2")
    for i in range(3):
        tip = commit_file(path, "fix.txt", f"fix {i}\n", f"backport {i}")
    git(path, "tag", "v1.18.3-rc.1")
    tags["v1.18.3-rc.1"] = tip
    git(path, "checkout", "-q", "-b", "side", tags["v1.18.1"])
    side = commit_file(path, "side.txt", "side\n", "not on the release branch")
    git(path, "checkout", "-q", "-b", "long", tags["v1.18.0"])
    long_pin = commit_file(path, "long.txt", "pin\n", "long pin")
    for i in range(70):
        git(path, "commit", "-q", "--allow-empty", "-m", f"long {i}")
    long_tip = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "-q", "main")
    tags["v1.19.0"] = commit_file(path, "main.go", "package main // 1.19\n", "1.19")
    git(path, "tag", "v1.19.0")
    return Upstream(path=path, url=path.as_uri(), tags=tags, branch="release-1.18", branch_tip=tip,
                    side_commit=side, long_tip=long_tip, long_pin=long_pin)


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user or system git config leaks in; tests may write their own global config."""
    config = tmp_path_factory.mktemp("gitconfig") / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{var}_NAME", "Fixture")
        monkeypatch.setenv(f"GIT_{var}_EMAIL", "fixture@example.invalid")
    return config


@pytest.fixture(scope="module")
def upstream_template(tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    env = {f"GIT_{v}_{k}": val for v in ("AUTHOR", "COMMITTER") for k, val in (("NAME", "Fixture"), ("EMAIL", "f@x.invalid"))}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setenv("GIT_CONFIG_GLOBAL", os.devnull)
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        return make_upstream(tmp_path_factory.mktemp("template"))


@pytest.fixture
def upstream(upstream_template: Upstream, tmp_path: Path) -> Upstream:
    """A private copy of the fixture upstream (tests move branches and rename it)."""
    path = tmp_path / "upstreams" / upstream_template.path.name
    shutil.copytree(upstream_template.path, path, symlinks=True)
    return replace(upstream_template, path=path, url=path.as_uri(), tags=dict(upstream_template.tags))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_in(tmp_path / "cache", tmp_path)


def settings_in(cache: Path, tmp_path: Path) -> Settings:
    return load_settings({"CRIOBUILD_CACHE": str(cache), "CRIOBUILD_RECIPES": str(tmp_path / "recipes"),
                          "CRIOBUILD_ARTIFACTS": str(tmp_path / "artifacts")})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corrupt(cache: Path, sha: str) -> None:
    loose = cache / "objects" / sha[:2] / sha[2:]
    assert loose.is_file(), "fixture objects are expected to be loose"
    loose.chmod(0o644)
    loose.write_bytes(b"this is not a zlib stream")


# --------------------------------------------------------------------------- cache location


def test_clone_dir_is_keyed_by_url_and_shared(upstream: Upstream, settings: Settings) -> None:
    a = upstream.component()
    b = upstream.component(tag="v1.18.0")  # another recipe, same upstream
    c = upstream.component(repo="https://github.com/cri-o/cri-o")
    assert sources.clone_dir(a, settings) == sources.clone_dir(b, settings)
    assert sources.clone_dir(a, settings).parent == settings.clones
    assert sources.clone_dir(c, settings).name.startswith("github.com_cri-o_cri-o-")
    assert sources.clone_dir(c, settings).name.endswith(".git")
    assert sources.clone_dir(a, settings) != sources.clone_dir(c, settings)


# --------------------------------------------------------------------------- happy path


def test_checkout_is_exactly_the_pinned_commit_clean_and_describable(upstream: Upstream, settings: Settings, tmp_path: Path) -> None:
    component = upstream.component(tag="v1.18.2")
    sources.fetch_source(component, settings)

    dest = sources.checkout(component, settings, tmp_path / "work" / "cri-o")

    assert dest == tmp_path / "work" / "cri-o"
    assert git(dest, "rev-parse", "HEAD") == upstream.tags["v1.18.2"]
    assert git(dest, "status", "--porcelain") == ""
    assert git(dest, "describe", "--tags", "--dirty", "--always") == "v1.18.2"
    assert (dest / ".git").is_dir()  # self-contained: usable inside a container that mounts only dest
    assert not (dest / ".git" / "objects" / "info" / "alternates").exists()
    out = subprocess.run(["make", "-s", "version"], cwd=dest, check=True, capture_output=True, text=True).stdout
    assert out.strip() == f"commit={upstream.tags['v1.18.2']} tree=clean version=v1.18.2"
    assert [p.name for p in dest.parent.iterdir()] == ["cri-o"]  # no partial left behind


def test_fetch_is_shallow_where_possible(upstream: Upstream, settings: Settings) -> None:
    tag_only = upstream.component(tag="v1.18.2", branch=None, name="conmon")
    sources.fetch_source(tag_only, settings)
    cache = sources.clone_dir(tag_only, settings)
    assert git(cache, "rev-parse", "--is-shallow-repository") == "true"
    assert git(cache, "rev-list", "--count", "--all") == "1"
    at_tip = upstream.component(tag=None, branch="long", commit=upstream.long_tip, name="cni-plugins")
    sources.fetch_source(at_tip, settings)
    assert git(cache, "rev-list", "--count", upstream.long_tip) == "1"


def test_checkout_replaces_an_existing_tree_with_a_fresh_one(upstream: Upstream, settings: Settings, tmp_path: Path) -> None:
    dest = tmp_path / "work" / "cri-o"
    sources.checkout(upstream.component(tag="v1.18.1"), settings, dest)
    (dest / "VERSION").write_text("edited\n")
    (dest / "bin").mkdir()
    sources.checkout(upstream.component(tag="v1.18.2"), settings, dest)
    assert git(dest, "rev-parse", "HEAD") == upstream.tags["v1.18.2"]
    assert git(dest, "status", "--porcelain", "--ignored") == ""
    assert (dest / "VERSION").read_text() == "1.18.2\n"


def test_tag_only_component_lightweight_tag(upstream: Upstream, settings: Settings, tmp_path: Path) -> None:
    component = upstream.component(tag="v1.18.0", branch=None, name="conmon")
    dest = sources.checkout(component, settings, tmp_path / "conmon")
    assert git(dest, "rev-parse", "HEAD") == upstream.tags["v1.18.0"]
    assert git(dest, "describe", "--tags") == "v1.18.0"


def test_branch_moved_past_the_pin_builds_the_pin_and_says_so(upstream: Upstream, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    component = upstream.component(tag="v1.18.1")
    sources.fetch_source(component, settings)
    err = capsys.readouterr().err
    pin = upstream.tags["v1.18.1"][:7]
    assert f"cri-o: release-1.18 has moved 4 commits past the pin v1.18.1 ({pin}); building the pin" in err
    dest = sources.checkout(component, settings, tmp_path / "cri-o")
    assert git(dest, "rev-parse", "HEAD") == upstream.tags["v1.18.1"]


def test_branch_only_pin_far_behind_the_tip_deepens_the_shallow_clone(upstream: Upstream, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    component = upstream.component(tag=None, branch="long", commit=upstream.long_pin, name="cni-plugins")
    sources.fetch_source(component, settings)
    assert "cni-plugins: long has moved 70 commits past the pin (" in capsys.readouterr().err
    dest = sources.checkout(component, settings, tmp_path / "cni")
    assert git(dest, "rev-parse", "HEAD") == upstream.long_pin
    assert git(dest, "describe", "--tags", "--always") == upstream.long_pin[:7]


def test_a_branch_pinned_at_its_tip_says_nothing(upstream: Upstream, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    sources.fetch_source(upstream.component(tag=None, branch="release-1.18"), settings)
    assert "moved" not in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input


def test_pin_not_on_the_branch_fails_naming_commit_and_branch(upstream: Upstream, settings: Settings) -> None:
    component = upstream.component(tag=None, commit=upstream.side_commit)
    with pytest.raises(SourceError) as e:
        sources.fetch_source(component, settings)
    message = str(e.value)
    assert f"commit {upstream.side_commit} is not on branch release-1.18 of {upstream.url}" in message
    assert "because" in message and "cri-o" in message


def test_tag_not_on_the_branch_fails(upstream: Upstream, settings: Settings) -> None:
    component = upstream.component(tag="v1.19.0")  # on main, not on release-1.18
    with pytest.raises(SourceError, match=r"tag v1\.19\.0 \(commit [0-9a-f]{40}\) is not on branch release-1\.18"):
        sources.fetch_source(component, settings)


def test_tag_pointing_elsewhere_fails_naming_both_commits(upstream: Upstream, settings: Settings) -> None:
    component = upstream.component(tag="v1.18.2", commit=upstream.tags["v1.18.1"])
    with pytest.raises(SourceError) as e:
        sources.fetch_source(component, settings)
    assert f"tag v1.18.2 of {upstream.url} points at {upstream.tags['v1.18.2']}, not the pinned commit {upstream.tags['v1.18.1']}" in str(e.value)


def test_unknown_tag_fails_listing_existing_tags(upstream: Upstream, settings: Settings) -> None:
    with pytest.raises(SourceError) as e:
        sources.fetch_source(upstream.component(tag="v1.18.9", commit="0" * 40), settings)
    assert f"fetching cri-o from {upstream.url} failed because it has no tag 'v1.18.9'" in e.value.message
    assert "v1.18.2" in (e.value.hint or "") and "v1.19.0" in (e.value.hint or "")
    assert "components.cri-o.tag" in (e.value.hint or "")
    assert not any(p.suffix == ".git" for p in settings.clones.iterdir())  # nothing half-made kept


def test_unknown_branch_fails_listing_existing_branches(upstream: Upstream, settings: Settings) -> None:
    with pytest.raises(SourceError) as e:
        sources.fetch_source(upstream.component(branch="release-1.81"), settings)
    assert "has no branch 'release-1.81'" in e.value.message
    assert (e.value.hint or "").startswith("branches it has: release-1.18")


def test_unreachable_remote_fails_with_an_insteadof_hint(upstream: Upstream, settings: Settings) -> None:
    url = f"http://127.0.0.1:{closed_port()}/x.git"
    with pytest.raises(SourceError) as e:
        sources.fetch_source(upstream.component(repo=url), settings)
    assert e.value.message.startswith(f"fetching cri-o failed because {url} is unreachable; git said: fatal: unable to access '{url}/': Failed to connect")
    assert (e.value.hint or "").startswith("check the network") and f"git config --global url.<mirror-url>.insteadOf {url}" in (e.value.hint or "")
    assert "Traceback" not in str(e.value)


def test_a_path_with_no_repository_is_not_called_unreachable(upstream: Upstream, settings: Settings) -> None:
    url = "file:///nonexistent/criobuild/cri-o.git"
    with pytest.raises(SourceError) as e:
        sources.fetch_source(upstream.component(repo=url), settings)
    assert e.value.message == (
        f"fetching cri-o failed because there is no git repository at {url}; "
        "git said: fatal: '/nonexistent/criobuild/cri-o.git' does not appear to be a git repository"
    )
    assert "check components.cri-o.repo" in (e.value.hint or "") and f"url.<mirror-url>.insteadOf {url}" in (e.value.hint or "")
    assert "network" not in str(e.value)


def test_a_tag_deleted_between_listing_and_fetching_is_named_with_gits_words(upstream: Upstream, settings: Settings, isolated_git: Path, tmp_path: Path) -> None:
    """The upstream lists v1.18.2, then no longer has it when the fetch asks (a tag deleted or moved upstream, a
    mirror syncing): git's "couldn't find remote ref", not "unreachable … check the network"."""
    server = tmp_path / "upload-pack"  # the upstream's own git upload-pack, deleting the tag when asked the second time
    server.write_text(f'#!/bin/sh\nif [ -e {tmp_path}/listed ]; then git -C {upstream.path} tag -d v1.18.2 >/dev/null; fi\n'
                      f'touch {tmp_path}/listed\nexec git upload-pack "$@"\n')  # fmt: skip
    server.chmod(0o755)
    git(tmp_path, "config", "--file", str(isolated_git), "remote.origin.uploadpack", str(server))
    with pytest.raises(SourceError) as e:
        sources.fetch_source(upstream.component(tag="v1.18.2"), settings)
    assert e.value.message == (
        f"fetching cri-o from {upstream.url} failed because it does not have refs/tags/v1.18.2, refs/heads/release-1.18; "
        "git said: fatal: couldn't find remote ref refs/tags/v1.18.2"
    )
    assert (e.value.hint or "").startswith(f"`git ls-remote {upstream.url}` shows what it has now: a tag deleted or moved upstream")
    assert "network" not in str(e.value)


def test_a_commit_the_upstream_does_not_serve_is_named(upstream: Upstream, settings: Settings) -> None:
    """A submodule is fetched by the commit its superproject records: one its repository lacks is missing, not unreachable."""
    gone = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(SourceError) as e:
        sources.fetch_source(Component(name="crun//libocispec", repo=upstream.url, commit=gone, version="0"), settings)
    assert e.value.message.startswith(f"fetching crun//libocispec from {upstream.url} failed because it does not have commit {gone}; git said: ")
    assert "network" not in str(e.value)


class Answer(http.server.BaseHTTPRequestHandler):
    """An HTTP git server that answers every request with one status (401 with a Basic challenge)."""

    def do_GET(self) -> None:
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        if self.server.status == 401:  # type: ignore[attr-defined]
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("status, why, said", [
    (401, "the server asks for credentials, which criobuild never types in", "fatal: could not read Username for 'http://127.0.0.1:{port}': terminal prompts disabled"),
    (403, "the server asks for credentials, which criobuild never types in", "fatal: unable to access '{url}/': The requested URL returned error: 403"),
    (404, "there is no git repository at {url}", "fatal: repository '{url}/' not found"),
])  # fmt: skip
def test_a_server_that_refuses_is_named_by_what_it_said(upstream: Upstream, settings: Settings, status: int, why: str, said: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    server.status = status  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/cri-o.git"
    try:
        with pytest.raises(SourceError) as e:
            sources.fetch_source(upstream.component(repo=url), settings)
    finally:
        server.shutdown()
    values = {"url": url, "port": server.server_port}
    assert why.format(**values) in e.value.message and e.value.message.endswith("; git said: " + said.format(**values))
    assert "unreachable" not in e.value.message and "check the network" not in (e.value.hint or "")
    assert "components.cri-o.repo" in (e.value.hint or "")


def test_a_full_disk_under_the_clones_is_said_with_gits_words(upstream: Upstream, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        (disk / "filler").write_bytes(b"\0" * ((2 << 20) - (48 << 10)))  # 48 KiB left: not enough for a clone
        with pytest.raises(NoSpace) as e:
            sources.fetch_source(upstream.component(), settings_in(disk / "cache", tmp_path))
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert e.value.message.startswith(f"no space left on {disk}/cache/clones (") and "; git said: " in e.value.message
    assert "No space left on device" in e.value.message and "CRIOBUILD_CACHE" in (e.value.hint or "")


def test_unwritable_cache_fails_clearly(upstream: Upstream, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = settings_in(blocker / "cache", tmp_path)
    with pytest.raises(SourceError, match="creating the source cache .* failed because"):
        sources.fetch_source(upstream.component(), settings)


# --------------------------------------------------------------------------- damaged cache


def test_cache_that_is_not_a_git_repository_is_fetched_again(upstream: Upstream, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    component = upstream.component()
    cache = sources.clone_dir(component, settings)
    cache.mkdir(parents=True)
    (cache / "junk").write_text("not git")
    sources.fetch_source(component, settings)
    assert "is damaged (it is not a git repository); fetching it again" in capsys.readouterr().err
    assert git(cache, "rev-parse", f"{component.commit}^{{commit}}") == component.commit
    assert not (cache / "junk").exists()


def test_cache_that_is_a_file_is_fetched_again(upstream: Upstream, settings: Settings) -> None:
    component = upstream.component()
    cache = sources.clone_dir(component, settings)
    cache.parent.mkdir(parents=True)
    cache.write_text("not a directory")
    sources.fetch_source(component, settings)
    assert cache.is_dir()


def test_cache_with_the_wrong_remote_is_fetched_again(upstream: Upstream, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    component = upstream.component()
    sources.fetch_source(component, settings)
    cache = sources.clone_dir(component, settings)
    git(cache, "config", "remote.origin.url", "https://example.invalid/other.git")
    sources.fetch_source(component, settings)
    assert "its remote is https://example.invalid/other.git" in capsys.readouterr().err
    assert git(cache, "config", "remote.origin.url") == upstream.url


def test_corrupt_commit_object_makes_fetch_source_fetch_again(upstream: Upstream, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    component = upstream.component()
    sources.fetch_source(component, settings)
    cache = sources.clone_dir(component, settings)
    corrupt(cache, component.commit)
    capsys.readouterr()
    sources.fetch_source(component, settings)
    assert "is damaged" in capsys.readouterr().err
    subprocess.run(["git", "fsck", "--no-progress"], cwd=cache, check=True, capture_output=True)


def test_corrupt_blob_makes_checkout_fetch_again(upstream: Upstream, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    component = upstream.component()
    sources.fetch_source(component, settings)
    cache = sources.clone_dir(component, settings)
    corrupt(cache, git(cache, "rev-parse", f"{component.commit}:VERSION"))
    dest = sources.checkout(component, settings, tmp_path / "cri-o")
    assert "is damaged" in capsys.readouterr().err
    assert (dest / "VERSION").read_text() == "1.18.2\n"
    assert git(dest, "status", "--porcelain") == ""


# --------------------------------------------------------------------------- no network when unchanged


def test_second_run_with_unchanged_pin_touches_no_network(upstream: Upstream, settings: Settings, tmp_path: Path) -> None:
    component = upstream.component(tag="v1.18.1")
    sources.fetch_source(component, settings)
    upstream.path.rename(upstream.path.with_name("gone"))  # the remote is now unreachable
    sources.fetch_source(component, settings)
    dest = sources.checkout(component, settings, tmp_path / "cri-o")
    assert git(dest, "rev-parse", "HEAD") == upstream.tags["v1.18.1"]
    with pytest.raises(SourceError, match="fetching cri-o failed because there is no git repository at"):  # a new pin does need the remote
        sources.fetch_source(upstream.component(tag="v1.18.2"), settings)


def test_a_new_pin_updates_the_cache_incrementally(upstream: Upstream, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = upstream.component(tag="v1.18.2")
    sources.fetch_source(old, settings)
    cache = sources.clone_dir(old, settings)
    marker = cache / "criobuild-marker"
    marker.write_text("same clone")
    tip = upstream.move(2)
    new = upstream.component(tag=None, commit=tip)
    sources.fetch_source(new, settings)
    sources.fetch_source(old, settings)  # both pins live in the one clone
    assert marker.exists()  # updated in place, not re-cloned
    assert "damaged" not in capsys.readouterr().err
    assert git(sources.checkout(new, settings, tmp_path / "new"), "rev-parse", "HEAD") == tip


# --------------------------------------------------------------------------- air-gapped use


def test_insteadof_redirects_clones_to_a_local_mirror(upstream: Upstream, settings: Settings, tmp_path: Path, isolated_git: Path) -> None:
    github = "https://github.com/cri-o/cri-o"
    git(tmp_path, "config", "--file", str(isolated_git), f"url.{upstream.url}.insteadOf", github)
    component = upstream.component(tag="v1.18.2", repo=github)
    sources.fetch_source(component, settings)
    dest = sources.checkout(component, settings, tmp_path / "cri-o")
    assert git(dest, "rev-parse", "HEAD") == upstream.tags["v1.18.2"]
    assert git(dest, "describe", "--tags") == "v1.18.2"
    assert git(sources.clone_dir(component, settings), "config", "remote.origin.url") == github
    assert git(dest, "config", "remote.origin.url") == github


# --------------------------------------------------------------------------- concurrency


def test_two_threads_fetching_the_same_upstream_share_one_clone(upstream: Upstream, settings: Settings, tmp_path: Path) -> None:
    components = [upstream.component(tag="v1.18.1"), upstream.component(tag="v1.18.2")]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            sources.fetch_source(components[i], settings)
            sources.checkout(components[i], settings, tmp_path / f"work-{i}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i, c in enumerate(components):
        assert git(tmp_path / f"work-{i}", "rev-parse", "HEAD") == c.commit
    cache = sources.clone_dir(components[0], settings)
    subprocess.run(["git", "fsck", "--no-progress"], cwd=cache, check=True, capture_output=True)
    assert [p.name for p in settings.clones.iterdir() if not p.name.endswith(".lock")] == [cache.name]


# --------------------------------------------------------------------------- doit tasks


def make_recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipes" / "crio-1.18.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fixture_recipe_text(upstream: Upstream, cri_o_tag: str = "v1.18.0") -> str:
    """The real crio-1.18 recipe, with cri-o pinned to a fixture tag and cri-tools following a branch."""
    text = (REPO_ROOT / "recipes" / "crio-1.18.toml").read_text()
    real = load_recipe(REPO_ROOT / "recipes" / "crio-1.18.toml")
    text = text.replace(f'tag = "{real.crio.tag}"\ncommit = "{real.crio.commit}"',
                        f'tag = "{cri_o_tag}"\ncommit = "{upstream.tags[cri_o_tag]}"')
    tools = real.components["cri-tools"]
    text = text.replace(f'tag = "{tools.tag}"\ncommit = "{tools.commit}"',
                        f'branch = "side"   # follows a branch\nversion = "1.18.0"\ncommit = "{upstream.tags["v1.18.1"]}"  # keep me')
    return text


def redirect_github(isolated_git: Path, upstream: Upstream) -> None:
    for repo in ("https://github.com/cri-o/cri-o", "https://github.com/kubernetes-sigs/cri-tools"):
        subprocess.run(["git", "config", "--file", str(isolated_git), "--add", f"url.{upstream.url}.insteadOf", repo], check=True)


def test_source_task_writes_a_stamp_that_moves_with_the_pin(upstream: Upstream, settings: Settings, tmp_path: Path, isolated_git: Path) -> None:
    redirect_github(isolated_git, upstream)
    recipe = load_recipe(make_recipe(tmp_path, fixture_recipe_text(upstream)))
    task = sources.source_task(recipe, "cri-o", settings)
    stamp = settings.artifacts / "crio-1.18" / ".stamps" / "source-cri-o"
    assert task["name"] == "crio-1.18:cri-o"
    assert task["targets"] == [str(stamp)]
    assert "doc" in task and len(task["uptodate"]) == 1
    action, args = task["actions"][0]
    assert action(*args) is None
    assert stamp.read_text() == f"repo https://github.com/cri-o/cri-o\nref v1.18.0\ncommit {upstream.tags['v1.18.0']}\n"


def test_source_task_failure_is_a_clean_doit_failure(upstream: Upstream, settings: Settings, tmp_path: Path) -> None:
    recipe = load_recipe(make_recipe(tmp_path, fixture_recipe_text(upstream)))  # github unreachable: no redirect
    action, args = sources.source_task(recipe, "cri-o", settings)["actions"][0]
    result = action(*args)
    assert isinstance(result, TaskFailed)
    assert "https://github.com/cri-o/cri-o is unreachable" in str(result)


# --------------------------------------------------------------------------- pin updates


def test_newest_patch_tag_sorts_versions_and_ignores_release_candidates() -> None:
    tags = ["v1.18.2", "v1.18.10", "v1.18.9", "v1.18.11-rc.1", "v1.19.0", "v1.18.x", "1.18.12"]
    assert sources.newest_patch_tag(tags, "1.18") == "v1.18.10"
    assert sources.newest_patch_tag(tags, "1.20") is None


def test_update_pins_rewrites_exactly_the_pin_lines(upstream: Upstream, settings: Settings, tmp_path: Path, isolated_git: Path) -> None:
    redirect_github(isolated_git, upstream)
    before = fixture_recipe_text(upstream)
    path = make_recipe(tmp_path, before)
    side_tip = git(upstream.path, "rev-parse", "side")

    changes = sources.update_pins(path, settings)

    after = path.read_text()
    v0, v2 = upstream.tags["v1.18.0"], upstream.tags["v1.18.2"]
    assert changes == [
        f"cri-o: v1.18.0 ({v0[:7]}) -> v1.18.2 ({v2[:7]})",
        f"cri-tools: side ({upstream.tags['v1.18.1'][:7]}) -> side ({side_tip[:7]})",
    ]
    diff = [ln for ln in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert diff == [
        '-tag = "v1.18.0"', f'-commit = "{v0}"', '+tag = "v1.18.2"', f'+commit = "{v2}"',
        f'-commit = "{upstream.tags["v1.18.1"]}"  # keep me', f'+commit = "{side_tip}"  # keep me',
    ]
    recipe = load_recipe(path)
    assert (recipe.crio.tag, recipe.crio.commit, recipe.crio.version) == ("v1.18.2", v2, "1.18.2")
    assert [p.name for p in path.parent.iterdir()] == ["crio-1.18.toml"]  # no temp files left

    assert sources.update_pins(path, settings) == []  # already newest: untouched
    assert path.read_text() == after


def test_update_pins_also_moves_an_explicit_version_and_keeps_quoted_headers(upstream: Upstream, settings: Settings, tmp_path: Path, isolated_git: Path) -> None:
    redirect_github(isolated_git, upstream)
    text = fixture_recipe_text(upstream).replace("[components.cri-o]", '[components."cri-o"]  # the runtime')
    text = text.replace('tag = "v1.18.0"\n', 'tag = "v1.18.0"\nversion = "1.18.0"   # as released\n', 1)
    path = make_recipe(tmp_path, text)
    sources.update_pins(path, settings)
    after = path.read_text()
    assert 'version = "1.18.2"   # as released\n' in after
    assert '[components."cri-o"]  # the runtime\n' in after


def test_update_pins_follows_a_moved_branch(upstream: Upstream, settings: Settings, tmp_path: Path, isolated_git: Path, capsys: pytest.CaptureFixture[str]) -> None:
    redirect_github(isolated_git, upstream)
    path = make_recipe(tmp_path, fixture_recipe_text(upstream, cri_o_tag="v1.18.2"))
    changes = sources.update_pins(path, settings)
    assert [c.split(":")[0] for c in changes] == ["cri-tools"]  # cri-o already at the newest patch tag
    assert "release-1.18 has moved 3 commits past the pin v1.18.2" in capsys.readouterr().err


def test_update_pins_unreachable_leaves_the_recipe_alone(upstream: Upstream, settings: Settings, tmp_path: Path) -> None:
    text = fixture_recipe_text(upstream)
    path = make_recipe(tmp_path, text)
    with pytest.raises(SourceError, match="unreachable"):
        sources.update_pins(path, settings)
    assert path.read_text() == text


def test_pin_task_reports_changes(upstream: Upstream, settings: Settings, tmp_path: Path, isolated_git: Path, capsys: pytest.CaptureFixture[str]) -> None:
    redirect_github(isolated_git, upstream)
    recipe = load_recipe(make_recipe(tmp_path, fixture_recipe_text(upstream)))
    task = sources.pin_task(recipe, settings)
    assert task["name"] == "crio-1.18" and task["uptodate"] == [False]
    assert task["actions"][0]() is None
    err = capsys.readouterr().err
    assert "crio-1.18: cri-o: v1.18.0" in err and "review with: git diff" in err


# --------------------------------------------------------------------------- the shared fixture upstreams


def test_cri_o_fixture_upstream_builds_at_its_pin_and_says_clean(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> None:
    """cri-o's Makefile embeds `git rev-parse HEAD` and the tree state: `crio version` must show the pin, clean."""
    try:
        upstreams = request.getfixturevalue("upstreams")
    except pytest.FixtureLookupError:
        pytest.skip("tests/fixtures/upstreams.py has no `upstreams` fixture yet")
    cri_o = upstreams["cri-o"]
    pin = cri_o.tags["v1.18.1"]
    component = Component(name="cri-o", repo=cri_o.url, commit=pin, version="1.18.1", branch=cri_o.branch, tag="v1.18.1")
    sources.fetch_source(component, settings)
    dest = sources.checkout(component, settings, tmp_path / "cri-o")
    assert git(dest, "describe", "--tags", "--dirty") == "v1.18.1"
    if shutil.which("go") is None or shutil.which("make") is None:
        pytest.skip("no go or make here: checked the git metadata only")
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "", "GOPATH": str(tmp_path / "gopath"), "GOCACHE": str(tmp_path / "gocache")}
    subprocess.run(["make", "bin/crio"], cwd=dest, env=env, check=True, capture_output=True)
    out = subprocess.run([str(dest / "bin" / "crio"), "version"], check=True, capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    assert {k: v.strip() for k, v in fields.items() if k in ("Version", "GitCommit", "GitTreeState")} == {
        "Version": "1.18.1", "GitCommit": pin, "GitTreeState": "clean",
    }


# --------------------------------------------------------------------------- recipe patches


def make_patch(path: Path, old: str, new: str, file: str = "VERSION") -> Path:
    path.write_text(f"--- a/{file}\n+++ b/{file}\n@@ -1 +1 @@\n-{old}\n+{new}\n")
    return path


def test_a_recipes_patches_apply_in_order_to_the_pinned_checkout(upstream: Upstream, settings: Settings, tmp_path: Path) -> None:
    from dataclasses import replace

    from builders.recipe import Patch

    first = make_patch(tmp_path / "0001-version.patch", "1.18.2", "1.18.2+pi")
    second = make_patch(tmp_path / "0002-again.patch", "1.18.2+pi", "1.18.2+pi.2")
    component = replace(upstream.component(tag="v1.18.2"), patches=(Patch(path=first, sha256="a" * 64), Patch(path=second, sha256="b" * 64)))
    dest = sources.checkout(component, settings, tmp_path / "work" / "cri-o")
    sources.apply_patches(component, dest)
    assert (dest / "VERSION").read_text() == "1.18.2+pi.2\n"
    assert git(dest, "rev-parse", "HEAD") == upstream.tags["v1.18.2"]  # the pin, patched on top


def test_a_patch_that_does_not_apply_is_named_with_gits_words(upstream: Upstream, settings: Settings, tmp_path: Path) -> None:
    from dataclasses import replace

    from builders.recipe import Patch

    stale = make_patch(tmp_path / "0001-stale.patch", "1.17.9", "1.17.9+pi")
    component = replace(upstream.component(tag="v1.18.2"), patches=(Patch(path=stale, sha256="c" * 64),))
    dest = sources.checkout(component, settings, tmp_path / "work" / "cri-o")
    with pytest.raises(SourceError) as info:
        sources.apply_patches(component, dest)
    text = str(info.value)
    assert "0001-stale.patch does not apply to cri-o 1.18.2" in text
    assert "error: patch failed: VERSION:1" in text  # git apply's own words
    assert f"hint: refresh {stale} against the pinned commit" in text


def test_a_recipe_names_its_patches_under_its_patches_directory(tmp_path: Path) -> None:
    from builders.errors import RecipeError
    from builders.recipe import load_recipe

    text = (REPO_ROOT / "recipes" / "crio-1.36.toml").read_text().replace(
        '[components.runc]\n', '[components.runc]\npatches = ["runc/0001-armhf.patch"]\n')
    (tmp_path / "crio-1.36.toml").write_text(text)
    with pytest.raises(RecipeError, match=r"key 'components.runc.patches' names 'runc/0001-armhf.patch', which is no file under"):
        load_recipe(tmp_path / "crio-1.36.toml")
    (tmp_path / "patches" / "runc").mkdir(parents=True)
    (tmp_path / "patches" / "runc" / "0001-armhf.patch").write_text("--- a/x\n+++ b/x\n")
    recipe = load_recipe(tmp_path / "crio-1.36.toml")
    (patch,) = recipe.components["runc"].patches
    assert patch.path.name == "0001-armhf.patch" and len(patch.sha256) == 64
