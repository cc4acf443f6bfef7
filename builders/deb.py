"""Debian packages, one per component, made from the staging trees with debhelper.

Each package gets a small generated debian/ directory (control, changelog, copyright, rules, overrides,
cri-o's postinst) next to a copy of the component's staging tree, and `debian/rules binary` runs `dh`
(compat 13) inside an arm64 container of the target distribution, so dpkg-shlibdeps reads the target's own
shlibs, dh_installsystemd writes the systemd maintainer-script snippets and dh_installdeb marks every file
under /etc as a conffile. SOURCE_DATE_EPOCH is the pinned commit's time, so two builds are byte-identical.
"""
from __future__ import annotations

import shutil
import glob
import sys
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from .actions import logged_actions, step_log
from . import elf, gobuildinfo
from .components import upstream
from .errors import PackageError
from .licenses import copyright_paragraphs
from .files import copy_atomically, temp_dir
from .targets import release
from .recipe import Recipe
from .settings import Settings
from .sbom import SBOM_CODE, sbom_path, write_deb_sbom
from .view import say

def deb_version(recipe: Recipe, component: str) -> str:
    """The release's tag goes after "~", so a rebuild for a newer release sorts higher (deb12 < deb13) and
    any official Debian package of the same upstream version sorts above ours."""
    tag = release(recipe.target.distro, recipe.target.suite).tag
    return f"{recipe.components[component].debian_version}-{recipe.revision}~{tag}"


def deb_path(recipe: Recipe, component: str, settings: Settings) -> Path:
    name = f"{package_name(component)}_{deb_version(recipe, component)}_{recipe.target.arch.to_deb()}.deb"
    return settings.artifacts / recipe.name / name


def built_debs(recipe: Recipe, settings: Settings, purpose: str) -> list[Path]:
    """The recipe's .debs, every one of which must be built already (for acceptance, the pod test)."""
    debs = [deb_path(recipe, c, settings) for c in recipe.components]
    missing = [d.name for d in debs if not d.is_file()]
    if missing:
        raise PackageError(f"cannot run {purpose} because {settings.artifacts / recipe.name} lacks {', '.join(missing)}", hint=f"run `doit build:{recipe.name}` first")
    return debs


# --------------------------------------------------------------------------- what goes in each package

def package_name(component: str) -> str:
    return upstream(component).package.name


# --------------------------------------------------------------------------- debian/ files


def control_text(recipe: Recipe, component: str, links_libraries: bool = True) -> str:
    """debian/control; ${shlibs:Depends} only for a package with a dynamically linked program (dpkg-gencontrol
    warns of a substitution variable dpkg-shlibdeps never defines, as for static Go programs)."""
    info = upstream(component).package
    package = info.name
    relations = upstream(component).relations(recipe)
    depends = ["${shlibs:Depends}"] * links_libraries + ["${misc:Depends}", *relations.get("Depends", [])]
    lines = [
        f"Source: {package}",
        f"Section: {info.section}",
        "Priority: optional",
        f"Maintainer: {recipe.maintainer}",
        "Build-Depends: debhelper-compat (= 13)",
        "Standards-Version: 4.6.2",
        "Rules-Requires-Root: no",
        f"Homepage: {info.homepage}",
        "",
        f"Package: {package}",
        f"Architecture: {recipe.target.arch.to_deb()}",
        f"Depends: {', '.join(depends)}",
    ]
    lines += [f"{field}: {', '.join(relations[field])}" for field in ("Recommends", "Provides", "Conflicts", "Replaces") if field in relations]
    lines.append(f"Description: {info.synopsis}")
    lines += description_lines(info.description)
    return "\n".join(lines) + "\n"


def description_lines(text: str) -> list[str]:
    """Plain paragraphs in the Debian control format: indented by one space, ' .' between paragraphs."""
    out: list[str] = []
    for i, paragraph in enumerate(text.split("\n\n")):
        if i:
            out.append(" .")
        out += [" " + line for line in textwrap.wrap(paragraph, width=78)]
    return out


def changelog_text(recipe: Recipe, component: str, epoch: int, go: str) -> str:
    c = recipe.components[component]
    where = f"tag {c.tag}" if c.tag else f"branch {c.branch}"
    change = f"Upstream {c.version}, {where}, commit {c.commit}, built from source with Go {go} for {recipe.target.arch}."
    if c.patches:
        change += " Patched with " + ", ".join(p.path.name for p in c.patches) + " (recipes/patches/)."
    body = textwrap.wrap(change, width=76, initial_indent="  * ", subsequent_indent="    ", break_long_words=False)
    when = format_datetime(datetime.fromtimestamp(epoch, timezone.utc))
    head = f"{package_name(component)} ({deb_version(recipe, component)}) {recipe.target.suite}; urgency=medium"
    return "\n".join([head, "", *body, "", f" -- {recipe.maintainer}  {when}"]) + "\n"


def copyright_text(recipe: Recipe, component: str, epoch: int) -> str:
    """debian/copyright: the licences the component's module states, which its build found in its own licence files."""
    info = upstream(component).package
    year = datetime.fromtimestamp(epoch, timezone.utc).year
    return (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        f"Upstream-Name: {recipe.components[component].repo.rstrip('/').rsplit('/', 1)[-1].removesuffix('.git')}\n"
        f"Source: {recipe.components[component].repo}\n"
        "Comment: Built from the upstream source at the pinned commit. Go programs also contain the\n"
        " Go modules vendored in that source (see its vendor/ directory and go.mod); each keeps its\n"
        " own license, in the same source.\n"
        "\n"
        + copyright_paragraphs(upstream(component).licenses, f"{info.since}-{year} {info.copyright}")
    )


RULES = """\
#!/usr/bin/make -f
# Generated by criobuild. The programs were built by upstream's own make in the staging tree root/;
# this only packages them, so every dh_auto_* step but install is skipped.

%:
\tdh $@

override_dh_update_autotools_config override_dh_autoreconf override_dh_auto_configure override_dh_auto_build override_dh_auto_test override_dh_auto_clean:

override_dh_auto_install:
\tcp -a root/. debian/{package}/

# No -dbgsym packages are made, so dh_strip only strips: asked to make them it extracts debug files first, which
# needs a GNU build id that Go's linker does not write ("Could not find the BuildID"), then throws them away and
# leaves a .gnu_debuglink to nothing. dwz only shrinks debug info for those packages.
override_dh_strip:
\tdh_strip --no-automatic-dbgsym

override_dh_dwz:

override_dh_builddeb:
\tmkdir -p out
\tdh_builddeb --destdir=out
"""

@dataclass(frozen=True)
class Override:
    tag: str
    reason: str


@dataclass(frozen=True)
class ElfFacts:
    interpreter: bool  # PT_INTERP: dynamically linked
    relro: bool  # PT_GNU_RELRO
    position_dependent: bool  # e_type ET_EXEC (a PIE is ET_DYN)
    go: bool  # made by the Go linker


ET_EXEC = 2


def elf_facts(path: Path) -> ElfFacts | None:
    """The few facts lintian's static and hardening checks look at."""
    found = elf.read_elf(path.read_bytes())
    if found is None:
        return None
    types = {kind for kind, *_ in found.segments()}
    return ElfFacts(
        interpreter=elf.PT_INTERP in types, relro=elf.PT_GNU_RELRO in types,
        position_dependent=found.e_type == ET_EXEC, go=gobuildinfo.MAGIC in found.data,
    )  # fmt: skip


GO_EXEMPT = "lintian exempts Go programs only when it sees golang-go in the source's Build-Depends, which a check of the binary package alone cannot"


def binary_overrides(component: str, rel: str, facts: ElfFacts) -> list[Override]:
    name = Path(rel).name
    if not facts.interpreter:
        why = f"Go links {name} statically (no cgo); {GO_EXEMPT}" if facts.go else f"upstream {component} links {name} statically on purpose"
        return [Override(f"statically-linked-binary [{rel}]", why)]
    found = []
    if facts.go and facts.position_dependent:
        found.append(Override(f"hardening-no-pie [{rel}]", f"upstream's build does not ask Go for -buildmode=pie; {GO_EXEMPT}"))
    if not facts.relro:
        found.append(Override(f"hardening-no-relro [{rel}]", f"upstream's build of {name} does not link with -z relro"))
    return found


def lintian_overrides(component: str, root: Path) -> list[Override]:
    """Every lintian warning (or static-binary error) these packages keep, each with its reason."""
    overrides = [
        Override(f"no-manual-page [{path}]", f"upstream {component} provides no manual page for {Path(path).name}")
        for path in programs_without_manual(root)
    ]
    overrides += [
        Override(f"wrong-manual-section *[{page}.gz:*]", f"upstream's page says `{header}`: its title block is not go-md2man's `% name section` form")
        for page, header in pages_with_another_section(root)
    ]
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        facts = elf_facts(path)
        if facts is not None:
            overrides += binary_overrides(component, path.relative_to(root).as_posix(), facts)
    return overrides


def pages_with_another_section(root: Path) -> list[tuple[str, str]]:
    """Man pages whose .TH line names another section than their directory (as go-md2man makes of
    cri-o's `% crio.conf(5) Kubernetes …` title blocks): (page, its .TH line)."""
    found = []
    for page in sorted((root / "usr/share/man").glob("man*/*")):
        header = next((line for line in page.read_text(errors="replace").splitlines() if line.startswith(".TH ")), None)
        fields = header.split() if header else []
        if len(fields) > 2 and fields[2].strip('"') != page.parent.name.removeprefix("man"):
            found.append((page.relative_to(root).as_posix(), header))
    return found


def programs_without_manual(root: Path) -> list[str]:
    pages = {p.name.split(".")[0] for p in (root / "usr/share/man").glob("man*/*")}
    return [
        p.relative_to(root).as_posix()
        for d in ("usr/bin", "usr/sbin")
        for p in sorted((root / d).glob("*"))
        if p.name not in pages
    ]


def overrides_text(overrides: list[Override]) -> str:
    return "".join(f"# {o.reason}\n{o.tag}\n" for o in overrides)


# --------------------------------------------------------------------------- the build tree


def write_build_tree(tree: Path, recipe: Recipe, component: str, staging: Path, epoch: int, go: str) -> None:
    """tree/root: the staging tree as the package will install it; tree/debian: the packaging."""
    package = package_name(component)
    root = tree / "root"
    shutil.copytree(staging, root, symlinks=True)
    upstream(component).prepare_package(root, recipe)
    move_units(root, release(recipe.target.distro, recipe.target.suite).units_in_usr)
    files = {
        "control": control_text(recipe, component, links_shared_libraries(root)),
        "changelog": changelog_text(recipe, component, epoch, go),
        "copyright": copyright_text(recipe, component, epoch),
        "rules": RULES.format(package=package),
        f"{package}.lintian-overrides": overrides_text(lintian_overrides(component, root)),
    }
    files |= {f"{package}.{script}": text for script, text in upstream(component).maintainer_scripts(recipe).items()}
    debian = tree / "debian"
    debian.mkdir()
    for name, text in files.items():
        (debian / name).write_text(text)
    (debian / "rules").chmod(0o755)


def links_shared_libraries(root: Path) -> bool:
    """Whether any ELF file of the tree names a shared library (DT_NEEDED)."""
    return any(elf.needed_libraries(path) for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def move_units(root: Path, units_in_usr: bool) -> None:
    """Upstream installs units to /usr/lib/systemd/system; older debhelper only handles /lib/systemd/system."""
    usr_units = root / "usr/lib/systemd/system"
    if units_in_usr or not usr_units.is_dir():
        return
    (root / "lib/systemd").mkdir(parents=True, exist_ok=True)
    usr_units.rename(root / "lib/systemd/system")
    for empty in (root / "usr/lib/systemd", root / "usr/lib"):
        if not any(empty.iterdir()):
            empty.rmdir()


# --------------------------------------------------------------------------- the container step

BUILD = "/build"


def package_deb(recipe: Recipe, component: str, settings: Settings) -> None:
    """Make artifacts/<recipe>/<package>_<version>_<arch>.deb from the component's staging tree."""
    from .build import read_staged, staging_dir
    from .container import Container, docker_client
    from .images import ensure_packaging_image

    manifest = read_staged(settings, recipe, component)
    epoch = int(manifest["source_date_epoch"])
    target = deb_path(recipe, component, settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    settings.cache.mkdir(parents=True, exist_ok=True)
    client = docker_client()
    image = ensure_packaging_image(client, manifest["builder_image"])
    # nocheck: packaging runs no tests (dh warns that it cannot run them across architectures). CC names the
    # target's compiler, as a cross build would (dpkg-architecture warns when `$CC -dumpmachine` is another
    # architecture; nothing is compiled here, and a CC that is not installed is not asked).
    env = {"SOURCE_DATE_EPOCH": str(epoch), "LC_ALL": "C.UTF-8", "TZ": "UTC", "DEB_BUILD_OPTIONS": "nocheck", "CC": f"{recipe.target.arch.to_gnu_triplet()}-gcc"}
    tmp = temp_dir(settings.cache, f"deb-{component}")  # named for this process: the next run removes it if killed
    try:
        tree = Path(tmp) / "tree"
        write_build_tree(tree, recipe, component, staging_dir(settings, recipe, component), epoch, manifest.get("go", recipe.go.version))
        with Container(client, image, env=env, workdir=BUILD, what=f"{recipe.name} {package_name(component)}", owner=str(settings.artifacts)) as box:
            box.copy_into(tree, BUILD)
            box.call(["dpkg-architecture", f"-a{recipe.target.arch.to_deb()}", "-c", "debian/rules", "binary"])
            box.copy_out(f"{BUILD}/out", Path(tmp) / "out")
        built = Path(tmp) / "out" / target.name
        if not built.is_file():
            made = ", ".join(p.name for p in (Path(tmp) / "out").iterdir()) or "nothing"
            raise PackageError(f"packaging {component} made {made}, not {target.name}")
        copy_atomically(built, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_deb_sbom(recipe, component, target, manifest, deb_version(recipe, component))
    for name in (package_name(component), *upstream(component).package.former_names):  # a renamed package's old .debs too
        drop_other_versions(target, f"{name}_*_{recipe.target.arch.to_deb()}.deb")


def package_sources(component: str) -> list[Path]:
    """The files that decide how component is packaged: its module, and what else it ships."""
    module = sys.modules[type(upstream(component)).__module__]
    return [Path(module.__file__), *upstream(component).package_inputs(), *SBOM_CODE]  # type: ignore[arg-type]


def drop_other_versions(artifact: Path, pattern: str) -> None:
    """Remove the artifacts a changed pin or revision superseded, so none is checksummed or released."""
    for old in artifact.parent.glob(pattern):
        if old != artifact:
            old.unlink()
            for companion in artifact.parent.glob(f"{glob.escape(old.name)}.*"):  # its SBOM and signatures
                companion.unlink()
            say(f"removed {old.name}, superseded by {artifact.name}")


def deb_task(recipe: Recipe, component: str, settings: Settings) -> dict[str, Any]:
    from .build import staging_manifest

    packaging = [Path(__file__), *package_sources(component)]
    return {
        "name": f"{recipe.name}:{package_name(component)}",
        "doc": f"package {component} as {package_name(component)}_{deb_version(recipe, component)}_{recipe.target.arch.to_deb()}.deb",
        **logged_actions(package_deb, [recipe, component, settings], step_log(settings, recipe.name, f"deb-{package_name(component)}"), f"deb:{recipe.name}:{package_name(component)}"),
        "file_dep": [staging_manifest(settings, recipe, component), *packaging],
        "targets": [deb_path(recipe, component, settings), sbom_path(deb_path(recipe, component, settings))],
        "uptodate": [config_changed({"revision": recipe.revision, "maintainer": recipe.maintainer, "relations": upstream(component).relations(recipe), "scripts": upstream(component).maintainer_scripts(recipe)})],
    }
