"""Recipes: one strict TOML file per CRI-O minor, validated into frozen dataclasses."""
from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .arch import Arch
from .components import REQUIRED, UPSTREAMS
from .errors import RecipeError
from .files import sha256_file

DEFAULT_MAINTAINER = "criobuild <criobuild@users.noreply.github.com>"
CGROUP_MANAGERS = ("systemd", "cgroupfs")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
GO_VERSION_RE = re.compile(r"^1\.\d+(\.\d+)?((rc|beta)\d+)?$")
VERSION_RE = re.compile(r"^\d+(\.\d+)*([~+.-][0-9A-Za-z.~+-]*)?$")

# Every allowed key: dotted key -> (python type, required). "*" stands for one component name.
SCHEMA: dict[str, tuple[type, bool]] = {
    "schema": (int, True),
    "go": (dict, True),
    "go.version": (str, True),
    "go.sha256": (dict, True),
    "target": (dict, False),  # the recipe's default target; without it Debian trixie arm64 (builders/targets/)
    "target.distro": (str, True),
    "target.suite": (str, True),
    "target.arch": (str, True),
    "target.mirror": (str, False),
    "target.packages": (list, False),
    "package": (dict, False),
    "package.revision": (str, False),
    "package.maintainer": (str, False),
    "config": (dict, True),
    "config.cgroup_manager": (str, True),
    "config.pause_image": (str, True),
    "config.subid_ranges": (list, False),  # names given 65536 subordinate uids and gids at install (Sysbox: ["containers"])
    "components": (dict, True),
    "components.*": (dict, True),
    "components.*.repo": (str, True),
    "components.*.branch": (str, False),
    "components.*.tag": (str, False),
    "components.*.commit": (str, True),
    "components.*.version": (str, False),
    "components.*.buildtags": (list, False),
    "components.*.patches": (list, False),  # files under <recipes>/patches/, applied in order to the pinned checkout
    "components.*.go": (dict, False),  # a component that needs another Go than the recipe's [go]
    "components.*.go.version": (str, True),
    "components.*.go.sha256": (dict, True),
}


@dataclass(frozen=True, kw_only=True)
class GoToolchain:
    version: str
    sha256: dict[Arch, str]

    def tarball(self, arch: Arch) -> str:
        return f"go{self.version}.linux-{arch.go_tarball()}.tar.gz"


@dataclass(frozen=True, kw_only=True)
class Patch:
    path: Path
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Component:
    name: str
    repo: str
    commit: str
    version: str
    branch: str | None = None
    tag: str | None = None
    buildtags: tuple[str, ...] = ()
    go: GoToolchain | None = None  # None: the recipe's
    patches: tuple[Patch, ...] = ()

    @property
    def ref(self) -> str:
        """What to fetch: the tag when pinned to a release, else the branch."""
        return self.tag or self.branch  # type: ignore[return-value]

    @property
    def debian_version(self) -> str:
        """The upstream part of its .deb's version: 1.18.0-rc1 -> 1.18.0~rc1 (below 1.18.0); a branch pin
        without a tag -> <version>+git.<commit>."""
        version = self.version.replace("-", "~")
        if self.tag is None and "+git" not in version:
            version += f"+git.{self.commit[:12]}"
        return version


@dataclass(frozen=True, kw_only=True)
class Target:
    distro: str
    suite: str
    arch: Arch
    mirror: str

    @property
    def name(self) -> str:
        return f"{self.suite}-{self.arch}"


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    path: Path
    go: GoToolchain
    target: Target
    cgroup_manager: str
    pause_image: str
    revision: str
    maintainer: str
    build_packages: tuple[str, ...] = ()
    subid_ranges: tuple[str, ...] = ()
    components: dict[str, Component] = field(default_factory=dict)
    variant_of: str | None = None  # for another target than the file's (crio-1.36@bookworm-armhf): the file's recipe name

    @property
    def base_name(self) -> str:
        """The recipe file's name (crio-1.36), the same for every target."""
        return self.variant_of or self.name

    @property
    def crio(self) -> Component:
        return self.components["cri-o"]

    def go_for(self, component: str) -> GoToolchain:
        return self.components[component].go or self.go

    def toolchains(self) -> list[GoToolchain]:
        return list({self.go_for(c).version: self.go_for(c) for c in self.components}.values())

    def fingerprint(self, component: str, go_arch: Arch) -> dict[str, Any]:
        """What building one component reads from the recipe; feeds doit's config_changed.

        Only the toolchain that builds it counts: pinning the other architecture's Go rebuilds nothing.
        cri-o's build also reads the recipe's settings and the runtimes it names in its drop-in.
        """
        go = self.go_for(component)
        settings = {"cgroup_manager": self.cgroup_manager, "pause_image": self.pause_image, "pins": sorted(self.components)} if component == "cri-o" else {}
        pin = self.components[component]
        return {
            "go": go.version, "go_sha256": go.sha256.get(go_arch), "target": repr(self.target),
            "component": repr(replace(pin, go=None)), **settings,
        }  # fmt: skip


def load_recipe(path: Path) -> Recipe:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file", hint="list recipes with `doit list`") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a directory, not a recipe file", hint="a recipe is a crio-<minor>.toml file: rename or remove that directory") from None
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise RecipeError(f"{path}: not UTF-8 text: byte {e.object[e.start]:#04x} on line {line} ({e.reason})", hint="TOML files are UTF-8: save the recipe as UTF-8 (`iconv -f latin1 -t utf-8`)") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot be read because {e.strerror or e}", hint="check the file's permissions") from None
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML because {e}", hint="fix the TOML syntax") from None
    check_keys(path, data, "")
    return build_recipe(path, data)


def load_all(directory: Path, empty_ok: bool = False) -> list[Recipe]:
    """Every crio-<minor>.toml in directory; none (or no directory) is an error unless empty_ok (`doit new` writes the first)."""
    if empty_ok and not any(directory.glob("crio-*.toml")):
        return []
    if not directory.is_dir():
        raise RecipeError(
            f"recipe directory {directory} does not exist",
            hint="set CRIOBUILD_RECIPES to a directory of crio-<minor>.toml files, or unset it",
        )
    recipes = [load_recipe(p) for p in sorted(directory.glob("crio-*.toml"), key=recipe_sort_key)]
    if not recipes:
        raise RecipeError(
            f"recipe directory {directory} has no recipes (crio-<minor>.toml files)",
            hint="put recipes there, or unset CRIOBUILD_RECIPES to use the ones this checkout ships",
        )
    check_go_pins_agree(recipes)
    return recipes


def check_go_pins_agree(recipes: list[Recipe]) -> None:
    """One Go version is one toolchain in the cache: every recipe must pin the same sha256 for it."""
    seen: dict[tuple[str, Arch], tuple[Recipe, str]] = {}
    for r in recipes:
        for key, go in go_tables(r):
            for arch, digest in go.sha256.items():
                first, first_digest = seen.setdefault((go.version, arch), (r, digest))
                if first_digest != digest:
                    raise RecipeError(
                        f"{r.path}: key '{key}.sha256.{arch}' disagrees with {first.path} for Go {go.version}",
                        hint="the official tarball has one checksum: copy the right one into both recipes",
                    )


def go_tables(recipe: Recipe) -> list[tuple[str, GoToolchain]]:
    return [("go", recipe.go)] + [(f"components.{name}.go", c.go) for name, c in recipe.components.items() if c.go]


def recipe_sort_key(path: Path) -> tuple[int, ...]:
    digits = re.findall(r"\d+", path.stem)
    return tuple(int(d) for d in digits)


def schema_key(dotted: str) -> str:
    parts = dotted.split(".")
    if parts[0] == "components" and len(parts) > 1:
        parts[1] = "*"
    return ".".join(parts)


def check_keys(path: Path, table: dict[str, Any], prefix: str) -> None:
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        spec = SCHEMA.get(schema_key(dotted))
        if spec is None or (prefix == "components." and key not in UPSTREAMS):
            allowed = allowed_keys(prefix)
            raise RecipeError(
                f"{path}: unknown key '{dotted}'" + suggestion(key, allowed),
                hint=f"allowed in this table: {', '.join(allowed)}",
            )
        expected, _ = spec
        if schema_key(dotted) in ("go.sha256", "components.*.go.sha256"):
            check_sha256_table(path, value, dotted)
            continue
        if not isinstance(value, expected):
            raise RecipeError(
                f"{path}: key '{dotted}' must be a {expected.__name__}, not {type(value).__name__}",
                hint=f"write it as a TOML {toml_type_name(expected)}",
            )
        if isinstance(value, dict):
            check_keys(path, value, f"{dotted}.")
    check_required(path, table, prefix)


def check_required(path: Path, table: dict[str, Any], prefix: str) -> None:
    for spec_key, (_, required) in SCHEMA.items():
        parent, _, leaf = spec_key.rpartition(".")
        if not required or leaf == "*" or schema_key(prefix.rstrip(".")) != parent:
            continue
        if leaf not in table:
            raise RecipeError(f"{path}: missing key '{prefix}{leaf}'", hint="every recipe needs it; see recipes/crio-1.18.toml")
    if prefix == "components.":
        for name in REQUIRED:
            if name not in table:
                raise RecipeError(f"{path}: missing key 'components.{name}'", hint=f"pin all of: {', '.join(REQUIRED)}")


def check_sha256_table(path: Path, value: Any, key: str) -> None:
    if not isinstance(value, dict) or not value:
        raise RecipeError(f"{path}: key '{key}' must be a table of architecture = sha256", hint='e.g. sha256 = { arm64 = "…", amd64 = "…" }')
    for arch, digest in value.items():
        if arch not in Arch.__members__:
            raise RecipeError(
                f"{path}: unknown architecture '{key}.{arch}'",
                hint=f"use one of: {', '.join(Arch.__members__)}" + suggestion(arch, list(Arch.__members__)),
            )
        if not isinstance(digest, str) or not SHA256_RE.match(digest):
            raise RecipeError(
                f"{path}: key '{key}.{arch}' is not a sha256: {digest!r}",
                hint="use the 64 lower-case hex digits published for the official go tarball",
            )


def allowed_keys(prefix: str) -> list[str]:
    if prefix == "components.":
        return list(UPSTREAMS)
    parent = schema_key(prefix.rstrip("."))
    return [k.rsplit(".", 1)[-1] for k in SCHEMA if k.rpartition(".")[0] == parent]


def suggestion(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f". Perhaps you meant '{close[0]}'?" if close else ""


def toml_type_name(t: type) -> str:
    return {str: "string", int: "integer", dict: "table", list: "array"}[t]


def build_recipe(path: Path, data: dict[str, Any]) -> Recipe:
    if data["schema"] != 1:
        raise RecipeError(f"{path}: key 'schema' is {data['schema']}, this tool reads schema 1", hint="set schema = 1")
    package = data.get("package", {})
    recipe = Recipe(
        name=path.stem,
        path=path,
        go=build_go(path, data["go"]),
        target=build_target(path, data["target"]) if "target" in data else default_target(),
        cgroup_manager=choice(path, "config.cgroup_manager", data["config"]["cgroup_manager"], CGROUP_MANAGERS),
        pause_image=data["config"]["pause_image"],
        subid_ranges=subid_ranges(path, data["config"].get("subid_ranges", [])),
        revision=package.get("revision", "1"),
        maintainer=package.get("maintainer", DEFAULT_MAINTAINER),
        build_packages=tuple(data.get("target", {}).get("packages", ())),
        components={name: build_component(path, name, data["components"][name]) for name in UPSTREAMS if name in data["components"]},
    )
    for u in UPSTREAMS.values():
        u.check_recipe(recipe)
    return recipe


def subid_ranges(path: Path, names: list[Any]) -> tuple[str, ...]:
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_-]*", name):
            raise RecipeError(f"{path}: key 'config.subid_ranges' names {name!r}, which is no user name", hint='e.g. subid_ranges = ["containers"]')
    return tuple(names)


def build_go(path: Path, table: dict[str, Any], key: str = "go") -> GoToolchain:
    version = table["version"]
    if not GO_VERSION_RE.match(version):
        raise RecipeError(f"{path}: key '{key}.version' = {version!r} is not a Go version", hint='write it like "1.14.15" (no "go" prefix)')
    return GoToolchain(version=version, sha256={Arch(a): d for a, d in table["sha256"].items()})


def build_target(path: Path, table: dict[str, Any]) -> Target:
    from .targets import FAMILIES, suites

    arch = table["arch"]
    if arch not in Arch.__members__:
        raise RecipeError(
            f"{path}: unknown architecture 'target.arch' = {arch!r}",
            hint=f"use one of: {', '.join(Arch.__members__)}" + suggestion(arch, list(Arch.__members__)),
        )
    distro = choice(path, "target.distro", table["distro"], tuple(FAMILIES))
    suite = choice(path, "target.suite", table["suite"], tuple(suites(distro)))
    return Target(distro=distro, suite=suite, arch=Arch(arch), mirror=table.get("mirror", FAMILIES[distro].MIRROR))


def default_target() -> Target:
    from .targets import FAMILIES, TARGETS

    distro, suite, arch = TARGETS[0]
    return Target(distro=distro, suite=suite, arch=arch, mirror=FAMILIES[distro].MIRROR)


def for_every_target(recipe: Recipe) -> list[Recipe]:
    """The recipe for its own target (named as the recipe) and for every other (crio-1.36@bookworm-armhf)."""
    from .targets import FAMILIES, TARGETS

    others = [Target(distro=d, suite=s, arch=a, mirror=FAMILIES[d].MIRROR) for d, s, a in TARGETS]
    return [recipe] + [replace(recipe, name=f"{recipe.name}@{t.name}", target=t, variant_of=recipe.name) for t in others if t.name != recipe.target.name]


def build_component(path: Path, name: str, table: dict[str, Any]) -> Component:
    key = f"components.{name}"
    commit = table["commit"]
    if not COMMIT_RE.match(commit):
        raise RecipeError(f"{path}: key '{key}.commit' is not a full commit id: {commit!r}", hint="pin the 40-hex commit (git rev-parse <tag>^{commit})")
    if "tag" not in table and "branch" not in table:
        raise RecipeError(f"{path}: missing key '{key}.tag' (or '{key}.branch')", hint="say which release tag or branch the commit is on")
    version = table.get("version") or table.get("tag", "").removeprefix("v")
    if not VERSION_RE.match(version):
        raise RecipeError(f"{path}: key '{key}.version' = {version!r} is not a version", hint='give a version like "1.18.6" or a tag like "v1.18.6"')
    tags = table.get("buildtags", [])
    if not all(isinstance(t, str) for t in tags):
        raise RecipeError(f"{path}: key '{key}.buildtags' must be a list of strings", hint='e.g. buildtags = ["seccomp"]')
    go = build_go(path, table["go"], f"{key}.go") if "go" in table else None
    return Component(
        name=name, repo=table["repo"], commit=commit, version=version,
        branch=table.get("branch"), tag=table.get("tag"), buildtags=tuple(tags), go=go,
        patches=tuple(build_patch(path, f"{key}.patches", name) for name in table.get("patches", [])),
    )


def build_patch(path: Path, key: str, name: Any) -> Patch:
    patches = path.parent / "patches"
    file = patches / str(name)
    if not isinstance(name, str) or not file.is_file() or patches not in file.resolve().parents:
        raise RecipeError(f"{path}: key '{key}' names {name!r}, which is no file under {patches}", hint="put the patch in the recipes' patches/ directory and name it relative to it")
    return Patch(path=file, sha256=sha256_file(file))


def choice(path: Path, key: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise RecipeError(f"{path}: key '{key}' = {value!r} is not allowed", hint=f"use one of: {', '.join(allowed)}" + suggestion(value, list(allowed)))
    return value
