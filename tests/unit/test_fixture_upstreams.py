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
from tests.fixtures.upstreams import HISTORIES, FixtureUpstream, advance_branch, make_upstreams, write_recipe

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


def go_arch() -> str:
    return run("go", "env", "GOARCH").stdout.strip()


def without(program: str, env: dict[str, str], tmp: Path) -> dict[str, str]:
    """env with a PATH where `program` is not found: each directory holding it becomes links to its other entries."""
    shim = tmp / f"path-without-{program}"
    shim.mkdir(exist_ok=True)
    dirs: list[str] = []
    for d in env["PATH"].split(os.pathsep):
        if d and (Path(d) / program).exists():
            for entry in Path(d).iterdir():
                if entry.name != program and not os.path.lexists(shim / entry.name):
                    (shim / entry.name).symlink_to(entry)
            d = str(shim)
        if d not in dirs:
            dirs.append(d)
    return env | {"PATH": os.pathsep.join(dirs)}


def fields(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


# --- (a) history and reproducibility -------------------------------------------------------------

def test_repos_have_the_promised_tags_and_branches(upstreams):
    expected_tags = {name: {step.tag for step in steps if step.tag} for name, (_, steps) in HISTORIES.items()}
    assert set(upstreams) == {"cri-o", "conmon", "cni-plugins", "cri-tools", "runc", "libocispec", "crun"} == set(expected_tags)
    # the tags the tests below build at
    assert {"v1.18.0", "v1.18.1", "v1.36.1"} <= expected_tags["cri-o"] and {"v2.0.19", "v2.1.13"} <= expected_tags["conmon"]
    assert {"v1.18.0", "v1.36.0"} <= expected_tags["cri-tools"] and {"v0.8.5"} <= expected_tags["cni-plugins"]
    assert {"v1.0.0-rc10", "v1.4.3"} <= expected_tags["runc"] and expected_tags["crun"] == {"1.26"} and not expected_tags["libocispec"]
    for name, up in upstreams.items():
        assert up.name == name and up.url == up.path.resolve().as_uri()
        assert set(up.tags) == expected_tags[name]
        assert "main" in up.branches and up.branches[up.branch] == up.branch_tip
        for tag, commit in up.tags.items():
            assert run("git", "rev-parse", f"{tag}^{{commit}}", cwd=up.path).stdout.strip() == commit
        if up.tags:  # the branch moved past its newest tag, which stays an ancestor
            newest = run("git", "describe", "--tags", "--abbrev=0", up.branch_tip, cwd=up.path).stdout.strip()
            assert up.branch_tip != up.tags[newest]
            run("git", "merge-base", "--is-ancestor", up.tags[newest], up.branch_tip, cwd=up.path)
        assert run("git", "status", "--porcelain", cwd=up.path).stdout == ""

    def count(name: str, revs: str) -> int:
        return int(run("git", "rev-list", "--count", revs, cwd=upstreams[name].path).stdout)

    crio = upstreams["cri-o"]
    assert crio.branch == "release-1.18" and set(crio.branches) == {"main", "release-1.18", "release-1.36", "release-1.37"}
    assert count("cri-o", f"v1.18.1..{crio.branch_tip}") == 1
    # main has its own later commit, not on the release branch; release-1.36 forks off main
    assert count("cri-o", "release-1.18..main") == 1
    assert "1.19.0-dev" in run("git", "show", "main:internal/version/version.go", cwd=crio.path).stdout
    assert count("cri-o", "main..v1.36.1") == 1 and count("cri-o", "v1.36.1..release-1.36") == 1
    # the 2026 releases of the companions are on main, one commit before its tip
    assert count("conmon", "v2.1.13..main") == count("cri-tools", "v1.36.0..main") == 1
    assert count("libocispec", "main") == 2


def test_source_versions_match_the_tags(upstreams):
    def show(up: FixtureUpstream, ref: str, path: str) -> str:
        return run("git", "show", f"{ref}:{path}", cwd=up.path).stdout

    for tag in ("v1.18.0", "v1.18.1", "v1.36.1"):
        assert f'const Version = "{tag[1:]}"' in show(upstreams["cri-o"], tag, "internal/version/version.go")
    for tag in ("v2.0.18", "v2.0.19", "v2.1.13"):
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
    out = f"build/bin/linux/{go_arch()}/crictl"  # main has the 1.36 layout
    assert run(out, "--version", cwd=shallow).stdout == f"crictl version {up.branch_tip[:7]}\n"
    run("git", "clone", "-q", up.url, str(tmp_path / "full"))
    run("make", "crictl", cwd=tmp_path / "full", env=build_env())
    assert run(out, "--version", cwd=tmp_path / "full").stdout == f"crictl version 1.36.0-1-g{up.branch_tip[:7]}\n"


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


# --- (d) the 2026 shapes: cri-o v1.36.1, cri-tools v1.36.0, conmon v2.1.13 ----------------------

@pytest.fixture(scope="module")
def crio136_tree(upstreams, tmp_path_factory) -> Path:
    """cri-o cloned at v1.36.1 and built with `make binaries`."""
    tree = clone(upstreams["cri-o"], "v1.36.1", tmp_path_factory.mktemp("crio136") / "cri-o")
    run("make", "binaries", "BUILDTAGS=seccomp", cwd=tree, env=build_env())
    return tree


def crio_config(tree: Path, *args: str) -> dict:
    return tomllib.loads(run("bin/crio", *args, "config", cwd=tree).stdout)["crio"]


def test_crio_1_36_make_binaries_builds_crio_and_pinns(crio136_tree, upstreams):
    assert sorted(p.name for p in (crio136_tree / "bin").iterdir()) == ["crio", "pinns"]
    out = run("bin/crio", "--version", cwd=crio136_tree).stdout
    assert out.splitlines()[0] == "crio version 1.36.1"
    info = {k: v.strip() for k, v in fields(run("bin/crio", "version", cwd=crio136_tree).stdout).items()}
    assert (info["Version"], info["GitCommit"], info["GitTreeState"]) == ("1.36.1", upstreams["cri-o"].tags["v1.36.1"], "clean")
    assert ISO_DATE.match(info["BuildDate"])
    assert not (crio136_tree / "cmd/crio-status").exists()


def test_crio_1_36_docs_need_go_md2man_named_offline(upstreams, tmp_path):
    tree = clone(upstreams["cri-o"], "v1.36.1", tmp_path / "cri-o")
    # the Makefile would fetch go-md2man with `go install ...@latest` (when none is in $PATH)
    offline = subprocess.run(["make", "docs"], cwd=tree, env=without("go-md2man", build_env(), tmp_path), capture_output=True, text=True)
    assert offline.returncode != 0 and "GOPROXY=off" in offline.stderr
    assert "github.com/cpuguy83/go-md2man/v2@latest" in offline.stdout and not (tree / "docs/crio.8").exists()
    run("make", "docs", "GO_MD2MAN=go-md2man", cwd=tree, env=build_env())
    assert sorted(p.name for p in (tree / "docs").glob("*.[58]")) == ["crio.8", "crio.conf.5", "crio.conf.d.5"]


def test_crio_1_36_install_targets_lay_out_the_files(crio136_tree, tmp_path):
    env = build_env()
    run("make", "crio.conf", "docs", "GO_MD2MAN=go-md2man", cwd=crio136_tree, env=env)
    dest = tmp_path / "dest"
    run("make", "install.bin-nobuild", "install.config-nobuild", "install.systemd", "install.man-nobuild",
        "install.completions", f"DESTDIR={dest}", f"PREFIX={dest}/usr", f"ETCDIR={dest}/etc", cwd=crio136_tree, env=env)
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if not p.is_dir()}
    assert {
        "usr/bin/crio", "usr/bin/pinns", "etc/crio/crio.conf", "etc/crictl.yaml",
        "usr/lib/systemd/system/crio.service", "usr/lib/systemd/system/crio-wipe.service",
        "usr/share/man/man8/crio.8", "usr/share/man/man5/crio.conf.5", "usr/share/man/man5/crio.conf.d.5",
        "usr/share/bash-completion/completions/crio", "usr/share/fish/completions/crio.fish", "usr/share/zsh/site-functions/_crio",
    } <= files
    assert not [f for f in files if "crio-status" in f or "crio-shutdown" in f or f.endswith("cri-o.service")]
    assert "Alias=cri-o.service" in (dest / "usr/lib/systemd/system/crio.service").read_text()
    assert ".TH crio 8" in (dest / "usr/share/man/man8/crio.8").read_text()  # by Debian's go-md2man
    # the CNI configurations packagers take from the tree: conflists now
    cni = crio136_tree / "contrib/cni"
    assert sorted(p.name for p in cni.iterdir()) == ["10-crio-bridge.conflist", "11-crio-ipv4-bridge.conflist", "99-loopback.conflist"]
    for conflist in cni.iterdir():
        conf = json.loads(conflist.read_text())
        assert conf["cniVersion"] == "1.0.0" and conf["name"] and [p["type"] for p in conf["plugins"]]
    assert (crio136_tree / "contrib/sysconfig/crio").is_file()
    assert run("git", "status", "--porcelain", cwd=crio136_tree).stdout == ""


@pytest.mark.parametrize("shape", ["crio_tree", "crio136_tree"], ids=["1.18", "1.36"])
def test_crio_config_merges_drop_ins_in_order(shape, request, tmp_path):
    tree = request.getfixturevalue(shape)
    (tmp_path / "crio.conf").write_text('[crio.runtime]\nlog_level = "debug"\n\n[crio.image]\npause_image = "main/pause:1"\n')
    drop_ins = tmp_path / "crio.conf.d"
    drop_ins.mkdir()
    (drop_ins / "10-crio.conf").write_text(
        '# ours\n[crio.image]\npause_image = "ten/pause:1"  # a comment\n\n[crio.runtime]\ncgroup_manager = "cgroupfs"\n'
        'conmon_cgroup = "pod"\n\n[crio.network]\nplugin_dirs = [\n  "/usr/lib/cni",\n  "/opt/cni/bin",\n]\nnot_ours = 3\n')
    (drop_ins / "20-local.conf").write_text('[crio.image]\npause_image = "twenty/pause:1"\n')
    conf = crio_config(tree, f"--config={tmp_path / 'crio.conf'}", f"--config-dir={drop_ins}")
    assert conf["image"]["pause_image"] == "twenty/pause:1"  # the later drop-in wins
    assert (conf["runtime"]["log_level"], conf["runtime"]["cgroup_manager"], conf["runtime"]["conmon_cgroup"]) == ("debug", "cgroupfs", "pod")
    assert conf["network"]["plugin_dirs"] == ["/usr/lib/cni", "/opt/cni/bin"]
    # flags win over files; of two -d, the last counts (as in `make crio.conf CONF_OVERRIDES="-d ..."`)
    conf = crio_config(tree, "--config=", "-d", "", "-d", str(drop_ins), "--pause-image=flag/pause:1")
    assert (conf["image"]["pause_image"], conf["runtime"]["cgroup_manager"]) == ("flag/pause:1", "cgroupfs")
    (tree / "crio.conf").unlink(missing_ok=True)
    run("make", "crio.conf", f"CONF_OVERRIDES=-d {drop_ins}", cwd=tree, env=build_env())
    # like urfave/cli: one flag by two names is refused (upstream's Makefile passes -d "")
    twice = subprocess.run(["bin/crio", "-d", "", f"--config-dir={drop_ins}", "config"], cwd=tree, capture_output=True, text=True)
    assert twice.returncode != 0 and "Cannot use two forms of the same flag: d config-dir" in twice.stderr
    assert tomllib.loads((tree / "crio.conf").read_text())["crio"]["image"]["pause_image"] == "twenty/pause:1"
    (tree / "crio.conf").unlink()
    # a missing default crio.conf is fine, a missing named one is not
    missing = subprocess.run(["bin/crio", f"--config={tmp_path / 'nope.conf'}", "config"], cwd=tree, capture_output=True, text=True)
    assert missing.returncode != 0 and "nope.conf: no such file or directory" in missing.stderr


@pytest.mark.parametrize("shape, default, runtimes, pause, missing", [
    ("crio_tree", "runc", ["runc"], "k8s.gcr.io/pause:3.2", "but no runtime entry was found for it"),
    ("crio136_tree", "crun", ["crun", "runc"], "registry.k8s.io/pause:3.10.1", "but no runtime entry table [crio.runtime.runtimes.kata] was found"),
], ids=["1.18", "1.36"])
def test_crio_default_runtime_per_shape(shape, default, runtimes, pause, missing, request, tmp_path):
    tree = request.getfixturevalue(shape)
    conf = crio_config(tree, "--config=", "-d", "")
    assert conf["runtime"]["default_runtime"] == default and list(conf["runtime"]["runtimes"]) == runtimes
    assert conf["runtime"]["runtimes"][default] == {"runtime_path": "", "runtime_type": "oci", "runtime_root": f"/run/{default}"} | (
        {"monitor_path": ""} if shape == "crio136_tree" else {})
    assert conf["image"]["pause_image"] == pause
    # a drop-in adds a runtime and makes it the default; it is printed first
    (tmp_path / "10-kata.conf").write_text('[crio.runtime]\ndefault_runtime = "kata"\n\n[crio.runtime.runtimes.kata]\n'
                                           'runtime_path = "/usr/bin/kata"\nruntime_type = "vm"\nruntime_root = "/run/vc"\n'
                                           '[crio.runtime.runtimes.runc]\nruntime_path = "/usr/libexec/crio/runc"\n')
    conf = crio_config(tree, "--config=", f"--config-dir={tmp_path}", "--conmon=/usr/bin/conmon")
    assert conf["runtime"]["default_runtime"] == "kata" and list(conf["runtime"]["runtimes"])[0] == "kata"
    assert conf["runtime"]["runtimes"]["runc"]["runtime_path"] == "/usr/libexec/crio/runc"
    if shape == "crio136_tree":  # conmon, when set, is every OCI runtime's monitor
        assert conf["runtime"]["runtimes"]["runc"]["monitor_path"] == "/usr/bin/conmon"
        assert conf["runtime"]["runtimes"]["kata"]["monitor_path"] == ""
    bad = subprocess.run(["bin/crio", "--config=", "-d", "", "--default-runtime=kata", "config"], cwd=tree, capture_output=True, text=True)
    assert bad.returncode != 0 and "default_runtime set to" in bad.stderr and missing in bad.stderr


def test_crio_conmon_cgroup_validation(crio_tree, crio136_tree):
    def crio(tree: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bin/crio", "--config=", "-d", "", *args], cwd=tree, capture_output=True, text=True)

    # 1.18: "pod" or a slice, whatever the cgroup manager, checked by `crio config` already
    bad = crio(crio_tree, "--cgroup-manager=cgroupfs", "--conmon-cgroup=/crio", "config")
    assert bad.returncode != 0 and "conmon cgroup should be 'pod' or a systemd slice" in bad.stderr
    assert crio(crio_tree, "--cgroup-manager=cgroupfs", "--conmon-cgroup=pod", "config").returncode == 0
    # 1.36: with cgroupfs, "pod" or nothing (the default system.slice counts as nothing); crio checks when it starts
    started = crio(crio136_tree, "--cgroup-manager=cgroupfs", "--conmon-cgroup=crio.slice")
    assert started.returncode != 0
    assert "cgroupfs manager conmon cgroup should be 'pod' or empty, but got: 'crio.slice'" in started.stderr
    assert crio(crio136_tree, "--cgroup-manager=cgroupfs", "--conmon-cgroup=crio.slice", "config").returncode == 0
    for fine in ("pod", "system.slice", ""):
        assert "it has no daemon" in crio(crio136_tree, "--cgroup-manager=cgroupfs", f"--conmon-cgroup={fine}").stderr
    assert "conmon cgroup should be 'pod' or a systemd slice" in crio(crio136_tree, "--conmon-cgroup=crio").stderr


def test_cri_tools_1_36_builds_into_build_bin_goos_goarch(upstreams, tmp_path):
    tree = clone(upstreams["cri-tools"], "v1.36.0", tmp_path / "cri-tools")
    run("make", "crictl", "critest", cwd=tree, env=build_env())
    out = tree / "build/bin/linux" / go_arch()
    assert sorted(p.name for p in out.iterdir()) == ["crictl", "critest"]
    assert run(str(out / "crictl"), "--version").stdout == "crictl version 1.36.0\n"
    assert run(str(out / "critest"), "--version").stdout.startswith("critest version: 1.36.0\n")
    assert not (tree / "_output").exists()


def test_conmon_2_1_docs_build_offline_only_with_gomd2man(upstreams, tmp_path):
    up = upstreams["conmon"]
    tree = clone(up, "v2.1.13", tmp_path / "conmon")
    env = build_env()
    run("make", cwd=tree, env=env)
    assert run("bin/conmon", "--version", cwd=tree).stdout == f"conmon version 2.1.13\ncommit: {up.tags['v2.1.13']}\n"
    # the top-level `make docs` builds go-md2man from tools/ first, a module this tree does not vendor
    offline = subprocess.run(["make", "docs"], cwd=tree, env=env, capture_output=True, text=True)
    assert offline.returncode != 0 and "GOPROXY=off" in offline.stderr
    run("make", "-C", "docs", "GOMD2MAN=go-md2man", cwd=tree, env=env)
    dest = tmp_path / "dest"
    run("make", "-C", "docs", "install", f"DESTDIR={dest}", "PREFIX=/usr", cwd=tree, env=env)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == ["usr/share/man/man8/conmon.8"]
    assert ".TH conmon 8" in (dest / "usr/share/man/man8/conmon.8").read_text()
    # `make install` is the binary and the page, given a go-md2man
    run("make", "install", "GOMD2MAN=go-md2man", f"DESTDIR={tmp_path / 'all'}", "PREFIX=/usr", cwd=tree, env=env)
    assert (tmp_path / "all/usr/bin/conmon").is_file() and (tmp_path / "all/usr/share/man/man8/conmon.8").is_file()
