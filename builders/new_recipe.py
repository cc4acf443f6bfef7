"""`doit new:<minor>`: a recipe for a CRI-O minor, read from its upstreams and never guessed.

cri-o: the newest vX.Y.Z tag of the minor, else the tip of release-X.Y as X.Y.0-dev. Go: go.mod's
`go`/`toolchain` line (or a companion's, where that asks for more), then the newest patch of that Go minor
in go.dev's JSON listing (or CRIOBUILD_GO_MIRROR's), with the sha256 of each tarball a build can fetch. The companions: the first file
of cri-o's tree that names a release tag of theirs (each module's `named_in`), the tag's commit from their
repository. The pause image from cri-o's tree. Each pin's comment names where it was read
(repository@commit:path). What cannot be found is listed, all of it, and nothing is written.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import re
import tomllib
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from packaging.version import Version

from .arch import Arch
from .components import UPSTREAMS, upstream
from .components import cri_o as crio_module
from .errors import BuildError, RecipeError
from .go_toolchain import OFFICIAL_DOWNLOADS
from .files import temporary_dir, write_atomically
from .recipe import Component, build_recipe, check_go_pins_agree, check_keys, load_recipe
from .settings import Settings
from .sources import fetch, fetch_failed, git_ok, newest_patch_tag, remote_refs, run_git
from .actions import as_action
from .view import say

LISTING = "/?mode=json&include=all"  # go.dev/dl's JSON listing of every release and its files
GO_LINE_RE = re.compile(r"^go\s+(\d+\.\d+(?:\.\d+)?)\s*$", re.M)
TOOLCHAIN_LINE_RE = re.compile(r"^toolchain\s+go(\d+\.\d+(?:\.\d+)?)\s*$", re.M)
STABLE_GO_RE = re.compile(r"^go(\d+\.\d+)(?:\.(\d+))?$")


class NotFound(Exception):
    """One thing `doit new` could not find, and where it looked (collected, then reported together)."""


@dataclass(frozen=True)
class Pin:
    tag: str
    commit: str
    comment: str  # where it was read


@dataclass(frozen=True)
class GoPin:
    version: str
    sha256: dict[Arch, str]
    comment: str


@dataclass(frozen=True)
class SourceTree:
    """An upstream's tree at the commit the new recipe pins (cri-o's, or a companion's)."""

    pin: Component
    git_dir: Path

    def where(self, path: str) -> str:
        return f"{repo_name(self.pin.repo)}@{self.pin.commit}:{path}"

    def read(self, path: str) -> str | None:
        """The file at the pinned commit, None if the tree has none (its blob is fetched now: a partial clone)."""
        if not run_git("ls-tree", self.pin.commit, "--", path, git_dir=self.git_dir)[1].strip():
            return None
        status, out, err = run_git("show", f"{self.pin.commit}:{path}", git_dir=self.git_dir)
        if status != 0:
            raise fetch_failed(self.pin, err, f"{path} at {self.pin.commit}")
        return out

    def find(self, path: str, pattern: re.Pattern[str], what: str) -> str:
        text = self.read(path)
        if text is None:
            raise NotFound(f"{what}: {self.where(path)} does not exist")
        match = pattern.search(text)
        if not match:
            raise NotFound(f"{what}: {self.where(path)} has no line matching {pattern.pattern!r}")
        return match[1]


def repo_name(repo: str) -> str:
    return repo.removeprefix("https://github.com/").removesuffix(".git")


# --------------------------------------------------------------------------- cri-o


def recipe_path(minor: str, settings: Settings, replace: bool) -> Path:
    path = settings.recipes / f"crio-{minor}.toml"
    if path.exists() and not replace:
        raise RecipeError(
            f"writing {path} failed because it exists already (doit new does not overwrite a recipe)",
            hint=f"`doit pin:crio-{minor}` moves it to the newest patch release; `doit new:{minor} --replace` writes it again from upstream and shows the diff",
        )
    return path


def find_crio(minor: str) -> Component:
    """The newest vX.Y.Z tag of minor, else the tip of release-X.Y."""
    repo, branch = upstream("cri-o").repo, f"release-{minor}"
    refs = remote_refs(Component(name="cri-o", repo=repo, commit="0" * 40, version="0"))
    tag = newest_patch_tag([r.removeprefix("refs/tags/") for r in refs if r.startswith("refs/tags/")], minor)
    on_branch = branch if f"refs/heads/{branch}" in refs else None
    if tag is None and on_branch is None:
        branches = sorted((r.removeprefix("refs/heads/") for r in refs if r.startswith("refs/heads/release-")), key=lambda b: [int(d) for d in re.findall(r"\d+", b)])
        raise RecipeError(
            f"writing crio-{minor}.toml failed because {repo} has neither a v{minor}.Z tag nor a {branch} branch",
            hint=f"its newest release branches: {', '.join(branches[-3:]) or 'none'}; a minor gets its recipe once it is branched",
        )
    commit = refs[f"refs/tags/{tag}"] if tag else refs[f"refs/heads/{branch}"]
    return Component(name="cri-o", repo=repo, commit=commit, version=tag[1:] if tag else f"{minor}.0-dev", tag=tag, branch=on_branch)


@contextlib.contextmanager
def source_tree(pin: Component, settings: Settings) -> Iterator[SourceTree]:
    """The tree at pin in a throwaway partial clone: its trees now, a file's blob when it is read
    (a few hundred KiB, where the builds' clone cache holds all of cri-o)."""
    with temporary_dir(settings.cache, "new-recipe") as git_dir:
        git_ok("init", "--quiet", "--bare", str(git_dir))
        git_ok("remote", "add", "origin", pin.repo, git_dir=git_dir)
        fetch(git_dir, pin, "--depth=1", "--filter=blob:none", "origin", pin.commit)
        yield SourceTree(pin, git_dir)


def dev_version(tree: SourceTree, minor: str) -> tuple[str, str]:
    """An untagged branch's version, X.Y.Z-dev, from the version cri-o's tree states; and where it says so."""
    path, pattern = crio_module.UPSTREAM.version_source
    stated = tree.find(path, pattern, "cri-o's version")
    if not stated.startswith(f"{minor}."):
        raise NotFound(f"cri-o's version: {tree.where(path)} says {stated}, not a {minor}.Z version")
    return (stated if "-" in stated else f"{stated}-dev"), f"{tree.where(path)} says {stated}"


# --------------------------------------------------------------------------- Go


def go_minimum(tree: SourceTree) -> tuple[str, str]:
    """The Go go.mod asks for (the higher of its `go` and `toolchain` lines) and how go.mod says it."""
    text = tree.read("go.mod")
    if text is None:
        raise NotFound(f"Go: {tree.where('go.mod')} does not exist")
    lines = [(m[1], f"go {m[1]}") for m in GO_LINE_RE.finditer(text)] + [(m[1], f"toolchain go{m[1]}") for m in TOOLCHAIN_LINE_RE.finditer(text)]
    if not lines:
        raise NotFound(f"Go: {tree.where('go.mod')} has no `go` or `toolchain` line")
    version, said = max(lines, key=lambda line: Version(line[0]))
    return version, said


def listing_url(settings: Settings) -> str:
    return (settings.go_mirror or OFFICIAL_DOWNLOADS).rstrip("/") + LISTING


def go_listing(settings: Settings) -> list[dict[str, Any]]:
    url = listing_url(settings)
    setting = f"CRIOBUILD_GO_MIRROR={settings.go_mirror}" if settings.go_mirror else "CRIOBUILD_GO_MIRROR is unset"
    try:
        response = requests.get(url, timeout=(settings.http_timeout, settings.http_timeout))
    except requests.RequestException as e:
        raise NotFound(f"Go: {url} could not be read ({type(e).__name__}; {setting})") from None
    if response.status_code != 200:
        raise NotFound(f"Go: {url} answered {response.status_code} {response.reason} ({setting})")
    try:
        releases = json.loads(response.text)
    except json.JSONDecodeError:
        releases = None
    if not isinstance(releases, list) or not all(isinstance(r, dict) and "version" in r for r in releases):
        raise NotFound(f"Go: {url} is not go.dev's JSON listing (a list of releases with their files; {setting})")
    return releases


def go_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def newest_go(releases: list[dict[str, Any]], minimum: str) -> dict[str, Any] | None:
    """The newest stable patch release of minimum's Go minor, if it is at least minimum."""
    minor = go_minor(minimum)
    stable = [r for r in releases if r.get("stable") and (m := STABLE_GO_RE.match(str(r["version"]))) and m[1] == minor]
    newest = max(stable, key=lambda r: Version(r["version"][2:]), default=None)
    return newest if newest and Version(newest["version"][2:]) >= Version(minimum) else None


def companion_go(name: str, pin: Pin, settings: Settings) -> tuple[str, str] | None:
    """The Go a companion's go.mod asks for at its pin, and where it says so; None for one without a go.mod (C)."""
    component = Component(name=name, repo=upstream(name).repo, commit=pin.commit, version=pin.tag, tag=pin.tag)
    with source_tree(component, settings) as tree:
        if tree.read("go.mod") is None:
            return None
        version, said = go_minimum(tree)
        return version, f"{tree.where('go.mod')} says `{said}`"


def go_pin(tree: SourceTree, settings: Settings, companions: tuple[tuple[str, str], ...] = ()) -> GoPin:
    """The newest patch of the Go minor cri-o's go.mod asks for, or a companion's where that one asks for more
    (GOTOOLCHAIN=local: an older Go refuses its go.mod)."""
    minimum, said = go_minimum(tree)
    where = f"{tree.where('go.mod')} says `{said}`"
    for version, asked in companions:
        if Version(version) > Version(minimum):
            minimum, where = version, f"{asked}, more than cri-o's go.mod (`{said}`)"
    url = listing_url(settings)
    release = newest_go(go_listing(settings), minimum)
    if release is None:
        raise NotFound(f"Go: {url} lists no stable Go {go_minor(minimum)} release of at least {minimum} ({where})")
    version = release["version"][2:]
    files = {f.get("filename"): f for f in release.get("files", []) if isinstance(f, dict)}
    sha256 = {}
    for arch in Arch:
        name = f"go{version}.linux-{arch.go_tarball()}.tar.gz"
        digest = str(files.get(name, {}).get("sha256", ""))
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise NotFound(f"Go: {url} lists no sha256 for {name} (Go {version}, for {arch})")
        sha256[arch] = digest
    return GoPin(version, sha256, f"{where}: the newest Go {go_minor(minimum)} patch in {url}")


# --------------------------------------------------------------------------- companions


def named_value(text: str, path: str, key: str) -> str | None:
    """key's value in one of cri-o's version files: a YAML `key: value` or scripts/versions' `["key"]=value`."""
    if path.endswith((".yml", ".yaml")):
        pattern = rf"^\s*{re.escape(key)}:\s*[\"']?([^\s\"'#]+)"
    else:
        pattern = rf"\[\"?{re.escape(key)}\"?\]=[\"']?([^\s\"')]+)"
    match = re.search(pattern, text, re.M)
    return match[1] if match else None


def companion_pin(name: str, tree: SourceTree) -> Pin:
    """The first release tag cri-o's files name for this companion (others that disagree noted)."""
    repo = upstream(name).repo
    refs = remote_refs(Component(name=name, repo=repo, commit="0" * 40, version="0"))
    found: list[tuple[str, str]] = []
    looked: list[str] = []
    for path, key in upstream(name).named_in:
        text = tree.read(path)
        value = named_value(text, path, key) if text is not None else None
        if value is None:
            looked.append(f"{tree.where(path)} ({'no such file' if text is None else f'no {key} in it'})")
        elif f"refs/tags/{value}" not in refs:
            looked.append(f"{tree.where(path)} (says {key} {value}, which is {'a branch' if f'refs/heads/{value}' in refs else 'no tag'} of {repo})")
        else:
            found.append((value, tree.where(path)))
    if not found:
        raise NotFound(f"{name}'s release: looked in " + "; ".join(looked))
    tag, source = found[0]
    others = [f"{where.rsplit(':', 1)[1]} says {value}" for value, where in found[1:] if value != tag]
    return Pin(tag, refs[f"refs/tags/{tag}"], source + (f" ({'; '.join(others)})" if others else ""))


def wanted_companions(crio_version: str) -> list[str]:
    """Every required companion, and the OCI runtimes cri-o's era names (crun from 1.31)."""
    runtimes = crio_module.ERAS.at(crio_version).runtimes
    return [n for n, u in UPSTREAMS.items() if n != "cri-o" and (u.required or n in runtimes)]


# --------------------------------------------------------------------------- the recipe


def toml_list(values: dict[Arch, str]) -> str:
    return "{ " + ", ".join(f'{arch} = "{digest}"' for arch, digest in values.items()) + " }"


def recipe_text(minor: str, tree: SourceTree, go: GoPin, pause: tuple[str, str], companions: dict[str, Pin], dev: tuple[str, str] | None) -> str:
    crio = tree.pin
    lines = [
        f"# CRI-O {minor}, written by `doit new:{minor}`: each pin names where it was read (repository@commit:path).",
        f"# `doit pin:crio-{minor}` moves cri-o to its newest patch release; review the diff.",
        "schema = 1", "",
        "[go]", f"# {go.comment}", f'version = "{go.version}"', f"sha256 = {toml_list(go.sha256)}", "",
        "[config]", 'cgroup_manager = "systemd"', f"# {pause[1]}", f'pause_image = "{pause[0]}"', "",
        "[components.cri-o]", f"# the newest v{minor}.Z tag of {crio.repo}, else the tip of release-{minor}",
        f'repo = "{crio.repo}"',
    ]  # fmt: skip
    lines += [f'branch = "{crio.branch}"'] if crio.branch else []
    lines += [f'tag = "{crio.tag}"'] if crio.tag else []
    if dev:
        lines.append(f'version = "{dev[0]}"  # no v{minor}.Z tag yet: a snapshot of release-{minor} sorting below {minor}.0 ({dev[1]})')
    lines += [f'commit = "{crio.commit}"', *upstream("cri-o").new_pin_lines(crio.version)]
    for name, pin in companions.items():
        lines += ["", f"[components.{name}]", f"# {pin.comment}", f'repo = "{upstream(name).repo}"', f'tag = "{pin.tag}"', f'commit = "{pin.commit}"']
        lines += upstream(name).new_pin_lines(pin.tag)
    return "\n".join(lines) + "\n"


def attempt(problems: list[str], find: Any, *args: Any) -> Any:
    """find(*args), or None with what it could not find added to problems."""
    try:
        return find(*args)
    except (NotFound, BuildError) as e:
        problems.append(str(e))
        return None


def write_new_recipe(minor: str, settings: Settings, replace: bool = False) -> tuple[Path, str | None]:
    """Write <recipes>/crio-<minor>.toml from upstream (minor is X.Y: dodo checked it, tasks.requested_minors);
    returns its path and what it held before (--replace)."""
    path = recipe_path(minor, settings, replace)
    with source_tree(find_crio(minor), settings) as tree:
        text = read_recipe(minor, tree, settings, path)
    old = path.read_text() if path.exists() else None
    check_new_recipe(path, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)
    return path, old


def read_recipe(minor: str, tree: SourceTree, settings: Settings, path: Path) -> str:
    """The new recipe's text, or a RecipeError listing everything that could not be found."""
    problems: list[str] = []
    dev = attempt(problems, dev_version, tree, minor) if not tree.pin.tag else None
    path_, pattern = crio_module.UPSTREAM.pause_image_source
    image = attempt(problems, tree.find, path_, pattern, "the pause image")
    companions = {name: attempt(problems, companion_pin, name, tree) for name in wanted_companions(dev[0] if dev else tree.pin.version)}
    their_go = [attempt(problems, companion_go, name, pin, settings) for name, pin in companions.items() if pin]
    go = attempt(problems, go_pin, tree, settings, tuple(g for g in their_go if g))
    if problems:
        raise RecipeError(
            f"writing {path} failed because these could not be found:\n" + "\n".join(f"  - {p}" for p in problems),
            hint="nothing was written; a pin that upstream does not name is a decision for a person: write the recipe by hand (see recipes/)",
        )
    return recipe_text(minor, tree, go, (image, tree.where(path_)), companions, dev)


def check_new_recipe(path: Path, text: str) -> None:
    """What the tool's own loader says of it, and of its Go pins beside the other recipes'."""
    data = tomllib.loads(text)
    check_keys(path, data, "")
    recipe = build_recipe(path, data)
    others = [load_recipe(p) for p in sorted(path.parent.glob("crio-*.toml")) if p != path]
    check_go_pins_agree([*others, recipe])


def new_task(minor: str, settings: Settings) -> dict[str, Any]:
    """doit task `new:<minor>`: write the recipe; with --replace, write an existing one again and show the diff."""

    def new(replace: bool) -> None:
        path, old = write_new_recipe(minor, settings, replace)
        text = path.read_text()
        if old is None:
            say(f"wrote {path}: review it, then `doit build:crio-{minor}`")
        elif old == text:
            say(f"{path}: unchanged")
        else:
            say(f"rewrote {path}; what changed:")
            for line in difflib.unified_diff(old.splitlines(), text.splitlines(), "before", "after", lineterm="", n=0):
                say(f"  {line}")

    return {
        "name": minor,
        "doc": f"write crio-{minor}.toml from cri-o's release-{minor} (or newest tag), its go.mod and its companions' files",
        "actions": [as_action(new)],
        "params": [{"name": "replace", "long": "replace", "type": bool, "default": False, "help": "write it again over an existing recipe (shows the diff)"}],
        "uptodate": [False],
        "verbosity": 2,
    }


__all__ = ["named_value", "new_task", "newest_go", "write_new_recipe"]
