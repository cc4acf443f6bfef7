"""The signed apt repository (`doit repo`): made with apt-ftparchive and gpg, checked with gpgv, and
installed from by apt in a clean arm64 container over HTTP, dependencies from the Debian mirror included.
Each CRI-O minor is its own component (named after its recipe) of the target's suite: a node
subscribed to one minor gets its patch releases and never the next minor.

The host-side checks use small .debs made here with dpkg-deb, named and versioned the way deb_task
names the recipe's packages; so does the container test of two minors in one repository; the last
container test serves the fixture upstreams' real .debs from the pipeline.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from builders import apt_repo
from builders.acceptance import accept, accept_task
from builders.container import Container
from builders.components import UPSTREAMS
from builders.deb import deb_path, deb_version, package_name
from builders.errors import PackageError
from builders.arch import Arch
from builders.recipe import Recipe, Target, load_recipe
from builders.settings import load_settings
from tests.fixtures.pipeline import REPO

# The shipped recipes build for Debian trixie by default; these tests serve a bookworm container.
BOOKWORM = Target(distro="debian", suite="bookworm", arch=Arch.arm64, mirror="http://deb.debian.org/debian")
RECIPE = replace(load_recipe(REPO / "recipes" / "crio-1.18.toml"), target=BOOKWORM)
SUITE = RECIPE.target.suite
COMPONENT = RECIPE.name  # the recipe's component in the repository
# What each fake package installs and prints, and what it depends on.
FAKE = {
    "cri-o": ("usr/bin/crio", "crio version {v}", "cri-o-conmon (>= {conmon}), cri-o-cni-plugins (>= {cni}), iptables"),
    "conmon": ("usr/bin/conmon", "conmon version {v}", ""),
    "cni-plugins": ("usr/lib/cni/bridge", "CNI bridge plugin v{v}", ""),
    "cri-tools": ("usr/bin/crictl", "crictl version v{v}", ""),
    "runc": ("usr/libexec/crio/runc", "runc version {v}", ""),
    "crun": ("usr/libexec/crio/crun", "crun version {v}", ""),
}
COMPONENTS = tuple(RECIPE.components)


# -- fixtures ------------------------------------------------------------------------------------------


class GnuPG:
    """A throwaway GNUPGHOME with a test signing key and a stranger's key."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = os.environ | {"GNUPGHOME": str(home)}
        self.key = self.generate("criobuild test <test@invalid>")
        self.other = self.generate("someone else <other@invalid>")

    def gpg(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["gpg", "--batch", "--no-tty", *args], env=self.env, capture_output=True, check=True, **kwargs)

    def generate(self, uid: str) -> str:
        self.gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        out = self.gpg("--with-colons", "--list-secret-keys", uid, text=True).stdout
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

    def export(self, fingerprint: str, dest: Path) -> Path:
        dest.write_bytes(self.gpg("--export", fingerprint).stdout)
        return dest


@pytest.fixture(scope="module")
def gnupg():
    # Under /tmp, not pytest's deeper tmp_path: gpg-agent's socket lives in GNUPGHOME (socket paths max ~108 bytes).
    home = Path(tempfile.mkdtemp(prefix="criobuild-gnupg-", dir="/tmp"))
    try:
        yield GnuPG(home)
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=os.environ | {"GNUPGHOME": str(home)}, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def use_gnupg(gnupg, monkeypatch) -> GnuPG:
    monkeypatch.setenv("GNUPGHOME", str(gnupg.home))
    return gnupg


def make_deb(tree_root: Path, recipe: Recipe, component: str, dest: Path, *, debian_depends: bool = True, relations: bool = False) -> Path:
    """A stand-in .deb; without debian_depends it needs nothing from the Debian mirror (no iptables). With
    relations, its Depends, Recommends, Provides, Conflicts and Replaces are the real package's (deb.control_text)."""
    path, output, depends = FAKE[component]
    if not debian_depends:
        depends = depends.removesuffix(", iptables")
    version = recipe.components[component].version
    tree = tree_root / component
    (tree / "DEBIAN").mkdir(parents=True)
    control = textwrap.dedent(f"""\
        Package: {package_name(component)}
        Version: {deb_version(recipe, component)}
        Architecture: {recipe.target.arch.to_deb()}
        Maintainer: criobuild tests <test@invalid>
        Section: admin
        Priority: optional
        Description: stand-in for {component} (test package)
        """)
    if relations:
        control += real_relations(recipe, component)
    elif depends:
        control += "Depends: " + depends.format(conmon=deb_version(recipe, "conmon"), cni=deb_version(recipe, "cni-plugins")) + "\n"
    (tree / "DEBIAN" / "control").write_text(control)
    program = tree / path
    program.parent.mkdir(parents=True)
    program.write_text(f"#!/bin/sh\necho '{output.format(v=version)}'\n")
    program.chmod(0o755)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(dest)], check=True, capture_output=True)
    return dest


def real_relations(recipe: Recipe, component: str) -> str:
    """The relation fields of the real package, as dpkg-gencontrol writes them (${binary:Version} filled in)."""
    fields = UPSTREAMS[component].relations(recipe)
    lines = [f"{f}: {', '.join(fields[f])}" for f in ("Depends", "Recommends", "Provides", "Conflicts", "Replaces") if f in fields]
    return "".join(line.replace("${binary:Version}", deb_version(recipe, component)) + "\n" for line in lines)


def patch_release(name: str, crio: str) -> Recipe:
    """recipes/<name>.toml with cri-o pinned at the patch release `crio` of that minor (the other pins as they are)."""
    recipe = load_recipe(REPO / "recipes" / f"{name}.toml")
    pin = replace(recipe.crio, version=crio, tag=f"v{crio}")
    return replace(recipe, target=BOOKWORM, components={**recipe.components, "cri-o": pin})


def build_fakes(recipe: Recipe, settings, trees: Path, *, debian_depends: bool = True, relations: bool = False) -> list[Path]:
    """The recipe's packages in artifacts/<recipe>/ as a build leaves them: other versions there are dropped."""
    made = []
    for c in recipe.components:
        dest = deb_path(recipe, c, settings)
        for old in dest.parent.glob(f"{package_name(c)}_*.deb"):
            old.unlink()
        made.append(make_deb(trees / f"{recipe.name}-{recipe.crio.version}", recipe, c, dest, debian_depends=debian_depends, relations=relations))
    return made


def packages_index(out: Path, component: str, arch: str = "arm64") -> dict[str, str]:
    """package -> version in one component's Packages."""
    text = (out / "dists" / SUITE / component / f"binary-{arch}" / "Packages").read_text()
    return {apt_repo.stanza_field(s, "Package"): apt_repo.stanza_field(s, "Version") for s in text.split("\n\n") if s.strip()}


def ours(recipe: Recipe) -> dict[str, str]:
    return {package_name(c): deb_version(recipe, c) for c in recipe.components}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("apt-artifacts")
    s = replace(load_settings({}), artifacts=root / "artifacts", cache=root / "cache")
    trees = root / "trees"
    for c in COMPONENTS:
        make_deb(trees, RECIPE, c, deb_path(RECIPE, c, s))
    return s


# -- on the host ---------------------------------------------------------------------------------------


def test_repository_is_signed_and_lists_every_package(use_gnupg: GnuPG, settings, tmp_path) -> None:
    out = apt_repo.build_repo([RECIPE], settings, key_id=use_gnupg.key, out=tmp_path / "apt")
    dist = out / "dists" / SUITE
    assert {p.name for p in dist.iterdir()} >= {"Release", "InRelease", "Release.gpg", COMPONENT}
    # gpgv with nothing but the exported keyring, as apt does with signed-by.
    keyring = out / apt_repo.KEYRING
    subprocess.run(["gpgv", "--keyring", str(keyring), str(dist / "InRelease")], check=True, capture_output=True)
    subprocess.run(["gpgv", "--keyring", str(keyring), str(dist / "Release.gpg"), str(dist / "Release")], check=True, capture_output=True)
    release = (dist / "Release").read_text()
    for line in (f"Suite: {SUITE}", f"Codename: {SUITE}", f"Components: {COMPONENT}", "Architectures: arm64", "Origin: criobuild", "Label: criobuild"):
        assert line in release.splitlines()
    assert f"{COMPONENT}/binary-arm64/Packages.xz" in release
    assert f"Component: {COMPONENT}" in (dist / COMPONENT / "binary-arm64" / "Release").read_text().splitlines()
    packages = (dist / COMPONENT / "binary-arm64" / "Packages").read_text()
    for c in COMPONENTS:
        name = package_name(c)
        filename = f"pool/{COMPONENT}/{name[0]}/{name}/{deb_path(RECIPE, c, settings).name}"
        assert f"Filename: {filename}" in packages
        assert (out / filename).is_file()
    assert f"Depends: cri-o-conmon (>= {deb_version(RECIPE, 'conmon')}), cri-o-cni-plugins (>= {deb_version(RECIPE, 'cni-plugins')}), iptables" in packages
    assert list(tmp_path.glob(".apt.*")) == []  # no temporary directory left behind


def test_rebuilding_replaces_the_repository_whole(use_gnupg: GnuPG, settings, tmp_path) -> None:
    out = tmp_path / "apt"
    apt_repo.build_repo([RECIPE], settings, key_id=use_gnupg.key, out=out)
    (out / "pool" / COMPONENT / "stale.deb").write_text("left from an older release")
    apt_repo.build_repo([RECIPE], settings, key_id=use_gnupg.key, out=out)
    assert not (out / "pool" / COMPONENT / "stale.deb").exists()
    assert (out / "dists" / SUITE / "InRelease").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apt"]


def test_doit_repo_action_reads_the_key_and_output_from_the_environment(use_gnupg: GnuPG, settings, tmp_path, capsys) -> None:
    env = {"CRIOBUILD_GPG_KEY": use_gnupg.key[-16:], "CRIOBUILD_APT_REPO": str(tmp_path / "served")}
    apt_repo.build_repo_from_env([RECIPE], settings, env)
    assert (tmp_path / "served" / "dists" / SUITE / "InRelease").is_file()
    said = capsys.readouterr().out
    assert "signed-by=/etc/apt/keyrings/criobuild.gpg" in said and "apt-get install cri-o" in said
    assert f"https://<your host>/<path> {SUITE} {COMPONENT}\"" in said
    assert "No apt preference is needed" in said and "preferences.d" not in said


def test_no_key_given_is_a_clear_error(settings, tmp_path) -> None:
    with pytest.raises(PackageError, match="no key was given") as e:
        apt_repo.build_repo_from_env([RECIPE], settings, {"CRIOBUILD_APT_REPO": str(tmp_path / "apt")})
    assert "CRIOBUILD_GPG_KEY" in str(e.value)
    assert not (tmp_path / "apt").exists()


def test_a_key_missing_from_the_keyring_is_a_clear_error(use_gnupg: GnuPG, settings, tmp_path) -> None:
    with pytest.raises(PackageError, match=f"key 'DEADBEEFDEADBEEF' is not in the secret keyring {use_gnupg.home}"):
        apt_repo.build_repo([RECIPE], settings, key_id="DEADBEEFDEADBEEF", out=tmp_path / "apt")
    assert list(tmp_path.iterdir()) == []


def test_no_debs_names_the_directory_and_the_build_to_run(use_gnupg: GnuPG, tmp_path) -> None:
    empty = replace(load_settings({}), artifacts=tmp_path / "artifacts")
    with pytest.raises(PackageError) as e:
        apt_repo.build_repo([RECIPE], empty, key_id=use_gnupg.key, out=tmp_path / "apt")
    assert str(tmp_path / "artifacts" / "crio-1.18") in str(e.value)
    assert "run `doit build:crio-1.18` first" in str(e.value)
    assert not (tmp_path / "apt").exists()


def test_a_partly_built_recipe_is_refused(use_gnupg: GnuPG, settings, tmp_path) -> None:
    partial = replace(settings, artifacts=tmp_path / "artifacts")
    shutil.copytree(settings.artifacts, partial.artifacts)
    deb_path(RECIPE, "conmon", partial).unlink()
    with pytest.raises(PackageError, match=r"lacks some of crio-1\.18's packages: cri-o-conmon_") as e:
        apt_repo.build_repo([RECIPE], partial, key_id=use_gnupg.key, out=tmp_path / "apt")
    assert "doit build:crio-1.18" in str(e.value)


def test_each_minor_is_its_own_component_with_its_own_pool(use_gnupg: GnuPG, tmp_path, capsys) -> None:
    settings = replace(load_settings({}), artifacts=tmp_path / "artifacts")
    older, newer = patch_release("crio-1.35", "1.35.5"), patch_release("crio-1.36", "1.36.3")
    for recipe in (older, newer):
        build_fakes(recipe, settings, tmp_path / "trees")
    out = apt_repo.build_repo([older, newer], settings, key_id=use_gnupg.key, out=tmp_path / "apt")
    dist = out / "dists" / SUITE
    release = (dist / "Release").read_text().splitlines()
    assert "Components: crio-1.35 crio-1.36" in release and "Origin: criobuild" in release and "Label: criobuild" in release
    assert sorted(p.name for p in dist.iterdir() if p.is_dir()) == ["crio-1.35", "crio-1.36"]
    assert packages_index(out, "crio-1.35") == ours(older) and packages_index(out, "crio-1.36") == ours(newer)
    assert packages_index(out, "crio-1.35")["cri-o"] == "1.35.5-1~deb12" and packages_index(out, "crio-1.36")["cri-o"] == "1.36.3-1~deb12"
    # Both minors pin the same conmon: each component's pool has its own copy, and its index points there.
    conmon = deb_path(older, "conmon", settings).name
    assert conmon == deb_path(newer, "conmon", settings).name
    for component in ("crio-1.35", "crio-1.36"):
        assert (out / "pool" / component / "c" / "cri-o-conmon" / conmon).is_file()
        text = (dist / component / "binary-arm64" / "Packages").read_text()
        assert all(line.startswith(f"Filename: pool/{component}/") for line in text.splitlines() if line.startswith("Filename:"))
    # A recipe not built is no component; building it later adds one (the repository holds what artifacts/ holds).
    unbuilt = patch_release("crio-1.34", "1.34.0")
    out = apt_repo.build_repo([unbuilt, older, newer], settings, key_id=use_gnupg.key, out=out)
    assert "Components: crio-1.35 crio-1.36" in (dist / "Release").read_text().splitlines()
    apt_repo.print_usage(out, [unbuilt, older, newer])
    said = capsys.readouterr().out
    assert f"{SUITE}: crio-1.35 crio-1.36" in said
    assert apt_repo.pi_owner_lines("https://<your host>/<path>", SUITE, "crio-1.36")[1] in said


def test_a_recipe_name_apt_cannot_read_as_a_component_is_refused(use_gnupg: GnuPG, settings, tmp_path) -> None:
    odd = replace(RECIPE, name="crio 1.18")
    with pytest.raises(PackageError, match="component 'crio 1.18', which apt cannot read"):
        apt_repo.build_repo([odd], settings, key_id=use_gnupg.key, out=tmp_path / "apt")
    assert not (tmp_path / "apt").exists()


def test_the_readme_shows_what_doit_repo_prints() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Install from the apt repository"):]
    section = section[: section.index("\n## ", 1)]
    blocks = [b.strip("\n").splitlines() for b in re.findall(r"```sh\n(.*?)```", section, re.S)]
    assert blocks == [apt_repo.pi_owner_lines("https://<owner>.github.io/<repo>", "trixie", "crio-1.36")]  # and no pin file
    assert "preferences.d" not in section


def test_accept_task_depends_on_the_recipes_debs_and_refuses_missing_ones(tmp_path) -> None:
    empty = replace(load_settings({}), artifacts=tmp_path / "artifacts")
    task = accept_task(RECIPE, empty)
    assert task["name"] == "crio-1.18"
    assert task["file_dep"] == [deb_path(RECIPE, c, empty) for c in COMPONENTS]
    with pytest.raises(PackageError) as e:
        accept(RECIPE, empty)
    assert str(tmp_path / "artifacts" / "crio-1.18") in str(e.value) and "doit build:crio-1.18" in str(e.value)


# -- in a clean arm64 container ------------------------------------------------------------------------


def as_root(line: str) -> list[str]:
    """A README line as the container's root runs it (no sudo there)."""
    return ["sh", "-c", line.replace("sudo ", "")]


@pytest.mark.docker
@pytest.mark.emulation
def test_a_node_subscribed_to_one_minor_gets_its_patches_and_never_the_next_minor(use_gnupg: GnuPG, http_server, docker_engine, arm64_base_image, tmp_path) -> None:
    settings = replace(load_settings({}), artifacts=tmp_path / "artifacts")
    trees = tmp_path / "trees"
    first, patch, next_minor = patch_release("crio-1.35", "1.35.5"), patch_release("crio-1.35", "1.35.6"), patch_release("crio-1.36", "1.36.3")
    # Only this repository is a source in the container (no Debian mirror), so the packages need nothing from Debian.
    build_fakes(first, settings, trees, debian_depends=False)
    build_fakes(next_minor, settings, trees, debian_depends=False)
    served, url = http_server.subdir("apt-minors")
    shutil.rmtree(served)
    apt_repo.build_repo([first, next_minor], settings, key_id=use_gnupg.key, out=served)
    assert packages_index(served, "crio-1.36")["cri-o"] == "1.36.3-1~deb12"  # the newer minor is in the same repository
    keys = tmp_path / "keys"
    keys.mkdir()
    shutil.copy(served / apt_repo.KEYRING, keys / "criobuild.gpg")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    every = sorted(ours(first))

    def installed() -> dict[str, str]:
        """What `apt-get install cri-o` put there: cri-o and the companions it depends on."""
        text = box.output(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", "cri-o", "cri-o-conmon", "cri-o-cni-plugins"])
        return dict(line.split(" ", 1) for line in text.splitlines())

    def madison() -> set[tuple[str, str]]:
        """(package, version) of every version apt can see of our packages."""
        text = box.output(["apt-cache", "madison", *every])
        return {tuple(field.strip() for field in line.split("|")[:2]) for line in text.splitlines() if line.strip()}

    def policy() -> str:
        return box.output(["apt-cache", "policy", "cri-o"])

    http_server.reset()
    with Container(docker_engine, arm64_base_image, network="host", what="apt repository of two minors") as box:
        box.copy_into(keys, "/etc/apt/keyrings")
        box.call(["sh", "-c", ": > /etc/apt/sources.list && rm -f /etc/apt/sources.list.d/*"])
        # The README's lines for crio-1.35, as printed by `doit repo`.
        box.call(as_root(apt_repo.pi_owner_lines(url, SUITE, "crio-1.35")[1]))
        assert box.output(["cat", "/etc/apt/sources.list.d/criobuild.list"]).strip() == f"deb [signed-by=/etc/apt/keyrings/criobuild.gpg] {url} {SUITE} crio-1.35"
        box.call(["apt-get", "update", "-q"], env=apt_env)
        box.call(["apt-get", "install", "-y", "-q", "--no-install-recommends", "cri-o"], env=apt_env)
        assert installed() == {name: ours(first)[name] for name in ("cri-o", "cri-o-conmon", "cri-o-cni-plugins")}
        assert installed()["cri-o"] == "1.35.5-1~deb12"
        assert box.output(["crio", "--version"]).strip() == "crio version 1.35.5"
        assert madison() == set(ours(first).items())  # 1.35's packages and nothing of 1.36's
        assert "1.36" not in policy() and "Candidate: 1.35.5-1~deb12" in policy()

        # The next patch release of 1.35 is built: artifacts/crio-1.35 now holds 1.35.6, `doit repo` again.
        build_fakes(patch, settings, trees, debian_depends=False)
        apt_repo.build_repo([patch, next_minor], settings, key_id=use_gnupg.key, out=served)
        box.call(["apt-get", "update", "-q"], env=apt_env)
        box.call(["apt-get", "upgrade", "-y", "-q"], env=apt_env)
        assert installed()["cri-o"] == "1.35.6-1~deb12"
        assert box.output(["crio", "--version"]).strip() == "crio version 1.35.6"
        assert madison() == set(ours(patch).items())
        seen = policy()
        assert "1.36" not in seen and "Installed: 1.35.6-1~deb12" in seen and "Candidate: 1.35.6-1~deb12" in seen
        assert box.output(["apt-get", "-s", "dist-upgrade"]).count("Inst ") == 0  # nothing further to take
        # The node never asked for the other minor's indexes.
        fetched = [p for p in http_server.requests if p.startswith(f"apt-minors/dists/{SUITE}/")]
        assert any(p.startswith(f"apt-minors/dists/{SUITE}/crio-1.35/") for p in fetched), fetched
        assert not any("crio-1.36" in p for p in http_server.requests), fetched

        # Moving to the next minor is a deliberate edit of the deb line.
        box.call(as_root(apt_repo.pi_owner_lines(url, SUITE, "crio-1.36")[1]))
        box.call(["apt-get", "update", "-q"], env=apt_env)
        box.call(["apt-get", "upgrade", "-y", "-q"], env=apt_env)
        assert installed()["cri-o"] == "1.36.3-1~deb12"


@pytest.fixture(scope="module")
def pipeline_debs(pipeline, built) -> tuple[Recipe, object]:
    """The .debs of the fixture upstreams (one per component of the recipe), built by the real pipeline (`doit deb:…`)."""
    result = pipeline.doit(*(f"deb:crio-1.18:{package_name(c)}" for c in COMPONENTS))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    recipe = load_recipe(Path(pipeline.env["CRIOBUILD_RECIPES"]) / "crio-1.18.toml")
    return recipe, replace(load_settings(pipeline.env), artifacts=Path(pipeline.env["CRIOBUILD_ARTIFACTS"]))


@pytest.mark.docker
@pytest.mark.emulation
@pytest.mark.slow
def test_a_clean_arm64_bookworm_installs_cri_o_from_the_repository(use_gnupg: GnuPG, pipeline_debs, http_server, docker_engine, arm64_base_image, tmp_path) -> None:
    recipe, settings = pipeline_debs
    served, _ = http_server.subdir("apt-repo")
    shutil.rmtree(served)
    apt_repo.build_repo([recipe], settings, key_id=use_gnupg.key, out=served)
    keys = tmp_path / "keys"
    keys.mkdir()
    shutil.copy(served / apt_repo.KEYRING, keys / "criobuild.gpg")
    use_gnupg.export(use_gnupg.other, keys / "other.gpg")
    url = f"{http_server.url}/apt-repo"
    sources = "/etc/apt/sources.list.d/criobuild.list"
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}

    def entry(keyring: str) -> list[str]:
        return ["sh", "-c", f"echo 'deb [signed-by=/etc/apt/keyrings/{keyring}] {url} {SUITE} {recipe.name}' > {sources}"]

    # Host networking: the container reaches the HTTP server on the host's 127.0.0.1 and the Debian mirror.
    with Container(docker_engine, arm64_base_image, network="host", what="apt repository acceptance") as box:
        box.copy_into(keys, "/etc/apt/keyrings")
        # A stranger's key in signed-by: apt refuses the repository (only ours is updated, to be quick).
        box.call(entry("other.gpg"))
        only_ours = ["-o", f"Dir::Etc::sourcelist={sources}", "-o", "Dir::Etc::sourceparts=-", "-o", "APT::Get::List-Cleanup=0"]
        refused = box.container.exec_run(["apt-get", "update", *only_ours])
        said = refused.output.decode(errors="replace")
        assert refused.exit_code != 0, said
        assert "NO_PUBKEY" in said or "not signed" in said, said
        # Our key, and no apt preference: cri-o names our conmon and CNI plugins (bookworm's own are newer).
        box.call(entry("criobuild.gpg"))
        box.call(["apt-get", "update", "-q"], env=apt_env)
        box.call(["apt-get", "install", "-y", "-q", "--no-install-recommends", "cri-o", "cri-tools"], env=apt_env)
        ours = {package_name(c): deb_version(recipe, c) for c in COMPONENTS}
        installed = box.output(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *ours, "iptables", "conntrack"])
        versions = dict(line.split(" ", 1) for line in installed.splitlines())
        assert {name: versions[name] for name in ours} == ours  # cri-o-runc, ours, among them
        assert versions["iptables"] and versions["conntrack"]  # from the Debian mirror
        assert box.output(["crio", "--version"]).splitlines()[0] == f"crio version {recipe.crio.version}"
        assert box.output(["crictl", "--version"]).strip() == f"crictl version {recipe.components['cri-tools'].version}"
    assert any(p.startswith("apt-repo/dists/bookworm/InRelease") for p in http_server.requests)


@pytest.mark.docker
def test_a_clean_trixie_with_debians_archive_gets_exactly_the_recipes_companions_without_a_pin(use_gnupg: GnuPG, http_server, docker_engine, tmp_path) -> None:
    """Debian trixie has conmon 2.1.12 and containernetworking-plugins 1.1.1, newer than crio-1.18's 2.0.19 and
    0.8.5: `apt-get install cri-o` from the README still installs the recipe's, with no apt preference, on a
    clean node and on one where Debian's were installed first (a podman node), and upgrades keep them.
    The packages are stand-ins with the real packages' relations; natively, for the host's architecture."""
    from builders.arch import host_arch
    from builders.images import ensure_base_image

    target = Target(distro="debian", suite="trixie", arch=host_arch(), mirror="http://deb.debian.org/debian")
    recipe = replace(load_recipe(REPO / "recipes" / "crio-1.18.toml"), target=target)
    settings = replace(load_settings({}), artifacts=tmp_path / "artifacts")
    build_fakes(recipe, settings, tmp_path / "trees", relations=True)
    served, url = http_server.subdir("apt-trixie")
    shutil.rmtree(served)
    apt_repo.build_repo([recipe], settings, key_id=use_gnupg.key, out=served)
    keys = tmp_path / "keys"
    keys.mkdir()
    shutil.copy(served / apt_repo.KEYRING, keys / "criobuild.gpg")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    expected = ours(recipe)
    debians = ("conmon", "containernetworking-plugins")

    def installed() -> dict[str, str]:
        query = "dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\\n' " + " ".join([*expected, *debians]) + " 2>/dev/null || true"
        return {name: version for name, version, status in (line.split(" ", 2) for line in box.output(["sh", "-c", query]).splitlines()) if status.startswith("ii")}

    def install_cri_o() -> None:
        box.call(["apt-get", "install", "-y", "-q", "cri-o"], env=apt_env)  # as the README says it (cri-tools is a Recommends)
        assert installed() == expected  # ours, each at the recipe's version, and neither of Debian's two
        assert box.output(["conmon", "--version"]).strip() == f"conmon version {recipe.components['conmon'].version}"
        assert "Inst " not in box.output(["apt-get", "-s", "-q", "dist-upgrade"])  # nothing newer of Debian's comes back

    base = ensure_base_image(docker_engine, target, "bootstrap")
    with Container(docker_engine, base, network="host", what="cri-o from the repository beside Debian's archive") as box:
        box.copy_into(keys, "/etc/apt/keyrings")
        assert "deb.debian.org/debian trixie" in box.output(["sh", "-c", "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true"])
        box.call(as_root(apt_repo.pi_owner_lines(url, "trixie", recipe.name)[1]))  # the README's line, and no pin file
        box.call(["apt-get", "update", "-q"], env=apt_env)
        for name, component in zip(debians, ("conmon", "cni-plugins")):  # Debian's candidates are newer than ours
            debian = re.search(r"Candidate: (\S+)", box.output(["apt-cache", "policy", name])).group(1)
            assert box.container.exec_run(["dpkg", "--compare-versions", debian, "gt", deb_version(recipe, component)]).exit_code == 0, debian
        install_cri_o()

        # A node that had Debian's conmon and CNI plugins (podman's) before: ours take their place.
        box.call(["apt-get", "purge", "-y", "-q", *expected], env=apt_env)
        box.call(["apt-get", "install", "-y", "-q", "--no-install-recommends", *debians], env=apt_env)
        assert set(installed()) == set(debians)
        install_cri_o()
