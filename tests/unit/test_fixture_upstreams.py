"""The fixture upstreams: promised history, stable commit ids, and real builds through upstream's entry points.

The build tests use the host's Go and C toolchain (Debian: golang-go, gcc, make, pkg-config,
libglib2.0-dev, libc6-dev, git), cloning each fixture at a tag like the pipeline does.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from builders.recipe import load_recipe
from tests.fixtures.upstreams import FixtureUpstream, advance_branch, make_upstreams, write_recipe

GO_TABLE = '[go]\nversion = "1.19.8"\nsha256 = { arm64 = "' + "a" * 64 + '" }\n'
ISO_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
BUILDVERSION = "github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion"


def run(*cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, input=stdin or "", capture_output=True, text=True)
    assert result.returncode == 0, f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def build_env() -> dict[str, str]:
    """The host environment without Go settings that could hide a network need."""
    env = {k: v for k, v in os.environ.items() if k not in {"GOFLAGS", "GOPATH", "GO111MODULE", "GOBIN"}}
    return env | {"GOPROXY": "off", "GOSUMDB": "off"}


def clone(up: FixtureUpstream, ref: str, dest: Path) -> Path:
    run("git", "-c", "advice.detachedHead=false", "clone", "-q", "--depth", "1", "--branch", ref, up.url, str(dest))
    return dest


def fields(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


# --- (a) history and reproducibility -------------------------------------------------------------

def test_repos_have_the_promised_tags_and_branches(upstreams):
    assert set(upstreams) == {"cri-o", "conmon", "cni-plugins", "cri-tools"}
    expected_tags = {
        "cri-o": {"v1.18.0", "v1.18.1"}, "conmon": {"v2.0.18", "v2.0.19"},
        "cni-plugins": {"v0.8.4", "v0.8.5"}, "cri-tools": {"v1.17.0", "v1.18.0"},
    }
    for name, up in upstreams.items():
        assert up.name == name and up.url == up.path.resolve().as_uri()
        assert set(up.tags) == expected_tags[name]
        for tag, commit in up.tags.items():
            assert run("git", "rev-parse", f"{tag}^{{commit}}", cwd=up.path).stdout.strip() == commit
        assert "main" in up.branches and up.branches[up.branch] == up.branch_tip
        newest = max(up.tags, key=lambda t: [int(n) for n in t[1:].split(".")])
        # the branch moved past the last tag, which stays an ancestor
        assert up.branch_tip != up.tags[newest]
        run("git", "merge-base", "--is-ancestor", up.tags[newest], up.branch_tip, cwd=up.path)
        assert run("git", "status", "--porcelain", cwd=up.path).stdout == ""

    crio = upstreams["cri-o"]
    assert crio.branch == "release-1.18"
    assert run("git", "rev-list", "--count", f"v1.18.1..{crio.branch_tip}", cwd=crio.path).stdout.strip() == "1"
    # main has its own later commit, not on the release branch
    assert run("git", "rev-list", "--count", f"release-1.18..main", cwd=crio.path).stdout.strip() == "1"
    assert "1.19.0-dev" in run("git", "show", "main:internal/version/version.go", cwd=crio.path).stdout


def test_source_versions_match_the_tags(upstreams):
    def show(up: FixtureUpstream, ref: str, path: str) -> str:
        return run("git", "show", f"{ref}:{path}", cwd=up.path).stdout

    for tag in ("v1.18.0", "v1.18.1"):
        assert f'const Version = "{tag[1:]}"' in show(upstreams["cri-o"], tag, "internal/version/version.go")
    for tag in ("v2.0.18", "v2.0.19"):
        assert show(upstreams["conmon"], tag, "VERSION") == tag[1:] + "\n"
    assert 'const Version = "1.18.1"' in show(upstreams["cri-o"], "release-1.18", "internal/version/version.go")


def test_commit_ids_are_stable_across_creations(tmp_path, upstreams):
    first, second = make_upstreams(tmp_path / "a"), make_upstreams(tmp_path / "b")
    for name in first:
        ids = [(u.tags, u.branches, u.branch_tip) for u in (first[name], second[name], upstreams[name])]
        assert ids[0] == ids[1] == ids[2], name


def test_advance_branch_moves_only_that_branch(tmp_path):
    ups = make_upstreams(tmp_path)
    crio = ups["cri-o"]
    old_tip, tags = crio.branch_tip, dict(crio.tags)
    new_tip = advance_branch(crio, "Fix a leak")
    assert crio.branch_tip == new_tip != old_tip and crio.tags == tags
    assert run("git", "rev-parse", "release-1.18", cwd=crio.path).stdout.strip() == new_tip
    assert run("git", "rev-parse", "--abbrev-ref", "HEAD", cwd=crio.path).stdout.strip() == "main"
    assert advance_branch(make_upstreams(tmp_path / "again")["cri-o"], "Fix a leak") == new_tip


def test_write_recipe_pins_the_fixtures(tmp_path, upstreams):
    recipe = load_recipe(write_recipe(tmp_path, upstreams, GO_TABLE))
    assert recipe.name == "crio-1.18" and recipe.go.version == "1.19.8"
    crio = recipe.crio
    assert (crio.repo, crio.branch, crio.tag, crio.version) == (upstreams["cri-o"].url, "release-1.18", "v1.18.1", "1.18.1")
    assert crio.commit == upstreams["cri-o"].tags["v1.18.1"] and "seccomp" in crio.buildtags
    for name, tag in (("conmon", "v2.0.19"), ("cni-plugins", "v0.8.5"), ("cri-tools", "v1.18.0")):
        c = recipe.components[name]
        assert (c.repo, c.tag, c.commit) == (upstreams[name].url, tag, upstreams[name].tags[tag])

    body = GO_TABLE.removeprefix("[go]\n")  # the [go] header is optional
    dev = load_recipe(write_recipe(tmp_path, upstreams, body, name="crio-dev", crio_tag=None, cgroup_manager="cgroupfs",
                                   packages=["gcc", "make"]))
    assert (dev.crio.tag, dev.crio.commit, dev.crio.version) == (None, upstreams["cri-o"].branch_tip, "1.18.1")
    assert dev.cgroup_manager == "cgroupfs" and dev.build_packages == ("gcc", "make")


# --- (b) builds through the upstream entry points ------------------------------------------------

@pytest.fixture(scope="module")
def crio_tree(upstreams, tmp_path_factory) -> Path:
    """cri-o cloned at v1.18.1 and built with `make binaries`, like the pipeline does it."""
    tree = clone(upstreams["cri-o"], "v1.18.1", tmp_path_factory.mktemp("crio") / "cri-o")
    run("make", "binaries", "BUILDTAGS=seccomp containers_image_openpgp", cwd=tree, env=build_env())
    return tree


def test_crio_make_binaries_embeds_version_commit_and_tree_state(crio_tree, upstreams):
    commit = upstreams["cri-o"].tags["v1.18.1"]
    out = run("bin/crio", "--version", cwd=crio_tree).stdout
    assert out.splitlines()[0] == "crio version 1.18.1"
    info = {k: v.strip() for k, v in fields(out).items()}
    assert info["Version"] == "1.18.1" and info["GitCommit"] == commit and info["GitTreeState"] == "clean"
    assert ISO_DATE.match(info["BuildDate"]) and info["GoVersion"].startswith("go1.") and info["Compiler"] == "gc"
    assert info["Platform"].startswith("linux/")
    assert run("bin/crio", "version", cwd=crio_tree).stdout == "\n".join(out.splitlines()[1:]) + "\n"
    assert run("bin/crio-status", "--version", cwd=crio_tree).stdout == "crio-status version 1.18.1\n"
    assert "-tags=seccomp,containers_image_openpgp" in run("go", "version", "-m", "bin/crio", cwd=crio_tree).stdout
    pinns = subprocess.run(["bin/pinns"], cwd=crio_tree, capture_output=True, text=True)
    assert pinns.returncode == 1 and "Path for pinning namespaces not specified" in pinns.stderr
    ldd = subprocess.run(["ldd", "bin/pinns"], capture_output=True, text=True, cwd=crio_tree)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr  # linked -static


def test_crio_install_targets_lay_out_the_files(crio_tree, tmp_path):
    env = build_env()
    run("make", "crio.conf", "docs", cwd=crio_tree, env=env)
    dest = tmp_path / "dest"
    run("make", "install.bin-nobuild", "install.config-nobuild", "install.systemd", "install.man-nobuild",
        "install.completions", f"DESTDIR={dest}", f"PREFIX={dest}/usr", cwd=crio_tree, env=env)
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if not p.is_dir()}
    assert {
        "usr/bin/crio", "usr/bin/crio-status", "usr/bin/pinns", "etc/crio/crio.conf", "etc/crictl.yaml",
        "usr/share/oci-umount/oci-umount.d/crio-umount.conf",
        "usr/lib/systemd/system/crio.service", "usr/lib/systemd/system/crio-wipe.service",
        "usr/lib/systemd/system/crio-shutdown.service", "usr/lib/systemd/system/cri-o.service",
        "usr/share/man/man8/crio.8", "usr/share/man/man5/crio.conf.5",
        "usr/share/bash-completion/completions/crio", "usr/share/zsh/site-functions/_crio",
    } <= files
    assert (dest / "usr/lib/systemd/system/cri-o.service").readlink() == Path("crio.service")
    assert "ExecStart=/usr/local/bin/crio" in (dest / "usr/lib/systemd/system/crio.service").read_text()
    assert (dest / "usr/share/man/man8/crio.8").read_text().startswith(".TH CRIO 8")
    for conf in ("contrib/cni/10-crio-bridge.conf", "contrib/cni/99-loopback.conf", "contrib/policy.json"):
        json.loads((crio_tree / conf).read_text())  # files packagers take from the tree, as upstream ships them
    # default install paths, as upstream: PREFIX ?= $(DESTDIR)/usr/local
    dest2 = tmp_path / "dest2"
    run("make", "install.bin-nobuild", f"DESTDIR={dest2}", cwd=crio_tree, env=env)
    assert (dest2 / "usr/local/bin/crio").is_file()
    # the generated files do not dirty the tree
    assert run("git", "status", "--porcelain", "--untracked-files=no", cwd=crio_tree).stdout == ""


def test_crio_reports_a_dirty_tree(upstreams, tmp_path):
    tree = clone(upstreams["cri-o"], "release-1.18", tmp_path / "cri-o")
    (tree / "README.md").write_text("local change\n")
    run("make", "bin/crio", cwd=tree, env=build_env())
    info = fields(run("bin/crio", "version", cwd=tree).stdout)
    assert info["GitTreeState"].strip() == "dirty"
    assert info["GitCommit"].strip() == upstreams["cri-o"].branch_tip


@pytest.mark.parametrize("tag", ["v2.0.18", "v2.0.19"])
def test_conmon_make_embeds_version_file_and_commit(upstreams, tmp_path, tag):
    up = upstreams["conmon"]
    tree = clone(up, tag, tmp_path / "conmon")
    run("make", cwd=tree, env=build_env())
    assert run("bin/conmon", "--version", cwd=tree).stdout == f"conmon version {tag[1:]}\ncommit: {up.tags[tag]}\n"
    run("make", "install", "PREFIX=/usr", f"DESTDIR={tmp_path / 'dest'}", cwd=tree)
    run("make", "install.crio", f"DESTDIR={tmp_path / 'dest'}", cwd=tree)
    assert (tmp_path / "dest/usr/bin/conmon").is_file()
    assert (tmp_path / "dest/usr/local/libexec/crio/conmon").is_file()


def test_plugins_build_linux_sh_builds_every_plugin(upstreams, tmp_path):
    tree = clone(upstreams["cni-plugins"], "v0.8.5", tmp_path / "plugins")
    out = run("./build_linux.sh", "-ldflags", f"-X {BUILDVERSION}=v0.8.5", cwd=tree, env=build_env()).stdout
    assert out.startswith("Building plugins")
    assert sorted(p.name for p in (tree / "bin").iterdir()) == ["bridge", "host-local", "loopback", "portmap"]
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        about = run(f"bin/{plugin}", cwd=tree, env={"PATH": os.environ["PATH"]})
        assert (about.stdout, about.stderr) == ("", f"CNI {plugin} plugin v0.8.5\n")
        version = run(f"bin/{plugin}", cwd=tree, env={"CNI_COMMAND": "VERSION"}).stdout
        assert version == '{"cniVersion":"0.4.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0"]}\n'
    # without the release script's -ldflags, as upstream's build_linux.sh alone
    run("./build_linux.sh", cwd=tree, env=build_env())
    assert run("bin/bridge", cwd=tree, env={}).stderr == "CNI bridge plugin version unknown\n"


def test_cri_tools_make_embeds_git_describe(upstreams, tmp_path):
    up = upstreams["cri-tools"]
    tree = clone(up, "v1.18.0", tmp_path / "cri-tools")
    run("make", cwd=tree, env=build_env())
    assert run("_output/crictl", "--version", cwd=tree).stdout == "crictl version 1.18.0\n"
    assert run("_output/critest", "--version", cwd=tree).stdout.startswith("critest version: 1.18.0\n")
    run("make", "install", f"BINDIR={tmp_path / 'bin'}", cwd=tree)
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["crictl", "critest"]
    # past the tag, git describe says so, given the history (a shallow clone has no tag to describe)
    shallow = clone(up, "main", tmp_path / "shallow")
    run("make", "crictl", cwd=shallow, env=build_env())
    assert run("_output/crictl", "--version", cwd=shallow).stdout == f"crictl version {up.branch_tip[:7]}\n"
    run("git", "clone", "-q", up.url, str(tmp_path / "full"))
    run("make", "crictl", cwd=tmp_path / "full", env=build_env())
    assert run("_output/crictl", "--version", cwd=tmp_path / "full").stdout == f"crictl version 1.18.0-1-g{up.branch_tip[:7]}\n"


# --- (c) crio config reflects its flags -----------------------------------------------------------

def test_crio_config_reflects_flags(crio_tree):
    out = run("bin/crio", "--config=", "-d", "", "--cgroup-manager=cgroupfs", "--pause-image=registry.local/pause:3.2",
              "--conmon=/usr/libexec/crio/conmon", "--cni-plugin-dir=/usr/lib/cni", "--cni-plugin-dir", "/opt/cni/bin",
              "config", cwd=crio_tree).stdout
    conf = tomllib.loads(out)["crio"]
    assert conf["runtime"]["conmon"] == "/usr/libexec/crio/conmon"
    assert conf["runtime"]["cgroup_manager"] == "cgroupfs"
    assert conf["runtime"]["default_runtime"] == "runc" and "runc" in conf["runtime"]["runtimes"]
    assert conf["image"]["pause_image"] == "registry.local/pause:3.2"
    assert conf["network"] == {"network_dir": "/etc/cni/net.d/", "plugin_dirs": ["/usr/lib/cni", "/opt/cni/bin"]}

    defaults = tomllib.loads(run("bin/crio", "--config=", "config", cwd=crio_tree).stdout)["crio"]
    assert (defaults["runtime"]["conmon"], defaults["runtime"]["cgroup_manager"]) == ("", "systemd")
    assert defaults["image"]["pause_image"] == "k8s.gcr.io/pause:3.2"
    assert defaults["network"]["plugin_dirs"] == ["/opt/cni/bin/"]

    bad = subprocess.run(["bin/crio", "--cgroup-manager=upstart", "config"], cwd=crio_tree, capture_output=True, text=True)
    assert bad.returncode != 0 and "invalid cgroup manager" in bad.stderr


def test_make_crio_conf_passes_conf_overrides(crio_tree):
    (crio_tree / "crio.conf").unlink(missing_ok=True)  # like upstream, make keeps an existing one
    run("make", "crio.conf", "CONF_OVERRIDES=--cgroup-manager=cgroupfs --pause-image=example/pause:1", cwd=crio_tree, env=build_env())
    conf = tomllib.loads((crio_tree / "crio.conf").read_text())["crio"]
    assert (conf["runtime"]["cgroup_manager"], conf["image"]["pause_image"]) == ("cgroupfs", "example/pause:1")
    (crio_tree / "crio.conf").unlink()
