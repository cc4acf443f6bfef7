"""What each upstream module says about a release: its era's facts, its build steps, its package."""
from __future__ import annotations

import subprocess
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from builders.components import UPSTREAMS, cri_o, cri_tools, crun, runc, upstream
from builders.components.base import release_of
from builders.components.conmon import ERAS as CONMON_ERAS
from builders.errors import RecipeError
from builders.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]


def recipe(minor: int):
    return load_recipe(REPO / "recipes" / f"crio-1.{minor}.toml")


def argv_text(steps) -> str:
    return "\n".join(" ".join(step.argv) for step in steps)


@pytest.mark.parametrize("older, newer", [
    ("1.0.0-rc10", "1.0.0-rc92"), ("1.0.0-rc92", "1.0.0"), ("1.36.3", "1.37.0-dev"), ("1.37.0-dev", "1.37.0"),
    ("v2.0.19", "v2.1.13"), ("1.8.4", "1.26"), ("1.4.3", "1.4.3+dev"),
])  # fmt: skip
def test_release_order_knows_release_candidates_and_snapshots(older: str, newer: str) -> None:
    assert release_of(older) < release_of(newer)


@pytest.mark.parametrize("minor, cni, runtimes, monitor_path", [
    (18, ("10-crio-bridge.conf", "99-loopback.conf"), ("runc",), False),
    (20, ("11-crio-ipv4-bridge.conf", "99-loopback.conf"), ("runc",), False),
    (24, ("11-crio-ipv4-bridge.conf", "99-loopback.conf"), ("runc",), True),
    (26, ("11-crio-ipv4-bridge.conflist", "99-loopback.conflist"), ("runc",), True),
    (30, ("11-crio-ipv4-bridge.conflist", "99-loopback.conflist"), ("runc",), True),
    (31, ("11-crio-ipv4-bridge.conflist", "99-loopback.conflist"), ("crun", "runc"), True),
    (37, ("11-crio-ipv4-bridge.conflist", "99-loopback.conflist"), ("crun", "runc"), True),
])  # fmt: skip
def test_cri_o_eras_follow_the_releases(minor: int, cni: tuple, runtimes: tuple, monitor_path: bool) -> None:
    era = cri_o.ERAS.at(recipe(minor).crio.version)
    assert (era.cni_configs, era.runtimes, era.monitor_path) == (cni, runtimes, monitor_path)


@pytest.mark.parametrize("minor, added", [
    (18, ""), (24, ""),  # no containerd/plugin vendored yet
    (25, "static_build"), (30, "static_build"), (32, "static_build"),  # containerd before no_dynamic_plugins
    (33, "no_dynamic_plugins"), (36, "no_dynamic_plugins"), (37, "no_dynamic_plugins"),
])  # fmt: skip
def test_cri_o_builds_without_containerds_go_plugin_loader_where_it_is_vendored(minor: int, added: str) -> None:
    r = recipe(minor)
    make_binaries = upstream("cri-o").commands(r, r.crio)[0].argv
    assert make_binaries[:2] == ["make", "binaries"]
    tags = make_binaries[2].removeprefix("BUILDTAGS=").split()
    assert tags == [*r.crio.buildtags, *added.split()]  # the recipe's own tags first, as it lists them


def test_a_recipe_that_lists_the_plugin_tag_itself_gets_it_once() -> None:
    r = recipe(36)
    pin = replace(r.crio, buildtags=("seccomp", "no_dynamic_plugins"))
    assert cri_o.build_tags(pin) == ["seccomp", "no_dynamic_plugins"]


@pytest.mark.parametrize("version, output", [
    ("1.18.0", "_output"), ("1.20.0", "_output"), ("1.21.0", "build/bin"), ("1.26.0", "build/bin"),
    ("1.27.0", "build/bin/linux/arm64"), ("1.36.0", "build/bin/linux/arm64"),
])  # fmt: skip
def test_cri_tools_installs_from_where_its_make_leaves_crictl(version: str, output: str) -> None:
    r = recipe(36)
    pin = replace(r.components["cri-tools"], version=version)
    assert f"-t /out/usr/bin {output}/crictl {output}/critest" in argv_text(cri_tools.UPSTREAM.commands(r, pin))


def test_conmon_builds_its_own_man_page_from_2_0_22_and_help2man_before() -> None:
    assert [CONMON_ERAS.at(v).man_page for v in ("2.0.19", "2.0.20", "2.0.22", "2.1.13")] == [False, False, True, True]
    r = recipe(18)
    assert "help2man" in argv_text(upstream("conmon").commands(r, r.components["conmon"]))
    r = recipe(36)
    assert "make -C docs GOMD2MAN=go-md2man" in argv_text(upstream("conmon").commands(r, r.components["conmon"]))


def test_runc_builds_in_a_gopath_until_it_had_a_go_mod() -> None:
    rc10, rc92 = recipe(18).components["runc"], recipe(20).components["runc"]
    assert "GO111MODULE=off make runc" in argv_text(runc.UPSTREAM.commands(recipe(18), rc10))
    assert argv_text(runc.UPSTREAM.commands(recipe(20), rc92)).startswith("make runc\n")


def test_runc_1_5_drops_libpathrs_by_the_recipes_build_tags() -> None:
    r = recipe(37)
    assert "make runc BUILDTAGS=seccomp urfave_cli_no_docs" in argv_text(runc.UPSTREAM.commands(r, r.components["runc"]))


def test_crun_links_yajl_until_1_28_then_json_c() -> None:
    assert "libyajl-dev" in crun.UPSTREAM.build_packages(recipe(36).components["crun"])  # crun 1.26
    assert "libjson-c-dev" in crun.UPSTREAM.build_packages(recipe(37).components["crun"])  # crun 1.29.1


def drop_in(minor: int, **changes) -> dict:
    r = replace(recipe(minor), **changes)
    return tomllib.loads(cri_o.drop_in(r, r.crio))["crio"]


def test_the_drop_in_names_our_paths_and_the_default_runtime_of_the_era() -> None:
    old, new = drop_in(18), drop_in(36)
    assert old["runtime"]["conmon"] == "/usr/bin/conmon" and old["runtime"]["default_runtime"] == "runc"
    assert old["runtime"]["runtimes"] == {"runc": {"runtime_path": "/usr/libexec/crio/runc", "runtime_type": "oci", "runtime_root": "/run/runc"}}
    assert "conmon" not in new["runtime"] and new["runtime"]["default_runtime"] == "crun"
    assert list(new["runtime"]["runtimes"]) == ["crun", "runc"]
    assert {r["monitor_path"] for r in new["runtime"]["runtimes"].values()} == {"/usr/bin/conmon"}
    assert new["network"]["plugin_dirs"] == ["/usr/lib/cni", "/opt/cni/bin"]
    assert new["image"]["pause_image"] == "registry.k8s.io/pause:3.10.1"


def test_with_cgroupfs_conmon_goes_into_the_pods_cgroup() -> None:
    # CRI-O refuses conmon_cgroup "system.slice" with cgroupfs: only "pod" (or empty, 1.36) is accepted.
    assert drop_in(20, cgroup_manager="cgroupfs")["runtime"]["conmon_cgroup"] == "pod"
    assert drop_in(20)["runtime"]["conmon_cgroup"] == "system.slice"


def test_cri_o_passes_debians_go_md2man_and_installs_the_era_s_cni_configs() -> None:
    r = recipe(36)
    text = argv_text(cri_o.UPSTREAM.commands(r, r.crio))
    assert "make docs GO_MD2MAN=go-md2man" in text
    assert "contrib/cni/11-crio-ipv4-bridge.conflist contrib/cni/99-loopback.conflist" in text
    assert "s|/etc/sysconfig/crio|/etc/default/crio|" in text


def test_cri_o_depends_on_the_runtimes_its_configuration_names() -> None:
    depends = upstream("cri-o").relations(recipe(36))["Depends"]
    assert depends[:2] == ["cri-o-crun (>= 1.26~)", "cri-o-runc (>= 1.4.3~)"]
    assert upstream("cri-o").relations(recipe(20))["Depends"][0] == "cri-o-runc (>= 1.0.0~rc92~)"


def test_package_names_never_take_debians_runtime_packages() -> None:
    names = {u.package.name for u in UPSTREAMS.values()}
    assert not names & {"runc", "crun", "podman", "docker.io"}
    assert {u.runtime.path for u in UPSTREAMS.values() if u.runtime} == {"/usr/libexec/crio/runc", "/usr/libexec/crio/crun"}


class InstalledBox:
    """A stand-in for the acceptance container: what `crio config` prints and which paths exist."""

    def __init__(self, config: str, present: set[str]) -> None:
        self.config, self.present, self.said = config, present, []
        self.container = self

    def output(self, argv: list[str]) -> str:
        if argv[0] == "cat":  # the drop-in as the package installed it
            r = recipe(36)
            return cri_o.drop_in(r, r.crio)
        return self.config

    def exec_run(self, argv: list[str]):
        return type("Result", (), {"exit_code": 0 if argv[-1] in self.present else 1})()

    def say(self, text: str) -> None:
        self.said.append(text)


REAL_1_36_CONFIG = """[crio.runtime]
# default_runtime = "crun"
[crio.runtime.runtimes.crun]
runtime_path = "/usr/libexec/crio/crun"
monitor_path = "/usr/bin/conmon"
[crio.runtime.runtimes.runc]
runtime_path = "/usr/libexec/crio/runc"
monitor_path = "/usr/bin/conmon"
"""


def test_acceptance_reads_crio_config_as_crio_prints_it() -> None:
    # Real crio comments out what equals its built-in default (1.36: default_runtime "crun").
    box = InstalledBox(REAL_1_36_CONFIG, {"/usr/libexec/crio/crun", "/usr/libexec/crio/runc", "/usr/bin/conmon"})
    cri_o.UPSTREAM.check_installed(box, recipe(36), "accept crio-1.36")
    assert box.said == ["crio config: default runtime crun, crun /usr/libexec/crio/crun, runc /usr/libexec/crio/runc"]


def test_acceptance_refuses_a_configuration_naming_what_no_package_installed() -> None:
    from builders.errors import ContainerError

    box = InstalledBox(REAL_1_36_CONFIG, {"/usr/libexec/crio/runc", "/usr/bin/conmon"})
    with pytest.raises(ContainerError, match="it names /usr/libexec/crio/crun, which no package installed"):
        cri_o.UPSTREAM.check_installed(box, recipe(36), "accept crio-1.36")


def test_acceptance_takes_the_runtimes_from_the_drop_in_where_crio_config_leaves_them_out() -> None:
    # 1.21's `crio config` prints only what differs from its defaults, and no runtime tables at all.
    box = InstalledBox('[crio.runtime]\nconmon = "/usr/bin/conmon"\n', {"/usr/libexec/crio/crun", "/usr/libexec/crio/runc", "/usr/bin/conmon"})
    cri_o.UPSTREAM.check_installed(box, recipe(36), "accept crio-1.36")
    assert box.said == ["crio config: default runtime crun, crun /usr/libexec/crio/crun, runc /usr/libexec/crio/runc"]


def sysbox_postinst(tmp_path: Path) -> Path:
    from dataclasses import replace

    from builders.components import cri_o

    recipe = replace(load_recipe(REPO / "recipes" / "crio-1.20.toml"), subid_ranges=("containers",))
    script = cri_o.UPSTREAM.maintainer_scripts(recipe)["postinst"].replace("/etc/sub", f"{tmp_path}/sub")
    (tmp_path / "postinst").write_text(script)
    return tmp_path / "postinst"


def test_the_sysbox_option_gives_containers_a_range_after_every_range_in_use_once(tmp_path: Path) -> None:
    postinst = sysbox_postinst(tmp_path)
    (tmp_path / "subuid").write_text("pi:100000:65536\nsysbox:165536:65536\n")  # (subgid missing: made)
    for _ in range(2):  # a reinstall or upgrade gives no second range
        subprocess.run(["sh", str(postinst), "configure"], check=True, capture_output=True)
    assert (tmp_path / "subuid").read_text() == "pi:100000:65536\nsysbox:165536:65536\ncontainers:231072:65536\n"
    assert (tmp_path / "subgid").read_text() == "containers:100000:65536\n"


def test_a_recipe_names_only_user_names_for_subordinate_ids(tmp_path: Path) -> None:
    text = (REPO / "recipes" / "crio-1.20.toml").read_text().replace("[config]\n", '[config]\nsubid_ranges = ["containers", "no body"]\n')
    (tmp_path / "crio-1.20.toml").write_text(text)
    with pytest.raises(RecipeError, match="config.subid_ranges' names 'no body'"):
        load_recipe(tmp_path / "crio-1.20.toml")
    assert load_recipe(REPO / "recipes" / "crio-1.20.toml").subid_ranges == ()


def test_every_recipe_builds_crio_with_apparmor_as_upstreams_makefile_does() -> None:
    # Without the tag go.podman.io/common (containers/common before) compiles its "unsupported" AppArmor stub, and
    # crio ignores a pod's AppArmor profile on a kernel that enforces them (critest's AppArmor specs on Debian's kernel).
    for minor in range(18, 38):
        r = recipe(minor)
        tags = upstream("cri-o").commands(r, r.crio)[0].argv[2].removeprefix("BUILDTAGS=").split()
        assert "apparmor" in tags, r.name
