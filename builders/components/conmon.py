"""containers/conmon: the monitor CRI-O runs between itself and the OCI runtime. A C program built with make."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import OUT, Command, Eras, License, Package, Upstream, help2man, make, sh, stands_in_for

if TYPE_CHECKING:
    from ..recipe import Component, Recipe

PATH = "/usr/bin/conmon"  # where Debian's conmon puts it too: ours stands in for that package (relations())


@dataclass(frozen=True)
class Era:
    man_page: bool  # docs/conmon.8.md (from v2.0.22); before it, help2man writes one from --help


ERAS = Eras(Era(man_page=False), ("2.0.22", {"man_page": True}))


class Conmon(Upstream):
    name = "conmon"
    package = Package(
        "cri-o-conmon", "admin", "https://github.com/containers/conmon", "The conmon Authors", 2016,
        "OCI container runtime monitor, the version CRI-O was tested with",
        "conmon is a small monitoring program that sits between a container manager, such as CRI-O or "
        "Podman, and an OCI runtime, such as runc. It holds the container's terminal and standard streams, "
        "writes its log and records its exit code.\n\n"
        "This is the conmon this CRI-O release was built and tested with. It takes the place of the "
        "distribution's conmon package (same files, which it provides, conflicts with and replaces), so "
        "apt keeps it even where the distribution's is newer.",
        former_names=("conmon",),
    )  # fmt: skip
    licenses = (License("Apache-2.0", "LICENSE"),)
    version_command = ("conmon", "--version")
    named_in = (("scripts/versions", "conmon"),)

    def build_packages(self, pin: Component) -> tuple[str, ...]:
        return ("libglib2.0-dev", "libsystemd-dev", "libseccomp-dev", "go-md2man", "help2man")

    def relations(self, recipe: Recipe) -> dict[str, list[str]]:
        return stands_in_for("conmon")

    def commands(self, recipe: Recipe, pin: Component) -> list[Command]:
        install = [make(), sh(f"install -D -m 755 bin/conmon {OUT}{PATH}")]
        if ERAS.at(pin.version).man_page:
            # docs/Makefile itself: the top-level `make docs` first builds go-md2man from tools/ (online in some releases).
            return install + [make("-C", "docs", "GOMD2MAN=go-md2man"), make("-C", "docs", "install", f"DESTDIR={OUT}", "PREFIX=/usr")]
        return install + [help2man("conmon", "8", "OCI container runtime monitor")]


UPSTREAM = Conmon()
