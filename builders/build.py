"""Build one component in an arm64 container with its upstream's own entry points, into a staging tree.

Staging layout per recipe: artifacts/<recipe>/staging/<component>/ is a DESTDIR tree (usr/bin, etc, ...),
artifacts/<recipe>/staging/<component>.json says what was built and is written last, so a tree without it
is never taken as done; the step's log, artifacts/<recipe>/logs/compile-<component>.log, keeps the build's output.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from . import elf, store
from .arch import Arch
from .components import upstream
from .components.base import OUT
from .container import Container, docker_client
from .errors import ContainerError, PackageError, SourceError
from .go_toolchain import ensure_go, goroot
from .images import base_image_name, builder_image_name, ensure_builder_image, image_exists
from .licenses import check_licenses
from .files import dir_atomically, locked, temporary_dir, write_atomically
from .modes import BuildMode, resolve_mode
from .recipe import Component, Recipe
from .settings import Settings
from .view import say
from .sources import apply_patches, checkout, last_line, run_git
from .volumes import ensure_go_volume, go_volume_name, volume_exists
from .workspace import choose_workspace

STAGING_FORMAT = 3  # what a staging manifest records; a new one builds again (2: linked libraries, base image; 3: licences)
SRC = "/src"
GOROOT = "/usr/local/go"


# Upstream Makefiles stamp `date -u` into binaries (cri-o's buildDate); this `date` answers with
# SOURCE_DATE_EPOCH instead, unless asked about another date, so two builds are byte-identical.
DATE_SHIM = """#!/bin/sh
for a in "$@"; do case "$a" in -d*|--date*|-r*|--reference*|-s*|--set*) exec /bin/date "$@";; esac; done
exec /bin/date -d "@$SOURCE_DATE_EPOCH" "$@"
"""
SHIM_DIR = "/opt/criobuild/bin"
HOME = "/tmp/criobuild-home"
GOCACHE = "/cache"


def shims_script(shims: dict[str, str]) -> str:
    writes = [f"cat > {SHIM_DIR}/{name} <<'EOF'\n{script}EOF\nchmod 755 {SHIM_DIR}/{name}" for name, script in shims.items()]
    return f"mkdir -p {SHIM_DIR}\n" + "\n".join(writes)


def staging_dir(settings: Settings, recipe: Recipe, component: str) -> Path:
    return settings.artifacts / recipe.name / "staging" / component


def staging_manifest(settings: Settings, recipe: Recipe, component: str) -> Path:
    return staging_dir(settings, recipe, component).with_suffix(".json")


def build_env(mode: BuildMode, source_date_epoch: int) -> dict[str, str]:
    return {
        "PATH": f"{SHIM_DIR}:{GOROOT}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "GOROOT": GOROOT,
        "GOPATH": f"{HOME}/go",
        "GOCACHE": f"{GOCACHE}/go-build",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-trimpath",
        "CGO_ENABLED": "1",
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
        "HOME": HOME,  # writable whoever the build runs as
    } | mode.env()


def go_cache_volume(recipe: Recipe, mode: BuildMode, user: str) -> str:
    """Go's build cache survives between builds, one per target, mode and user (its files are theirs).

    Per release too: Go's cache keys do not cover the C library headers cgo compiles against, and
    bullseye armhf linked trixie's time64 runtime/cgo (`undefined reference to __nanosleep64`) from a shared one."""
    suffix = f"-u{user.split(':')[0]}" if user else ""
    return f"criobuild-gocache-{recipe.target.distro}-{recipe.target.suite}-{recipe.target.arch}-{mode.name}{suffix}"


def builder_setup(mode: BuildMode) -> str:
    """Baked into the builder image, as root: the shims first on PATH, a home, and the Go cache directory (a new
    Go cache volume starts as a copy of the image's). Git must trust the tree whoever owns it, or upstream's
    `git rev-parse` stamps no commit."""
    trust = f"git config --file {HOME}/.gitconfig safe.directory '*'"
    return f"{shims_script({'date': DATE_SHIM} | mode.shims())}\nmkdir -p {HOME} {GOCACHE}/go-build\n{trust}\n"


def hand_over(user: str) -> list[str]:
    """Run as root before a build that runs as the invoking user: the home and Go cache become theirs."""
    return ["chown", user, HOME, f"{GOCACHE}/go-build"]


def commit_epoch(source: Path) -> int:
    status, out, err = run_git("log", "-1", "--format=%ct", cwd=source)
    if status != 0:
        raise SourceError(f"cannot read the commit time of {source} because git said: {last_line(err)}", hint="check the checkout; the next build makes a fresh one")
    return int(out.strip())


def build_component(recipe: Recipe, name: str, settings: Settings) -> dict | None:
    """Check out, build in a container, verify the ELF architecture, and stage atomically; or stage the build
    another recipe made from the same inputs (then {"reused": key}, which the view shows).

    In auto mode a component that cross mode cannot build is built again under emulation.
    """
    mode = resolve_mode(settings.mode, recipe.target.arch)
    try:
        return build_with(mode, recipe, name, settings)
    except ContainerError as error:
        if settings.mode != "auto" or mode.name != "cross" or not cross_toolchain_failed(error.message):
            raise
        say(f"cross mode could not build {name} ({error.message.splitlines()[0]}); building it under emulation")
        emulated = resolve_mode("qemu", recipe.target.arch)
        prepare_builder(emulated, recipe, settings)
        return build_with(emulated, recipe, name, settings)


# What a build says when the cross toolchain failed it, not the source: emulation builds those. A failing
# make target, a compile error or a missing output fails the same way under emulation, so it fails at once.
CROSS_TOOLCHAIN_FAILURES = (
    "cannot run test program while cross compiling", "Exec format error", "skipping incompatible",
    "cannot find -l", "was not found in the pkg-config search path", "file format not recognized", "wrong ELF class",
)  # fmt: skip


def cross_toolchain_failed(output: str) -> bool:
    return any(marker in output for marker in CROSS_TOOLCHAIN_FAILURES)


@dataclass(frozen=True)
class Builder:
    image: str
    go_volume: str  # the Go toolchain, mounted read-only at GOROOT


def make_builder_image(mode: BuildMode, recipe: Recipe, settings: Settings) -> str:
    """The image step's action: the builder image for this mode (and its base image), made if missing."""
    return ensure_builder_image(docker_client(), mode.builder_target(recipe.target), mode.build_packages(recipe), settings.base_source, builder_setup(mode))


def builder_image(client: docker.DockerClient, mode: BuildMode, recipe: Recipe) -> str | None:
    """The name of the builder image the image step made; None when it (or its base image) is not there."""
    try:
        name, _ = builder_image_name(client, mode.builder_target(recipe.target), mode.build_packages(recipe), builder_setup(mode))
    except docker.errors.ImageNotFound:
        return None
    return name if image_exists(client, name) else None


def go_volume(mode: BuildMode, recipe: Recipe, settings: Settings, component: str) -> tuple[str, Path, str]:
    """The volume of the Go toolchain that builds component: its name, the unpacked toolchain, the tarball's sha256."""
    arch = mode.toolchain_arch(recipe.target.arch)
    go = recipe.go_for(component)
    root, sha256 = goroot(go, arch, settings), go.sha256[arch]
    return go_volume_name(root, sha256), root, sha256


def go_volumes(mode: BuildMode, recipe: Recipe, settings: Settings) -> dict[str, tuple[Path, str]]:
    """Every Go toolchain volume the recipe's components use: name -> (the unpacked toolchain, its sha256)."""
    return {name: (root, sha256) for name, root, sha256 in (go_volume(mode, recipe, settings, c) for c in recipe.components)}


def make_go_volumes(mode: BuildMode, recipe: Recipe, settings: Settings) -> None:
    """The Go volume step's action: each toolchain the recipe's components use, copied into its volume."""
    client = docker_client()
    image = make_builder_image(mode, recipe, settings)  # made by the image step before: here an inspect
    for root, sha256 in go_volumes(mode, recipe, settings).values():
        ensure_go_volume(client, image, root, sha256)


def builder_ready(mode: BuildMode, recipe: Recipe) -> bool:
    """The image step's uptodate: its image is there (a changed definition has a new name)."""
    return builder_image(docker_client(), mode, recipe) is not None


def go_volumes_ready(mode: BuildMode, recipe: Recipe, settings: Settings) -> bool:
    """The govolume step's uptodate: its volumes are there. A fill cut short left no doit state for the step
    (its file_dep, the toolchains, are recorded on success), so it runs again and refills."""
    client = docker_client()
    return all(volume_exists(client, name) for name in go_volumes(mode, recipe, settings))


def builder_for(mode: BuildMode, recipe: Recipe, settings: Settings, component: str) -> Builder:
    """The builder image and Go volume the image and govolume steps made, for this component."""
    client = docker_client()
    image = builder_image(client, mode, recipe)
    name = go_volume(mode, recipe, settings, component)[0]
    if image is None or not volume_exists(client, name):
        raise ContainerError(f"the {mode.name} builder image or Go volume of {recipe.name} is gone (removed since the steps that make them ran)",
                             hint=f"run the build again: `doit image:{recipe.name} govolume:{recipe.name}` make them")  # fmt: skip
    return Builder(image, name)


def prepare_builder(mode: BuildMode, recipe: Recipe, settings: Settings) -> None:
    """What the image, go and govolume steps do, for a mode decided while compiling (auto's emulation fallback)."""
    arch = mode.toolchain_arch(recipe.target.arch)
    for go in recipe.toolchains():
        ensure_go(go, arch, settings)
    make_go_volumes(mode, recipe, settings)


def build_with(mode: BuildMode, recipe: Recipe, name: str, settings: Settings) -> dict | None:
    """One build of a component into one staging tree at a time: another run of the same checkout waits, and
    says so. Runs of two checkouts that share the cache build side by side (each checks out into a work tree
    of its own). A build whose inputs were built before, for any recipe, is staged from the store instead;
    two builds of the same inputs at once build once (the second waits, then reuses)."""
    with locked(staging_dir(settings, recipe, name).with_suffix(".lock"), f"waiting for another build of compile:{recipe.name}:{name}"):
        mode.preflight(settings)
        builder = builder_for(mode, recipe, settings, name)
        key = content_key(recipe, name, mode, builder.image)
        with store.claimed(settings.cache, key, f"waiting for another build of {name} from the same inputs (key {key[:12]})"):
            if store.has(settings.cache, key):
                return stage_reused(recipe, name, settings, key)
            build_unlocked(builder, mode, recipe, name, settings, key)
            store.publish(settings.cache, key, staging_dir(settings, recipe, name), read_manifest(settings, recipe, name) | {"built_for": recipe.name})
    return None


def build_inputs(recipe: Recipe, name: str, mode: BuildMode, image: str) -> dict:
    """Everything a component's staged tree is made from: its pin and patches, the Go toolchain, the target, the
    build mode, the builder image (its name hashes its base image and packages) and what this tool runs."""
    pin = recipe.components[name]
    described = {"repo": pin.repo, "tag": pin.tag, "branch": pin.branch, "version": pin.version, "commit": pin.commit,
                 "buildtags": list(pin.buildtags), "patches": [[p.path.name, p.sha256] for p in pin.patches]}  # fmt: skip
    return recipe.fingerprint(name, mode.toolchain_arch(recipe.target.arch)) | {
        "component": [name, described], "mode": mode.name, "builder_image": image, "format": STAGING_FORMAT,
        "env": build_env(mode, 0),
        "commands": [c.argv for c in upstream(name).commands(recipe, pin)], "licenses": [repr(lic) for lic in upstream(name).licenses],
    }  # fmt: skip


def content_key(recipe: Recipe, name: str, mode: BuildMode, image: str) -> str:
    return hashlib.sha256(json.dumps(build_inputs(recipe, name, mode, image), sort_keys=True).encode()).hexdigest()


def stage_reused(recipe: Recipe, name: str, settings: Settings, key: str) -> dict:
    """Stage the stored build of key as this recipe's (links, not a copy), its manifest last."""
    built = store.manifest_of(settings.cache, key)
    final, manifest = staging_dir(settings, recipe, name), staging_manifest(settings, recipe, name)
    print(f"# {recipe.name}: reusing {name} {built['version']} ({built['commit'][:12]}), built for {built['built_for']} "
          f"from the same inputs (key {key}, {store.entry(settings.cache, key)}): nothing to compile")  # fmt: skip
    manifest.unlink(missing_ok=True)
    with dir_atomically(final) as partial:
        store.link_tree(store.entry(settings.cache, key) / "tree", partial)
    reused = {k: v for k, v in built.items() if k != "built_for"} | {"reused_from": built["built_for"]}
    write_atomically(manifest, json.dumps(reused, indent=2) + "\n")
    return {"reused": key}


def read_manifest(settings: Settings, recipe: Recipe, name: str) -> dict:
    return json.loads(staging_manifest(settings, recipe, name).read_text())


def build_unlocked(builder: Builder, mode: BuildMode, recipe: Recipe, name: str, settings: Settings, key: str) -> None:
    started = time.monotonic()
    component = recipe.components[name]
    client = docker_client()
    final, manifest = staging_dir(settings, recipe, name), staging_manifest(settings, recipe, name)
    manifest.unlink(missing_ok=True)
    with temporary_dir(settings.cache / "work" / recipe.name, name) as work, dir_atomically(final) as partial:  # work: the checkout
        source = checkout(component, settings, work / name)
        apply_patches(component, source)
        licenses = check_licenses(upstream(name), source, f"{name} {component.version} ({component.commit[:12]})")
        epoch = commit_epoch(source)
        steps, libraries = run_build(client, builder, mode, recipe, name, settings, source, partial, epoch)
        binaries = elf.check_tree(partial, recipe.target.arch)
    base = base_image_name(mode.builder_target(recipe.target))
    extra = {"base_image": base, "base_image_id": image_id(base), "licenses": licenses, "libraries": libraries, "steps": steps, "wall_seconds": round(time.monotonic() - started, 2), "content_key": key}
    write_manifest(manifest, recipe, component, mode, builder.image, binaries, epoch, extra)


def run_build(client: docker.DockerClient, builder: Builder, mode: BuildMode, recipe: Recipe, name: str, settings: Settings, source: Path, output: Path, epoch: int) -> tuple[list[dict], list[dict]]:
    """Run the component's upstream steps in a fresh container, leaving their DESTDIR tree in output; returns each
    step's time and the shared libraries the tree links (see linked_libraries)."""
    component = recipe.components[name]
    space = choose_workspace(client, settings.transfer)
    volumes = {builder.go_volume: {"bind": GOROOT, "mode": "ro"}, go_cache_volume(recipe, mode, space.user): {"bind": GOCACHE, "mode": "rw"}}
    volumes |= space.volumes(str(source), str(output), SRC, OUT)
    with Container(client, builder.image, volumes=volumes, env=build_env(mode, epoch), workdir=SRC, what=f"{recipe.name} {name}", owner=str(settings.artifacts), user=space.user) as box:
        box.say(f"# {recipe.name}: building {name} {component.version} ({component.commit[:12]}) in {builder.image}, mode {mode.name}, sources {'mounted' if space.mount else 'copied'}")
        if not space.mount:
            box.copy_into(source, SRC)
        if space.user:
            box.call(hand_over(space.user), user="root")
        box.timings.clear()
        for command in upstream(name).commands(recipe, component):
            box.call(command.argv)
        steps = [{"argv": argv, "seconds": seconds} for argv, seconds in box.timings]
        if not space.mount:
            box.copy_out(OUT, output)
        libraries = linked_libraries(box, output, recipe.target.arch)
    return steps, libraries


def linked_libraries(box: Container, tree: Path, arch: Arch) -> list[dict[str, str]]:
    """Each shared library the tree's programs link, with the target's package that has it and that package's
    version, as dpkg in the builder knows them (for the SBOM: what the programs were linked against)."""
    sonames = sorted({s for path in tree.rglob("*") if path.is_file() and not path.is_symlink() for s in elf.needed_libraries(path)})
    if not sonames:
        return []
    owners = library_owners(box.stdout(["dpkg-query", "-S", *(f"*/{s}" for s in sonames)]), sonames, arch)
    listed = box.stdout(["dpkg-query", "-W", "-f", "${binary:Package}\t${Version}\n", *sorted(set(owners.values()))]) if owners else ""
    versions = dict(line.split("\t", 1) for line in listed.splitlines() if "\t" in line)
    return [{"soname": s, "package": owners[s].split(":")[0], "version": versions.get(owners[s], ""), "arch": arch.to_deb()} if s in owners
            else {"soname": s, "package": "", "version": "", "arch": arch.to_deb()} for s in sonames]


def library_owners(dpkg_search: str, sonames: list[str], arch: Arch) -> dict[str, str]:
    """soname -> the package (with its :arch) `dpkg-query -S` names for it: the target's, not the host's
    (a cross builder has both) nor a cross toolchain's copy (libc6-arm64-cross)."""
    owners: dict[str, str] = {}
    for line in dpkg_search.splitlines():
        packages, sep, path = line.rpartition(": ")
        soname = path.rsplit("/", 1)[-1]
        if not sep or soname not in sonames or line.startswith("diversion"):
            continue
        for package in packages.split(", "):
            name, _, qualifier = package.partition(":")
            if not name.endswith("-cross") and qualifier in ("", arch.to_deb()):
                owners.setdefault(soname, package)
    return owners


def read_staged(settings: Settings, recipe: Recipe, component: str) -> dict:
    """A component's staging manifest, refused if missing or built from another pin than the recipe's."""
    path = staging_manifest(settings, recipe, component)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PackageError(f"cannot package {recipe.name} because {component} is not staged ({path} is missing)", hint=f"run `doit compile:{recipe.name}:{component}` first") from None
    pinned = recipe.components[component].commit
    if data.get("commit") != pinned:
        raise PackageError(
            f"cannot package {recipe.name} because the staged {component} is commit {data.get('commit')} and {recipe.path} pins {pinned}",
            hint=f"rebuild it: `doit compile:{recipe.name}:{component}`",
        )
    if "source_date_epoch" not in data:
        raise PackageError(
            f"cannot package {recipe.name} because the staged {component} has no source_date_epoch (staged by an older criobuild)",
            hint=f"rebuild it: `doit compile:{recipe.name}:{component}`",
        )
    return data


def image_id(name: str) -> str:
    return docker_client().images.get(name).id


def write_manifest(path: Path, recipe: Recipe, c: Component, mode: BuildMode, image: str, binaries: list[str], epoch: int, extra: dict) -> None:
    data = {
        "component": c.name, "version": c.version, "repo": c.repo, "tag": c.tag, "branch": c.branch,
        "commit": c.commit, "patches": [{"file": p.path.name, "sha256": p.sha256} for p in c.patches],
        "source_date_epoch": epoch, "go": recipe.go_for(c.name).version, "mode": mode.name,
        "builder_image": image, "builder_image_id": image_id(image), "binaries": binaries, **extra,
    }  # fmt: skip
    write_atomically(path, json.dumps(data, indent=2) + "\n")

