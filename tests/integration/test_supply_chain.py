"""The supply chain of a real build of the 2026 shape: SPDX SBOMs checked with the SPDX project's own tools,
SLSA provenance read with the in-toto models, gpg signatures, and `doit verify` against tampering."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from builders.arch import Arch
from builders.recipe import load_recipe
from tests.fixtures.pipeline import REPO, Pipeline
from tests.integration.test_apt_repo import GnuPG, gnupg  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.docker, pytest.mark.slow]
ARTIFACTS = ("cri-o-cni-plugins_1.8.0-1~deb13_arm64.deb", "cri-o-conmon_2.1.13-1~deb13_arm64.deb", "cri-o-crun_1.26-1~deb13_arm64.deb",
             "cri-o-runc_1.4.3-1~deb13_arm64.deb", "cri-o_1.36.1-1~deb13_arm64.deb", "cri-tools_1.36.0-1~deb13_arm64.deb", "cri-o.arm64.v1.36.1.tar.gz")  # fmt: skip


def sums(directory: Path) -> dict[str, str]:
    return {name: digest for digest, name in (line.split() for line in (directory / "SHA256SUMS").read_text().splitlines())}


def sbom(directory: Path, artifact: str) -> dict:
    return json.loads((directory / f"{artifact}.spdx.json").read_text())


def test_every_deb_and_the_tarball_has_an_spdx_2_3_sbom_that_the_spdx_tools_validate(pipeline_1_36: Pipeline, built_1_36) -> None:
    listed = sums(pipeline_1_36.artifacts)
    for artifact in ARTIFACTS:
        path = pipeline_1_36.artifacts / f"{artifact}.spdx.json"
        assert path.name in listed, f"{path.name} is in SHA256SUMS"
        assert validate_full_spdx_document(parse_file(str(path))) == [], path.name
        document = sbom(pipeline_1_36.artifacts, artifact)
        described = next(p for p in document["packages"] if p["SPDXID"] == "SPDXRef-Artifact")
        assert described["checksums"] == [{"algorithm": "SHA256", "checksumValue": listed[artifact]}]
        assert {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Artifact"} in document["relationships"]


def test_the_runc_sbom_names_its_source_toolchain_go_modules_libraries_and_images(pipeline_1_36: Pipeline, built_1_36, tmp_path: Path, docker_engine) -> None:
    directory = pipeline_1_36.artifacts
    document = sbom(directory, "cri-o-runc_1.4.3-1~deb13_arm64.deb")
    packages = {p["SPDXID"]: p for p in document["packages"]}
    runc = next(f for f in document["files"] if f["fileName"] == "./usr/libexec/crio/runc")
    related = {(r["relationshipType"], packages[r["relatedSpdxElement"]]["name"], packages[r["relatedSpdxElement"]].get("versionInfo"))
               for r in document["relationships"] if r["spdxElementId"] == runc["SPDXID"] and r["relatedSpdxElement"] in packages}  # fmt: skip
    # What `go version -m` reads from the packaged binary is what the SBOM lists.
    subprocess.run(["dpkg-deb", "-x", str(directory / "cri-o-runc_1.4.3-1~deb13_arm64.deb"), str(tmp_path)], check=True)
    shown = subprocess.run(["go", "version", "-m", str(tmp_path / "usr/libexec/crio/runc")], capture_output=True, text=True, check=True).stdout
    deps = {tuple(line.split("\t")[2:4]) for line in shown.splitlines() if line.startswith("\tdep\t")}
    assert deps == {("github.com/opencontainers/runtime-spec", "v1.2.1")}
    assert {(name, version) for kind, name, version in related if kind == "STATIC_LINK"} == deps
    # The libraries it links, as the trixie arm64 packages installed in the builder.
    manifest = json.loads((directory / "manifest.json").read_text())
    builder = manifest["components"]["runc"]["builder_image"]
    installed = docker_engine.containers.run(builder, ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "libc6:arm64", "libseccomp2:arm64"], remove=True).decode()
    assert {(name, version) for kind, name, version in related if kind == "DYNAMIC_LINK"} == {tuple(line.split()) for line in installed.splitlines()}
    source = next(p for p in packages.values() if p.get("primaryPackagePurpose") == "SOURCE")
    assert manifest["components"]["runc"]["commit"] in source["sourceInfo"] and "tag v1.4.3" in source["sourceInfo"]
    assert ("GENERATED_FROM", "runc", "1.4.3") in related
    go = next(p for p in packages.values() if p["name"] == "go")
    recipe = load_recipe(pipeline_1_36.root / "recipes" / "crio-1.36.toml")
    assert go["checksums"][0]["checksumValue"] == recipe.go_for("runc").sha256[Arch.amd64]  # cross mode: the amd64 toolchain built it
    images = {p["name"]: p["versionInfo"] for p in packages.values() if p.get("primaryPackagePurpose") == "CONTAINER"}
    assert images == {builder: manifest["components"]["runc"]["builder_image_id"], manifest["base_image"]["name"]: manifest["base_image"]["id"]}


def test_the_provenance_names_every_artifact_by_sha256_and_the_recipe_as_the_build_definition(pipeline_1_36: Pipeline, built_1_36) -> None:
    directory = pipeline_1_36.artifacts
    statement = json.loads((directory / "provenance.intoto.json").read_text())
    assert statement["_type"] == "https://in-toto.io/Statement/v1" and statement["predicateType"] == "https://slsa.dev/provenance/v1"
    listed = sums(directory)
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == {n: d for n, d in listed.items() if n != "provenance.intoto.json"}
    predicate = json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance())
    manifest = json.loads((directory / "manifest.json").read_text())
    assert predicate.build_definition.external_parameters["recipe"] == "crio-1.36"
    assert predicate.build_definition.external_parameters["mode"] == "cross"
    dependencies = {d.name: dict(d.digest) for d in predicate.build_definition.resolved_dependencies}
    assert dependencies["crio-1.36.toml"] == {"sha256": manifest["recipe"]["sha256"]}
    assert dependencies["cri-o"] == {"gitCommit": manifest["components"]["cri-o"]["commit"]}
    builders = {d.name for d in predicate.run_details.builder.builder_dependencies}
    assert builders == {manifest["builder_image"]["name"], manifest["base_image"]["name"]}


def test_each_package_and_sbom_say_the_licence_of_its_source(pipeline_1_36: Pipeline, built_1_36, tmp_path: Path) -> None:
    """crun is GPL-2.0-or-later with libcrun LGPL-2.1-or-later (its COPYING and COPYING.libcrun), the others Apache-2.0."""
    directory = pipeline_1_36.artifacts

    def copyright_of(deb: str) -> str:
        subprocess.run(["dpkg-deb", "-x", str(directory / deb), str(tmp_path / deb)], check=True)
        return next((tmp_path / deb / "usr/share/doc").glob("*/copyright")).read_text()

    crun = copyright_of("cri-o-crun_1.26-1~deb13_arm64.deb")
    assert re.search(r"^Files: \*\nCopyright: 2017-\d{4} The crun Authors\nLicense: GPL-2\+\n", crun, re.M), crun
    assert re.search(r"^Files: src/libcrun/\*\nCopyright: 2017-\d{4} The crun Authors\nLicense: LGPL-2\.1\+\n", crun, re.M), crun
    assert '"/usr/share/common-licenses/GPL-2"' in crun and '"/usr/share/common-licenses/LGPL-2.1"' in crun and "Apache" not in crun
    conmon = copyright_of("cri-o-conmon_2.1.13-1~deb13_arm64.deb")
    assert "License: Apache-2.0\n" in conmon and "GPL" not in conmon
    staged = json.loads((directory / "staging" / "crun.json").read_text())
    assert [(lic["license"], lic["file"]) for lic in staged["licenses"]] == [("GPL-2.0-or-later", "COPYING"), ("LGPL-2.1-or-later", "COPYING.libcrun")]
    for artifact, expected in [("cri-o-crun_1.26-1~deb13_arm64.deb", "GPL-2.0-or-later AND LGPL-2.1-or-later"), ("cri-o-runc_1.4.3-1~deb13_arm64.deb", "Apache-2.0"),
                               ("cri-o.arm64.v1.36.1.tar.gz", "Apache-2.0 AND GPL-2.0-or-later AND LGPL-2.1-or-later")]:  # fmt: skip
        packages = sbom(directory, artifact)["packages"]
        described = next(p for p in packages if p["SPDXID"] == "SPDXRef-Artifact")
        assert (described["licenseDeclared"], described["licenseConcluded"]) == (expected, expected), artifact
    sources = {p["name"]: p["licenseDeclared"] for p in sbom(directory, "cri-o.arm64.v1.36.1.tar.gz")["packages"] if p.get("primaryPackagePurpose") == "SOURCE"}
    assert sources == {"cri-o": "Apache-2.0", "conmon": "Apache-2.0", "cni-plugins": "Apache-2.0", "cri-tools": "Apache-2.0", "runc": "Apache-2.0",
                       "crun": "GPL-2.0-or-later AND LGPL-2.1-or-later"}  # fmt: skip


@pytest.fixture
def relicensed(tmp_path: Path, upstreams, go_tarballs, http_server) -> Pipeline:
    """A pipeline of its own whose recipe patches crun's COPYING into the GPL version 3."""
    from tests.fixtures.pipeline import SHAPE_1_36, make_pipeline

    pipeline = make_pipeline(tmp_path, "cross", upstreams, go_tarballs, http_server, SHAPE_1_36)
    tree = tmp_path / "crun"
    subprocess.run(["git", "clone", "-q", "--branch", SHAPE_1_36["crun_tag"], upstreams["crun"].url, str(tree)], check=True)
    shutil.copy("/usr/share/common-licenses/GPL-3", tree / "COPYING")
    patch = subprocess.run(["git", "diff"], cwd=tree, capture_output=True, text=True, check=True).stdout
    (tmp_path / "recipes" / "patches").mkdir()
    (tmp_path / "recipes" / "patches" / "gpl3.patch").write_text(patch)
    recipe = tmp_path / "recipes" / "crio-1.36.toml"
    recipe.write_text(recipe.read_text().replace("[components.crun]\n", '[components.crun]\npatches = ["gpl3.patch"]\n'))
    return pipeline


def test_a_source_whose_licence_file_is_another_licence_is_not_built(relicensed: Pipeline) -> None:
    result = relicensed.doit("compile:crio-1.36:crun")
    assert result.returncode == 1
    commit = load_recipe(relicensed.root / "recipes" / "crio-1.36.toml").components["crun"].commit
    assert (f"checking the licence of crun 1.26 ({commit[:12]}) failed because its COPYING is the text of GPL-3.0, "
            "and builders/components/crun.py says GPL-2.0-or-later") in result.stderr  # fmt: skip
    assert "hint: read COPYING at the pinned commit and correct `licenses` in builders/components/crun.py" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (relicensed.artifacts / "staging" / "crun.json").exists()


def doit(pipeline: Pipeline, artifacts: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = os.environ | pipeline.env | {"CRIOBUILD_ARTIFACTS": str(artifacts)} | env
    argv = [sys.executable, "-m", "doit", "--db-file", str(artifacts / "doit.db"), *args]
    return subprocess.run(argv, cwd=REPO, env=environ, capture_output=True, text=True)


@pytest.fixture
def signed(pipeline_1_36: Pipeline, built_1_36, gnupg: GnuPG, tmp_path: Path) -> Path:  # noqa: F811
    """A copy of the built artifacts, signed by the test key (`doit sign`, as the release workflow does); the artifacts root."""
    root = tmp_path / "artifacts"
    (root / "crio-1.36").mkdir(parents=True)
    for path in pipeline_1_36.artifacts.iterdir():
        if path.is_file():
            shutil.copy2(path, root / "crio-1.36")
    result = doit(pipeline_1_36, root, "sign", GNUPGHOME=str(gnupg.home), CRIOBUILD_GPG_KEY=gnupg.key)
    assert result.returncode == 0, result.stdout + result.stderr
    gnupg.export(gnupg.key, tmp_path / "signer.gpg")
    (tmp_path / "signer.asc").write_bytes(gnupg.gpg("--armor", "--export", gnupg.key).stdout)
    gnupg.export(gnupg.other, tmp_path / "stranger.gpg")
    return root


def test_verify_checks_signatures_sums_provenance_and_sboms_of_signed_artifacts(pipeline_1_36: Pipeline, signed: Path) -> None:
    asc = sorted(p.name for p in (signed / "crio-1.36").glob("*.asc"))
    assert asc == sorted(["SHA256SUMS.asc", "provenance.intoto.json.asc", *(f"{a}.spdx.json.asc" for a in ARTIFACTS)])
    result = doit(pipeline_1_36, signed, "verify:crio-1.36", "--key", str(signed.parent / "signer.asc"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ 16 files match SHA256SUMS" in result.stdout
    assert "✓ 9 signatures good by the key in" in result.stdout
    assert "✓ the provenance's 15 subjects are exactly the artifacts" in result.stdout
    # crio, crictl, critest, runc and the four plugins, in the .debs and in the tarball; runtime-spec, in runc's .deb and in the tarball
    assert "✓ each SBOM names its artifact; 16 Go programs embed exactly the 2 Go modules their SBOMs list" in result.stdout


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case, expected", [
    ("deb", ["✗ cri-o_1.36.1-1~deb13_arm64.deb: its sha256 is"]),
    ("sbom", ["✗ cri-o-runc_1.4.3-1~deb13_arm64.deb.spdx.json: its sha256 is", "✗ cri-o-runc_1.4.3-1~deb13_arm64.deb.spdx.json: its signature cri-o-runc_1.4.3-1~deb13_arm64.deb.spdx.json.asc does not verify"]),
    ("sums", ["✗ SHA256SUMS: its signature SHA256SUMS.asc does not verify"]),
    ("other key", ["✗ SHA256SUMS: its signature SHA256SUMS.asc does not verify with", "No public key"]),
    ("missing", ["✗ cri-tools_1.36.0-1~deb13_arm64.deb: missing (SHA256SUMS lists it)"]),
])  # fmt: skip
def test_verify_names_each_tampered_or_missing_file_and_fails(pipeline_1_36: Pipeline, signed: Path, case: str, expected: list[str]) -> None:
    directory = signed / "crio-1.36"
    key = signed.parent / "signer.gpg"
    if case == "deb":
        flip_a_byte(directory / "cri-o_1.36.1-1~deb13_arm64.deb")
    elif case == "sbom":
        path = directory / "cri-o-runc_1.4.3-1~deb13_arm64.deb.spdx.json"
        path.write_text(path.read_text().replace("v1.2.1", "v1.2.2"))
    elif case == "sums":
        flip_a_byte(directory / "SHA256SUMS")
    elif case == "other key":
        key = signed.parent / "stranger.gpg"
    elif case == "missing":
        (directory / "cri-tools_1.36.0-1~deb13_arm64.deb").unlink()
    result = doit(pipeline_1_36, signed, "verify:crio-1.36", "--key", str(key))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "NOT verified: crio-1.36" in result.stdout
    for words in expected:
        assert words in out, out
    assert "Traceback" not in out


def test_a_tampered_module_list_is_named_even_when_the_sums_are_redone(pipeline_1_36: Pipeline, signed: Path) -> None:
    """Someone rewrites an SBOM and its sum: the program's own build information still tells."""
    directory = signed / "crio-1.36"
    path = directory / "cri-o-runc_1.4.3-1~deb13_arm64.deb.spdx.json"
    path.write_text(path.read_text().replace('"versionInfo": "v1.2.1"', '"versionInfo": "v1.2.2"'))
    subprocess.run("sha256sum $(awk '{print $2}' SHA256SUMS) > SHA256SUMS.new && mv SHA256SUMS.new SHA256SUMS", shell=True, cwd=directory, check=True)
    result = doit(pipeline_1_36, signed, "verify:crio-1.36")
    assert result.returncode != 0
    assert ("✗ cri-o-runc_1.4.3-1~deb13_arm64.deb.spdx.json: ./usr/libexec/crio/runc embeds github.com/opencontainers/runtime-spec@v1.2.1 beyond its SBOM, "
            "which lists github.com/opencontainers/runtime-spec@v1.2.2 that it does not embed") in result.stdout  # fmt: skip


def test_two_builds_write_byte_identical_sboms_and_provenance(pipeline_1_36: Pipeline, built_1_36) -> None:
    directory = pipeline_1_36.artifacts
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.name.endswith((".spdx.json", ".deb", ".tar.gz")) or p.name in ("provenance.intoto.json", "SHA256SUMS")}
    forget = [sys.executable, "-m", "doit", "forget", "--db-file", str(pipeline_1_36.root / "doit.db"), "deb:crio-1.36:cri-o-runc", "tarball:crio-1.36", "sums:crio-1.36"]
    subprocess.run(forget, cwd=REPO, env=os.environ | pipeline_1_36.env, check=True, capture_output=True)
    (directory / "provenance.intoto.json").unlink()
    result = pipeline_1_36.doit("build:crio-1.36")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done       sums:crio-1.36" in result.stdout and "done       deb:crio-1.36:cri-o-runc" in result.stdout
    after = {name: (directory / name).read_bytes() for name in before}
    assert [n for n in before if before[n] != after[n]] == []
