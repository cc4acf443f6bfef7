"""Debian versions sort right (checked by the real dpkg), and the generated debian/ files say what they should."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builders import deb, gobuildinfo
from builders.arch import Arch
from builders.components import upstream
from builders.recipe import Component, GoToolchain, Recipe, Target

COMMIT = "55664592f4d928197b59336edb7a83ffb30ff6fe"
LATER = "0123456789abcdef0123456789abcdef01234567"
EPOCH = 1641912845  # 2022-01-11T14:54:05Z, cri-o v1.18.6's commit time


def recipe(
    crio: str = "1.18.6", *, tag: str | None = "v", branch: str | None = "release-1.18", commit: str = COMMIT,
    suite: str = "bookworm", revision: str = "1", maintainer: str = "Pi Packager <pi@example.org>",
) -> Recipe:  # fmt: skip
    def component(name: str, version: str, tag: str | None, branch: str | None = None, commit: str = COMMIT) -> Component:
        return Component(name=name, repo=f"https://github.com/example/{name}", commit=commit, version=version, tag=tag, branch=branch)

    return Recipe(
        name="crio-1.18", path=Path("recipes/crio-1.18.toml"),
        go=GoToolchain(version="1.19.8", sha256={}), target=Target(distro="debian", suite=suite, arch=Arch.arm64, mirror="http://deb.debian.org/debian"),
        cgroup_manager="systemd", pause_image="k8s.gcr.io/pause:3.2", revision=revision, maintainer=maintainer,
        components={
            "cri-o": component("cri-o", crio, f"v{crio}" if tag == "v" else tag, branch, commit),
            "conmon": component("conmon", "2.0.19", "v2.0.19"),
            "cni-plugins": component("cni-plugins", "0.8.5", "v0.8.5"),
            "cri-tools": component("cri-tools", "1.18.0", "v1.18.0"),
            "runc": component("runc", "1.0.0-rc10", "v1.0.0-rc10"),
        },
    )  # fmt: skip


def dpkg_lt(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0


def crio_version(**kwargs) -> str:
    return deb.deb_version(recipe(**kwargs), "cri-o")


def test_version_format() -> None:
    assert crio_version() == "1.18.6-1~deb12"
    assert crio_version(crio="1.18.0-rc1") == "1.18.0~rc1-1~deb12"
    assert crio_version(tag=None, commit=LATER) == "1.18.6+git.0123456789ab-1~deb12"
    assert deb.deb_version(recipe(), "cni-plugins") == "0.8.5-1~deb12"


@pytest.mark.parametrize(
    "older, newer",
    [
        pytest.param({"crio": "1.18.5"}, {"crio": "1.18.6"}, id="patch release"),
        pytest.param({"crio": "1.18.6"}, {"crio": "1.20.0"}, id="minor release"),
        pytest.param({"revision": "1"}, {"revision": "2"}, id="package revision"),
        pytest.param({"revision": "9"}, {"revision": "10"}, id="revision 9 < 10"),
        pytest.param({"suite": "bullseye"}, {"suite": "bookworm"}, id="deb11 < deb12"),
        pytest.param({"suite": "bookworm"}, {"suite": "trixie"}, id="deb12 < deb13"),
        pytest.param({"crio": "1.18.5", "suite": "trixie"}, {"crio": "1.18.6", "suite": "bullseye"}, id="upstream before distro"),
        pytest.param({"revision": "1", "suite": "trixie"}, {"revision": "2", "suite": "bullseye"}, id="revision before distro"),
        pytest.param({"crio": "1.18.0-rc1"}, {"crio": "1.18.0"}, id="rc below release"),
        pytest.param({"crio": "1.18.0-rc1"}, {"crio": "1.18.0-rc2"}, id="rc1 below rc2"),
        pytest.param({"crio": "1.18.6"}, {"crio": "1.18.6", "tag": None, "commit": LATER}, id="branch snapshot above its release"),
        pytest.param({"crio": "1.18.6", "tag": None, "commit": LATER}, {"crio": "1.18.7"}, id="branch snapshot below the next release"),
    ],
)
def test_dpkg_sorts_upgrades_right(older: dict, newer: dict) -> None:
    a, b = crio_version(**older), crio_version(**newer)
    assert dpkg_lt(a, b), f"{a} should sort below {b}"
    assert not dpkg_lt(b, a)


def test_an_official_debian_package_of_the_same_upstream_version_wins() -> None:
    assert dpkg_lt(crio_version(), "1.18.6-1")


def test_deb_path_is_package_version_arch(tmp_path: Path) -> None:
    from builders.settings import load_settings

    settings = load_settings({"CRIOBUILD_ARTIFACTS": str(tmp_path)})
    assert deb.deb_path(recipe(), "cni-plugins", settings) == tmp_path / "crio-1.18" / "cri-o-cni-plugins_0.8.5-1~deb12_arm64.deb"


def control_fields(text: str) -> list[dict[str, str]]:
    paragraphs = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(" "):
                fields[last] += "\n" + line
            else:
                last, _, value = line.partition(":")
                fields[last] = value.strip()
        paragraphs.append(fields)
    return paragraphs


def test_cri_o_control_has_computed_and_runtime_depends() -> None:
    source, binary = control_fields(deb.control_text(recipe(), "cri-o"))
    assert source["Source"] == "cri-o" and source["Build-Depends"] == "debhelper-compat (= 13)"
    assert source["Rules-Requires-Root"] == "no"  # so dh_builddeb makes root:root members
    assert source["Maintainer"] == "Pi Packager <pi@example.org>"
    assert binary["Package"] == "cri-o" and binary["Architecture"] == "arm64"
    depends = binary["Depends"].split(", ")
    assert depends[:2] == ["${shlibs:Depends}", "${misc:Depends}"]
    assert {"cri-o-runc (>= 1.0.0~rc10~)", "iptables", "conntrack", "cri-o-conmon (>= 2.0.19~)", "cri-o-cni-plugins (>= 0.8.5~) | kubernetes-cni"} <= set(depends)
    assert "python3" in binary["Recommends"]  # the kernel check script's interpreter


def test_companions_have_no_hand_written_library_depends() -> None:
    for component in ("conmon", "cri-tools"):
        _, binary = control_fields(deb.control_text(recipe(), component))
        assert binary["Depends"] == "${shlibs:Depends}, ${misc:Depends}"
    _, cni = control_fields(deb.control_text(recipe(), "cni-plugins"))
    assert cni["Package"] == "cri-o-cni-plugins" and cni["Depends"].endswith("iptables")


@pytest.mark.parametrize("component, package, debian", [
    ("conmon", "cri-o-conmon", "conmon"),
    ("cni-plugins", "cri-o-cni-plugins", "containernetworking-plugins"),
])  # fmt: skip
def test_our_conmon_and_cni_plugins_take_the_place_of_debians_under_names_of_their_own(component: str, package: str, debian: str) -> None:
    _, binary = control_fields(deb.control_text(recipe(), component))
    assert binary["Package"] == package  # a name Debian does not have: apt cannot take Debian's newer package for it
    assert f"{debian} (= ${{binary:Version}})" in binary["Provides"].split(", ")  # what depends on Debian's name takes ours
    assert binary["Conflicts"] == debian and binary["Replaces"] == debian  # the same files: one or the other, ours replaces
    assert upstream(component).package.former_names == (debian,)  # earlier criobuilds' .debs of it go when it is built
    _, crio = control_fields(deb.control_text(recipe(), "cri-o"))
    assert any(d.startswith(f"{package} (>= ") for d in crio["Depends"].split(", "))  # cri-o asks for ours by that name


def test_the_runtimes_stay_beside_debians_and_take_nothing_of_theirs() -> None:
    for component in ("runc", "cri-o", "cri-tools"):
        _, binary = control_fields(deb.control_text(recipe(), component))
        assert "Conflicts" not in binary and "Replaces" not in binary, component


def test_changelog_parses_with_dpkg_and_is_dated_from_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "changelog"
    path.write_text(deb.changelog_text(recipe(), "cri-o", EPOCH, "1.19.8"))
    parsed = subprocess.run(["dpkg-parsechangelog", "-l", str(path)], capture_output=True, text=True, check=True).stdout
    fields = control_fields(parsed)[0]
    assert fields["Version"] == "1.18.6-1~deb12"
    assert fields["Distribution"] == "bookworm"
    assert fields["Timestamp"] == str(EPOCH)
    assert fields["Maintainer"] == "Pi Packager <pi@example.org>"
    assert COMMIT in fields["Changes"].replace("\n", " ")
    assert max(len(line) for line in path.read_text().splitlines()) <= 80


def test_copyright_is_machine_readable() -> None:
    text = deb.copyright_text(recipe(), "cri-o", EPOCH)
    header, files, license = control_fields(text)
    assert header["Format"] == "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    assert header["Source"] == "https://github.com/example/cri-o"
    assert files["Files"] == "*" and files["Copyright"] == "2016-2022 The CRI-O Authors"
    assert license["License"].startswith("Apache-2.0\n") and "/usr/share/common-licenses/Apache-2.0" in license["License"]


def test_postinst_warns_about_the_kernel_and_leaves_systemd_to_debhelper() -> None:
    text = upstream("cri-o").maintainer_scripts(recipe())["postinst"]
    assert "#DEBHELPER#" in text
    assert "command -v python3" in text
    assert "python3 /usr/share/cri-o/kernel_check.py --quiet-warn --crio-version 1.18.6 || true" in text
    assert "systemctl" not in text and "deb-systemd" not in text


def test_rules_only_copy_the_staging_tree() -> None:
    rules = deb.RULES.format(package="cri-o")
    assert "\tdh $@" in rules
    assert "\tcp -a root/. debian/cri-o/" in rules
    assert "override_dh_auto_build" in rules and "override_dh_auto_test" in rules


def elf(*, e_type: int, segments: tuple[int, ...], go: bool = False) -> bytes:
    """A minimal 64-bit little-endian ELF header plus program headers (enough for elf_facts)."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    header[16:18] = e_type.to_bytes(2, "little")
    header[0x20:0x28] = (64).to_bytes(8, "little")
    header[0x36:0x38] = (56).to_bytes(2, "little")
    header[0x38:0x3A] = len(segments).to_bytes(2, "little")
    phdrs = b"".join(t.to_bytes(4, "little") + bytes(52) for t in segments)
    return bytes(header) + phdrs + (gobuildinfo.MAGIC if go else b"")


def test_lintian_overrides_follow_the_binaries(tmp_path: Path) -> None:
    root = tmp_path
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/share/man/man8").mkdir(parents=True)
    (root / "usr/bin/crio").write_bytes(elf(e_type=2, segments=(1, 3, 2), go=True))  # dynamic Go, not PIE, no RELRO
    (root / "usr/bin/pinns").write_bytes(elf(e_type=2, segments=(1,)))  # static C
    (root / "usr/bin/crio-status").write_bytes(elf(e_type=2, segments=(1,), go=True))  # static Go
    (root / "usr/share/man/man8/crio.8").write_text(".TH crio 8\n")
    tags = {o.tag: o.reason for o in deb.lintian_overrides("cri-o", root)}
    assert set(tags) == {
        "no-manual-page [usr/bin/pinns]", "no-manual-page [usr/bin/crio-status]",
        "statically-linked-binary [usr/bin/pinns]", "statically-linked-binary [usr/bin/crio-status]",
        "hardening-no-pie [usr/bin/crio]", "hardening-no-relro [usr/bin/crio]",
    }  # fmt: skip
    assert all(tags.values())
    text = deb.overrides_text(deb.lintian_overrides("cri-o", root))
    assert text.splitlines()[0].startswith("# ") and text.splitlines()[1].startswith("no-manual-page")


def test_elf_facts_of_a_host_binary() -> None:
    facts = deb.elf_facts(Path("/bin/sh").resolve())
    assert facts is not None and facts.interpreter and not facts.go
    assert deb.elf_facts(Path(deb.__file__)) is None


def test_build_tree_keeps_the_alias_link_and_moves_units_for_bookworms_debhelper(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    units = staging / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "crio.service").write_text("[Service]\nExecStart=/usr/bin/crio\n")
    (units / "cri-o.service").write_text("[Service]\nExecStart=/usr/bin/crio\n")  # a `sed -i` turned the link into a copy
    (staging / "etc/crio").mkdir(parents=True)
    (staging / "etc/crio/crio.conf").write_text("[crio]\n")
    tree = tmp_path / "tree"
    deb.write_build_tree(tree, recipe(), "cri-o", staging, EPOCH, "1.19.8")
    moved = tree / "root/lib/systemd/system"
    assert (moved / "cri-o.service").is_symlink() and (moved / "cri-o.service").readlink() == Path("crio.service")
    assert not (tree / "root/usr/lib").exists()
    script = tree / "root/usr/share/cri-o/kernel_check.py"
    assert script.read_text().startswith("#!/usr/bin/python3\n") and script.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in (tree / "debian").iterdir()) == ["changelog", "control", "copyright", "cri-o.lintian-overrides", "cri-o.postinst", "rules"]
    assert (tree / "debian/rules").stat().st_mode & 0o111
    trixie = tmp_path / "trixie"
    deb.write_build_tree(trixie, recipe(suite="trixie"), "cri-o", staging, EPOCH, "1.19.8")
    assert (trixie / "root/usr/lib/systemd/system/crio.service").is_file()
