"""Build modes: native (arm64 host), qemu (user-mode emulation via binfmt), cross (host-arch container)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace

from .arch import Arch, host_arch
from .errors import ContainerError
from .images import build_packages, check_binfmt
from .recipe import Recipe, Target
from .settings import Settings



@dataclass(frozen=True)
class BuildMode:
    name: str
    target_arch: Arch

    def env(self) -> dict[str, str]:
        return self.target_arch.go_env()  # GOARM=7 for armhf whichever Go builds it

    def shims(self) -> dict[str, str]:
        """Small commands put first on PATH in the build container: name -> shell script."""
        return {}

    def toolchain_arch(self, target: Arch) -> Arch:
        return target

    def builder_target(self, target: Target) -> Target:
        return target

    def build_packages(self, recipe: Recipe) -> tuple[str, ...]:
        """What the builder image installs (the .debs a build needs, not the ones it makes)."""
        return build_packages(recipe)

    def preflight(self, settings: Settings) -> None:
        check_disk(settings)


@dataclass(frozen=True)
class Native(BuildMode):
    def preflight(self, settings: Settings) -> None:
        if host_arch() != self.target_arch:
            raise ContainerError(
                f"native mode cannot build {self.target_arch} because this host is {host_arch()}",
                hint="use CRIOBUILD_MODE=qemu (or auto) here, or DOCKER_HOST pointing at an arm64 machine",
            )
        super().preflight(settings)


@dataclass(frozen=True)
class Qemu(BuildMode):
    def preflight(self, settings: Settings) -> None:
        check_binfmt(self.target_arch)
        super().preflight(settings)


@dataclass(frozen=True)
class Cross(BuildMode):
    """A container of the host's architecture with the target's multiarch -dev packages and a cross gcc.

    What the build runs of its own output (crio generating crio.conf, go-md2man) runs through the
    host's binfmt registration, with the target's shared libraries from multiarch.
    """

    def toolchain_arch(self, target: Arch) -> Arch:
        return host_arch()

    def builder_target(self, target: Target) -> Target:
        return replace(target, arch=host_arch())

    def build_packages(self, recipe: Recipe) -> tuple[str, ...]:
        return cross_packages(super().build_packages(recipe), self.target_arch)

    def env(self) -> dict[str, str]:
        triplet = self.target_arch.to_gnu_triplet()
        return super().env() | {
            "CRIOBUILD_HOST": triplet,  # autotools' --host (crun's configure)
            "CC": f"{triplet}-gcc",
            "PKG_CONFIG_LIBDIR": f"/usr/lib/{triplet}/pkgconfig:/usr/share/pkgconfig",
        }

    def shims(self) -> dict[str, str]:
        # cri-o's pinns Makefile calls a bare `strip`, which must be the target's.
        return {"strip": f'#!/bin/sh\nexec {self.target_arch.to_gnu_triplet()}-strip "$@"\n'}

    def preflight(self, settings: Settings) -> None:
        if host_arch() != self.target_arch:
            check_binfmt(self.target_arch)
        super().preflight(settings)


def cross_packages(packages: tuple[str, ...], target: Arch) -> tuple[str, ...]:
    """Build tools for the host; libraries (-dev) for the target, plus its cross compiler and libc."""
    deb = target.to_deb()
    libraries = [f"{p}:{deb}" for p in packages if is_library(p)]
    tools = [p for p in packages if not is_library(p)] + ["libc6-dev"]  # libtool too: a tool, for all its name
    return tuple(sorted({*tools, *libraries, f"gcc-{target.to_gnu_triplet()}", f"binutils-{target.to_gnu_triplet()}"}))


def is_library(package: str) -> bool:
    return package.startswith("lib") and package.endswith("-dev")


def check_disk(settings: Settings) -> None:
    for path in (settings.artifacts, settings.cache):
        existing = next(p for p in (path, *path.parents) if p.exists())
        free_gib = shutil.disk_usage(existing).free / 2**30
        if free_gib < settings.min_free_gib:
            raise ContainerError(
                f"too little disk for a build because {existing} has {free_gib:.1f} GiB free and a build needs {settings.min_free_gib:g} GiB",
                hint="free some space (docker system prune, or remove $CRIOBUILD_CACHE), or lower CRIOBUILD_MIN_FREE_GIB",
            )


def resolve_mode(requested: str, target: Arch) -> BuildMode:
    if requested == "auto":  # cross builds the same artifacts as emulation, several times faster
        requested = "native" if host_arch() == target else "cross"
    if requested == "native":
        return Native("native", target)
    if requested == "qemu":
        return Native("native", target) if host_arch() == target else Qemu("qemu", target)
    if requested == "cross":  # for the host's own architecture there is nothing to cross
        return Native("native", target) if host_arch() == target else Cross("cross", target)
    raise ContainerError(f"unknown build mode {requested!r}", hint="use CRIOBUILD_MODE=auto, native, qemu or cross")
