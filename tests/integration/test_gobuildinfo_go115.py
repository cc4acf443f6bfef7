"""The build information of programs built by a Go of before 1.18 (the pointer layout), read as Go 1.15 itself does.

Recipes 1.18-1.23 build with Go 1.14-1.17. Debian bullseye's golang-1.15 builds a small program with a vendored
module, in a bullseye container (bootstrapped from the Debian mirror), the ways those recipes' components are
built: statically by Go's own linker, and with cgo as a position-independent executable linked by GNU ld (runc's
`-buildmode=pie`), for amd64, arm64 and armhf. builders/gobuildinfo.py must read what go1.15's `go version -m`
prints; for arm64 cgo PIE, where ld leaves the relocated pointers to the loader and go1.15 itself reads garbage,
it must read what the same program built any other way carries.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from builders.arch import Arch
from builders.container import Container
from builders.gobuildinfo import is_go_program, read_build_info
from builders.images import ensure_builder_image
from builders.recipe import Target

pytestmark = [pytest.mark.docker]

BULLSEYE = Target(distro="debian", suite="bullseye", arch=Arch.amd64, mirror="http://deb.debian.org/debian")
PACKAGES = (
    "golang-1.15-go", "git", "gcc", "libc6-dev", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross",
)  # fmt: skip
SOURCES = {
    "go.mod": "module example.org/prog\n\ngo 1.15\n\nrequire example.org/greeting v0.3.1\n",
    "main.go": 'package main\n\nimport (\n\t"fmt"\n\n\t"example.org/greeting"\n)\n\nfunc main() { fmt.Println(greeting.Hello) }\n',
    "cgo.go": "package main\n\n// int answer(void) { return 42; }\nimport \"C\"\n\nvar _ = C.answer\n",  # built only with cgo
    "vendor/example.org/greeting/greeting.go": 'package greeting\n\nconst Hello = "hello"\n',
    "vendor/modules.txt": "# example.org/greeting v0.3.1\n## explicit\nexample.org/greeting\n",
}
# name -> environment: how recipes' components of that era are linked.
BUILDS = {
    "static-amd64": "GOARCH=amd64 CGO_ENABLED=0",
    "static-arm64": "GOARCH=arm64 CGO_ENABLED=0",
    "static-armhf": "GOARCH=arm GOARM=7 CGO_ENABLED=0",
    "cgo-pie-amd64": "GOARCH=amd64 CGO_ENABLED=1 CC=gcc FLAGS=-buildmode=pie",
    "cgo-pie-arm64": "GOARCH=arm64 CGO_ENABLED=1 CC=aarch64-linux-gnu-gcc FLAGS=-buildmode=pie",
    "cgo-pie-armhf": "GOARCH=arm GOARM=7 CGO_ENABLED=1 CC=arm-linux-gnueabihf-gcc FLAGS=-buildmode=pie",
}
SCRIPT = "\n".join(
    ["set -eu", "export PATH=/usr/lib/go-1.15/bin:$PATH HOME=/tmp GOFLAGS=-mod=vendor GOPROXY=off", "mkdir -p /out", "cd /src"]
    + [f"(export {env}; go build ${{FLAGS:-}} -o /out/{name} .)" for name, env in BUILDS.items()]
    + ["go version > /out/go-version", "for p in " + " ".join(BUILDS) + "; do go version -m /out/$p > /out/$p.m; done"]
)


@pytest.fixture(scope="module")
def go115(docker_engine, tmp_path_factory) -> Path:
    image = ensure_builder_image(docker_engine, BULLSEYE, PACKAGES, "bootstrap")
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("out")
    for name, text in SOURCES.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    with Container(docker_engine, image, what="build with Go 1.15") as box:
        box.copy_into(src, "/src")
        box.call(["bash", "-c", SCRIPT])
        box.copy_out("/out", out)
    return out


def shown(text: str) -> dict:
    """What `go version -m` prints, as builders.gobuildinfo keeps it (a replaced module as its replacement)."""
    lines = text.splitlines() or [""]
    fields = [line.split("\t")[1:] for line in lines[1:] if line.count("\t") > 1]
    deps = [f[1:3] for f in fields if f[0] in ("dep", "=>")]
    return {"go": lines[0].partition(": ")[2], "path": next((f[1] for f in fields if f[0] == "path"), ""), "deps": deps}


def read(path: Path) -> dict:
    info = read_build_info(path.read_bytes())
    assert info is not None, path.name
    return {"go": info.go, "path": info.path, "deps": [[m.path, m.version] for m in info.deps]}


def test_go_1_15_programs_are_read_as_go_version_m_shows_them(go115: Path) -> None:
    assert (go115 / "go-version").read_text().startswith("go version go1.15.15 ")
    expected = {"go": "go1.15.15", "path": "example.org/prog", "deps": [["example.org/greeting", "v0.3.1"]]}
    by_go = {}
    for name in BUILDS:
        program = go115 / name
        assert is_go_program(program.read_bytes()), name
        assert read(program) == expected, name
        by_go[name] = shown((go115 / f"{name}.m").read_text())
    # go1.15 reads all of them but one, and reads them as this reader does.
    assert [name for name, seen in by_go.items() if seen == expected] == [name for name in BUILDS if name != "cgo-pie-arm64"], json.dumps(by_go, indent=1)
    # arm64 cgo PIE: GNU ld left the pointers to the loader (R_AARCH64_RELATIVE); go1.15 reads other bytes.
    assert by_go["cgo-pie-arm64"]["go"] != "go1.15.15"
