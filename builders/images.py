"""Base images (pulled, or bootstrapped from the distribution's mirror) and builder images on top."""
from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import tempfile
from collections import deque
from pathlib import Path

import docker
import docker.errors

from .arch import Arch, host_arch
from .errors import ContainerError
from .files import locked
from .components import upstream
from .recipe import Recipe, Target
from .view import say
from .tools import APT_HINTS, StderrTail, hint_for, last_lines, require_tool

BINFMT = Path("/proc/sys/fs/binfmt_misc")
# What every build needs, whatever it builds: each component adds its own (builders/components/), and
# dpkg-dev lets dpkg-shlibdeps read the target's own shlibs files.
COMMON_BUILD_PACKAGES = ("ca-certificates", "dpkg-dev", "file", "gcc", "git", "libc6-dev", "make", "pkg-config")


def build_packages(recipe: Recipe) -> tuple[str, ...]:
    """The builder image's packages: the recipe's target.packages if it lists them, else what its components need."""
    if recipe.build_packages:
        return recipe.build_packages
    needed = set(COMMON_BUILD_PACKAGES)
    for name, pin in recipe.components.items():
        needed.update(upstream(name).build_packages(pin))
    return tuple(sorted(needed))


def base_image_name(target: Target) -> str:
    return f"criobuild/base:{target.distro}-{target.suite}-{target.arch}"


def image_lock(name: str) -> Path:
    """One lock per image name and machine (the engine's images are the machine's, whatever the cache): two
    builds that need an image not made yet make it once, the other waits."""
    return Path(tempfile.gettempdir()) / "criobuild-images" / f"{name.replace('/', '_').replace(':', '_')}.lock"


def ensure_base_image(client: docker.DockerClient, target: Target, source: str = "auto") -> str:
    """The target's root filesystem as a local image; source is auto, pull or bootstrap."""
    name = base_image_name(target)
    if image_exists(client, name):
        return name
    with locked(image_lock(name), f"waiting for another build that is making {name}"):
        if not image_exists(client, name):
            make_base_image(client, target, source, name)
    return name


def make_base_image(client: docker.DockerClient, target: Target, source: str, name: str) -> None:
    if source in ("auto", "pull") and pull_base(client, target, name):
        return
    if source == "pull":
        raise ContainerError(f"cannot pull {target.distro}:{target.suite} for {target.arch.to_oci()}", hint="set CRIOBUILD_BASE=bootstrap to build it from the distribution's mirror")
    bootstrap_base(target, name)


def image_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def pull_base(client: docker.DockerClient, target: Target, name: str) -> bool:
    try:
        image = client.images.pull(target.distro, tag=target.suite, platform=target.arch.to_oci())
    except docker.errors.APIError as e:
        say(f"could not pull {target.distro}:{target.suite} ({e.explanation}); bootstrapping from {target.mirror}")
        return False
    image.tag(name)
    return True


def bootstrap_base(target: Target, name: str) -> None:
    """mmdebstrap a minimal root filesystem from the mirror and `docker import` it (streamed, no temp file)."""
    check_bootstrap_tools(target)
    say(f"bootstrapping {name} from {target.mirror} with mmdebstrap")
    strap = subprocess.Popen(
        ["mmdebstrap", f"--arch={target.arch.to_deb()}", "--variant=minbase", "--include=ca-certificates",
         target.suite, "-", target.mirror],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    strap_err = StderrTail(strap.stderr)  # type: ignore[arg-type]
    imported = subprocess.run(["docker", "import", f"--platform={target.arch.to_oci()}", "-", name], stdin=strap.stdout, capture_output=True, text=True)
    strap.stdout.close()  # type: ignore[union-attr]
    if strap.wait() != 0:
        remove_image(name)
        said = strap_err.text()
        raise ContainerError(
            f"cannot bootstrap {name} because mmdebstrap returned {strap.returncode}:\n{last_lines(said)}",
            hint=hint_for(said, mmdebstrap_hints(target), default="mmdebstrap's own words are above"),
        )
    if imported.returncode != 0:
        remove_image(name)
        raise ContainerError(
            f"cannot bootstrap {name} because `docker import` returned {imported.returncode}:\n{last_lines(imported.stderr)}",
            hint="check the Docker engine (`docker info`) and its free disk (`docker system df`)",
        )


def check_binfmt(arch: Arch, root: Path = BINFMT) -> None:
    entry = root / arch.qemu()
    if not entry.exists():
        raise ContainerError(
            f"cannot run {arch} containers on this {host_arch()} host because {arch.qemu()} is not registered in binfmt_misc ({entry} is missing)",
            hint="sudo apt-get install qemu-user-static binfmt-support (mount binfmt_misc on /proc/sys/fs/binfmt_misc first if it is not mounted)",
        )
    if not entry.read_text().startswith("enabled"):
        raise ContainerError(f"{arch.qemu()} is registered but disabled in {entry}", hint=f"sudo update-binfmts --enable {arch.qemu()}")


def check_bootstrap_tools(target: Target) -> None:
    """mmdebstrap, and for a foreign architecture arch-test (a Recommends of mmdebstrap) and QEMU."""
    why = f"bootstrap the {target.suite} {target.arch} base image"
    require_tool("mmdebstrap", "mmdebstrap", why)
    if target.arch != host_arch():
        require_tool("arch-test", "arch-test", why)
        check_binfmt(target.arch)


def mmdebstrap_hints(target: Target) -> list[tuple[str, str]]:
    mirror = f"check that {target.mirror} is reachable from this machine and serves {target.suite} for {target.arch}"
    return [
        ("install arch-test", "sudo apt-get install arch-test"),
        ("Temporary failure resolving", mirror), ("Could not resolve", mirror), ("Failed to fetch", mirror),
        ("Connection refused", mirror), ("Connection timed out", mirror), ("does not have a Release file", mirror),
        ("Unable to locate package", f"{target.suite} lacks a package the bootstrap asks for: check the suite name"),
        ("Exec format error", f"register QEMU for {target.arch}: sudo apt-get install qemu-user-static binfmt-support"),
        ("No space left on device", "free disk space (mmdebstrap unpacks into a temporary directory)"),
    ]  # fmt: skip


def remove_image(name: str) -> None:
    subprocess.run(["docker", "rmi", "-f", name], capture_output=True)


def builder_dockerfile(base: str, base_id: str, packages: tuple[str, ...], setup: str = "") -> str:
    """setup: a shell script run last, as root (the build's shims and directories: build.builder_setup)."""
    foreign = sorted({p.split(":", 1)[1] for p in packages if ":" in p})
    add_arches = "".join(f"dpkg --add-architecture {a} && " for a in foreign)
    # The script travels base64-encoded: the classic builder has no heredocs and its RUN is one line.
    run_setup = f"RUN echo {base64.b64encode(setup.encode()).decode()} | base64 -d | sh -e\n" if setup else ""
    return (
        f"# base image id {base_id}\n"
        f"FROM {base}\n"
        "ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8\n"
        f"RUN {add_arches}apt-get update -q && apt-get install -y -q --no-install-recommends "
        + " ".join(sorted(packages))
        + " && rm -rf /var/lib/apt/lists/* && git config --system --add safe.directory '*'\n"
        + run_setup
    )


def builder_image_name(client: docker.DockerClient, target: Target, packages: tuple[str, ...], setup: str = "") -> tuple[str, str]:
    """The builder image's name and Dockerfile; the name is a hash of the Dockerfile, which names the base
    image's id (so the base image must exist), so a change to either makes a new image."""
    base = base_image_name(target)
    dockerfile = builder_dockerfile(base, client.images.get(base).id, packages, setup)
    digest = hashlib.sha256(dockerfile.encode()).hexdigest()[:12]
    return f"criobuild/builder:{target.distro}-{target.suite}-{target.arch}-{digest}", dockerfile


def ensure_builder_image(client: docker.DockerClient, target: Target, packages: tuple[str, ...], base_source: str = "auto", setup: str = "") -> str:
    """Build (once) the builder image, and its base image first if missing."""
    ensure_base_image(client, target, base_source)
    name, dockerfile = builder_image_name(client, target, packages, setup)
    if image_exists(client, name):
        return name
    with locked(image_lock(name), f"waiting for another build that is making {name}"):
        if not image_exists(client, name):
            say(f"building {name} (apt-get install of {len(packages)} packages{emulated_note(target.arch)})")
            build_image(client, dockerfile, name)
    return name


def build_image(client: docker.DockerClient, dockerfile: str, name: str) -> None:
    said: deque[str] = deque(maxlen=200)
    try:
        for line in client.api.build(fileobj=io.BytesIO(dockerfile.encode()), tag=name, rm=True, forcerm=True, decode=True):
            text = line.get("stream", "")
            said.append(text)
            print(text, end="", flush=True)
            if "error" in line:
                output = "".join(said)
                raise ContainerError(
                    f"cannot build {name} because {line['error'].strip()}:\n{last_lines(output)}",
                    hint=hint_for(output, APT_HINTS, default="apt's own words are above"),
                )
    except docker.errors.APIError as e:
        raise ContainerError(f"cannot build {name} because the Docker engine said: {e.explanation}") from None


def emulated_note(arch: Arch) -> str:
    return ", under QEMU: a few minutes" if arch != host_arch() else ""


def ensure_packaging_image(client: docker.DockerClient, builder: str) -> str:
    """The builder image plus debhelper: the target's own dpkg-shlibdeps and dh_* tools make the .debs."""
    dockerfile = (
        f"# builder image id {client.images.get(builder).id}\n"
        f"FROM {builder}\n"
        "RUN apt-get update -q && apt-get install -y -q --no-install-recommends debhelper && rm -rf /var/lib/apt/lists/*\n"
    )
    name = f"criobuild/packaging:{builder.split(':', 1)[1]}-{hashlib.sha256(dockerfile.encode()).hexdigest()[:8]}"
    if not image_exists(client, name):
        with locked(image_lock(name), f"waiting for another build that is making {name}"):
            if not image_exists(client, name):
                build_image(client, dockerfile, name)
    return name
