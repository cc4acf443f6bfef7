"""The pieces of the supply chain that need no build: Go's build information read from a real program, which
package dpkg names for a library, and the provenance statement (checked with the in-toto models)."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

from builders.arch import Arch
from builders.attest import provenance, provenance_text
from builders.build import library_owners
from builders.deb import deb_version
from builders.errors import PackageError
from builders.gobuildinfo import MAGIC, is_go_program, read_build_info
from builders.sbom import sbom_path, write_deb_sbom
from builders.verify import check_sbom

MAIN = '''package main

import (
	"fmt"

	"example.org/greeting"
)

func main() { fmt.Println(greeting.Hello) }
'''


@pytest.fixture(scope="module")
def go_program(tmp_path_factory) -> Path:
    """A real Go program with a vendored dependency, built offline by the host's Go."""
    if shutil.which("go") is None:
        pytest.fail("go is not installed: .ci/setup-host installs golang-go")
    src = tmp_path_factory.mktemp("prog")
    (src / "go.mod").write_text("module example.org/prog\n\ngo 1.16\n\nrequire example.org/greeting v0.3.1\n")
    (src / "main.go").write_text(MAIN)
    (src / "vendor/example.org/greeting").mkdir(parents=True)
    (src / "vendor/example.org/greeting/greeting.go").write_text('package greeting\n\nconst Hello = "hello"\n')
    (src / "vendor/modules.txt").write_text("# example.org/greeting v0.3.1\n## explicit\nexample.org/greeting\n")
    subprocess.run(["go", "build", "-o", "prog", "."], cwd=src, check=True, env={"PATH": "/usr/bin:/bin", "HOME": str(src), "GOFLAGS": "-mod=vendor", "CGO_ENABLED": "0"})
    return src / "prog"


def test_the_build_information_is_what_go_version_m_shows(go_program: Path) -> None:
    info = read_build_info(go_program.read_bytes())
    shown = subprocess.run(["go", "version", "-m", str(go_program)], capture_output=True, text=True, check=True).stdout
    assert info is not None
    assert info.go == shown.split()[1]
    assert info.path == "example.org/prog"
    assert [(m.path, m.version) for m in info.deps] == [("example.org/greeting", "v0.3.1")]
    assert [tuple(line.split("\t")[2:4]) for line in shown.splitlines() if line.startswith("\tdep\t")] == [("example.org/greeting", "v0.3.1")]


def test_a_program_that_is_not_go_has_no_build_information() -> None:
    assert read_build_info(Path("/bin/ls").read_bytes()) is None and not is_go_program(Path("/bin/ls").read_bytes())
    assert read_build_info(b"\xff Go buildinf:" + b"\x00" * 10) is None  # a truncated header


def unreadable(program: Path, dest: Path) -> Path:
    """The same Go program with its build information's header defaced: what a reader that cannot read it sees."""
    dest.write_bytes(program.read_bytes().replace(MAGIC, b"\xff Go defaced:"))
    dest.chmod(0o755)
    return dest


def deb_of(program: Path, tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(f"Package: {name}\nVersion: 1.4.3-1~deb13\nArchitecture: amd64\nMaintainer: t <t@example.org>\nDescription: t\n")
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy2(program, root / "usr/bin/prog")
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(tmp_path / f"{name}.deb")], check=True, capture_output=True)
    return tmp_path / f"{name}.deb"


STAGED = {
    "source_date_epoch": 1764547200, "repo": "https://github.com/opencontainers/runc", "tag": "v1.4.3", "commit": "b" * 40, "version": "1.4.3",
    "mode": "cross", "builder_image": "criobuild/builder:debian-trixie-amd64-0123", "builder_image_id": "sha256:" + "f" * 64, "libraries": [],
}  # fmt: skip


def test_a_go_program_whose_build_information_cannot_be_read_fails_the_sbom_and_verify(go_program: Path, tmp_path: Path) -> None:
    """Both read programs with one reader: where it fails, neither may pass the program over as if it were not Go."""
    from builders.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "crio-1.36.toml")
    good = deb_of(go_program, tmp_path, "good")
    write_deb_sbom(recipe, "runc", good, STAGED, deb_version(recipe, "runc"))
    assert check_sbom(good) == ([], (1, 1))  # one Go program, one module: example.org/greeting

    broken = unreadable(go_program, tmp_path / "prog")
    assert is_go_program(broken.read_bytes()) and read_build_info(broken.read_bytes()) is None
    bad = deb_of(broken, tmp_path, "bad")
    with pytest.raises(PackageError) as info:
        write_deb_sbom(recipe, "runc", bad, STAGED, deb_version(recipe, "runc"))
    assert info.value.message == "cannot write the SBOM of bad.deb because ./usr/bin/prog is a Go program whose build information cannot be read"
    # An SBOM that lists no modules for it (as a writer that skipped it wrote) is not verified.
    sbom_path(bad).write_text(sbom_path(good).read_text().replace(hashlib.sha256(good.read_bytes()).hexdigest(), hashlib.sha256(bad.read_bytes()).hexdigest()))
    problems, counts = check_sbom(bad)
    assert problems == ["✗ bad.deb.spdx.json: ./usr/bin/prog is a Go program whose build information cannot be read, so its modules cannot be checked against the SBOM"]
    assert counts == (0, 0)


# What `dpkg-query -S` says in a cross builder (amd64 with the arm64 libraries and a cross toolchain's copy).
DPKG_SEARCH = """\
libc6:amd64: /usr/lib/x86_64-linux-gnu/libc.so.6
libc6:arm64: /usr/lib/aarch64-linux-gnu/libc.so.6
libc6-arm64-cross: /usr/aarch64-linux-gnu/lib/libc.so.6
libglib2.0-0t64:arm64: /usr/lib/aarch64-linux-gnu/libglib-2.0.so.0
diversion by libc6 from: /lib/ld-linux-aarch64.so.1
libc6:arm64: /usr/lib/ld-linux-aarch64.so.1
"""


def test_a_library_belongs_to_the_target_package_not_the_host_s_nor_the_cross_toolchain_s() -> None:
    owners = library_owners(DPKG_SEARCH, ["libc.so.6", "libglib-2.0.so.0", "ld-linux-aarch64.so.1", "libmissing.so.1"], Arch.arm64)
    assert owners == {"libc.so.6": "libc6:arm64", "libglib-2.0.so.0": "libglib2.0-0t64:arm64", "ld-linux-aarch64.so.1": "libc6:arm64"}
    assert library_owners("libc6: /lib/arm-linux-gnueabihf/libc.so.6\n", ["libc.so.6"], Arch.armhf) == {"libc.so.6": "libc6"}


MANIFEST = {
    "recipe": {"name": "crio-1.36", "file": "crio-1.36.toml", "sha256": "a" * 64, "target": {"distro": "debian", "suite": "trixie", "arch": "arm64"}},
    "components": {
        "cri-o": {"repo": "https://github.com/cri-o/cri-o", "tag": "v1.36.3", "branch": "release-1.36", "commit": "b" * 40, "patches": [{"file": "fix.patch", "sha256": "c" * 64}]},
        "crun": {"repo": "https://github.com/containers/crun", "tag": None, "branch": "main", "commit": "d" * 40, "patches": []},
    },
    "go": [{"version": "1.26.11", "arch": "amd64", "tarball": "go1.26.11.linux-amd64.tar.gz", "sha256": "e" * 64}],
    "mode": "cross", "source_date_epoch": 1764547200,
    "builder_image": {"name": "criobuild/builder:debian-trixie-amd64-0123", "id": "sha256:" + "f" * 64},
    "base_image": {"name": "criobuild/base:debian-trixie-amd64", "id": "sha256:" + "1" * 64},
}  # fmt: skip


def test_the_provenance_is_a_slsa_v1_statement_over_the_subjects_with_the_recipe_as_its_definition() -> None:
    statement = provenance(MANIFEST, {"b.deb": "2" * 64, "a.deb": "3" * 64})
    assert [s["name"] for s in statement["subject"]] == ["a.deb", "b.deb"]
    assert statement["subject"][0]["digest"] == {"sha256": "3" * 64}
    predicate = json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance())  # the in-toto model reads it
    dependencies = [(d.name, d.uri, dict(d.digest)) for d in predicate.build_definition.resolved_dependencies]
    assert dependencies == [
        ("crio-1.36.toml", "", {"sha256": "a" * 64}),
        ("cri-o", "git+https://github.com/cri-o/cri-o@refs/tags/v1.36.3", {"gitCommit": "b" * 40}),
        ("cri-o: fix.patch", "", {"sha256": "c" * 64}),
        ("crun", "git+https://github.com/containers/crun@refs/heads/main", {"gitCommit": "d" * 40}),
        ("go 1.26.11", "https://go.dev/dl/go1.26.11.linux-amd64.tar.gz", {"sha256": "e" * 64}),
    ]
    assert predicate.run_details.builder.id.endswith("/cross")
    assert [d.name for d in predicate.run_details.builder.builder_dependencies] == ["criobuild/builder:debian-trixie-amd64-0123", "criobuild/base:debian-trixie-amd64"]
    assert statement["predicate"]["buildDefinition"]["internalParameters"] == {"sourceDateEpoch": "1764547200"}


def test_the_provenance_text_is_the_same_for_the_same_inputs() -> None:
    assert provenance_text(MANIFEST, {"a.deb": "3" * 64}) == provenance_text(json.loads(json.dumps(MANIFEST)), {"a.deb": "3" * 64})
