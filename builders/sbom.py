"""SPDX 2.3 SBOMs: one per .deb and one for the tarball, written next to it as <artifact>.spdx.json.

Each names the artifact and every file in it; for each program, the source it was generated from (repo, tag,
commit, the recipe's patches), the Go toolchain and every Go module it embeds (read from the program's own
build information, as `go version -m` shows it), the target's package and version of each shared library
it links (dpkg in the builder, recorded at compile time), and the builder and base images. Timestamps come
from SOURCE_DATE_EPOCH, so a rebuild writes the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import elf
from .components import upstream
from .errors import PackageError
from .gobuildinfo import BuildInfo, is_go_program, read_build_info
from .licenses import expression
from .recipe import Recipe
from .files import sha256_file, write_atomically

SBOM_CODE = [Path(__file__), Path(__file__).with_name("gobuildinfo.py"), Path(__file__).with_name("licenses.py")]  # a change to one writes new SBOMs
NAMESPACE = "https://spdx.criobuild.invalid"  # SPDX wants a unique URI per document; .invalid resolves nowhere


@dataclass(frozen=True)
class File:
    path: str  # as the artifact holds it: "./usr/bin/crio", "cri-o/bin/crio"
    data: bytes
    component: str | None  # the component a program came from (None: not a program)

    @property
    def go(self) -> BuildInfo | None:
        return read_build_info(self.data) if self.component else None


def sbom_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".spdx.json")


def deb_files(deb: Path, component: str) -> list[File]:
    """Every regular file of a .deb (dpkg-deb's own reading of it); its ELF files are the component's programs."""
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True)
    if tar.returncode != 0:
        raise PackageError(f"cannot read {deb.name} because dpkg-deb said: {tar.stderr.decode().strip()}")
    return tar_files(tarfile.open(fileobj=io.BytesIO(tar.stdout)), lambda data: component)


def tarball_files(tarball: Path, owners: dict[str, str]) -> list[File]:
    """Every regular file of the tarball; owners: sha256 of each staged program -> its component."""
    with tarfile.open(tarball) as tar:
        return tar_files(tar, lambda data: owners.get(hashlib.sha256(data).hexdigest(), "unknown"))


def tar_files(tar: tarfile.TarFile, owner: Any) -> list[File]:
    files = []
    for info in tar:
        if info.isfile():
            data = tar.extractfile(info).read()  # type: ignore[union-attr]
            files.append(File(info.name, data, owner(data) if data[:4] == elf.ELF_MAGIC else None))
    return sorted(files, key=lambda f: f.path)


# --------------------------------------------------------------------------- the document


def spdx_id(kind: str, *parts: str) -> str:
    return "SPDXRef-" + "-".join([kind, *(re.sub(r"[^A-Za-z0-9.]+", ".", p).strip(".") for p in parts)])


def checksums(data: bytes) -> list[dict[str, str]]:
    return [{"algorithm": "SHA1", "checksumValue": hashlib.sha1(data).hexdigest()}, {"algorithm": "SHA256", "checksumValue": hashlib.sha256(data).hexdigest()}]


def verification_code(files: list[File]) -> str:
    """SPDX's package verification code: the SHA1 of the files' sorted SHA1s."""
    return hashlib.sha1("".join(sorted(hashlib.sha1(f.data).hexdigest() for f in files)).encode()).hexdigest()


def purl_deb(recipe: Recipe, package: str, version: str) -> dict[str, str]:
    locator = f"pkg:deb/{recipe.target.distro}/{package}@{quote(version)}?arch={recipe.target.arch.to_deb()}&distro={recipe.target.suite}"
    return {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": locator}


def purl_go(module: str, version: str) -> dict[str, str]:
    return {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": f"pkg:golang/{module}@{quote(version)}"}


class Document:
    """An SPDX 2.3 document under construction: packages and files by SPDXID, and their relationships."""

    def __init__(self, name: str, epoch: int, artifact_sha256: str, recipe: Recipe) -> None:
        self.doc: dict[str, Any] = {
            "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": name,
            "documentNamespace": f"{NAMESPACE}/{recipe.name}/{name}-{artifact_sha256}",
            "creationInfo": {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)), "creators": ["Tool: criobuild"]},
            "packages": [], "files": [], "relationships": [],
        }  # fmt: skip
        self.ids: set[str] = set()

    def package(self, spdxid: str, **fields: Any) -> str:
        if spdxid not in self.ids:
            self.ids.add(spdxid)
            self.doc["packages"].append({"SPDXID": spdxid, "downloadLocation": "NOASSERTION", "filesAnalyzed": False, **fields})
        return spdxid

    def file(self, spdxid: str, name: str, data: bytes) -> str:
        self.ids.add(spdxid)
        self.doc["files"].append({"SPDXID": spdxid, "fileName": name, "checksums": checksums(data)})
        return spdxid

    def relate(self, a: str, kind: str, b: str) -> None:
        relationship = {"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b}
        if relationship not in self.doc["relationships"]:
            self.doc["relationships"].append(relationship)


def sbom(artifact: Path, package: dict[str, Any], files: list[File], recipe: Recipe, staged: dict[str, dict[str, Any]], epoch: int) -> dict[str, Any]:
    """The SBOM of artifact (a package of files), its programs traced to sources, toolchain, modules, libraries, images."""
    data = artifact.read_bytes()
    doc = Document(artifact.name, epoch, hashlib.sha256(data).hexdigest(), recipe)
    top = doc.package("SPDXRef-Artifact", filesAnalyzed=True, checksums=checksums(data)[1:], packageFileName=artifact.name,
                      packageVerificationCode={"packageVerificationCodeValue": verification_code(files)}, **package)
    doc.relate("SPDXRef-DOCUMENT", "DESCRIBES", top)
    for n, f in enumerate(files):
        file_id = doc.file(spdx_id("File", str(n), f.path), f.path, f.data)
        doc.relate(top, "CONTAINS", file_id)
        if f.component in staged:
            trace_program(doc, file_id, f, recipe, staged[f.component])
    return doc.doc


def trace_program(doc: Document, file_id: str, f: File, recipe: Recipe, built: dict[str, Any]) -> None:
    component = f.component or ""
    doc.relate(file_id, "GENERATED_FROM", source_package(doc, recipe, component, built))
    builder = image_package(doc, built["builder_image"], built["builder_image_id"])
    doc.relate(builder, "BUILD_TOOL_OF", file_id)
    if built.get("base_image_id"):
        doc.relate(builder, "DESCENDANT_OF", image_package(doc, built["base_image"], built["base_image_id"]))
    info = f.go
    if info is None and is_go_program(f.data):
        raise PackageError(
            f"cannot write the SBOM of {doc.doc['name']} because {f.path} is a Go program whose build information cannot be read",
            hint=f"compare `go version -m` of {f.path} with builders/gobuildinfo.py; an SBOM without its modules would pass `doit verify` wrongly",
        )
    if info is not None:
        doc.relate(go_package(doc, recipe, component, built), "BUILD_TOOL_OF", file_id)
        for module in info.deps:
            module_id = doc.package(spdx_id("GoModule", module.path, module.version), name=module.path, versionInfo=module.version,
                                    externalRefs=[purl_go(module.path, module.version)], primaryPackagePurpose="LIBRARY",
                                    **({"comment": f"go.sum {module.sum}"} if module.sum else {}))
            doc.relate(file_id, "STATIC_LINK", module_id)
    libraries = {lib["soname"]: lib for lib in built.get("libraries", [])}
    for soname in elf.sonames(f.data):
        lib = libraries.get(soname, {"package": "", "version": ""})
        name = lib["package"] or soname
        fields = {"versionInfo": lib["version"]} if lib["version"] else {}
        refs = {"externalRefs": [purl_deb(recipe, lib["package"], lib["version"])]} if lib["package"] and lib["version"] else {}
        library_id = doc.package(spdx_id("Library", name), name=name, primaryPackagePurpose="LIBRARY", comment=f"provides {soname}", **fields, **refs)
        doc.relate(file_id, "DYNAMIC_LINK", library_id)


def source_package(doc: Document, recipe: Recipe, component: str, built: dict[str, Any]) -> str:
    repo, commit = built["repo"], built["commit"]
    where = f"tag {built['tag']}" if built.get("tag") else f"branch {built.get('branch')}"
    # SPDX's download locations are network URLs: a local mirror (file://) is named in sourceInfo only
    location = f"git+{repo}@{commit}" if repo.startswith(("https://", "http://")) else "NOASSERTION"
    source_id = doc.package(spdx_id("Source", component), name=component, versionInfo=built["version"], primaryPackagePurpose="SOURCE",
                            downloadLocation=location, sourceInfo=f"{repo} {where}, commit {commit}", **license_fields([component]))
    for patch in recipe.components[component].patches:
        patch_id = doc.file(spdx_id("Patch", component, patch.path.name), f"./patches/{patch.path.name}", patch.path.read_bytes())
        doc.relate(patch_id, "PATCH_APPLIED", source_id)
    return source_id


def license_fields(components: list[str]) -> dict[str, str]:
    """What the components' modules state and their builds found in their licence files: declared by upstream,
    and concluded the same by this tool's check (builders/licenses.py)."""
    found = " AND ".join(dict.fromkeys(expression(upstream(c).licenses) for c in components))
    return {"licenseConcluded": found, "licenseDeclared": found}


def go_package(doc: Document, recipe: Recipe, component: str, built: dict[str, Any]) -> str:
    go = recipe.go_for(component)
    arch = toolchain_arch(built, recipe)
    return doc.package(spdx_id("Go", go.version, str(arch)), name="go", versionInfo=go.version, primaryPackagePurpose="APPLICATION",
                       downloadLocation=f"https://go.dev/dl/{go.tarball(arch)}", packageFileName=go.tarball(arch),
                       checksums=[{"algorithm": "SHA256", "checksumValue": go.sha256[arch]}])


def toolchain_arch(built: dict[str, Any], recipe: Recipe) -> Any:
    from .modes import resolve_mode

    return resolve_mode(built["mode"], recipe.target.arch).toolchain_arch(recipe.target.arch)


def image_package(doc: Document, name: str, image_id: str) -> str:
    return doc.package(spdx_id("Image", name), name=name, versionInfo=image_id, primaryPackagePurpose="CONTAINER",
                       checksums=[{"algorithm": "SHA256", "checksumValue": image_id.removeprefix("sha256:")}])


def write_json(path: Path, document: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(document, indent=2) + "\n")


# --------------------------------------------------------------------------- the artifacts' SBOMs


def write_deb_sbom(recipe: Recipe, component: str, deb: Path, staged: dict[str, Any], version: str) -> None:
    """version: the .deb's own (builders/deb.py names it)."""
    name = upstream(component).package.name
    package = {"name": name, "versionInfo": version, "primaryPackagePurpose": "INSTALL", "externalRefs": [purl_deb(recipe, name, version)], **license_fields([component])}
    document = sbom(deb, package, deb_files(deb, component), recipe, {component: staged}, int(staged["source_date_epoch"]))
    write_json(sbom_path(deb), document)


def write_tarball_sbom(recipe: Recipe, tarball: Path, staged: dict[str, dict[str, Any]], staging: Path, epoch: int) -> None:
    owners = {sha256_file(staging / c / b): c for c, s in staged.items() for b in s["binaries"]}
    package = {"name": "cri-o", "versionInfo": recipe.crio.version, "primaryPackagePurpose": "ARCHIVE", **license_fields(list(staged))}
    write_json(sbom_path(tarball), sbom(tarball, package, tarball_files(tarball, owners), recipe, staged, epoch))
