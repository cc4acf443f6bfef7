"""Recipe validation: every malformed recipe gets one clear error naming the file and the dotted key."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builders.arch import Arch
from builders.errors import RecipeError
from builders.recipe import load_all, load_recipe

REPO = Path(__file__).resolve().parents[2]
GOOD = (REPO / "recipes" / "crio-1.18.toml").read_text()


def edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


BAD_RECIPES = [
    ("missing component", edit('[components.cri-tools]\nrepo = "https://github.com/kubernetes-sigs/cri-tools"\ntag = "v1.18.0"\ncommit = "fad4c4ea1c3a3208050e9f8e34fa4a38065f8af2"\n', ""),
     "missing key 'components.cri-tools'", "pin all of"),
    ("unknown key with a typo", edit('version = "1.14.15"', 'verison = "1.14.15"'),
     "unknown key 'go.verison'", "Perhaps you meant 'version'?"),
    ("unknown top-level table", GOOD + '\n[packge]\nrevision = "2"\n', "unknown key 'packge'", "Perhaps you meant 'package'?"),
    ("unknown component", GOOD + '\n[components.podman]\nrepo = "x"\ncommit = "' + "a" * 40 + '"\n',
     "unknown key 'components.podman'", "allowed in this table: cri-o, conmon, cni-plugins, cri-tools, runc, crun"),
    ("missing runtime", edit('[components.runc]', '[components.runcx]').split("[components.runcx]")[0],
     "missing key 'components.runc'", "pin all of: cri-o, conmon, cni-plugins, cri-tools, runc"),
    ("a component's own Go without a checksum", edit('tag = "v1.0.0-rc10"\n', 'tag = "v1.0.0-rc10"\ngo = { version = "1.22.12" }\n'),
     "missing key 'components.runc.go.sha256'", "every recipe needs it"),
    ("a component's own Go with a bad checksum", edit('tag = "v1.0.0-rc10"\n', 'tag = "v1.0.0-rc10"\ngo = { version = "1.22.12", sha256 = { arm64 = "abc" } }\n'),
     "key 'components.runc.go.sha256.arm64' is not a sha256: 'abc'", "64 lower-case hex"),
    ("missing key", edit('pause_image = "k8s.gcr.io/pause:3.2"\n', ""),
     "missing key 'config.pause_image'", "every recipe needs it"),
    ("misspelt component", edit("[components.conmon]", "[components.conmonx]"),
     "unknown key 'components.conmonx'", "Perhaps you meant 'conmon'?"),
    ("short commit", edit('commit = "55664592f4d928197b59336edb7a83ffb30ff6fe"', 'commit = "55664592"'),
     "key 'components.cri-o.commit' is not a full commit id: '55664592'", "40-hex"),
    ("upper-case sha256", edit("4d964166a189c22032521c63935437c304bb7f01673b196898cff525897a1c27", "4D964166A189C22032521C63935437C304BB7F01673B196898CFF525897A1C27"),
     "key 'go.sha256.arm64' is not a sha256", "64 lower-case hex"),
    ("unknown architecture in sha256", edit("arm64 = \"4d96", "aarch64 = \"4d96"),
     "unknown architecture 'go.sha256.aarch64'", "use one of: arm64, armhf, amd64"),
    ("unknown target architecture", GOOD + '\n[target]\ndistro = "debian"\nsuite = "trixie"\narch = "armel"\n',
     "unknown architecture 'target.arch' = 'armel'", "use one of: arm64, armhf, amd64"),
    ("a release no target module knows", GOOD + '\n[target]\ndistro = "debian"\nsuite = "buster"\narch = "arm64"\n',
     "key 'target.suite' = 'buster' is not allowed", "use one of: bullseye, bookworm, trixie"),
    ("go version that does not parse", edit('version = "1.14.15"', 'version = "go1.14.15"'),
     "key 'go.version' = 'go1.14.15' is not a Go version", 'write it like "1.14.15"'),
    ("wrong type", edit("schema = 1", 'schema = "1"'), "key 'schema' must be a int, not str", "TOML integer"),
    ("bad cgroup manager", edit('cgroup_manager = "systemd"', 'cgroup_manager = "systemdd"'),
     "key 'config.cgroup_manager' = 'systemdd' is not allowed", "Perhaps you meant 'systemd'?"),
    ("neither tag nor branch", edit('tag = "v2.0.19"\n', ""), "missing key 'components.conmon.tag' (or 'components.conmon.branch')", "release tag or branch"),
    ("not TOML", "schema = = 1\n", "not valid TOML", "fix the TOML syntax"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "error", "hint"), BAD_RECIPES, ids=[c[0] for c in BAD_RECIPES])
def test_bad_recipe_gets_one_clear_error(tmp_path: Path, case: str, text: str, error: str, hint: str) -> None:
    path = tmp_path / "crio-1.18.toml"
    path.write_text(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert error in message
    assert hint in message


def test_shipped_recipes_load_with_their_pins() -> None:
    recipes = {r.name: r for r in load_all(REPO / "recipes")}
    assert {"crio-1.18", "crio-1.20"} <= set(recipes)
    r118 = recipes["crio-1.18"]
    assert r118.crio.tag == "v1.18.6" and r118.crio.branch == "release-1.18"
    assert r118.crio.commit == "55664592f4d928197b59336edb7a83ffb30ff6fe"
    assert r118.go.version == "1.14.15"
    assert r118.go.tarball(Arch.arm64) == "go1.14.15.linux-arm64.tar.gz"
    assert (r118.target.distro, r118.target.suite, r118.target.arch) == ("debian", "trixie", Arch.arm64)  # today's Raspberry Pi OS
    assert [c.version for c in r118.components.values()] == ["1.18.6", "2.0.19", "0.8.5", "1.18.0", "1.0.0-rc10"]
    assert recipes["crio-1.20"].crio.version == "1.20.9"


def test_there_is_a_recipe_for_every_minor_from_1_18_to_1_37() -> None:
    recipes = {r.name: r for r in load_all(REPO / "recipes")}
    assert sorted(recipes, key=lambda n: int(n.split(".")[1])) == [f"crio-1.{m}" for m in range(18, 38)]
    for name, r in recipes.items():
        assert r.crio.branch == f"release-1.{name.split('.')[1]}"
        assert "runc" in r.components
        assert ("crun" in r.components) == (int(name.split(".")[1]) >= 31), name  # the default runtime from 1.31
    snapshot = recipes["crio-1.37"].crio
    assert (snapshot.tag, snapshot.version) == (None, "1.37.0-dev")


def test_a_recipe_of_the_crun_era_must_pin_crun(tmp_path: Path) -> None:
    text = (REPO / "recipes" / "crio-1.36.toml").read_text()
    path = tmp_path / "crio-1.36.toml"
    path.write_text(text.split("[components.crun]")[0])
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert f"{path}: missing key 'components.crun'" in str(info.value)
    assert "CRI-O 1.36.3 names the OCI runtimes crun, runc: pin each" in str(info.value)


def test_a_component_may_pin_its_own_go(tmp_path: Path) -> None:
    r129 = load_recipe(REPO / "recipes" / "crio-1.29.toml")
    assert r129.go_for("cri-o").version == "1.21.13"
    assert r129.go_for("runc").version == "1.23.12"  # runc v1.2.3's go.mod asks for go 1.22
    assert [g.version for g in r129.toolchains()] == ["1.21.13", "1.23.12"]


def test_recipes_sort_by_version(tmp_path: Path) -> None:
    for minor in ("1.9", "1.20", "1.18"):
        (tmp_path / f"crio-{minor}.toml").write_text(GOOD)
    assert [r.name for r in load_all(tmp_path)] == ["crio-1.9", "crio-1.18", "crio-1.20"]


def doit(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = os.environ | (env_extra or {})
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=REPO, capture_output=True, text=True, env=env)


def test_doit_list_stays_short_with_twenty_recipes_and_lists_every_build_on_request() -> None:
    result = doit("list")
    assert result.returncode == 0, result.stderr
    steps = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert {"build", "image", "govolume", "compile", "deb", "accept", "check"} <= set(steps), result.stdout
    assert not [s for s in steps if ":" in s] and len(steps) < 25, result.stdout  # a line a kind of step, not 220 a kind
    builds = doit("list", "--all", "build")
    names = [line.split()[0] for line in builds.stdout.splitlines() if line.strip()]
    assert [f"build:crio-1.{m}" for m in range(18, 38)] == sorted((n for n in names if ":" in n and "@" not in n), key=lambda n: int(n.split(".")[1]))
    # every recipe for every other target, named <recipe>@<release>-<arch>
    assert {"build:crio-1.36@trixie-armhf", "build:crio-1.36@bookworm-arm64", "build:crio-1.36@bullseye-armhf", "build:crio-1.36@noble-arm64"} <= set(names)
    assert len(names) == 1 + 20 * 11


def test_plain_doit_prints_a_table_of_the_recipes() -> None:
    result = doit()
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "│ doit build:crio-1." in line]
    assert len(rows) == 20 and all("debian trixie arm64" in row for row in rows)
    assert "`doit build:crio-1.36@bookworm-armhf`" in result.stdout
    newest = next(row for row in rows if "crio-1.36 " in row)
    assert "1.36.3" in newest and "crun 1.26" in newest and "runc 1.4.3" in newest


def test_doit_list_shows_a_bad_recipe_error_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "crio-1.18.toml").write_text(edit('version = "1.14.15"', 'verison = "1.14.15"'))
    result = doit("list", env_extra={"CRIOBUILD_RECIPES": str(tmp_path)})
    assert result.returncode != 0
    assert f"{tmp_path / 'crio-1.18.toml'}: unknown key 'go.verison'. Perhaps you meant 'version'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_plain_doit_builds_nothing() -> None:
    result = doit()
    assert result.returncode == 0, result.stderr
    assert "doit build:crio-1.18" in result.stdout
    assert "compile:" not in result.stdout and "+ make" not in result.stdout


def test_two_recipes_pinning_one_go_version_must_agree_on_its_checksum(tmp_path: Path) -> None:
    (tmp_path / "crio-1.18.toml").write_text(GOOD)
    (tmp_path / "crio-1.19.toml").write_text(edit("4d964166a189c22032521c63935437c304bb7f01673b196898cff525897a1c27", "5" * 64))
    with pytest.raises(RecipeError) as info:
        load_all(tmp_path)
    assert f"{tmp_path / 'crio-1.19.toml'}: key 'go.sha256.arm64' disagrees with {tmp_path / 'crio-1.18.toml'} for Go 1.14.15" in str(info.value)


def toolchain_arches(target: Arch, monkeypatch: pytest.MonkeyPatch) -> set[Arch]:
    """The Go a build for target fetches, on every kind of host (a Pi of either width, an x86_64 or arm64
    runner) in every mode it can run there: native, emulated (also the fallback of a cross build), cross."""
    from builders import modes

    needed = set()
    for host in Arch:
        monkeypatch.setattr(modes, "host_arch", lambda host=host: host)
        for mode in ("native", "qemu", "cross"):
            if mode == "native" and host != target:
                continue
            needed.add(modes.resolve_mode(mode, target).toolchain_arch(target))
    return needed


def test_every_go_a_target_can_need_is_pinned_in_every_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """No mode of any target stops with "pins no sha256": armhf under QEMU or on a 32-bit Pi fetches
    go<version>.linux-armv6l.tar.gz, cross builds the host's."""
    from builders.go_toolchain import pinned_sha256
    from builders.recipe import for_every_target, go_tables

    for recipe in load_all(REPO / "recipes"):
        for built in for_every_target(recipe):
            for arch in toolchain_arches(built.target.arch, monkeypatch):
                for key, go in go_tables(built):
                    assert pinned_sha256(go, arch), f"{built.name}: {key} for {arch}"
    assert toolchain_arches(Arch.armhf, monkeypatch) == {Arch.armhf, Arch.amd64, Arch.arm64}
    assert load_recipe(REPO / "recipes" / "crio-1.36.toml").go.tarball(Arch.armhf) == "go1.26.7.linux-armv6l.tar.gz"
