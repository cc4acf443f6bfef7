"""containers/conmon: the monitor CRI-O runs between itself and the OCI runtime. A C program built with make."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import OUT, Eras, License, Package, Step, Upstream, help2man, make, sh

if TYPE_CHECKING:
    from ..recipe import Component, Recipe

PATH = "/usr/bin/conmon"  # Debian's conmon puts it there too: ours is a version of that package


@dataclass(frozen=True)
class Era:
    man_page: bool  # docs/conmon.8.md (from v2.0.22); before it, help2man writes one from --help


ERAS = Eras(Era(man_page=False), ("2.0.22", {"man_page": True}))


class Conmon(Upstream):
    name = "conmon"
    package = Package(
        "conmon", "admin", "https://github.com/containers/conmon", "The conmon Authors", 2016,
        "OCI container runtime monitor",
        "conmon is a small monitoring program that sits between a container manager, such as CRI-O or "
        "Podman, and an OCI runtime, such as runc. It holds the container's terminal and standard streams, "
        "writes its log and records its exit code.",
    )  # fmt: skip
    licenses = (License("Apache-2.0", "LICENSE"),)
    version_command = ("conmon", "--version")

    def build_packages(self, pin: Component) -> tuple[str, ...]:
        return ("libglib2.0-dev", "libsystemd-dev", "libseccomp-dev", "go-md2man", "help2man")

    def steps(self, recipe: Recipe, pin: Component) -> list[Step]:
        install = [make(), sh(f"install -D -m 755 bin/conmon {OUT}{PATH}")]
        if ERAS.at(pin.version).man_page:
            # docs/Makefile itself: the top-level `make docs` first builds go-md2man from tools/ (online in some releases).
            return install + [make("-C", "docs", "GOMD2MAN=go-md2man"), make("-C", "docs", "install", f"DESTDIR={OUT}", "PREFIX=/usr")]
        return install + [help2man("conmon", "8", "OCI container runtime monitor")]


UPSTREAM = Conmon()
