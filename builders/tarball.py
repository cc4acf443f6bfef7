"""The release tarball, SHA256SUMS and manifest.json of a recipe.

The tarball follows upstream's bundle (cri-o.<arch>.v<version>.tar.gz, one top directory `cri-o/`,
an `install` script with uninstall, PREFIX=/usr/local, CNI plugins in /opt/cni/bin, units in
$PREFIX/lib/systemd/system). It is made from the staging trees of the recipe's components (builders/build.py),
whose Debian paths (/usr/bin, /usr/lib/cni) are mapped onto the tarball's sections:

    staging usr/bin/*                  -> cri-o/bin/*           -> $PREFIX/bin
    staging usr/libexec/*              -> cri-o/libexec/*       -> $PREFIX/libexec (crio/runc, crio/crun)
    staging usr/lib/cni/*              -> cri-o/cni-plugins/*   -> $CNIDIR (/opt/cni/bin)
    staging usr/lib/systemd/system/*   -> cri-o/systemd/*       -> $SYSTEMDDIR ($PREFIX/lib/systemd/system)
    staging usr/share/*                -> cri-o/share/*         -> $PREFIX/share
    staging etc/*                      -> cri-o/etc/*           -> /etc (configuration: never replaced)

Each upstream rewrites its own configuration for the default PREFIX (cri-o's crio.conf and drop-in:
conmon at "/usr/local/bin/conmon", runtime_path "/usr/local/libexec/crio/runc", plugin_dirs = ["/opt/cni/bin"]),
and the units start our binaries from it (ExecStart=/usr/local/bin/crio); `install` adjusts them to another
PREFIX or CNIDIR. Reproducible: sorted members, owner root, mtime SOURCE_DATE_EPOCH (the cri-o
pin's commit time), gzip without name or time at a fixed level.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .actions import logged_actions, step_log
from . import elf
from .build import read_staged
from .deb import drop_other_versions
from .errors import PackageError
from .pod_report import REPORT, drop_if_stale
from .components import upstream
from .recipe import Recipe
from .attest import PROVENANCE, provenance_text, sign_artifacts, signed_files
from .sbom import SBOM_CODE, sbom_path, write_tarball_sbom
from .files import file_atomically, sha256_file, write_atomically
from .view import say
from .settings import Settings

TOP = "cri-o"
DATA = Path(__file__).with_name("data") / "tarball"
KERNEL_CHECK = Path(__file__).with_name("kernel_check.py")
DEFAULT_PREFIX = "/usr/local"
DEFAULT_CNIDIR = "/opt/cni/bin"
GZIP_LEVEL = 9

# Staging path prefix -> tarball section, and where `install` puts each section by default.
SECTIONS = (
    ("usr/bin/", "bin/"),
    ("usr/libexec/", "libexec/"),
    ("usr/lib/cni/", "cni-plugins/"),
    ("usr/lib/systemd/system/", "systemd/"),
    ("usr/share/", "share/"),
    ("etc/", "etc/"),
)
DESTINATIONS = {
    "bin/": f"{DEFAULT_PREFIX}/bin/",
    "libexec/": f"{DEFAULT_PREFIX}/libexec/",
    "cni-plugins/": f"{DEFAULT_CNIDIR}/",
    "systemd/": f"{DEFAULT_PREFIX}/lib/systemd/system/",
    "share/": f"{DEFAULT_PREFIX}/share/",
    "etc/": "/etc/",
}
EXECUTABLE_SECTIONS = ("bin/", "libexec/", "cni-plugins/")
# The install's own records (see builders/data/tarball/install).
RECORDS = (f"{DEFAULT_PREFIX}/share/cri-o/installed-config.sha256", f"{DEFAULT_PREFIX}/share/cri-o/installed-files")


@dataclass(frozen=True)
class Member:
    """One entry of the tarball, relative to its top directory."""

    path: str
    mode: int
    data: bytes | None = None  # a regular file's content
    link: str | None = None  # a symlink's target

    @property
    def kind(self) -> str:
        return "dir" if self.data is None and self.link is None else "symlink" if self.link is not None else "file"


def tarball_path(recipe: Recipe, settings: Settings) -> Path:
    """Named the way upstream names its bundles, cri-o.<arch>.v<version>.tar.gz, for the recipe's own target;
    for another its release too (cri-o.bookworm.arm64.v1.36.3.tar.gz), so release assets never collide."""
    arch = f"{recipe.target.suite}.{recipe.target.arch}" if recipe.variant_of else str(recipe.target.arch)
    return settings.artifacts / recipe.name / f"cri-o.{arch}.v{recipe.crio.version}.tar.gz"


# --------------------------------------------------------------------------- reading the staging trees


def staging_root(settings: Settings, recipe: Recipe) -> Path:
    return settings.artifacts / recipe.name / "staging"


def tarball_section(staged: str) -> str | None:
    for prefix, section in SECTIONS:
        if staged.startswith(prefix):
            return section + staged[len(prefix):]
    return None


def staged_members(tree: Path, component: str, arch: Any) -> list[Member]:
    """The files and symlinks of one staging tree, mapped into the tarball (empty directories are left out)."""
    members = []
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        target = tarball_section(rel)
        if target is None:
            raise PackageError(
                f"cannot package {component} because the staged {rel} has no place in the tarball",
                hint=f"the tarball takes {', '.join(p for p, _ in SECTIONS)}; change builders/tarball.py SECTIONS or the build's install step",
            )
        if path.is_symlink():
            link = os.readlink(path)
            if link.startswith("/"):
                raise PackageError(f"cannot package {component} because the staged symlink {rel} points at an absolute path ({link})", hint="stage a relative symlink")
            members.append(Member(target, 0o777, link=link))
            continue
        if target.startswith(EXECUTABLE_SECTIONS):
            wrong = elf.built_for(path, arch) if elf.elf_machine(path) is not None else "it is not an ELF file"
            if wrong:
                raise PackageError(
                    f"cannot package {component} because {rel} is not an {arch} ELF: {wrong}",
                    hint="the staging tree is stale or was built for another architecture; rebuild it",
                )
        mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
        members.append(Member(target, mode, data=path.read_bytes()))
    return members


# --------------------------------------------------------------------------- rewrites for the tarball's paths

EXEC_RE = re.compile(r"^(?P<lead>Exec[A-Za-z]*=[-@+!:]*)/usr/(?:local/)?bin/(?P<name>[^\s/]+)(?=\s|$)", re.M)


def rewrite_unit(text: str, binaries: set[str], bindir: str = f"{DEFAULT_PREFIX}/bin") -> str:
    """Exec*= lines that start one of our binaries start it from bindir; /usr/bin/rm and the like stay."""
    return EXEC_RE.sub(lambda m: f"{m.group('lead')}{bindir}/{m.group('name')}" if m.group("name") in binaries else m.group(0), text)


def rewritten(owner: Any, path: str, data: bytes, binaries: set[str]) -> str | None:
    """A member's text as the tarball ships it, or None to ship it as staged: units start our binaries
    from the tarball's bin/, and the owning upstream rewrites its own configuration."""
    if path.startswith("systemd/"):
        return rewrite_unit(data.decode(), binaries)
    if not path.startswith("etc/"):
        return None
    return owner.tarball_file(path, data.decode(), DEFAULT_PREFIX, DEFAULT_CNIDIR)


def fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_]+@", template)
    if leftover:
        raise PackageError(f"template placeholders {leftover} have no value")  # a bug, not a user error
    return template


# --------------------------------------------------------------------------- shared libraries the binaries need


def runtime_libraries(members: list[Member]) -> dict[str, list[str]]:
    """soname -> the tarball's binaries that need it."""
    users: dict[str, list[str]] = {}
    for m in members:
        if m.path.startswith(EXECUTABLE_SECTIONS) and m.data is not None:
            for soname in elf.sonames(m.data):
                users.setdefault(soname, []).append(m.path)
    return dict(sorted(users.items()))


def library_packages(staged: dict[str, dict[str, Any]]) -> dict[str, str]:
    """soname -> the target's package that has it, as dpkg in each component's builder named it at compile time
    (builders/build.py linked_libraries): trixie armhf's libglib2.0-0t64, not a name this tool would guess."""
    return {lib["soname"]: lib["package"] for s in staged.values() for lib in s.get("libraries", []) if lib.get("package")}


def runtime_packages(sonames: list[str], owners: dict[str, str]) -> list[str]:
    """The packages that have these sonames (one the builder's dpkg did not know is still listed and checked, without a package)."""
    return sorted({owners[s] for s in sonames if s in owners})


# --------------------------------------------------------------------------- the tarball


def tarball_members(recipe: Recipe, settings: Settings) -> list[Member]:
    """Every member of the tarball, sorted, with its final content and mode (directories included)."""
    manifests = {c: read_staged(settings, recipe, c) for c in recipe.components}
    versions = {c: m["version"] for c, m in manifests.items()}
    members: dict[str, Member] = {}
    staged: dict[str, list[Member]] = {}
    for component in recipe.components:
        staged[component] = staged_members(staging_root(settings, recipe) / component, component, recipe.target.arch)
        for member in staged[component]:
            if member.path in members:
                raise PackageError(f"cannot package {recipe.name} because {member.path} is staged by two components", hint="check the staging trees")
            members[member.path] = member
    binaries = {PurePosixPath(p).name for p in members if p.startswith("bin/")}
    owners = {m.path: c for c, ms in staged.items() for m in ms}
    for path, member in list(members.items()):
        if member.data is None:
            continue
        text = rewritten(upstream(owners[path]), path, member.data, binaries)
        if text is not None:
            members[path] = Member(path, member.mode, data=text.encode())
    files = {p: m.data for p, m in members.items() if m.data is not None}
    for component in recipe.components:
        upstream(component).check_tarball(recipe, files, DEFAULT_PREFIX)
    # Configuration the target may lack (Debian's containers-common has it), unless a component staged its own.
    for path in sorted(p for p in (DATA / "etc").rglob("*") if p.is_file()):
        rel = "etc/" + path.relative_to(DATA / "etc").as_posix()
        members.setdefault(rel, Member(rel, 0o644, data=path.read_bytes()))
    libraries = runtime_libraries(list(members.values()))
    packages = runtime_packages(list(libraries), library_packages(manifests))
    companions = ", ".join(f"{upstream(c).package.name} {v}" for c, v in list(versions.items())[1:])  # after cri-o
    values = {
        "VERSION": recipe.crio.version, "ARCH": str(recipe.target.arch), "UNAME": recipe.target.arch.to_uname(),
        "COMPANIONS": companions, "RECIPE": recipe.name, "LIBRARIES": " ".join(libraries) or "none",
        "PACKAGES": " ".join(packages) or "none", "APT_PACKAGES": " ".join(packages),
        "BINARIES": ", ".join(f"`{b}`" for b in sorted(binaries)),
        "RUNTIMES": ", ".join(f"`{PurePosixPath(p).name}`" for p in sorted(members) if p.startswith("libexec/crio/")),
    }  # fmt: skip
    members["install"] = Member("install", 0o755, data=fill((DATA / "install").read_text(), values).encode())
    members["README.md"] = Member("README.md", 0o644, data=fill((DATA / "README.md").read_text(), values).encode())
    members["kernel_check.py"] = Member("kernel_check.py", 0o755, data=KERNEL_CHECK.read_bytes())
    directories = {str(parent) for p in members for parent in PurePosixPath(p).parents if str(parent) != "."}
    for d in directories:
        members[d] = Member(d, 0o755)
    return sorted(members.values(), key=lambda m: PurePosixPath(m.path).parts)


def write_tar(members: list[Member], dest: Path, mtime: int) -> None:
    """A gzipped tar of members under TOP/: owner root, fixed mtime, no gzip name or time; atomic."""
    with file_atomically(dest, "wb") as (raw, _), gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for m in [Member(TOP, 0o755)] + [Member(f"{TOP}/{x.path}", x.mode, x.data, x.link) for x in members]:
                tar.addfile(*tar_entry(m, mtime))


def tar_entry(m: Member, mtime: int) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    info = tarfile.TarInfo(m.path)
    info.mode = m.mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = mtime
    if m.kind == "dir":
        info.type = tarfile.DIRTYPE
        return info, None
    if m.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = m.link  # type: ignore[assignment]
        return info, None
    info.size = len(m.data)  # type: ignore[arg-type]
    return info, io.BytesIO(m.data)  # type: ignore[arg-type]


def source_date_epoch(recipe: Recipe, settings: Settings) -> int:
    """The cri-o pin's commit time, recorded in its staging manifest."""
    return int(read_staged(settings, recipe, "cri-o")["source_date_epoch"])

def make_tarball(recipe: Recipe, settings: Settings) -> None:
    members = tarball_members(recipe, settings)
    dest = tarball_path(recipe, settings)
    write_tar(members, dest, source_date_epoch(recipe, settings))
    staged = {c: read_staged(settings, recipe, c) for c in recipe.components}
    write_tarball_sbom(recipe, dest, staged, staging_root(settings, recipe), source_date_epoch(recipe, settings))
    drop_other_versions(dest, dest.name.split(".v", 1)[0] + ".v*.tar.gz")
    print(f"{dest}: {sum(m.kind != 'dir' for m in members)} files, {dest.stat().st_size} bytes")


def installed_files(member_paths: list[str]) -> list[str]:
    """What `./install` puts on a machine that has none of it (default PREFIX and CNIDIR), sorted."""
    paths = list(RECORDS)
    for path in member_paths:
        for section, destination in DESTINATIONS.items():
            if path.startswith(section):
                paths.append(destination + path[len(section):])
    return sorted(paths)


# --------------------------------------------------------------------------- SHA256SUMS and manifest.json


ARTIFACT_SUFFIXES = (".deb", ".tar.gz", ".spdx.json")


def artifact_files(directory: Path) -> list[Path]:
    """The artifacts of a recipe: every .deb, .tar.gz and their SBOMs in its directory, sorted by name."""
    return sorted((p for p in directory.iterdir() if p.is_file() and p.name.endswith(ARTIFACT_SUFFIXES)), key=lambda p: p.name)


def tarball_contents(path: Path) -> list[dict[str, Any]]:
    entries = []
    with tarfile.open(path) as tar:
        for info in tar:
            name = info.name.removeprefix(f"{TOP}/")
            if info.isdir():
                continue
            entry: dict[str, Any] = {"path": name, "mode": f"{stat.S_IMODE(info.mode):04o}"}
            if info.issym():
                entry["link"] = info.linkname
            else:
                data = tar.extractfile(info).read()  # type: ignore[union-attr]
                entry |= {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                if name.startswith(EXECUTABLE_SECTIONS) and elf.sonames(data):
                    entry["needs"] = elf.sonames(data)
            entries.append(entry)
    return entries


def image_info(client: Any, name: str) -> dict[str, Any]:
    import docker.errors

    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        raise PackageError(f"cannot record the image {name} in manifest.json because the Docker engine no longer has it", hint="rebuild (doit compile ...) so the image exists again") from None
    return {"name": name, "id": image.id, "repo_digests": sorted(image.attrs.get("RepoDigests") or [])}


def build_manifest(recipe: Recipe, settings: Settings, artifacts: list[Path], images: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from .images import base_image_name
    from .modes import resolve_mode

    staged = {c: read_staged(settings, recipe, c) for c in recipe.components}
    modes = sorted({s["mode"] for s in staged.values()})
    builders = sorted({s["builder_image"] for s in staged.values()})
    mode = resolve_mode(modes[0], recipe.target.arch)
    go_arch = mode.toolchain_arch(recipe.target.arch)
    tarball = tarball_path(recipe, settings)
    contents = tarball_contents(tarball) if tarball.exists() else []
    sonames = sorted({soname for e in contents for soname in e.get("needs", [])})
    return {
        "schema": 1,
        "recipe": {
            "name": recipe.name, "file": recipe.path.name, "sha256": sha256_file(recipe.path),
            "target": {"distro": recipe.target.distro, "suite": recipe.target.suite, "arch": str(recipe.target.arch), "mirror": recipe.target.mirror},
            "cgroup_manager": recipe.cgroup_manager, "pause_image": recipe.pause_image, "revision": recipe.revision,
        },
        "components": {
            c: {k: s.get(k) for k in ("version", "repo", "tag", "branch", "commit", "patches", "source_date_epoch", "go", "mode", "builder_image", "builder_image_id")}
            for c, s in staged.items()
        },
        "go": [
            {"version": go.version, "arch": str(go_arch), "tarball": go.tarball(go_arch), "sha256": go.sha256.get(go_arch),
             "components": [c for c in recipe.components if recipe.go_for(c) == go]}
            for go in recipe.toolchains()
        ],
        "mode": modes[0] if len(modes) == 1 else modes,
        "builder_image": images[builders[0]] if len(builders) == 1 else [images[b] for b in builders],
        "base_image": images[base_image_name(mode.builder_target(recipe.target))],
        "source_date_epoch": source_date_epoch(recipe, settings),
        "artifacts": [{"name": p.name, "size": p.stat().st_size, "sha256": sha256_file(p)} for p in artifacts],
        "tarball": {
            "name": tarball.name,
            "top": TOP,
            "members": contents,
            "install": {"prefix": DEFAULT_PREFIX, "cnidir": DEFAULT_CNIDIR, "files": installed_files([e["path"] for e in contents])},
            "runtime": {"libraries": sonames, "debian_packages": runtime_packages(sonames, library_packages(staged))},
        },
    }  # fmt: skip


def image_names(recipe: Recipe, settings: Settings) -> list[str]:
    """The builder images the staged components name, and the base images under them."""
    from .images import base_image_name
    from .modes import resolve_mode

    staged = [read_staged(settings, recipe, c) for c in recipe.components]
    names = {s["builder_image"] for s in staged}
    names |= {base_image_name(resolve_mode(s["mode"], recipe.target.arch).builder_target(recipe.target)) for s in staged}
    return sorted(names)


def docker_images(names: list[str]) -> dict[str, dict[str, Any]]:
    from .container import docker_client

    client = docker_client()
    return {name: image_info(client, name) for name in names}


def write_sums_and_manifest(recipe: Recipe, settings: Settings, lookup_images: Any = docker_images) -> None:
    """manifest.json (what went in), the provenance, SHA256SUMS (over every artifact, the manifest and the
    provenance), atomically; then, with CRIOBUILD_GPG_KEY, a detached signature of each (attest.signed_files).
    The pod test's report is no part of them: it stays, unless the artifacts it tested changed (pod_report).

    lookup_images(names) -> {name: {"name", "id", "repo_digests"}}: the Docker engine's answer by default.
    """
    directory = settings.artifacts / recipe.name
    artifacts = artifact_files(directory) if directory.is_dir() else []
    if not artifacts:
        raise PackageError(f"cannot write SHA256SUMS for {recipe.name} because {directory} has no .deb or .tar.gz", hint=f"run `doit build:{recipe.name}`")
    images = lookup_images(image_names(recipe, settings))
    manifest = build_manifest(recipe, settings, artifacts, images)
    for stale in signed_files(directory):  # signatures of what is rewritten now (the pod report's is its own)
        stale.with_name(stale.name + ".asc").unlink(missing_ok=True)
    if why := drop_if_stale(directory):
        say(f"{directory / REPORT}: dropped because {why}; `doit pod:{recipe.name}` tests these packages")
    write_atomically(directory / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    subjects = {p.name: sha256_file(p) for p in [*artifacts, directory / "manifest.json"]}
    write_atomically(directory / PROVENANCE, provenance_text(manifest, subjects))
    lines = [f"{digest}  {name}\n" for name, digest in subjects.items()] + [f"{sha256_file(directory / PROVENANCE)}  {PROVENANCE}\n"]
    write_atomically(directory / "SHA256SUMS", "".join(lines))
    print(f"{directory}/SHA256SUMS: {len(lines)} files")
    for signature in sign_artifacts(directory):
        print(f"signed: {signature.name}")


# --------------------------------------------------------------------------- doit tasks


def tarball_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    from .build import staging_manifest

    return {
        "name": recipe.name,
        "doc": f"release tarball {tarball_path(recipe, settings).name} with an install script",
        **logged_actions(make_tarball, [recipe, settings], step_log(settings, recipe.name, "tarball"), f"tarball:{recipe.name}"),
        "file_dep": [staging_manifest(settings, recipe, c) for c in recipe.components] + package_data() + SBOM_CODE,
        "targets": [tarball_path(recipe, settings), sbom_path(tarball_path(recipe, settings))],
    }


def package_data() -> list[Path]:
    """The files of this tool that go into every tarball: a change to one makes a new tarball."""
    return sorted(p for p in DATA.rglob("*") if p.is_file()) + [KERNEL_CHECK]


def sums_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    from .deb import deb_path

    artifacts = [deb_path(recipe, c, settings) for c in recipe.components] + [tarball_path(recipe, settings)]
    artifacts += [sbom_path(a) for a in artifacts]
    out = settings.artifacts / recipe.name
    sums = logged_actions(write_sums_and_manifest, [recipe, settings], step_log(settings, recipe.name, "sums"), f"sums:{recipe.name}")
    sums["meta"] |= {"sums": str(out / "SHA256SUMS"), "target": f"{recipe.target.distro} {recipe.target.suite} {recipe.target.arch}"}  # the view's summary
    return {
        "name": recipe.name,
        "doc": "SHA256SUMS and manifest.json over every artifact of the recipe",
        **sums,
        "file_dep": artifacts + [recipe.path],
        "targets": [out / "SHA256SUMS", out / "manifest.json", out / PROVENANCE],
    }
