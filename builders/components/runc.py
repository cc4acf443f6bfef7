"""opencontainers/runc: the OCI runtime every CRI-O release can use, built with upstream's make.

Ours goes to /usr/libexec/crio/runc (as cri-o/packaging places it), so it installs beside Debian's
runc package (/usr/sbin/runc), which docker.io and podman depend on; its man pages are renamed
cri-o-runc*.8 for the same reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import OUT, RUNTIME_DIR, Command, Eras, License, Package, Runtime, Upstream, make, sh

if TYPE_CHECKING:
    from ..recipe import Component, Recipe

IMPORT_PATH = "github.com/opencontainers/runc"


@dataclass(frozen=True)
class Era:
    gopath: bool  # no go.mod yet: the tree must sit at $GOPATH/src/<import path>
    buildtags: tuple[str, ...] = ()  # what a new recipe pins as BUILDTAGS (none: upstream's default)


ERAS = Eras(
    Era(gopath=True),
    ("1.0.0-rc92", {"gopath": False}),
    ("1.5.0", {"buildtags": ("seccomp", "urfave_cli_no_docs")}),
)
WHY_BUILDTAGS = "v1.5 adds the libpathrs tag by default, a Rust library Debian does not ship: upstream's other defaults."


class Runc(Upstream):
    name = "runc"
    package = Package(
        "cri-o-runc", "admin", "https://github.com/opencontainers/runc", "The runc Authors", 2014,
        "OCI container runtime runc, for CRI-O",
        "runc spawns and runs containers on Linux according to the Open Container Initiative (OCI) "
        "runtime specification.\n\n"
        f"This build is the one the CRI-O packages of this repository name in their configuration: it is "
        f"installed as {RUNTIME_DIR}/runc, so Debian's runc package (/usr/sbin/runc) can be installed beside it.",
    )  # fmt: skip
    licenses = (License("Apache-2.0", "LICENSE"),)
    version_command = (f"{RUNTIME_DIR}/runc", "--version")
    runtime = Runtime("runc", f"{RUNTIME_DIR}/runc", "/run/runc")
    named_in = (("scripts/versions", "runc"), ("contrib/test/ci/vars.yml", "runc_git_version"))

    def new_pin_lines(self, version: str) -> list[str]:
        tags = ERAS.at(version).buildtags
        if not tags:
            return []
        return [f"# {WHY_BUILDTAGS}", "buildtags = [" + ", ".join(f'"{t}"' for t in tags) + "]"]

    def build_packages(self, pin: Component) -> tuple[str, ...]:
        return ("libseccomp-dev", "go-md2man")

    def commands(self, recipe: Recipe, pin: Component) -> list[Command]:
        tags = [f"BUILDTAGS={' '.join(pin.buildtags)}"] if pin.buildtags else []
        build = make("runc", *tags)
        if ERAS.at(pin.version).gopath:
            link = f"$GOPATH/src/{IMPORT_PATH}"
            build = sh(f"mkdir -p $(dirname {link}) && ln -sfn $PWD {link} && cd {link} && GO111MODULE=off make runc {' '.join(repr(t) for t in tags)}")
        return [
            build,
            make("man"),
            sh(f"install -D -m 755 runc {OUT}{RUNTIME_DIR}/runc"),
            sh(f"mkdir -p {OUT}/usr/share/man/man8 && for page in man/man8/runc*.8; do "
               f'install -m 644 "$page" {OUT}/usr/share/man/man8/cri-o-$(basename "$page"); done'),
        ]  # fmt: skip


UPSTREAM = Runc()
