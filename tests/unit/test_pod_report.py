"""The pod test's report: beside the artifacts, signed or not, never changing what the build wrote or
signed, and dropped by a rebuild whose artifacts are not the ones it tested."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builders import attest, files, pod_report, tarball, verify
from tests.integration.test_apt_repo import GnuPG, gnupg  # noqa: F401 (a fixture)
from tests.unit.test_tarball import built, fake_images, world  # noqa: F401 (a fixture)

REPORT = {"recipe": "crio-1.18", "runs": [{"crio_version": "1.18.1", "cgroup_manager": "systemd", "logs": "web: serving /www on 8080"}],
          "critest": {"specs": 80, "passed": 61, "failed": 0, "skipped": 7, "needs_internet": 12, "needs_image": 0}}  # fmt: skip


@pytest.fixture
def signing(gnupg: GnuPG, monkeypatch) -> GnuPG:  # noqa: F811
    monkeypatch.setenv("GNUPGHOME", str(gnupg.home))
    monkeypatch.setenv("CRIOBUILD_GPG_KEY", gnupg.key)
    return gnupg


def what_the_build_wrote(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and not p.name.startswith("pod-report")}


def gpgv(keys: GnuPG, signature: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    keyring = keys.export(keys.key, tmp_path / "signer.gpg")
    return subprocess.run(["gpgv", "--keyring", str(keyring), str(signature), str(signature.with_suffix(""))], capture_output=True, text=True)


def test_the_report_is_its_own_signed_file_and_changes_nothing_the_build_wrote_or_signed(world, signing: GnuPG, tmp_path: Path) -> None:  # noqa: F811
    recipe, settings = world
    artifact = built(world)
    directory = artifact.parent
    tarball.write_sums_and_manifest(recipe, settings, lookup_images=fake_images)
    before = what_the_build_wrote(directory)
    assert "SHA256SUMS.asc" in before and "provenance.intoto.json.asc" in before

    written = attest.write_pod_report(directory, REPORT, [artifact])

    assert written == [directory / "pod-report.json", directory / "pod-report.json.asc"]
    assert what_the_build_wrote(directory) == before  # SHA256SUMS, manifest, provenance and their signatures as they were
    assert "pod_test" not in json.loads((directory / "manifest.json").read_text())
    saved = json.loads((directory / "pod-report.json").read_text())
    assert saved["tested"] == {artifact.name: files.sha256_file(artifact)} and saved["critest"] == REPORT["critest"]
    assert gpgv(signing, directory / "pod-report.json.asc", tmp_path).returncode == 0
    assert verify.check_pod_report(directory) == ["✓ pod-report.json names these very packages by sha256"]


def test_without_a_key_the_report_is_not_signed_and_an_older_signature_goes(world, monkeypatch) -> None:  # noqa: F811
    monkeypatch.delenv("CRIOBUILD_GPG_KEY", raising=False)
    artifact = built(world)
    (artifact.parent / "pod-report.json.asc").write_text("a signature of an earlier report\n")
    assert attest.write_pod_report(artifact.parent, REPORT, [artifact]) == [artifact.parent / "pod-report.json"]
    assert not (artifact.parent / "pod-report.json.asc").exists()


def test_sums_again_keep_a_report_on_the_same_packages(world, signing: GnuPG) -> None:  # noqa: F811
    recipe, settings = world
    artifact = built(world)
    tarball.write_sums_and_manifest(recipe, settings, lookup_images=fake_images)
    attest.write_pod_report(artifact.parent, REPORT, [artifact])
    report, signature = ((artifact.parent / name).read_bytes() for name in ("pod-report.json", "pod-report.json.asc"))
    tarball.write_sums_and_manifest(recipe, settings, lookup_images=fake_images)  # `doit sums` again: nothing rebuilt
    assert (artifact.parent / "pod-report.json").read_bytes() == report
    assert (artifact.parent / "pod-report.json.asc").read_bytes() == signature
    assert "pod_test" not in json.loads((artifact.parent / "manifest.json").read_text())


def test_a_rebuild_drops_a_report_whose_packages_changed(world, signing: GnuPG, capsys) -> None:  # noqa: F811
    recipe, settings = world
    artifact = built(world)
    tarball.write_sums_and_manifest(recipe, settings, lookup_images=fake_images)
    attest.write_pod_report(artifact.parent, REPORT, [artifact])
    artifact.write_bytes(artifact.read_bytes() + b"\0")  # what a rebuild with other inputs leaves
    assert verify.check_pod_report(artifact.parent)[0].startswith(f"✗ pod-report.json: does not speak for these packages because it tested {artifact.name} with sha256 ")

    tarball.write_sums_and_manifest(recipe, settings, lookup_images=fake_images)

    assert not (artifact.parent / "pod-report.json").exists() and not (artifact.parent / "pod-report.json.asc").exists()
    assert f"pod-report.json: dropped because it tested {artifact.name} with sha256 " in capsys.readouterr().err
    assert verify.check_pod_report(artifact.parent) == ["- pod-report.json: none (`doit pod` was not run on these packages)"]


@pytest.mark.parametrize("text, why", [
    ('{"runs": []}', "it names no tested artifacts with their sha256 (an older criobuild wrote it)"),
    ('{"tested": {"conmon_2.0.19-1~deb12_arm64.deb": "' + "0" * 64 + '"}}', "it tested conmon_2.0.19-1~deb12_arm64.deb, which is no longer there"),
])  # fmt: skip
def test_a_report_that_names_no_artifact_beside_it_is_stale(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / "pod-report.json").write_text(text)
    (tmp_path / "pod-report.json.asc").write_text("signature\n")
    assert pod_report.drop_if_stale(tmp_path) == why
    assert list(tmp_path.iterdir()) == []
