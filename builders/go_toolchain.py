"""Pinned Go toolchains: download the official tarball, prove it is the pinned one, unpack it into the cache.

Cache layout, per version and architecture (GOROOT is the go/ subdirectory):

    <cache>/toolchains/go1.14.15.linux-arm64/go/...            the toolchain, mounted read-only into builds
    <cache>/toolchains/go1.14.15.linux-arm64/.criobuild-complete   written last; its presence means done
    <cache>/toolchains/go1.14.15.linux-arm64.lock              flock: one fetch at a time per toolchain

While working, only dot-names exist (`.go1.14.15.linux-arm64.tar.gz.<pid>-<start>-*.partial`, `.go1.14.15.linux-arm64.<pid>-<start>-*.partial`);
the next run under the lock deletes any it finds, so a killed run never leaves something that looks done.
"""
from __future__ import annotations

import gzip
import json
import posixpath
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from .arch import Arch
from .download import download, partial_name
from .elf import ELF_MAGIC, E_MACHINE
from .errors import BuildError, ChecksumError, RecipeError
from .files import dir_atomically, locked, sha256_file, write_atomically
from .recipe import GoToolchain
from .settings import Settings
from .actions import logged_actions, step_log

OFFICIAL_DOWNLOADS = "https://go.dev/dl"
MARKER = ".criobuild-complete"


class UnsafeArchiveError(BuildError):
    """A tarball would write outside its target directory."""


def go_url(go: GoToolchain, arch: Arch, mirror: str | None) -> str:
    base = (mirror or OFFICIAL_DOWNLOADS).rstrip("/")
    return f"{base}/{go.tarball(arch)}"


def toolchain_dir(go: GoToolchain, arch: Arch, settings: Settings) -> Path:
    """The cache directory of one toolchain; its go/ subdirectory is GOROOT."""
    return settings.toolchains / f"go{go.version}.linux-{arch.go_tarball()}"


def goroot(go: GoToolchain, arch: Arch, settings: Settings) -> Path:
    return toolchain_dir(go, arch, settings) / "go"


def completion_marker(go: GoToolchain, arch: Arch, settings: Settings) -> Path:
    """Written last by ensure_go: the go:<version>-<arch> task's target (a build's file_dep)."""
    return toolchain_dir(go, arch, settings) / MARKER


def describe_mirror(go: GoToolchain, arch: Arch, mirror: str | None) -> str:
    name = go.tarball(arch)
    if mirror:
        return (
            f"the mirror in force is CRIOBUILD_GO_MIRROR={mirror}; make it serve {name}, point CRIOBUILD_GO_MIRROR "
            f"at another base URL (the file is fetched as <base>/{name}), or unset it to use {OFFICIAL_DOWNLOADS}/"
        )
    return (
        f"no mirror is set (CRIOBUILD_GO_MIRROR is unset), so the official {OFFICIAL_DOWNLOADS}/ is used; where it is "
        f"unreachable, set CRIOBUILD_GO_MIRROR to a base URL that serves {name} (fetched as <base>/{name})"
    )


def pinned_sha256(go: GoToolchain, arch: Arch) -> str:
    try:
        return go.sha256[arch]
    except KeyError:
        raise RecipeError(
            f"Go {go.version} for {arch} cannot be fetched because the recipe pins no sha256 for it (no key 'go.sha256.{arch}')",
            hint=f'add {arch} = "<sha256 of {go.tarball(arch)} from {OFFICIAL_DOWNLOADS}/>" to go.sha256',
        ) from None


def ensure_go(go: GoToolchain, arch: Arch, settings: Settings) -> Path:
    """GOROOT of the pinned toolchain, fetched, verified and unpacked if the cache lacks it.

    Idempotent, and without network once complete. Safe to call from several builds at once: one
    downloads under a file lock, the others wait and then find it complete.
    """
    sha256 = pinned_sha256(go, arch)
    target = toolchain_dir(go, arch, settings)
    if is_complete(target, sha256):
        return target / "go"
    settings.toolchains.mkdir(parents=True, exist_ok=True)
    with locked(settings.toolchains / f"{target.name}.lock", f"waiting for another build that is fetching Go {go.version} for {arch}"):
        if is_complete(target, sha256):
            return target / "go"
        discard_leftovers(target, go.tarball(arch))
        tarball = settings.toolchains / go.tarball(arch)
        url = go_url(go, arch, settings.go_mirror)
        try:
            if not (tarball.is_file() and sha256_file(tarball) == sha256):  # a verified tarball from a killed run
                download(url, tarball, sha256=sha256, describe_mirror=describe_mirror(go, arch, settings.go_mirror))
            unpack(go, arch, tarball, target)
        finally:
            tarball.unlink(missing_ok=True)
        write_marker(target, {"version": go.version, "arch": str(arch), "sha256": sha256, "url": url})
    return target / "go"


def is_complete(target: Path, sha256: str) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return False
    return marker.get("sha256") == sha256 and (target / "go" / "bin" / "go").is_file()


def discard_leftovers(target: Path, tarball_name: str) -> None:
    """Remove what an interrupted run left: partial downloads and unpackings, an unmarked toolchain."""
    parent = target.parent
    for leftover in [*parent.glob(f"{partial_name(parent / tarball_name)}*"), *parent.glob(f".{target.name}.*.partial"), target]:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        elif leftover.exists() or leftover.is_symlink():
            leftover.unlink()


def unpack(go: GoToolchain, arch: Arch, tarball: Path, target: Path) -> None:
    """Unpack into a temporary sibling, check it is the pinned Go, then rename it to target."""
    with dir_atomically(target) as partial:
        extract_tarball(tarball, partial)
        check_toolchain(go, arch, tarball, partial / "go")


def extract_tarball(tarball: Path, dest: Path) -> None:
    """Extract tarball into dest, refusing any member that would land, or point, outside dest.

    Every member is checked before anything is written; tarfile's "data" filter then re-checks
    against the real filesystem (links through links) as it extracts.
    """
    try:
        with tarfile.open(tarball, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                why = escape_reason(member)
                if why:
                    raise refuse(tarball, dest, member.name, why)
            try:
                tar.extractall(dest, members=members, filter="data")
            except tarfile.FilterError as e:
                raise refuse(tarball, dest, e.tarinfo.name, f"is refused by tarfile's data filter: {e}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise BuildError(
            f"{tarball.name} could not be unpacked because it is not a valid tar.gz: {e}",
            hint="its sha256 matched the pin, so the pin itself names a broken file: check where it came from",
        ) from None


def escape_reason(member: tarfile.TarInfo) -> str | None:
    """Why this member would escape its directory, or None when it stays inside."""
    name = member.name
    if name.startswith("/") or posixpath.isabs(name):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "has a '..' component that leads outside"
    if member.issym():
        if posixpath.isabs(member.linkname):
            return f"is a symlink to the absolute path {member.linkname!r}"
        if leaves(posixpath.join(posixpath.dirname(name), member.linkname)):
            return f"is a symlink to {member.linkname!r}, which is outside"
    if member.islnk():
        if posixpath.isabs(member.linkname):
            return f"is a hard link to the absolute path {member.linkname!r}"
        if leaves(member.linkname):
            return f"is a hard link to {member.linkname!r}, which is outside"
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device or fifo, which a toolchain never contains"
    return None


def leaves(relative: str) -> bool:
    normal = posixpath.normpath(relative)
    return normal == ".." or normal.startswith("../") or posixpath.isabs(normal)


def refuse(tarball: Path, dest: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{tarball.name} was not unpacked because its member {member!r} {why} (it would escape {dest})",
        hint="an official Go tarball holds only go/... with no links leaving it; the sha256 matched the pin, "
        "so check where that pin came from. Nothing was unpacked into the cache",
    )


def check_toolchain(go: GoToolchain, arch: Arch, tarball: Path, root: Path) -> None:
    """The unpacked tree is Go <version> for <arch> in the official go/ layout."""
    binary = root / "bin" / "go"
    if not binary.is_file():
        raise BuildError(
            f"{tarball.name} is not a Go toolchain because it has no go/bin/go",
            hint="an official tarball unpacks to go/; check the pinned sha256 and the mirror",
        )
    version_file = root / "VERSION"
    if version_file.is_file():
        found = next(iter(version_file.read_text().splitlines()), "").strip()
        if found != f"go{go.version}":
            raise ChecksumError(
                f"{tarball.name} was rejected because its go/VERSION says {found!r}, not the pinned go{go.version}",
                hint="the pinned sha256 belongs to another Go version: correct go.version or go.sha256",
            )
    with binary.open("rb") as f:
        header = f.read(20)
    machine = int.from_bytes(header[18:20], "little") if header[:4] == ELF_MAGIC else None
    if machine != E_MACHINE[arch]:
        raise ChecksumError(
            f"{tarball.name} was rejected because its go/bin/go is not an ELF binary for {arch}",
            hint=f"the pinned sha256 belongs to another architecture: check go.sha256.{arch}",
        )


def write_marker(target: Path, content: dict[str, Any]) -> None:
    write_atomically(target / MARKER, json.dumps(content, indent=2) + "\n")


def go_task(go: GoToolchain, arch: Arch, settings: Settings) -> dict[str, Any]:
    """The doit task go:<version>-<arch>; builds depend on it through its target, the completion marker."""

    def fetch_go() -> None:
        ensure_go(go, arch, settings)

    return {
        "name": f"{go.version}-{arch}",
        "doc": f"Go {go.version} for {arch}: download {go.tarball(arch)}, verify its pinned sha256, unpack into the cache",
        **logged_actions(fetch_go, [], step_log(settings, "", f"go-{go.version}-{arch}"), f"go:{go.version}-{arch}"),  # shared by recipes: artifacts/logs/
        "targets": [str(completion_marker(go, arch, settings))],
        "uptodate": [config_changed({"version": go.version, "sha256": go.sha256.get(arch, ""), "arch": str(arch)})],
    }
