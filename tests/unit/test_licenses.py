"""Licences: each package's debian/copyright and SBOM say what the upstream's own licence files say, and a build
refuses a source whose licence file says something else."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builders import deb
from builders.components import UPSTREAMS, upstream
from builders.errors import SourceError
from builders.licenses import check_licenses, expression, identify
from builders.recipe import Component
from tests.fixtures.upstreams import copy_template
from tests.unit.test_deb_version import EPOCH, control_fields, recipe

COMMON = Path("/usr/share/common-licenses")


def crun_recipe():
    r = recipe()
    r.components["crun"] = Component(name="crun", repo="https://github.com/containers/crun", commit="1" * 40, version="1.26", tag="1.26")
    return r


def copyright_of(component: str) -> list[dict[str, str]]:
    return control_fields(deb.copyright_text(crun_recipe(), component, EPOCH))


def test_crun_is_gpl_2_or_later_and_libcrun_lgpl_2_1_or_later_in_debian_copyright() -> None:
    header, crun, libcrun, gpl, lgpl = copyright_of("crun")
    assert header["Upstream-Name"] == "crun"
    assert (crun["Files"], crun["License"]) == ("*", "GPL-2+")
    assert (libcrun["Files"], libcrun["License"]) == ("src/libcrun/*", "LGPL-2.1+")
    assert gpl["License"].startswith("GPL-2+\n") and "either version 2 of the License, or (at your option) any later version" in " ".join(gpl["License"].split())
    assert '"/usr/share/common-licenses/GPL-2"' in gpl["License"]
    assert lgpl["License"].startswith("LGPL-2.1+\n") and '"/usr/share/common-licenses/LGPL-2.1"' in lgpl["License"]
    assert "Apache" not in deb.copyright_text(crun_recipe(), "crun", EPOCH)


@pytest.mark.parametrize("component", ["cri-o", "conmon", "cni-plugins", "cri-tools", "runc"])
def test_the_go_programs_and_conmon_are_apache_2_0(component: str) -> None:
    _, files, license = copyright_of(component)
    assert (files["Files"], files["License"]) == ("*", "Apache-2.0")
    assert license["License"].startswith("Apache-2.0\n") and '"/usr/share/common-licenses/Apache-2.0"' in license["License"]
    assert expression(upstream(component).licenses) == "Apache-2.0"


def test_each_named_common_license_exists_on_debian() -> None:
    for u in UPSTREAMS.values():
        for paragraph in control_fields(deb.copyright_text(crun_recipe(), u.name, EPOCH)):
            if paragraph.get("License", "").count("\n"):
                name = paragraph["License"].split('"/usr/share/common-licenses/')[1].split('"')[0]
                assert (COMMON / name).is_file(), name
    assert expression(upstream("crun").licenses) == "GPL-2.0-or-later AND LGPL-2.1-or-later"


def test_licence_texts_are_told_apart_by_their_opening_words() -> None:
    assert [identify((COMMON / name).read_text()) for name in ("Apache-2.0", "GPL-2", "LGPL-2.1", "GPL-3", "LGPL-3")] == [
        "Apache-2.0", "GPL-2.0", "LGPL-2.1", "GPL-3.0", "LGPL-3.0",
    ]  # fmt: skip
    assert identify("Permission is hereby granted, free of charge, to any person") is None


@pytest.mark.parametrize("component", list(UPSTREAMS))
def test_each_fixture_upstream_has_the_licence_files_its_module_states(tmp_path: Path, component: str) -> None:
    copy_template(component, tmp_path)
    found = check_licenses(upstream(component), tmp_path, f"{component} (fixture)")
    assert [(f["license"], f["file"]) for f in found] == [(lic.spdx, lic.file) for lic in upstream(component).licenses]
    assert all(len(f["sha256"]) == 64 for f in found)


def test_a_licence_file_of_another_licence_stops_the_build_naming_file_and_module(tmp_path: Path) -> None:
    copy_template("crun", tmp_path)
    shutil.copy(COMMON / "GPL-3", tmp_path / "COPYING")
    with pytest.raises(SourceError) as info:
        check_licenses(upstream("crun"), tmp_path, "crun 1.26 (3241e671f92c)")
    assert info.value.message == (
        "checking the licence of crun 1.26 (3241e671f92c) failed because its COPYING is the text of GPL-3.0, "
        "and builders/components/crun.py says GPL-2.0-or-later"
    )
    assert "correct `licenses` in builders/components/crun.py" in (info.value.hint or "")
    (tmp_path / "COPYING.libcrun").unlink()
    shutil.copy(COMMON / "GPL-2", tmp_path / "COPYING")
    with pytest.raises(SourceError, match=r"failed because it has no COPYING.libcrun"):
        check_licenses(upstream("crun"), tmp_path, "crun 1.26 (3241e671f92c)")
