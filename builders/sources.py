"""Sources: one cached clone per upstream, each build from a clean checkout of exactly the pinned commit.

Every git operation runs the git CLI (run_git), so the user's git configuration applies:
`url.<mirror>.insteadOf <upstream>` redirects clones to a mirror or a `file://` copy without any code here
knowing about it.

Cache layout (shared by every recipe): `<CRIOBUILD_CACHE>/clones/<host_path>-<hash>.git` is a bare,
usually shallow repository whose `origin` is the upstream URL. Tags are fetched to `refs/tags/<tag>`,
branches to `refs/remotes/origin/<branch>`. A `<clone>.lock` file next to it serialises writers.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from doit.tools import config_changed
from packaging.version import InvalidVersion, Version

from .errors import NoSpace, RecipeError, SourceError, no_space
from .files import file_atomically, locked, swap_into_place, temp_dir, write_atomically
from .lifecycle import PARTIAL, leftover, no_space_error, remove, temp_prefix
from .recipe import Component, Recipe, load_recipe
from .settings import Settings
from .actions import as_action, logged_actions, step_log
from .view import say

# Fetch depths: a first shallow fetch, then deepen steps until the pin is proven on its branch.
FIRST_DEPTH = 50
DEEPEN_STEPS = ("--deepen=500", "--deepen=5000", "--unshallow")
# Words in git's stderr that mean the local object store, not the network, is at fault.
CORRUPTION_MARKERS = (
    "corrupt", "inflate", "unable to unpack", "bad object", "missing blob", "missing tree",
    "missing commit", "broken link", "not a git repository", "unable to read", "invalid object",
    "did not send all necessary objects", "loose object", "packfile", "index-pack failed",
)
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0"}


class CacheDamaged(Exception):
    """The cached clone cannot be trusted; it is fetched again (internal, never shown to users)."""


def short(commit: str) -> str:
    return commit[:7]


# --------------------------------------------------------------------------- git plumbing


class GitFailed(Exception):
    """A git command that had to succeed did not (a bug unless the caller says why to the user)."""

    def __init__(self, args: tuple[str, ...], status: int, stderr: str) -> None:
        super().__init__(f"`git {' '.join(args)}` returned {status}: {stderr}")
        self.stderr = stderr


def run_git(*args: str, git_dir: Path | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run git; return (status, stdout, stderr), each without its last newline. Never prompts for credentials;
    git speaks English (LC_ALL=C) because its messages are read (looks_corrupt, last_line)."""
    command = ["git", *([f"--git-dir={git_dir}"] if git_dir is not None else []), *args]
    result = subprocess.run(
        command, cwd=cwd, env={**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **GIT_ENV}, stdin=subprocess.DEVNULL,
        capture_output=True, encoding=sys.getfilesystemencoding(), errors="surrogateescape",
    )
    return result.returncode, result.stdout.removesuffix("\n"), result.stderr.removesuffix("\n")


def git_ok(*args: str, git_dir: Path | None = None, cwd: Path | None = None) -> str:
    """Run git, raising GitFailed on failure; return stripped stdout."""
    status, out, err = run_git(*args, git_dir=git_dir, cwd=cwd)
    if status != 0:
        check_space(err, git_dir or cwd or Path(args[-1]).parent)
        raise GitFailed(args, status, err)
    return out.strip()


def looks_corrupt(stderr: str) -> bool:
    """Words of a damaged object store. A full disk says some of the same ("unable to write", "index-pack
    failed") and is refused first (check_space): a healthy clone is never thrown away for it."""
    text = stderr.lower()
    return any(marker in text for marker in CORRUPTION_MARKERS)


def last_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return (fatal or lines or ["git gave no reason"])[-1]


def remote_refs(component: Component, git_dir: Path | None = None) -> dict[str, str]:
    """Branches and tags of the upstream (tags peeled to commits): ref name -> commit.

    Uses the cache's `origin` when git_dir is given, else the URL itself; either way insteadOf applies.
    """
    where = "origin" if git_dir is not None else component.repo
    status, out, err = run_git("ls-remote", "--heads", "--tags", where, git_dir=git_dir)
    if status != 0:
        raise fetch_failed(component, err)
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.endswith("^{}"):
            refs[ref[:-3]] = sha  # the peeled commit wins over the tag object
        else:
            refs.setdefault(ref, sha)
    return refs


def check_space(stderr: str, where: Path) -> None:
    """Raise NoSpace when git says the disk is full, quoting it."""
    if no_space(Exception(stderr)):
        error = no_space_error([where])
        raise NoSpace(f"{error.message}; git said: {last_line(stderr)}", hint=error.hint)


# Why git could not list or fetch, by its words: the first cause one of its lines names decides the message and
# the hint, and that line of git's is quoted (else its last). A full disk is refused before, by check_space.
FETCH_FAILURES = (
    ("missing", ("couldn't find remote ref", "not our ref", "no such remote ref", "unadvertised object")),
    ("credentials", ("could not read Username", "could not read Password", "terminal prompts disabled", "Authentication failed",
                     "HTTP Basic: Access denied", "Permission denied (publickey", "returned error: 401", "returned error: 403")),
    ("no repository", ("does not appear to be a git repository", "' not found", "Repository not found", "returned error: 404")),
    ("unreachable", ("Could not resolve host", "Temporary failure in name resolution", "Failed to connect", "Connection refused",
                     "Connection timed out", "Connection reset", "Network is unreachable", "No route to host", "timed out",
                     "Could not read from remote repository")),
)  # fmt: skip
# cause -> (what failed because why, the hint), filled with name, repo, wanted and insteadof.
FETCH_MESSAGES = {
    "missing": (
        "fetching {name} from {repo} failed because it does not have {wanted}",
        "`git ls-remote {repo}` shows what it has now: a tag deleted or moved upstream (or a mirror that is not in sync) "
        "needs a new pin (`doit pin:<recipe>`, or components.{name}.tag and .commit)",
    ),
    "credentials": (
        "fetching {name} from {repo} failed because the server asks for credentials, which criobuild never types in",
        "the upstreams are public, and GitHub asks so for a repository that does not exist: check components.{name}.repo; "
        "a private mirror needs a git credential helper (git config --global credential.helper …)",
    ),
    "no repository": (
        "fetching {name} failed because there is no git repository at {repo}",
        "check components.{name}.repo, and where a url.<mirror>.insteadOf rule sends it (`git config --get-regexp insteadof`): {insteadof}",
    ),
    "unreachable": ("fetching {name} failed because {repo} is unreachable", "check the network, or point git at a mirror or a local copy: {insteadof}"),
    "other": ("fetching {name} from {repo} failed", "git's own words are the reason: check the upstream or the mirror at {repo}"),
}  # fmt: skip


def fetch_failed(component: Component, stderr: str, wanted: str = "") -> SourceError:
    """A failed `git ls-remote` or `git fetch` of component, explained by what git said (wanted: the refs asked for)."""
    found = ((cause, line) for cause, words in FETCH_FAILURES for line in lines_of(stderr) if any(w in line for w in words))
    cause, said = next(found, ("other", last_line(stderr)))
    why, hint = FETCH_MESSAGES[cause]
    values = {"name": component.name, "repo": component.repo, "wanted": wanted or "what was asked for",
              "insteadof": f"git config --global url.<mirror-url>.insteadOf {component.repo}"}  # fmt: skip
    return SourceError(f"{why.format(**values)}; git said: {said}", hint=hint.format(**values))


def lines_of(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.strip()]


def wanted_refs(args: tuple[str, ...]) -> str:
    """What a `git fetch … origin <refspec|commit>…` asks for, as a person reads it."""
    asked = [a.lstrip("+").split(":", 1)[0] for a in args[args.index("origin") + 1 :]] if "origin" in args else []
    return ", ".join(f"commit {a}" if re.fullmatch(r"[0-9a-f]{40}", a) else a for a in asked)


# --------------------------------------------------------------------------- cache


def clone_dir(component: Component, settings: Settings) -> Path:
    """The cached clone of component's upstream, keyed by repo URL and shared by every recipe."""
    url = component.repo.rstrip("/")
    stem = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", url)
    stem = re.sub(r"^[^@/]*@", "", stem).removesuffix(".git")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[-80:] or "repo"
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return settings.clones / f"{slug}-{digest}.git"


def clone_lock(path: Path, *, shared: bool = False) -> contextlib.AbstractContextManager[None]:
    """Hold `<path>.lock`: exclusive for writers, shared for readers. A cache that cannot be made is the user's
    to fix (a SourceError), not a bug."""
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()
    except OSError as e:
        raise SourceError(
            f"creating the source cache {path.parent} failed because {e.strerror or e}",
            hint="set CRIOBUILD_CACHE to a writable directory",
        ) from None
    return locked(lock, shared=shared)


def damage(path: Path, component: Component) -> str | None:
    """Why the cached clone at path cannot be trusted, or None (healthy, or simply absent)."""
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_dir():
        return "it is not a directory"
    status, out, _ = run_git("rev-parse", "--is-bare-repository", git_dir=path)
    if status != 0 or out.strip() != "true":
        return "it is not a git repository"
    status, url, _ = run_git("config", "--get", "remote.origin.url", git_dir=path)
    if status != 0 or url.strip() != component.repo:
        return f"its remote is {url.strip() or 'unset'}, not {component.repo}"
    status, kind, err = run_git("cat-file", "-t", component.commit, git_dir=path)
    if status != 0:
        return f"git cannot read commit {short(component.commit)}: {last_line(err)}" if looks_corrupt(err) else None
    if kind.strip() != "commit":
        return f"object {short(component.commit)} is a {kind.strip()}, not a commit"
    status, _, err = run_git("fsck", "--connectivity-only", "--no-dangling", "--no-progress", component.commit, git_dir=path)
    if status != 0:
        return f"git fsck failed on {short(component.commit)}: {last_line(err)}"
    return None


def new_bare_clone(path: Path, component: Component) -> Path:
    """An empty bare repository with origin = the upstream, in a temporary directory next to path."""
    clean_stale_partials(path)
    tmp = temp_dir(path.parent, path.name)
    try:
        git_ok("init", "--quiet", "--bare", str(tmp))
        git_ok("config", "remote.origin.url", component.repo, git_dir=tmp)
        # checkout() fetches the pinned commit by id from this clone.
        git_ok("config", "uploadpack.allowAnySHA1InWant", "true", git_dir=tmp)
        git_ok("config", "gc.auto", "0", git_dir=tmp)
    except GitFailed as e:
        shutil.rmtree(tmp, ignore_errors=True)
        check_space(e.stderr, path.parent)
        raise SourceError(f"creating a clone of {component.repo} in {path.parent} failed because {last_line(e.stderr)}") from None
    return tmp


def clean_stale_partials(path: Path) -> None:
    """Remove leftovers of interrupted clones or checkouts next to path (their process is gone)."""
    for found in path.parent.glob(f".{path.name}.*{PARTIAL}"):
        if leftover(found):
            remove(found)


# --------------------------------------------------------------------------- pins


def local_commit(git_dir: Path, ref: str) -> str | None:
    status, out, _ = run_git("rev-parse", "--quiet", "--verify", f"{ref}^{{commit}}", git_dir=git_dir)
    return out.strip() if status == 0 else None


def has_commit(git_dir: Path, commit: str) -> bool:
    status, out, _ = run_git("cat-file", "-t", commit, git_dir=git_dir)
    return status == 0 and out.strip() == "commit"


def branch_ref(branch: str) -> str:
    return f"refs/remotes/origin/{branch}"


def on_branch(git_dir: Path, commit: str, branch: str) -> bool:
    tip = local_commit(git_dir, branch_ref(branch))
    if tip is None or not has_commit(git_dir, commit):
        return False
    status, _, err = run_git("merge-base", "--is-ancestor", commit, tip, git_dir=git_dir)
    if status not in (0, 1) and looks_corrupt(err):
        raise CacheDamaged(last_line(err))
    return status == 0


def pinned_locally(git_dir: Path, component: Component) -> bool:
    """True if the cache already proves the pin: no network needed."""
    if not has_commit(git_dir, component.commit):
        return False
    if component.tag and local_commit(git_dir, f"refs/tags/{component.tag}") != component.commit:
        return False
    if component.branch and not on_branch(git_dir, component.commit, component.branch):
        return False
    return True


def is_shallow(git_dir: Path) -> bool:
    return (git_dir / "shallow").is_file()


def is_empty(git_dir: Path) -> bool:
    status, out, _ = run_git("for-each-ref", "--count=1", git_dir=git_dir)
    return status == 0 and not out.strip()


def fetch(git_dir: Path, component: Component, *args: str) -> None:
    status, _, err = run_git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", *args, git_dir=git_dir)
    if status != 0:
        check_space(err, git_dir)
        if looks_corrupt(err) and "does not appear to be a git repository" not in err:
            raise CacheDamaged(last_line(err))
        raise fetch_failed(component, err, wanted_refs(args))


def list_refs(refs: dict[str, str], prefix: str, wanted: str, limit: int = 8) -> str:
    names = [r.removeprefix(prefix) for r in refs if r.startswith(prefix)]
    if not names:
        return "none"

    def newest_first(name: str) -> tuple[int, Any]:
        try:
            return (0, Version(name.lstrip("v")))
        except InvalidVersion:
            return (1, name)

    try:
        ordered = sorted(names, key=newest_first, reverse=True)
    except TypeError:
        ordered = sorted(names, reverse=True)
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
    shown = close + [n for n in ordered if n not in close]
    more = len(names) - limit
    return ", ".join(shown[:limit]) + (f" (and {more} more)" if more > 0 else "")


def check_remote_refs(component: Component, refs: dict[str, str]) -> None:
    """Fail before fetching anything if the recipe names a ref the upstream lacks, or a tag elsewhere."""
    key = f"components.{component.name}"
    if component.tag:
        actual = refs.get(f"refs/tags/{component.tag}")
        if actual is None:
            raise SourceError(
                f"fetching {component.name} from {component.repo} failed because it has no tag {component.tag!r}",
                hint=f"tags it has: {list_refs(refs, 'refs/tags/', component.tag)}; fix {key}.tag",
            )
        if actual != component.commit:
            raise tag_mismatch(component, actual)
    if component.branch and f"refs/heads/{component.branch}" not in refs:
        raise SourceError(
            f"fetching {component.name} from {component.repo} failed because it has no branch {component.branch!r}",
            hint=f"branches it has: {list_refs(refs, 'refs/heads/', component.branch)}; fix {key}.branch",
        )


def tag_mismatch(component: Component, actual: str) -> SourceError:
    return SourceError(
        f"checking {component.name}'s pin failed because tag {component.tag} of {component.repo} "
        f"points at {actual}, not the pinned commit {component.commit}",
        hint=f"pin the tag's commit (components.{component.name}.commit = \"{actual}\") or the tag of {short(component.commit)}",
    )


def not_on_branch(component: Component, git_dir: Path) -> SourceError:
    tip = local_commit(git_dir, branch_ref(component.branch or ""))
    what = f"tag {component.tag} (commit {component.commit})" if component.tag else f"commit {component.commit}"
    return SourceError(
        f"checking {component.name}'s pin failed because {what} is not on branch {component.branch} of {component.repo}",
        hint=(
            f"pin a commit of {component.branch}" + (f" (its tip is {tip})" if tip else "")
            + f", or fix components.{component.name}.branch"
        ),
    )


def fetch_pin(git_dir: Path, component: Component) -> None:
    """Fetch the tag and/or branch (shallow where possible), deepening until the pin is proven."""
    if not component.tag and not component.branch:  # a submodule: its superproject's tree pins the commit
        fetch(git_dir, component, "--depth=1", "origin", component.commit)
        verify_pin(git_dir, component)
        return
    refs = remote_refs(component, git_dir)
    check_remote_refs(component, refs)
    refspecs = []
    if component.tag:
        refspecs.append(f"+refs/tags/{component.tag}:refs/tags/{component.tag}")
    if component.branch:
        refspecs.append(f"+refs/heads/{component.branch}:{branch_ref(component.branch)}")
    depth: list[str] = []
    if is_empty(git_dir) or is_shallow(git_dir):
        tip = refs.get(f"refs/heads/{component.branch}") if component.branch else None
        depth = ["--depth=1"] if component.branch is None or tip == component.commit else [f"--depth={FIRST_DEPTH}"]
    fetch(git_dir, component, *depth, "origin", *refspecs)
    if component.branch:
        steps = list(DEEPEN_STEPS)
        while not on_branch(git_dir, component.commit, component.branch) and is_shallow(git_dir) and steps:
            fetch(git_dir, component, steps.pop(0), "origin", refspecs[-1])
    verify_pin(git_dir, component)


def verify_pin(git_dir: Path, component: Component) -> None:
    if component.tag:
        actual = local_commit(git_dir, f"refs/tags/{component.tag}")
        if actual != component.commit:
            raise tag_mismatch(component, actual or "nothing")
    if component.branch and not on_branch(git_dir, component.commit, component.branch):
        raise not_on_branch(component, git_dir)
    if not has_commit(git_dir, component.commit):  # pragma: no cover - tag or branch always brings it
        raise SourceError(f"fetching {component.name} from {component.repo} failed because commit {component.commit} never arrived")


def report_branch_move(git_dir: Path, component: Component) -> None:
    if not component.branch:
        return
    tip = local_commit(git_dir, branch_ref(component.branch))
    if tip is None or tip == component.commit:
        return
    status, count, _ = run_git("rev-list", "--count", f"{component.commit}..{tip}", git_dir=git_dir)
    n = int(count) if status == 0 and count.strip().isdigit() else 0
    pin = f"{component.tag} ({short(component.commit)})" if component.tag else f"({short(component.commit)})"
    commits = "commit" if n == 1 else "commits"
    say(f"{component.name}: {component.branch} has moved {n} {commits} past the pin {pin}; building the pin")


def ensure_pinned(component: Component, settings: Settings, *, report: bool = True) -> Path:
    """Make the cached clone hold the pinned commit (network only if it does not yet); return its path."""
    path = clone_dir(component, settings)
    with clone_lock(path):
        problem = damage(path, component)
        if problem:
            say(f"{component.name}: the cached clone {path} is damaged ({problem}); fetching it again")
        elif path.exists():
            try:
                if pinned_locally(path, component):
                    if report:
                        report_branch_move(path, component)
                    return path
                fetch_pin(path, component)
                if report:
                    report_branch_move(path, component)
                return path
            except CacheDamaged as e:
                say(f"{component.name}: the cached clone {path} is damaged ({e}); fetching it again")
        tmp = new_bare_clone(path, component)
        try:
            fetch_pin(tmp, component)
        except SourceError:
            # A wrong pin still leaves a good clone worth keeping; an unreachable remote leaves nothing.
            if is_empty(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                swap_into_place(tmp, path)
            raise
        except CacheDamaged as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SourceError(
                f"fetching {component.name} from {component.repo} failed because the objects it sent are broken: {e}",
                hint="check the upstream or mirror repository with `git fsck`",
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        swap_into_place(tmp, path)
        if report:
            report_branch_move(path, component)
        return path


def fetch_source(component: Component, settings: Settings) -> None:
    """Ensure the cached clone has the pinned commit on its tag/branch; touch no network if it already does."""
    ensure_pinned(component, settings, report=True)


# --------------------------------------------------------------------------- checkout


def checkout(component: Component, settings: Settings, dest: Path) -> Path:
    """A fresh, clean work tree of exactly the pinned commit at dest, with its own .git and its
    submodules at the commits it records; returns dest."""
    dest = Path(dest).absolute()
    ensure_pinned(component, settings, report=False)
    try:
        materialize(component, settings, dest)
    except CacheDamaged as e:
        path = clone_dir(component, settings)
        say(f"{component.name}: the cached clone {path} is damaged ({e}); fetching it again")
        with clone_lock(path):
            trash = path.with_name(f"{temp_prefix(path.name)}damaged{PARTIAL}")
            if path.exists():
                os.rename(path, trash)
                shutil.rmtree(trash, ignore_errors=True)
        ensure_pinned(component, settings, report=False)
        try:
            materialize(component, settings, dest)
        except CacheDamaged as again:
            raise SourceError(
                f"checking out {component.name} {short(component.commit)} failed twice, from a fresh clone too: {again}",
                hint=f"check the upstream or mirror with `git fsck`, and the disk under {settings.cache}",
            ) from None
    for sub in submodules(component, dest):
        checkout(sub, settings, dest / sub.name.rsplit("//", 1)[1])
    return dest


def apply_patches(component: Component, tree: Path) -> None:
    """The recipe's patches, in order, to the checkout (it then differs from the pin: upstream's builds say "dirty")."""
    for patch in component.patches:
        status, _, err = run_git("apply", "--whitespace=nowarn", str(patch.path), cwd=tree)
        if status != 0:
            said = "\n".join(err.strip().splitlines()[-6:])
            raise SourceError(
                f"patching {component.name} failed because {patch.path.name} does not apply to {component.name} {component.version} ({short(component.commit)}); git apply said:\n{said}",
                hint=f"refresh {patch.path} against the pinned commit, or drop it from components.{component.name}.patches",
            )
        say(f"{component.name}: applied {patch.path.name} (sha256 {patch.sha256[:12]})")


def submodules(parent: Component, tree: Path) -> list[Component]:
    """The git submodules tree records (.gitmodules), each pinned to the commit its gitlink names.

    Each is fetched through the clone cache like any upstream, so insteadOf mirrors apply to it too.
    """
    if not (tree / ".gitmodules").is_file():
        return []
    status, out, err = run_git("config", "--file", ".gitmodules", "--get-regexp", r"^submodule\..*\.path$", cwd=tree)
    found = []
    for line in out.splitlines() if status == 0 else []:
        key, path = line.split(None, 1)
        name = key.removeprefix("submodule.").removesuffix(".path")
        url = git_ok("config", "--file", ".gitmodules", f"submodule.{name}.url", cwd=tree)
        entry = git_ok("ls-tree", "HEAD", path, cwd=tree).split()
        if len(entry) < 3 or entry[1] != "commit":
            raise SourceError(f"checking out {parent.name} failed because .gitmodules names {path}, which the tree does not record as a submodule")
        repo = url if "://" in url or not url.startswith("../") else f"{parent.repo.rstrip('/').rsplit('/', 1)[0]}/{url.removeprefix('../')}"
        found.append(Component(name=f"{parent.name}//{path}", repo=repo, commit=entry[2], version="0"))
    return found


def materialize(component: Component, settings: Settings, dest: Path) -> None:
    cache = clone_dir(component, settings)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SourceError(f"checking out {component.name} to {dest} failed because {e.strerror or e}") from None
    clean_stale_partials(dest)
    tmp = temp_dir(dest.parent, dest.name)
    try:
        git_ok("init", "--quiet", str(tmp))
        wants = [component.commit]
        if component.tag:
            wants.append(f"+refs/tags/{component.tag}:refs/tags/{component.tag}")
        with clone_lock(cache, shared=True):
            status, _, err = run_git(
                "fetch", "--quiet", "--no-tags", "--depth=1", cache.as_uri(), *wants, cwd=tmp,
            )
        if status != 0:
            check_space(err, dest.parent)
            if looks_corrupt(err):
                raise CacheDamaged(last_line(err))
            raise SourceError(f"checking out {component.name} {short(component.commit)} to {dest} failed because {last_line(err)}")
        # Parallel checkout: writing the tree is most of the time on disks with slow file creation.
        status, _, err = run_git("-c", "advice.detachedHead=false", "-c", "checkout.workers=0", "checkout", "--quiet", "--detach", component.commit, cwd=tmp)
        if status != 0:
            check_space(err, dest.parent)
            if looks_corrupt(err):
                raise CacheDamaged(last_line(err))
            raise SourceError(f"checking out {component.name} {short(component.commit)} to {dest} failed because {last_line(err)}")
        git_ok("remote", "add", "origin", component.repo, cwd=tmp)
        (tmp / ".git" / "FETCH_HEAD").unlink(missing_ok=True)
        head = git_ok("rev-parse", "HEAD", cwd=tmp)
        dirty = git_ok("status", "--porcelain", cwd=tmp)
        if head != component.commit or dirty:
            raise SourceError(
                f"checking out {component.name} to {dest} failed because the tree is not a clean copy of "
                f"{component.commit} (HEAD {head}; changes: {dirty.splitlines()[:3]})",
                hint="check the git configuration for core.autocrlf or filters that rewrite files",
            )
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- doit tasks


def stamp_path(recipe: Recipe, component_name: str, settings: Settings) -> Path:
    return settings.artifacts / recipe.name / ".stamps" / f"source-{component_name}"


def stamp_text(component: Component) -> str:
    return f"repo {component.repo}\nref {component.ref}\ncommit {component.commit}\n"


def source_task(recipe: Recipe, component_name: str, settings: Settings) -> dict[str, Any]:
    """doit task `source:<recipe>:<component>`: the pinned commit is in the cache (stamp = repo + pin)."""
    component = recipe.components[component_name]
    stamp = stamp_path(recipe, component_name, settings)

    def fetch_and_stamp() -> None:
        fetch_source(component, settings)
        write_atomically(stamp, stamp_text(component))

    return {
        "name": f"{recipe.name}:{component_name}",
        "doc": f"fetch {component_name} {component.ref} ({short(component.commit)}) into the source cache",
        **logged_actions(fetch_and_stamp, [], step_log(settings, recipe.name, f"source-{component_name}"), f"source:{recipe.name}:{component_name}"),
        "targets": [str(stamp)],
        "uptodate": [config_changed(repr(component))],
    }


# --------------------------------------------------------------------------- pin updates

PATCH_TAG_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


def newest_patch_tag(tags: list[str], minor: str) -> str | None:
    """The newest vX.Y.Z tag of minor "X.Y" (release candidates and other suffixes ignored)."""
    candidates = [t for t in tags if (m := PATCH_TAG_RE.match(t)) and f"{m[1]}.{m[2]}" == minor]
    return max(candidates, key=lambda t: Version(t[1:]), default=None)


def release_minor(component: Component) -> str:
    for text, pattern in ((component.branch, r"^release-(\d+\.\d+)$"), (component.tag, r"^v(\d+\.\d+)\.")):
        if text and (m := re.match(pattern, text)):
            return m[1]
    raise SourceError(
        f"updating {component.name}'s pin failed because neither branch {component.branch!r} nor tag "
        f"{component.tag!r} names a release (release-X.Y or vX.Y.Z)",
        hint=f"set components.{component.name}.branch = \"release-X.Y\"",
    )


TABLE_RE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def table_name(header: str) -> str | None:
    m = TABLE_RE.match(header)
    if not m:
        return None
    return ".".join(part.strip().strip('"').strip("'") for part in m[1].split("."))


def table_bounds(lines: list[str], table: str) -> tuple[int, int] | None:
    """(the [table] header's line, the line after its last) in lines; None when there is no such table."""
    start = next((i for i, ln in enumerate(lines) if table_name(ln) == table), None)
    if start is None:
        return None
    return start, next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))


def rewrite_table(text: str, table: str, updates: dict[str, str], path: Path) -> str:
    """Set string keys inside [table], touching only their values; comments and layout stay."""
    lines = text.splitlines(keepends=True)
    bounds = table_bounds(lines, table)
    if bounds is None:
        raise RecipeError(f"{path}: updating pins failed because there is no [{table}] table", hint="edit the recipe by hand")
    start, end = bounds
    for key, value in updates.items():
        pattern = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)([\"'])([^\"']*)\2(.*)$", re.DOTALL)
        for i in range(start + 1, end):
            m = pattern.match(lines[i])
            if m:
                lines[i] = f'{m[1]}"{value}"{m[4]}'
                break
        else:
            anchor = next((i for i in range(start + 1, end) if re.match(r"^\s*commit\s*=", lines[i])), start + 1)
            lines.insert(anchor, f'{key} = "{value}"\n')
            end += 1
    return "".join(lines)


def update_pins(recipe_path: Path, settings: Settings) -> list[str]:
    """Pin cri-o to the newest patch tag of its release branch, branch-following companions to their tips.

    Rewrites just those lines of the recipe (atomically) and returns what changed, one line each.
    """
    recipe_path = Path(recipe_path)
    recipe = load_recipe(recipe_path)
    text = recipe_path.read_text()
    changes: list[str] = []

    crio = recipe.crio
    minor = release_minor(crio)
    refs = remote_refs(crio)
    tags = [r.removeprefix("refs/tags/") for r in refs if r.startswith("refs/tags/")]
    newest = newest_patch_tag(tags, minor)
    if newest is None and not (crio.branch and not crio.tag):
        raise SourceError(
            f"updating cri-o's pin failed because {crio.repo} has no v{minor}.Z tag",
            hint=f"tags it has: {list_refs(refs, 'refs/tags/', 'v' + minor)}",
        )
    if newest is None:
        say(f"cri-o: {crio.repo} has no v{minor}.Z tag yet: {crio.branch} stays a branch pin at its tip")
    else:
        new_crio = replace(crio, tag=newest, commit=refs[f"refs/tags/{newest}"], version=newest[1:])
        ensure_pinned(new_crio, settings, report=True)  # proves the tag is on the release branch
        if (new_crio.tag, new_crio.commit) != (crio.tag, crio.commit):
            text = rewrite_table(text, "components.cri-o", {"tag": new_crio.tag, "commit": new_crio.commit}, recipe_path)
            text = update_version(text, crio, new_crio, recipe_path)
            old = f"{crio.tag} ({short(crio.commit)})" if crio.tag else f"{crio.branch} ({short(crio.commit)})"
            changes.append(f"cri-o: {old} -> {new_crio.tag} ({short(new_crio.commit)})")

    for name, component in recipe.components.items():
        if (name == "cri-o" and newest) or component.tag or not component.branch:
            continue
        tip = remote_refs(component).get(f"refs/heads/{component.branch}")
        if tip is None:
            check_remote_refs(component, {})  # raises: no such branch
        assert tip is not None
        if tip != component.commit:
            ensure_pinned(replace(component, commit=tip), settings, report=False)
            text = rewrite_table(text, f"components.{name}", {"commit": tip}, recipe_path)
            changes.append(f"{name}: {component.branch} ({short(component.commit)}) -> {component.branch} ({short(tip)})")

    if changes:
        write_recipe(recipe_path, text)
    return changes


def update_version(text: str, crio: Component, new_crio: Component, recipe_path: Path) -> str:
    """An explicit version that was the old tag's follows the new tag; a branch snapshot's (1.37.0-dev) goes,
    and with it its comment: the version is then the tag's."""
    if crio.version == new_crio.version or not re.search(r"^\s*version\s*=", section_text(text, "components.cri-o"), re.MULTILINE):
        return text
    if crio.tag and crio.version == crio.tag.removeprefix("v"):
        return rewrite_table(text, "components.cri-o", {"version": new_crio.version}, recipe_path)
    if not crio.tag:
        return drop_key(text, "components.cri-o", "version")
    return text


def drop_key(text: str, table: str, key: str) -> str:
    lines = text.splitlines(keepends=True)
    start, end = table_bounds(lines, table)
    return "".join(ln for i, ln in enumerate(lines) if not (start < i < end and re.match(rf"^\s*{re.escape(key)}\s*=", ln)))


def section_text(text: str, table: str) -> str:
    lines = text.splitlines(keepends=True)
    bounds = table_bounds(lines, table)
    return "".join(lines[bounds[0]:bounds[1]]) if bounds else ""


def write_recipe(recipe_path: Path, text: str) -> None:
    """Validate the rewritten recipe, then replace the file atomically (keeping its mode)."""
    with file_atomically(recipe_path) as (handle, tmp):
        handle.write(text)
        handle.flush()
        load_recipe(tmp)
        os.chmod(tmp, recipe_path.stat().st_mode & 0o7777)


def pin_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    """doit task `pin:<recipe>`: move the recipe's pins to the newest patch release (a person reviews the diff)."""
    def pin() -> None:
        changes = update_pins(recipe.path, settings)
        if not changes:
            say(f"{recipe.name}: pins are already the newest; {recipe.path} unchanged")
            return
        for line in changes:
            say(f"{recipe.name}: {line}")
        say(f"review with: git diff {recipe.path}")

    return {
        "name": recipe.name,
        "doc": f"update {recipe.path.name} to the newest cri-o patch tag (rewrites the recipe; review the diff)",
        "actions": [as_action(pin)],
        "uptodate": [False],
        "verbosity": 2,
    }


__all__ = [
    "checkout", "clone_dir", "fetch_source", "newest_patch_tag",
    "pin_task", "source_task", "update_pins",
]
