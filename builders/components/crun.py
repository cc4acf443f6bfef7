"""containers/crun: the C OCI runtime CRI-O defaults to from 1.31, built with autotools.

Its libocispec (and that one's runtime-spec, image-spec and yajl) are git submodules, fetched at the
commits the pinned tree records (builders/sources.py). Ours goes to /usr/libexec/crio/crun, beside
Debian's crun package (/usr/bin/crun); its man page is renamed cri-o-crun.1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import OUT, RUNTIME_DIR, Command, Eras, License, Package, Runtime, Upstream, make, sh

if TYPE_CHECKING:
    from ..recipe import Component, Recipe


@dataclass(frozen=True)
class Era:
    json_library: str  # the -dev package of the JSON library libocispec links


ERAS = Eras(Era(json_library="libyajl-dev"), ("1.28", {"json_library": "libjson-c-dev"}))


class Crun(Upstream):
    name = "crun"
    required = False  # only where cri-o's era names it (1.31+: the default runtime)
    package = Package(
        "cri-o-crun", "admin", "https://github.com/containers/crun", "The crun Authors", 2017,
        "fast OCI container runtime written in C, for CRI-O",
        "crun runs containers on Linux according to the Open Container Initiative (OCI) runtime "
        "specification. It is written in C, starts containers faster and uses less memory than runc.\n\n"
        f"This build is the one the CRI-O packages of this repository name in their configuration: it is "
        f"installed as {RUNTIME_DIR}/crun, so Debian's crun package (/usr/bin/crun) can be installed beside it.",
    )  # fmt: skip
    # COPYING is the GPL, version 2; src/*.c say "or (at your option) any later version". libcrun's sources
    # (src/libcrun/) say LGPL 2.1 or later, and COPYING.libcrun is its text.
    licenses = (License("GPL-2.0-or-later", "COPYING"), License("LGPL-2.1-or-later", "COPYING.libcrun", "src/libcrun/*"))
    version_command = (f"{RUNTIME_DIR}/crun", "--version")
    runtime = Runtime("crun", f"{RUNTIME_DIR}/crun", "/run/crun")
    # crun copies itself into a sealed memfd and re-executes that unless its binary sits on a read-only
    # filesystem (src/libcrun/cloned_binary.c); qemu-user cannot exec the memfd, so `crun --version`
    # exits 1 with no output there. On a Pi (native) the installed path runs as it is.
    emulated_read_only = True
    named_in = (("scripts/versions", "crun"), ("contrib/test/ci/vars.yml", "crun_git_version"))

    def build_packages(self, pin: Component) -> tuple[str, ...]:
        return (
            "autoconf", "automake", "libtool", "python3", "go-md2man",
            "libcap-dev", "libseccomp-dev", "libsystemd-dev", ERAS.at(pin.version).json_library,
        )  # fmt: skip

    def commands(self, recipe: Recipe, pin: Component) -> list[Command]:
        return [
            # autogen.sh without its `git submodule update`: the submodules are already checked out.
            Command(["autoreconf", "-fi"]),
            sh('./configure --prefix=/usr ${CRIOBUILD_HOST:+--host=$CRIOBUILD_HOST}'),
            make(),
            sh(f"install -D -m 755 crun {OUT}{RUNTIME_DIR}/crun"),
            sh(f"install -D -m 644 crun.1 {OUT}/usr/share/man/man1/cri-o-crun.1"),
        ]


UPSTREAM = Crun()
