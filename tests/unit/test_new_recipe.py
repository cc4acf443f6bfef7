"""`doit new:<minor>` on fixture upstreams shaped like cri-o 1.36 and 1.37: real git repositories reached
through git's insteadOf, go.dev's JSON listing and the real Go tarballs served by a real local HTTP server."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builders import new_recipe, sources
from builders.arch import Arch
from builders.components import upstream
from builders.download import download
from builders.errors import RecipeError
from builders.go_toolchain import go_url
from builders.recipe import load_recipe
from builders.settings import load_settings
from tests.fixtures.go_tarball import GoTarballs, write_go_listing
from tests.fixtures.upstreams import FixtureUpstream, advance_branch, make_upstreams

REPO = Path(__file__).resolve().parents[2]


def redirect(config: Path, ups: dict[str, FixtureUpstream]) -> None:
    """Send the clones of every real upstream URL a new recipe names to the fixture repositories."""
    for name, up in ups.items():
        if name != "libocispec":
            subprocess.run(["git", "config", "--file", str(config), "--add", f"url.{up.url}.insteadOf", upstream(name).repo], check=True)


@pytest.fixture
def go_mirror(http_server, go_tarballs: GoTarballs) -> str:
    directory, url = http_server.subdir("go-dl")
    write_go_listing(directory, go_tarballs)
    return url


@pytest.fixture
def env(tmp_path: Path, go_mirror: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return {"CRIOBUILD_CACHE": str(tmp_path / "cache"), "CRIOBUILD_RECIPES": str(tmp_path / "recipes"),
            "CRIOBUILD_GO_MIRROR": go_mirror, "CRIOBUILD_ARTIFACTS": str(tmp_path / "artifacts")}  # fmt: skip


@pytest.fixture
def redirected(env: dict[str, str], upstreams: dict[str, FixtureUpstream]) -> dict[str, FixtureUpstream]:
    redirect(Path(os.environ["GIT_CONFIG_GLOBAL"]), upstreams)
    return upstreams


@pytest.fixture
def own_upstreams(env: dict[str, str], tmp_path: Path) -> dict[str, FixtureUpstream]:
    """Fixture upstreams of this test's own, which it may change."""
    ups = make_upstreams(tmp_path / "upstreams")
    redirect(Path(os.environ["GIT_CONFIG_GLOBAL"]), ups)
    return ups


def where(ups: dict[str, FixtureUpstream], tag_or_branch: str, path: str) -> str:
    crio = ups["cri-o"]
    return f"cri-o/cri-o@{crio.tags.get(tag_or_branch) or crio.branches[tag_or_branch]}:{path}"


def test_a_1_36_recipe_pins_the_newest_tag_the_go_of_its_go_mod_and_its_companions(redirected, env, go_tarballs: GoTarballs, tmp_path: Path) -> None:
    ups, settings = redirected, load_settings(env)
    path, old = new_recipe.write_new_recipe("1.36", settings)
    assert (path, old) == (settings.recipes / "crio-1.36.toml", None)

    recipe = load_recipe(path)
    crio = recipe.crio
    assert (crio.repo, crio.branch, crio.tag, crio.commit, crio.version) == (
        "https://github.com/cri-o/cri-o", "release-1.36", "v1.36.2", ups["cri-o"].tags["v1.36.2"], "1.36.2")
    assert recipe.go.version == "1.19.8"  # go.mod says `go 1.19`; 1.20.14 and 1.21rc2 are other minors, 1.19.7 older
    assert recipe.go.sha256 == go_tarballs.sha256 and set(recipe.go.sha256) == {Arch.arm64, Arch.armhf, Arch.amd64}
    assert recipe.pause_image == "registry.k8s.io/pause:3.10.1"
    pins = {name: (c.repo, c.tag, c.commit) for name, c in recipe.components.items() if name != "cri-o"}
    assert pins == {name: (upstream(name).repo, tag, ups[name].tags[tag]) for name, tag in
                    {"conmon": "v2.1.13", "cni-plugins": "v1.8.0", "cri-tools": "v1.36.0", "runc": "v1.4.3", "crun": "1.26"}.items()}

    text = path.read_text()
    for source in (f"{where(ups, 'v1.36.2', 'go.mod')} says `go 1.19`: the newest Go 1.19 patch in {env['CRIOBUILD_GO_MIRROR']}/?mode=json&include=all",
                   f"# {where(ups, 'v1.36.2', 'pkg/config/config_linux.go')}\npause_image",
                   f"# {where(ups, 'v1.36.2', 'scripts/versions')}\nrepo = \"https://github.com/containers/conmon\"",
                   f"# {where(ups, 'v1.36.2', 'contrib/test/ci/vars.yml')}\nrepo = \"https://github.com/containers/crun\""):  # 1.36's scripts/versions names no crun
        assert source in text
    # The listing's sha256s are those of the tarballs the mirror serves: a build's download checks out.
    for arch in Arch:
        download(go_url(recipe.go, arch, env["CRIOBUILD_GO_MIRROR"]), tmp_path / "dl" / arch, sha256=recipe.go.sha256[arch], describe_mirror="the test's mirror")


def test_a_1_37_recipe_before_its_first_tag_pins_the_branch_tip_and_pin_moves_it_to_the_tag(own_upstreams, env) -> None:
    ups, settings = own_upstreams, load_settings(env)
    tip = ups["cri-o"].branches["release-1.37"]
    path, _ = new_recipe.write_new_recipe("1.37", settings)
    recipe = load_recipe(path)
    assert (recipe.crio.branch, recipe.crio.tag, recipe.crio.commit, recipe.crio.version) == ("release-1.37", None, tip, "1.37.0-dev")
    assert recipe.go.version == "1.19.8"
    text = path.read_text()
    assert f"{where(ups, 'release-1.37', 'go.mod')} says `toolchain go1.19.5`" in text  # the higher of `go 1.19` and it
    assert f"({where(ups, 'release-1.37', 'internal/version/version.go')} says 1.37.0)" in text
    assert f"# {where(ups, 'release-1.37', 'scripts/versions')}\nrepo = \"https://github.com/containers/crun\"" in text
    assert "components.crun" in text and recipe.components["crun"].tag == "1.26"

    assert sources.update_pins(path, settings) == []  # no tag yet: stays at the tip
    tagged = advance_branch(ups["cri-o"], "Release 1.37.0", branch="release-1.37", tag="v1.37.0")
    assert sources.update_pins(path, settings) == [f"cri-o: release-1.37 ({tip[:7]}) -> v1.37.0 ({tagged[:7]})"]
    recipe = load_recipe(path)
    assert (recipe.crio.branch, recipe.crio.tag, recipe.crio.commit, recipe.crio.version) == ("release-1.37", "v1.37.0", tagged, "1.37.0")
    assert "-dev" not in path.read_text()


def test_a_companion_whose_go_mod_asks_for_more_go_than_cri_o_s_sets_the_recipe_s_go(own_upstreams, env) -> None:
    """GOTOOLCHAIN=local: a Go older than a companion's go.mod refuses to build it, so the recipe takes the newer."""
    ups, settings = own_upstreams, load_settings(env)
    go_mod = (ups["runc"].path / "go.mod").read_text().replace("go 1.16", "go 1.20")
    runc = advance_branch(ups["runc"], "Release 1.4.4: Go 1.20", branch="main", files={"go.mod": go_mod}, tag="v1.4.4")
    subprocess.run(["git", "-C", str(ups["cri-o"].path), "checkout", "-q", "release-1.36"], check=True)
    versions = (ups["cri-o"].path / "scripts/versions").read_text().replace('["runc"]=v1.4.3', '["runc"]=v1.4.4')
    subprocess.run(["git", "-C", str(ups["cri-o"].path), "checkout", "-q", "-f", "main"], check=True)
    advance_branch(ups["cri-o"], "runc 1.4.4", branch="release-1.36", files={"scripts/versions": versions}, tag="v1.36.3")

    path, _ = new_recipe.write_new_recipe("1.36", settings)
    recipe = load_recipe(path)
    assert recipe.components["runc"].commit == runc
    assert recipe.go.version == "1.20.14"  # the newest Go 1.20 patch in the listing, not cri-o's 1.19.8
    assert f"# opencontainers/runc@{runc}:go.mod says `go 1.20`, more than cri-o's go.mod (`go 1.19`)" in path.read_text()


@pytest.mark.parametrize("removed, missing", [
    (("go.mod",), ["Go: {where}go.mod does not exist"]),
    (("scripts/versions",), ["conmon's release: looked in {where}scripts/versions (no such file)"]),
    (("scripts/versions", "contrib/test/ci/vars.yml"), ["conmon's release: looked in {where}scripts/versions (no such file)"] + [
        f"{name}'s release: looked in {{where}}scripts/versions (no such file); {{where}}contrib/test/ci/vars.yml (no such file)"
        for name in ("cri-tools", "runc", "crun")]),  # the CNI plugins' CI playbook still names theirs
], ids=["go.mod", "scripts-versions", "both-versions-files"])
def test_a_missing_file_is_named_and_nothing_is_written(own_upstreams, env, removed: tuple[str, ...], missing: list[str]) -> None:
    ups, settings = own_upstreams, load_settings(env)
    commit = advance_branch(ups["cri-o"], "Move things around", branch="release-1.36", remove=removed, tag="v1.36.3")
    with pytest.raises(RecipeError) as e:
        new_recipe.write_new_recipe("1.36", settings)
    message = str(e.value)
    assert message.startswith(f"writing {settings.recipes / 'crio-1.36.toml'} failed because these could not be found:\n")
    for line in missing:
        assert f"  - {line.format(where=f'cri-o/cri-o@{commit}:')}\n" in message + "\n"
    assert message.count("\n  - ") == len(missing)
    assert "hint: nothing was written" in message
    assert not settings.recipes.exists() or list(settings.recipes.iterdir()) == []


def test_a_branch_named_where_a_release_should_be_is_refused(own_upstreams, env) -> None:
    ups, settings = own_upstreams, load_settings(env)
    vars_yml = (ups["cri-o"].path / "contrib/test/ci/vars.yml")
    subprocess.run(["git", "-C", str(ups["cri-o"].path), "checkout", "-q", "release-1.36"], check=True)
    text = vars_yml.read_text().replace("crun_git_version: 1.26", "crun_git_version: main")
    subprocess.run(["git", "-C", str(ups["cri-o"].path), "checkout", "-q", "-f", "main"], check=True)
    commit = advance_branch(ups["cri-o"], "CI: crun from main", branch="release-1.36", files={"contrib/test/ci/vars.yml": text}, tag="v1.36.3")
    with pytest.raises(RecipeError) as e:
        new_recipe.write_new_recipe("1.36", settings)
    assert (f"crun's release: looked in cri-o/cri-o@{commit}:scripts/versions (no crun in it); "
            f"cri-o/cri-o@{commit}:contrib/test/ci/vars.yml (says crun_git_version main, which is a branch of https://github.com/containers/crun)") in str(e.value)
    assert not (settings.recipes / "crio-1.36.toml").exists()


def test_an_existing_recipe_is_not_overwritten_without_replace(redirected, env) -> None:
    settings = load_settings(env)
    settings.recipes.mkdir(parents=True)
    mine = settings.recipes / "crio-1.36.toml"
    mine.write_text("# mine\n")
    with pytest.raises(RecipeError, match="crio-1.36.toml failed because it exists already") as e:
        new_recipe.write_new_recipe("1.36", settings)
    assert "doit pin:crio-1.36" in str(e.value) and "doit new:1.36 --replace" in str(e.value)
    assert mine.read_text() == "# mine\n"
    path, old = new_recipe.write_new_recipe("1.36", settings, replace=True)
    assert old == "# mine\n" and load_recipe(path).crio.tag == "v1.36.2"


def test_a_minor_without_a_branch_or_tag_and_an_unreachable_listing_are_named(redirected, env, closed_port_url: str) -> None:
    settings = load_settings(env)
    with pytest.raises(RecipeError, match=r"https://github.com/cri-o/cri-o has neither a v1.38.Z tag nor a release-1.38 branch") as e:
        new_recipe.write_new_recipe("1.38", settings)
    assert "release-1.36, release-1.37" in str(e.value)
    with pytest.raises(RecipeError, match=rf"Go: {closed_port_url}/\?mode=json&include=all could not be read \(ConnectionError; CRIOBUILD_GO_MIRROR={closed_port_url}\)"):
        new_recipe.write_new_recipe("1.36", load_settings(env | {"CRIOBUILD_GO_MIRROR": closed_port_url}))
    assert not settings.recipes.exists()


def test_newest_go_takes_the_newest_stable_patch_of_the_minor_at_least_go_mods() -> None:
    releases = [{"version": v, "stable": s} for v, s in (("go1.27rc1", False), ("go1.26.10", True), ("go1.26.9", True), ("go1.26", True), ("go1.25.14", True))]
    assert new_recipe.newest_go(releases, "1.26.4")["version"] == "go1.26.10"
    assert new_recipe.newest_go(releases, "1.26.11") is None
    assert new_recipe.newest_go(releases, "1.27") is None  # only a release candidate


def test_named_value_reads_scripts_versions_and_yaml() -> None:
    versions = 'declare -A VERSIONS=(\n    ["cni-plugins"]=v1.8.0\n    ["runc"]=v1.5.1\n)\n'
    assert new_recipe.named_value(versions, "scripts/versions", "runc") == "v1.5.1"
    assert new_recipe.named_value(versions, "scripts/versions", "crun") is None
    assert new_recipe.named_value('crun_git_version: "1.29.1"  # CI\n', "contrib/test/ci/vars.yml", "crun_git_version") == "1.29.1"


def doit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=REPO, env=os.environ | env, capture_output=True, text=True)


def test_doit_new_writes_the_recipe_once_and_then_refuses_without_a_traceback(redirected, env) -> None:
    first = doit("new:1.36", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wrote " in first.stderr + first.stdout and (Path(env["CRIOBUILD_RECIPES"]) / "crio-1.36.toml").is_file()
    again = doit("new:1.36", env=env)
    out = again.stdout + again.stderr
    assert again.returncode != 0 and "exists already" in out and "Traceback" not in out
    replaced = doit("new:1.36", "--replace", env=env)
    assert replaced.returncode == 0 and "unchanged" in replaced.stdout + replaced.stderr
    for args, words in ((["new"], "`doit new` needs the CRI-O minor"), (["new:1.x"], "'1.x' is not a CRI-O minor")):
        bad = doit(*args, env=env)
        assert bad.returncode != 0 and words in bad.stdout + bad.stderr and "Traceback" not in bad.stdout + bad.stderr
