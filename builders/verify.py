"""`doit verify:<recipe> [--key FILE]`: check a recipe's artifacts offline, as someone who installs them would.

Every sum in SHA256SUMS, no artifact left out of it; with a public key, every detached signature (gpgv); the
provenance's subjects are exactly the artifacts; each SBOM names its artifact's sha256, and each program in
an artifact embeds exactly the Go modules its SBOM lists; the pod test's report, when there is one, names
these very packages (and is signed like the rest). Every problem is named with its file.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from .attest import PROVENANCE, signed_files
from .errors import BuildError
from .gobuildinfo import is_go_program
from .pod_report import REPORT, report_path, stale_because
from .recipe import Recipe
from .sbom import deb_files, sbom_path, tarball_files
from .settings import Settings
from .files import sha256_file
from .tarball import ARTIFACT_SUFFIXES


def verify_task(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    return {
        "name": recipe.name,
        "doc": "check the artifacts offline: sums, signatures (--key FILE), provenance subjects, SBOMs against the programs",
        "actions": [(verify_artifacts, [recipe, settings])],
        "params": [{"name": "key", "long": "key", "default": "", "help": "the signer's OpenPGP public key (armored or binary); without it signatures are not checked"}],
        "uptodate": [False],
        "verbosity": 2,
    }


def verify_artifacts(recipe: Recipe, settings: Settings, key: str = "") -> TaskFailed | None:
    directory = settings.artifacts / recipe.name
    try:
        report = check_all(directory, Path(key) if key else None)
    except BuildError as e:
        return TaskFailed(str(e))
    problems = [line for line in report if line.startswith("✗")]
    print(f"{'verified' if not problems else 'NOT verified:'} {recipe.name} in {directory}")
    print("\n".join(f"  {line}" for line in report))
    if problems:
        hint = "these files are not what was built and signed: fetch them again from where they were published, and do not install them as they are"
        return TaskFailed(f"{len(problems)} problem{'s' * (len(problems) > 1)} in {directory}:\n" + "\n".join(problems) + f"\n  hint: {hint}")
    return None


def check_all(directory: Path, key: Path | None) -> list[str]:
    """One line per check: "✓ …" when it holds, "✗ <file>: …" for each problem."""
    sums = directory / "SHA256SUMS"
    if not sums.is_file():
        raise BuildError(f"cannot verify {directory} because it has no SHA256SUMS", hint="build it first (`doit build:<recipe>`), or point CRIOBUILD_ARTIFACTS at the downloaded artifacts")
    listed, report = read_sums(sums)
    report += check_sums(directory, listed)
    report += check_signatures(directory, key) if key else ["- signatures: not checked (give --key <the signer's public key>)"]
    report += check_provenance(directory, listed)
    report += check_sboms(directory, listed)
    report += check_pod_report(directory)
    return report


def read_sums(sums: Path) -> tuple[dict[str, str], list[str]]:
    listed, report = {}, []
    for n, line in enumerate(sums.read_text(errors="replace").splitlines(), 1):
        fields = line.split()
        if len(fields) != 2 or len(fields[0]) != 64:
            report.append(f"✗ SHA256SUMS: line {n} is not `<sha256>  <file>`: {line[:80]!r}")
            continue
        listed[fields[1].lstrip("*")] = fields[0]
    return listed, report


def check_sums(directory: Path, listed: dict[str, str]) -> list[str]:
    report = []
    for name, digest in listed.items():
        path = directory / name
        if not path.is_file():
            report.append(f"✗ {name}: missing (SHA256SUMS lists it)")
        elif sha256_file(path) != digest:
            report.append(f"✗ {name}: its sha256 is {sha256_file(path)}, SHA256SUMS says {digest}")
    artifacts = [p.name for p in directory.iterdir() if p.is_file() and (p.name.endswith(ARTIFACT_SUFFIXES) or p.name in ("manifest.json", PROVENANCE))]
    report += [f"✗ {name}: not in SHA256SUMS" for name in sorted(set(artifacts) - set(listed))]
    return report or [f"✓ {len(listed)} files match SHA256SUMS"]


def check_signatures(directory: Path, key: Path) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="criobuild-verify-") as tmp:
        keyring = keyring_of(key, Path(tmp))
        report = []
        for path in signed_files(directory) + pod_reports(directory):
            signature = path.with_name(path.name + ".asc")
            if not signature.is_file():
                report.append(f"✗ {signature.name}: missing (each of SHA256SUMS, the SBOMs, the provenance and the pod report is signed)")
                continue
            result = subprocess.run(["gpgv", "--keyring", str(keyring), str(signature), str(path)], capture_output=True, text=True)
            if result.returncode != 0:
                said = " ".join(line.removeprefix("gpgv: ") for line in result.stderr.strip().splitlines()[-2:])
                report.append(f"✗ {path.name}: its signature {signature.name} does not verify with {key}: gpgv says {said}")
    return report or [f"✓ {len(signed_files(directory) + pod_reports(directory))} signatures good by the key in {key}"]


def pod_reports(directory: Path) -> list[Path]:
    return [report_path(directory)] if report_path(directory).is_file() else []


def check_pod_report(directory: Path) -> list[str]:
    """The pod test's report, if `doit pod` ran: it must name these very packages (a rebuild drops it otherwise)."""
    if not pod_reports(directory):
        return [f"- {REPORT}: none (`doit pod` was not run on these packages)"]
    if why := stale_because(directory):
        return [f"✗ {REPORT}: does not speak for these packages because {why}"]
    return [f"✓ {REPORT} names these very packages by sha256"]


def keyring_of(key: Path, tmp: Path) -> Path:
    """The public key as a keyring gpgv reads (gpg --dearmor for an armored one)."""
    if not key.is_file():
        raise BuildError(f"cannot check signatures because the key {key} does not exist", hint="give the signer's public key file with --key")
    if not key.read_bytes().startswith(b"-----BEGIN PGP"):
        return key
    keyring = tmp / "key.gpg"
    result = subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "--output", str(keyring), str(key)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"cannot read the key {key} because gpg said: {result.stderr.strip()}", hint="give an OpenPGP public key (`gpg --export --armor <fingerprint>`)")
    return keyring


def check_provenance(directory: Path, listed: dict[str, str]) -> list[str]:
    path = directory / PROVENANCE
    if not path.is_file():
        return [f"✗ {PROVENANCE}: missing"]
    try:
        subjects = {s["name"]: s["digest"]["sha256"] for s in json.loads(path.read_text())["subject"]}
    except (ValueError, KeyError, TypeError) as e:
        return [f"✗ {PROVENANCE}: not an in-toto statement with subjects ({e})"]
    artifacts = {n: d for n, d in listed.items() if n != PROVENANCE}
    report = [f"✗ {PROVENANCE}: does not name {n} as a subject" for n in sorted(set(artifacts) - set(subjects))]
    report += [f"✗ {PROVENANCE}: names {n}, which is not an artifact" for n in sorted(set(subjects) - set(artifacts))]
    report += [f"✗ {PROVENANCE}: names {n} with sha256 {subjects[n]}, SHA256SUMS says {artifacts[n]}" for n in sorted(set(subjects) & set(artifacts)) if subjects[n] != artifacts[n]]
    return report or [f"✓ the provenance's {len(subjects)} subjects are exactly the artifacts"]


def check_sboms(directory: Path, listed: dict[str, str]) -> list[str]:
    report, programs, modules = [], 0, 0
    for name in sorted(n for n in listed if n.endswith((".deb", ".tar.gz"))):
        artifact = directory / name
        if not artifact.is_file():
            continue  # check_sums said so
        problems, counts = check_sbom(artifact)
        report += problems
        programs, modules = programs + counts[0], modules + counts[1]
    return report or [f"✓ each SBOM names its artifact; {programs} Go programs embed exactly the {modules} Go modules their SBOMs list"]


def check_sbom(artifact: Path) -> tuple[list[str], tuple[int, int]]:
    path = sbom_path(artifact)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return [f"✗ {path.name}: missing (every artifact has an SBOM)"], (0, 0)
    except ValueError as e:
        return [f"✗ {path.name}: not JSON ({e})"], (0, 0)
    described = next((p for p in document.get("packages", []) if p.get("SPDXID") == "SPDXRef-Artifact"), {})
    digest = next((c["checksumValue"] for c in described.get("checksums", []) if c.get("algorithm") == "SHA256"), None)
    if digest != sha256_file(artifact):
        return [f"✗ {path.name}: names sha256 {digest} for {artifact.name}, which is {sha256_file(artifact)}"], (0, 0)
    listed = sbom_modules(document)
    files = deb_files(artifact, "program") if artifact.name.endswith(".deb") else tarball_files(artifact, {})
    report, programs, count = [], 0, 0
    for f in files:
        info = f.go
        if info is None:
            if f.component and is_go_program(f.data):
                report.append(f"✗ {path.name}: {f.path} is a Go program whose build information cannot be read, so its modules cannot be checked against the SBOM")
            continue
        embedded = {f"{m.path}@{m.version}" for m in info.deps}
        in_sbom = listed.get(f.path, set())
        programs, count = programs + 1, count + len(embedded)
        if embedded != in_sbom:
            report.append(f"✗ {path.name}: {f.path} embeds {', '.join(sorted(embedded - in_sbom)) or 'nothing more'} beyond its SBOM, "
                          f"which lists {', '.join(sorted(in_sbom - embedded)) or 'nothing more'} that it does not embed")  # fmt: skip
    return report, (programs, count)


def sbom_modules(document: dict[str, Any]) -> dict[str, set[str]]:
    """fileName -> {"module@version"} its STATIC_LINK relationships name."""
    files = {f["SPDXID"]: f["fileName"] for f in document.get("files", [])}
    packages = {p["SPDXID"]: f"{p.get('name')}@{p.get('versionInfo')}" for p in document.get("packages", [])}
    linked: dict[str, set[str]] = {name: set() for name in files.values()}
    for r in document.get("relationships", []):
        if r.get("relationshipType") == "STATIC_LINK" and r.get("spdxElementId") in files:
            linked[files[r["spdxElementId"]]].add(packages.get(r.get("relatedSpdxElement"), "?"))
    return linked
