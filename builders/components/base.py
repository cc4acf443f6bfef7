"""The shape every upstream module fills in, and the small vocabulary its build commands are written in."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from packaging.version import InvalidVersion, Version

if TYPE_CHECKING:
    from ..recipe import Component, Recipe

OUT = "/out"  # the DESTDIR tree a build leaves in its container, staged as artifacts/<recipe>/staging/<component>/
CNI_DIR = "/usr/lib/cni"  # Debian's place for the CNI plugins (containernetworking-plugins)
RUNTIME_DIR = "/usr/libexec/crio"  # our OCI runtimes, as cri-o/packaging places them: beside Debian's runc and crun


@dataclass(frozen=True)
class Command:
    argv: list[str]


def sh(command: str) -> Command:
    return Command(["bash", "-euo", "pipefail", "-c", command])


def make(*args: str) -> Command:
    return Command(["make", *args])


def help2man(program: str, section: str, what: str) -> Command:
    """A manual page from the program's own --help, for releases whose upstream has none (as Debian does)."""
    page = f"{OUT}/usr/share/man/man{section}/{program}.{section}"
    return sh(f"mkdir -p {OUT}/usr/share/man/man{section} && help2man --no-info --section={section} "
              f"--name={what!r} --output={page} {OUT}/usr/bin/{program}")  # fmt: skip


def write_file(path: str, text: str) -> Command:
    return sh(f"mkdir -p $(dirname {path}) && cat > {path} <<'CRIOBUILD_EOF'\n{text}CRIOBUILD_EOF")


@dataclass(frozen=True)
class Package:
    """How an upstream is packaged: the Debian package's name and its text."""

    name: str
    section: str
    homepage: str
    copyright: str
    since: int  # the year upstream's copyright starts
    synopsis: str
    description: str  # the long description, plain paragraphs separated by blank lines
    former_names: tuple[str, ...] = ()  # what earlier criobuilds called this package: their .debs are superseded


@dataclass(frozen=True)
class License:
    """A licence an upstream is under, as its source states it; builders/licenses.py checks it at build time."""

    spdx: str  # the SPDX identifier: "Apache-2.0", "GPL-2.0-or-later"
    file: str  # the licence text at the top of the upstream's tree, whose words must be that licence's
    files: str = "*"  # what it covers, as a debian/copyright Files pattern (the first licence covers "*")


@dataclass(frozen=True)
class Runtime:
    """An OCI runtime crio.conf can name."""

    name: str  # crio.conf's runtime handler name
    path: str  # where its package installs it
    root: str  # its state directory


def stands_in_for(debian: str) -> dict[str, list[str]]:
    """Relations of a package of ours that takes the place of the distribution's package `debian` (the same
    files, under a name of our own): apt installs ours because cri-o depends on that name, which the
    distribution does not have, however new its own package is; whatever depends on the distribution's
    name (podman on conmon) takes ours for it. As containerd.io does for containerd and runc."""
    return {"Provides": [f"{debian} (= ${{binary:Version}})"], "Conflicts": [debian], "Replaces": [debian]}


E = TypeVar("E")


def release_of(version: str) -> Version:
    """v2.1.13, 1.0.0-rc92 (below 1.0.0), 1.37.0-dev, 1.4.3+dev as comparable Versions; anything else by its leading numbers."""
    try:
        return Version(version)
    except InvalidVersion:
        numbers = re.match(r"v?(\d+(?:\.\d+)*)", version)
        if not numbers:
            raise ValueError(f"{version!r} is not a version") from None
        return Version(numbers.group(1))


class Eras(Generic[E]):
    """What changed between an upstream's releases, as data: the first era holds every fact, each later
    row (since-version, changes) only what changed from then on."""

    def __init__(self, first: E, *changes: tuple[str, dict[str, Any]]) -> None:
        self.first = first
        self.changes = sorted(changes, key=lambda row: release_of(row[0]))

    def at(self, version: str) -> E:
        era, wanted = self.first, release_of(version)
        for since, changed in self.changes:
            if wanted >= release_of(since):
                era = replace(era, **changed)  # type: ignore[type-var]
        return era


class Upstream:
    """One upstream project: how it builds at a version, what it installs, how it is packaged.

    Modules under builders/components/ each make one; the generic machinery (build, deb, tarball,
    acceptance) asks these questions and names no component itself.
    """

    name: str  # the recipe's components.<name>
    package: Package
    licenses: tuple[License, ...]  # read from the upstream's own licence files at the pinned commits
    required = True  # every recipe pins it
    version_command: tuple[str, ...] = ()  # prints the version once installed
    runtime: Runtime | None = None  # set for OCI runtimes
    # Under qemu-user, run version_command from a read-only copy of the container (a program that
    # re-executes itself from a memfd unless its binary is read-only, which qemu-user cannot follow).
    emulated_read_only = False
    # Where cri-o's tree names the release of this companion it was tested with, most trusted first:
    # (path in cri-o's tree, key there). `doit new` reads them (builders/new_recipe.py).
    named_in: tuple[tuple[str, str], ...] = ()

    @property
    def repo(self) -> str:
        """The upstream's git repository, as a new recipe names it (the package's homepage is that page)."""
        return self.package.homepage

    def new_pin_lines(self, version: str) -> list[str]:
        """Lines a new recipe adds to this component's table at version (build tags, with why)."""
        return []

    def build_packages(self, pin: Component) -> tuple[str, ...]:
        """Debian packages its build needs in the builder image, beyond the common ones."""
        return ()

    def commands(self, recipe: Recipe, pin: Component) -> list[Command]:
        raise NotImplementedError

    def relations(self, recipe: Recipe) -> dict[str, list[str]]:
        """Depends/Recommends/Provides that dpkg-shlibdeps cannot see (Depends also gets ${shlibs:Depends})."""
        return {}

    def prepare_package(self, root: Path, recipe: Recipe) -> None:
        """Adjust the staged tree before debhelper packages it (root is what the package installs)."""

    def package_inputs(self) -> list[Path]:
        """Files of this tool (besides its module) that go into the package: a change repackages it."""
        return []

    def maintainer_scripts(self, recipe: Recipe) -> dict[str, str]:
        """debian/<package>.<script> texts (postinst …), each with a #DEBHELPER# line."""
        return {}

    def check_installed(self, box: Any, recipe: Recipe, what: str) -> None:
        """After apt installed the recipe's packages in a clean container (box: builders.container.Container),
        check what only this upstream knows how to check; raise ContainerError with the reason."""

    def check_recipe(self, recipe: Recipe) -> None:
        """Refuse a recipe this upstream cannot be built from (a RecipeError naming the key)."""

    def tarball_file(self, path: str, text: str, prefix: str, cnidir: str) -> str | None:
        """A staged text file of this upstream (tarball path, e.g. etc/crio/crio.conf) as the tarball ships it,
        for programs under prefix and CNI plugins in cnidir; None: the file ships as staged."""
        return None

    def check_tarball(self, recipe: Recipe, files: dict[str, bytes], prefix: str) -> None:
        """Refuse a tarball (tarball path -> content, after every rewrite) that lacks what this upstream
        needs to run from it (a PackageError naming the file)."""
