"""The runtime fixture upstreams (runc, crun and crun's libocispec): history, and host builds through upstream's entry points.

The build tests use the host's toolchains, as tests/unit/test_fixture_upstreams.py does, plus
(Debian) libseccomp-dev and go-md2man for runc, and autoconf, automake, libtool, libseccomp-dev,
pkg-config and go-md2man for crun. Each fixture is cloned at a tag the way the pipeline fetches it:
shallow, with the tag.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.upstreams import FixtureUpstream
from tests.unit.test_fixture_upstreams import build_env, clone, run

IMPORT_PATH = "github.com/opencontainers/runc"


def show(up: FixtureUpstream, ref: str, path: str) -> str:
    return run("git", "show", f"{ref}:{path}", cwd=up.path).stdout


def is_pie(binary: Path) -> bool:
    return binary.read_bytes()[16:18] == b"\x03\x00"  # ELF e_type ET_DYN (little endian)


def links_libseccomp(binary: Path) -> bool:
    return "libseccomp.so" in run("ldd", str(binary)).stdout


def libseccomp_version() -> str:
    return run("pkg-config", "--modversion", "libseccomp").stdout.strip()


def crun_env() -> dict[str, str]:
    """build_env() without XDG_RUNTIME_DIR, so crun's rundir is /run/crun for any user."""
    return {k: v for k, v in build_env().items() if k != "XDG_RUNTIME_DIR"}


def without(program: str, tmp: Path, *needed: str) -> dict[str, str]:
    """An environment whose PATH has only `needed` (symlinked into tmp), so `program` is missing."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name in needed:
        found = shutil.which(name)
        assert found, f"{name} not installed"
        (bin_dir / name).symlink_to(found)
    assert not (bin_dir / program).exists()
    return build_env() | {"PATH": str(bin_dir)}


# --- (a) history ---------------------------------------------------------------------------------

def test_runtime_repos_have_the_promised_history(upstreams):
    runc, libocispec, crun = upstreams["runc"], upstreams["libocispec"], upstreams["crun"]
    assert set(runc.tags) == {"v1.0.0-rc10", "v1.4.3"} and runc.branch == "main"
    assert run("git", "rev-list", "--count", f"v1.4.3..{runc.branch_tip}", cwd=runc.path).stdout.strip() == "1"
    run("git", "merge-base", "--is-ancestor", runc.tags["v1.0.0-rc10"], runc.tags["v1.4.3"], cwd=runc.path)
    assert libocispec.tags == {} and run("git", "rev-list", "--count", "main", cwd=libocispec.path).stdout.strip() == "2"
    assert set(crun.tags) == {"1.26"}
    assert run("git", "rev-list", "--count", f"1.26..{crun.branch_tip}", cwd=crun.path).stdout.strip() == "1"
    for up in (runc, libocispec, crun):
        assert up.url == up.path.resolve().as_uri()
        assert run("git", "status", "--porcelain", cwd=up.path).stdout == ""


def test_runc_eras_and_versions(upstreams):
    runc = upstreams["runc"]
    assert show(runc, "v1.0.0-rc10", "VERSION") == "1.0.0-rc10\n"
    assert show(runc, "v1.4.3", "VERSION") == "1.4.3\n"
    assert show(runc, "main", "VERSION") == "1.4.3+dev\n"
    rc10 = run("git", "ls-tree", "-r", "--name-only", "v1.0.0-rc10", cwd=runc.path).stdout.split()
    assert "go.mod" not in rc10 and "libcontainer/seccomp/seccomp_linux.go" in rc10
    assert show(runc, "v1.4.3", "go.mod").startswith(f"module {IMPORT_PATH}\n")
    assert "BUILDTAGS ?= seccomp\n" in show(runc, "v1.0.0-rc10", "Makefile")
    assert "BUILDTAGS := seccomp urfave_cli_no_docs\n" in show(runc, "v1.4.3", "Makefile")
    for tag in runc.tags:
        assert run("git", "ls-tree", tag, "man/md2man-all.sh", cwd=runc.path).stdout.startswith("100755 ")


def test_crun_records_libocispec_as_a_submodule(upstreams):
    crun, libocispec = upstreams["crun"], upstreams["libocispec"]
    first = run("git", "rev-list", "--reverse", "main", cwd=libocispec.path).stdout.split()[0]
    for ref in ("1.26", "main"):
        assert run("git", "ls-tree", ref, "libocispec", cwd=crun.path).stdout == f"160000 commit {first}\tlibocispec\n"
        gitmodules = show(crun, ref, ".gitmodules")
        url = re.search(r"^\turl = (.*)$", gitmodules, re.M).group(1)
        if url.startswith("../"):  # relative to crun's own URL, as git and builders/sources.py resolve it
            url = crun.url.rsplit("/", 1)[0] + "/" + url.removeprefix("../")
        assert "\tpath = libocispec\n" in gitmodules and url == libocispec.url
    assert "ocispec_runtime_spec_version" in show(libocispec, first, "src/ocispec.h")
    for path in ("autogen.sh", "build-aux/git-version-gen"):
        assert run("git", "ls-tree", "1.26", path, cwd=crun.path).stdout.startswith("100755 ")


# --- (b) runc ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runc_tree(upstreams, tmp_path_factory) -> Path:
    """runc cloned at v1.4.3 and built with `make runc`, like the pipeline does it."""
    tree = clone(upstreams["runc"], "v1.4.3", tmp_path_factory.mktemp("runc") / "runc")
    run("make", "runc", cwd=tree, env=build_env())
    return tree


def test_runc_make_runc_embeds_version_and_git_describe(runc_tree, upstreams):
    commit = upstreams["runc"].tags["v1.4.3"]
    lines = run("./runc", "--version", cwd=runc_tree).stdout.splitlines()
    go_version = run("go", "env", "GOVERSION", env=build_env()).stdout.strip()
    assert lines[0] == "runc version 1.4.3"
    described = re.fullmatch(r"commit: v1\.4\.3-0-g([0-9a-f]{7,40})", lines[1])
    assert described and commit.startswith(described.group(1)), lines[1]
    assert lines[2:] == ["spec: 1.2.1", f"go: {go_version}", f"libseccomp: {libseccomp_version()}"]
    assert run("./runc", "-v", cwd=runc_tree).stdout.splitlines() == lines
    assert run("./runc", "list", cwd=runc_tree).stdout == "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
    assert run("./runc", "--root", "/nonexistent", "list", "-q", cwd=runc_tree).stdout == ""
    # upstream's build flags: the build tags, -trimpath, cgo, a PIE linked against libseccomp
    info = run("go", "version", "-m", "runc", cwd=runc_tree, env=build_env()).stdout
    assert f"path\t{IMPORT_PATH}" in info and "-tags=seccomp,urfave_cli_no_docs" in info
    assert "-trimpath=true" in info and "CGO_ENABLED=1" in info
    assert is_pie(runc_tree / "runc") and links_libseccomp(runc_tree / "runc")
    assert run("git", "status", "--porcelain", cwd=runc_tree).stdout == ""  # .gitignore covers the outputs


def test_runc_make_man_and_install(runc_tree, tmp_path):
    run("make", "man", cwd=runc_tree, env=build_env())
    pages = sorted(p.name for p in (runc_tree / "man/man8").iterdir())
    assert pages == ["runc-list.8", "runc.8"]
    assert (runc_tree / "man/man8/runc.8").read_text().startswith('.nh\n.TH runc "8"')
    assert ".SH NAME" in (runc_tree / "man/man8/runc-list.8").read_text()
    dest = tmp_path / "dest"
    run("make", "install", "install-man", "PREFIX=/usr", f"DESTDIR={dest}", cwd=runc_tree, env=build_env())
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["usr/sbin/runc", "usr/share/man/man8/runc-list.8", "usr/share/man/man8/runc.8"]
    assert os.access(dest / "usr/sbin/runc", os.X_OK)


def test_runc_make_man_without_go_md2man_does_nothing(upstreams, tmp_path):
    tree = clone(upstreams["runc"], "v1.4.3", tmp_path / "runc")
    result = run("make", "man", cwd=tree, env=without("go-md2man", tmp_path, "make", "git", "go", "dirname", "readlink"))
    assert "please install 'go-md2man'" in result.stdout
    assert not (tree / "man/man8").exists()


def test_runc_without_the_seccomp_tag(upstreams, tmp_path):
    tree = clone(upstreams["runc"], "v1.4.3", tmp_path / "runc")
    run("make", "runc", "BUILDTAGS=", cwd=tree, env=build_env())
    out = run("./runc", "--version", cwd=tree).stdout
    assert out.startswith("runc version 1.4.3\n") and "libseccomp" not in out
    assert not links_libseccomp(tree / "runc")


def test_runc_past_the_tag(upstreams, tmp_path):
    up = upstreams["runc"]
    tree = tmp_path / "runc"
    run("git", "clone", "-q", up.url, str(tree))
    run("make", "runc", cwd=tree, env=build_env())
    lines = run("./runc", "--version", cwd=tree).stdout.splitlines()
    assert lines[0] == "runc version 1.4.3+dev"
    described = re.fullmatch(r"commit: v1\.4\.3-1-g([0-9a-f]{7,40})", lines[1])
    assert described and up.branch_tip.startswith(described.group(1)), lines[1]


def test_runc_rc10_builds_only_in_a_gopath(upstreams, tmp_path):
    up = upstreams["runc"]
    tree = clone(up, "v1.0.0-rc10", tmp_path / "runc")
    plain = subprocess.run(["make", "runc"], cwd=tree, env=build_env(), capture_output=True, text=True)
    assert plain.returncode != 0 and not (tree / "runc").exists()
    assert re.search(r"go\.mod file not found|cannot find main module|cannot find package", plain.stderr), plain.stderr
    # outside a GOPATH, GOPATH mode cannot resolve the import path either
    off = subprocess.run(["make", "runc"], cwd=tree, env=build_env() | {"GO111MODULE": "off", "GOPATH": str(tmp_path / "elsewhere")},
                         capture_output=True, text=True)
    assert off.returncode != 0 and f"cannot find package \"{IMPORT_PATH}/libcontainer/seccomp\"" in off.stderr, off.stderr

    # the way builders/components/runc.py builds it
    link = f"$GOPATH/src/{IMPORT_PATH}"
    env = build_env() | {"GOPATH": str(tmp_path / "gopath")}
    run("sh", "-c", f"mkdir -p $(dirname {link}) && ln -sfn $PWD {link} && cd {link} && GO111MODULE=off make runc 'BUILDTAGS=seccomp'",
        cwd=tree, env=env)
    commit = up.tags["v1.0.0-rc10"]
    assert run("./runc", "--version", cwd=tree).stdout == f"runc version 1.0.0-rc10\ncommit: {commit}\nspec: 1.0.1-dev\n"
    assert run("./runc", "list", cwd=tree).stdout.startswith("ID          PID")
    assert is_pie(tree / "runc") and links_libseccomp(tree / "runc")
    run("make", "man", cwd=tree, env=env)
    assert sorted(p.name for p in (tree / "man/man8").iterdir()) == ["runc-list.8", "runc.8"]


# --- (c) crun ------------------------------------------------------------------------------------

def clone_crun(up: FixtureUpstream, ref: str, dest: Path) -> Path:
    """crun at `ref` with libocispec checked out at the commit its tree records, as the pipeline has it."""
    clone(up, ref, dest)
    run("git", "-c", "protocol.file.allow=always", "submodule", "update", "--init", "--quiet", cwd=dest)
    return dest


@pytest.fixture(scope="module")
def crun_tree(upstreams, tmp_path_factory) -> Path:
    """crun cloned at 1.26 with its submodule and built like builders/components/crun.py does it."""
    tree = clone_crun(upstreams["crun"], "1.26", tmp_path_factory.mktemp("crun") / "crun")
    env = crun_env()
    run("autoreconf", "-fi", cwd=tree, env=env)
    run("./configure", "--prefix=/usr", cwd=tree, env=env)
    run("make", cwd=tree, env=env)
    return tree


def test_crun_autotools_build_embeds_version_commit_and_spec(crun_tree, upstreams):
    commit = upstreams["crun"].tags["1.26"]
    out = run("./crun", "--version", cwd=crun_tree, env=crun_env()).stdout
    assert out == f"crun version 1.26\ncommit: {commit}\nrundir: /run/crun\nspec: 1.0.0\n+SECCOMP\n"
    assert run("./crun", "--root=/tmp/elsewhere", "--version", cwd=crun_tree).stdout.splitlines()[2] == "rundir: /tmp/elsewhere"
    assert run("./crun", "list", cwd=crun_tree).stdout.split() == ["NAME", "PID", "STATUS", "BUNDLE", "PATH"]
    features = run("./crun", "features", cwd=crun_tree).stdout
    assert f'"io.github.seccomp.libseccomp.version": "{libseccomp_version()}"' in features
    assert "Usage: crun [OPTION...] COMMAND" in run("./crun", "--help", cwd=crun_tree).stdout
    assert links_libseccomp(crun_tree / "crun")
    assert (crun_tree / "crun.1").read_text().startswith('.nh\n.TH crun 1 "User Commands"')
    # the version came from build-aux/git-version-gen at autoreconf time, the commit from git-version.h
    assert '#define PACKAGE_VERSION "1.26"' in (crun_tree / "config.h").read_text()
    assert f'# define GIT_VERSION "{commit}"' in (crun_tree / "git-version.h").read_text()


def test_crun_make_install(crun_tree, tmp_path):
    dest = tmp_path / "dest"
    run("make", "install", f"DESTDIR={dest}", cwd=crun_tree, env=crun_env())
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["usr/bin/crun", "usr/share/man/man1/crun.1"]


def test_crun_needs_its_submodule(upstreams, tmp_path):
    tree = clone(upstreams["crun"], "1.26", tmp_path / "crun")  # no `git submodule update`
    assert not any((tree / "libocispec").iterdir())
    env = crun_env()
    run("autoreconf", "-fi", cwd=tree, env=env)
    run("./configure", "--prefix=/usr", cwd=tree, env=env)
    make = subprocess.run(["make"], cwd=tree, env=env, capture_output=True, text=True)
    assert make.returncode != 0 and "ocispec" in make.stderr, make.stderr


def test_crun_git_version_gen(upstreams, tmp_path):
    up = upstreams["crun"]
    gen = ["build-aux/git-version-gen", "--prefix", "", ".tarball-version"]
    at_tag = clone(up, "1.26", tmp_path / "tag")
    assert run(*gen, cwd=at_tag).stdout == "1.26"
    (at_tag / "README.md").write_text("local change\n")
    assert run(*gen, cwd=at_tag).stdout == "1.26-dirty"
    # past the tag, like gnulib's script: <tag>.<commits since>-<abbreviated commit>
    full = tmp_path / "full"
    run("git", "clone", "-q", up.url, str(full))
    past = run(*gen, cwd=full).stdout
    match = re.fullmatch(r"1\.26\.1-([0-9a-f]{4,40})", past)
    assert match and up.branch_tip.startswith(match.group(1)), past
    # a release tarball has no .git, but a .tarball-version
    tarball = tmp_path / "tarball"
    shutil.copytree(at_tag, tarball, ignore=shutil.ignore_patterns(".git"))
    assert run(*gen, cwd=tarball).stdout == "UNKNOWN"
    (tarball / ".tarball-version").write_text("1.26\n")
    assert run(*gen, cwd=tarball).stdout == "1.26"
