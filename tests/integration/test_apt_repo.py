"""The signed apt repository (`doit repo`): made with apt-ftparchive and gpg, checked with gpgv, and
installed from by apt in a clean arm64 container over HTTP, dependencies from the Debian mirror included.

The host-side checks use small .debs made here with dpkg-deb, named and versioned the way deb_task
names the recipe's packages; the container test serves the fixture upstreams' real .debs from the pipeline.
"""
from __future__ import annotations

import os
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
from builders.deb import PACKAGE_NAMES, deb_path, deb_version
from builders.errors import PackageError
from builders.recipe import COMPONENTS, Recipe, load_recipe
from builders.settings import load_settings
from tests.fixtures.pipeline import REPO

RECIPE = load_recipe(REPO / "recipes" / "crio-1.18.toml")
SUITE = RECIPE.target.suite
# What each fake package installs and prints, and what it depends on.
FAKE = {
    "cri-o": ("usr/bin/crio", "crio version {v}", "conmon (>= {conmon}), containernetworking-plugins (>= {cni}), iptables"),
    "conmon": ("usr/bin/conmon", "conmon version {v}", ""),
    "cni-plugins": ("usr/lib/cni/bridge", "CNI bridge plugin v{v}", ""),
    "cri-tools": ("usr/bin/crictl", "crictl version v{v}", ""),
}


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


def make_deb(tree_root: Path, recipe: Recipe, component: str, dest: Path) -> Path:
    path, output, depends = FAKE[component]
    version = recipe.components[component].version
    tree = tree_root / component
    (tree / "DEBIAN").mkdir(parents=True)
    control = textwrap.dedent(f"""\
        Package: {PACKAGE_NAMES[component]}
        Version: {deb_version(recipe, component)}
        Architecture: {recipe.target.arch.to_deb()}
        Maintainer: criobuild tests <test@invalid>
        Section: admin
        Priority: optional
        Description: stand-in for {component} (test package)
        """)
    if depends:
        control += "Depends: " + depends.format(conmon=deb_version(recipe, "conmon"), cni=deb_version(recipe, "cni-plugins")) + "\n"
    (tree / "DEBIAN" / "control").write_text(control)
    program = tree / path
    program.parent.mkdir(parents=True)
    program.write_text(f"#!/bin/sh\necho '{output.format(v=version)}'\n")
    program.chmod(0o755)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(dest)], check=True, capture_output=True)
    return dest


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
    assert {p.name for p in dist.iterdir()} >= {"Release", "InRelease", "Release.gpg", "main"}
    # gpgv with nothing but the exported keyring, as apt does with signed-by.
    keyring = out / apt_repo.KEYRING
    subprocess.run(["gpgv", "--keyring", str(keyring), str(dist / "InRelease")], check=True, capture_output=True)
    subprocess.run(["gpgv", "--keyring", str(keyring), str(dist / "Release.gpg"), str(dist / "Release")], check=True, capture_output=True)
    release = (dist / "Release").read_text()
    for line in (f"Suite: {SUITE}", f"Codename: {SUITE}", "Components: main", "Architectures: arm64"):
        assert line in release.splitlines()
    assert "main/binary-arm64/Packages.xz" in release
    packages = (dist / "main" / "binary-arm64" / "Packages").read_text()
    for c in COMPONENTS:
        name = PACKAGE_NAMES[c]
        filename = f"pool/main/{name[0]}/{name}/{deb_path(RECIPE, c, settings).name}"
        assert f"Filename: {filename}" in packages
        assert (out / filename).is_file()
    assert f"Depends: conmon (>= {deb_version(RECIPE, 'conmon')}), containernetworking-plugins (>= {deb_version(RECIPE, 'cni-plugins')}), iptables" in packages
    assert list(tmp_path.glob(".apt.*")) == []  # no temporary directory left behind


def test_rebuilding_replaces_the_repository_whole(use_gnupg: GnuPG, settings, tmp_path) -> None:
    out = tmp_path / "apt"
    apt_repo.build_repo([RECIPE], settings, key_id=use_gnupg.key, out=out)
    (out / "pool" / "main" / "stale.deb").write_text("left from an older release")
    apt_repo.build_repo([RECIPE], settings, key_id=use_gnupg.key, out=out)
    assert not (out / "pool" / "main" / "stale.deb").exists()
    assert (out / "dists" / SUITE / "InRelease").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apt"]


def test_doit_repo_action_reads_the_key_and_output_from_the_environment(use_gnupg: GnuPG, settings, tmp_path, capsys) -> None:
    env = {"CRIOBUILD_GPG_KEY": use_gnupg.key[-16:], "CRIOBUILD_APT_REPO": str(tmp_path / "served")}
    apt_repo.build_repo_from_env([RECIPE], settings, env)
    assert (tmp_path / "served" / "dists" / SUITE / "InRelease").is_file()
    said = capsys.readouterr().out
    assert "signed-by=/etc/apt/keyrings/criobuild.gpg" in said and "apt-get install cri-o" in said


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
    with pytest.raises(PackageError, match=r"lacks some of crio-1\.18's packages: conmon_") as e:
        apt_repo.build_repo([RECIPE], partial, key_id=use_gnupg.key, out=tmp_path / "apt")
    assert "doit build:crio-1.18" in str(e.value)


def test_accept_task_depends_on_the_recipes_debs_and_refuses_missing_ones(tmp_path) -> None:
    empty = replace(load_settings({}), artifacts=tmp_path / "artifacts")
    task = accept_task(RECIPE, empty)
    assert task["name"] == "crio-1.18"
    assert task["file_dep"] == [deb_path(RECIPE, c, empty) for c in COMPONENTS]
    with pytest.raises(PackageError) as e:
        accept(RECIPE, empty)
    assert str(tmp_path / "artifacts" / "crio-1.18") in str(e.value) and "doit build:crio-1.18" in str(e.value)


# -- in a clean arm64 container ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline_debs(pipeline, built) -> tuple[Recipe, object]:
    """The four .debs of the fixture upstreams, built by the real pipeline (`doit deb:…`)."""
    result = pipeline.doit(*(f"deb:crio-1.18:{PACKAGE_NAMES[c]}" for c in COMPONENTS))
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
        return ["sh", "-c", f"echo 'deb [signed-by=/etc/apt/keyrings/{keyring}] {url} {SUITE} main' > {sources}"]

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
        # Our key, and the README's preference for this origin (bookworm's own conmon and CNI plugins are newer).
        box.call(entry("criobuild.gpg"))
        box.call(["sh", "-c", "printf 'Package: cri-o conmon containernetworking-plugins cri-tools\\nPin: release o=criobuild\\nPin-Priority: 1001\\n' > /etc/apt/preferences.d/criobuild"])
        box.call(["apt-get", "update", "-q"], env=apt_env)
        box.call(["apt-get", "install", "-y", "-q", "--no-install-recommends", "cri-o", "cri-tools"], env=apt_env)
        ours = {PACKAGE_NAMES[c]: deb_version(recipe, c) for c in COMPONENTS}
        installed = box.output(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *ours, "runc", "iptables", "conntrack"])
        versions = dict(line.split(" ", 1) for line in installed.splitlines())
        assert {name: versions[name] for name in ours} == ours
        assert versions["runc"] and versions["iptables"] and versions["conntrack"]  # from the Debian mirror
        assert box.output(["crio", "--version"]).splitlines()[0] == f"crio version {recipe.crio.version}"
        assert box.output(["crictl", "--version"]).strip() == f"crictl version {recipe.components['cri-tools'].version}"
    assert any(p.startswith("apt-repo/dists/bookworm/InRelease") for p in http_server.requests)
