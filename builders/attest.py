"""What a recipe's artifacts say about themselves: SLSA v1 provenance (an in-toto Statement, made with the
in-toto-attestation models) and detached OpenPGP signatures (gpg, as the apt repository is signed)."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement

from .actions import as_action
from .apt_repo import resolve_key, run_gpg
from .errors import PackageError
from .files import file_atomically
from .pod_report import report_path, write_report

PROVENANCE = "provenance.intoto.json"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://criobuild.invalid/build-types/recipe/v1"  # what a recipe and `doit build:<recipe>` define
BUILDER_ID = "https://criobuild.invalid/builder"


def tool_version() -> str:
    try:
        return version("criobuild")
    except PackageNotFoundError:
        return "unknown"


def provenance(manifest: dict[str, Any], subjects: dict[str, str]) -> dict[str, Any]:
    """The statement: every artifact by sha256 as a subject; the recipe (and its sha256), target and mode as the
    build definition; sources, patches and Go toolchains as resolved dependencies; the images as the builder's."""
    recipe = manifest["recipe"]
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"recipe": recipe["name"], "target": recipe["target"], "mode": manifest["mode"]},
            "internalParameters": {"sourceDateEpoch": str(manifest["source_date_epoch"])},  # a string: Struct numbers are floats
            "resolvedDependencies": [{"name": recipe["file"], "digest": {"sha256": recipe["sha256"]}}, *sources(manifest), *toolchains(manifest)],
        },
        "runDetails": {
            "builder": {"id": f"{BUILDER_ID}/{manifest['mode']}", "version": {"criobuild": tool_version()}, "builderDependencies": images(manifest)},
        },
    }
    json_format.ParseDict(predicate, provenance_pb2.Provenance())  # refuses what SLSA v1 does not define
    statement = Statement([ResourceDescriptor(name=n, digest={"sha256": d}).pb for n, d in sorted(subjects.items())], PREDICATE_TYPE, predicate)
    statement.validate()
    return json_format.MessageToDict(statement.pb)


def sources(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for name, c in manifest["components"].items():
        ref = f"refs/tags/{c['tag']}" if c.get("tag") else f"refs/heads/{c['branch']}"
        found.append({"name": name, "uri": f"git+{c['repo']}@{ref}", "digest": {"gitCommit": c["commit"]}})
        found += [{"name": f"{name}: {p['file']}", "digest": {"sha256": p["sha256"]}} for p in c.get("patches") or []]
    return found


def toolchains(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": f"go {go['version']}", "uri": f"https://go.dev/dl/{go['tarball']}", "digest": {"sha256": go["sha256"]}} for go in manifest["go"] if go.get("sha256")]


def images(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    builders = manifest["builder_image"] if isinstance(manifest["builder_image"], list) else [manifest["builder_image"]]
    return [{"name": i["name"], "digest": {"sha256": i["id"].removeprefix("sha256:")}} for i in [*builders, manifest["base_image"]]]


def provenance_text(manifest: dict[str, Any], subjects: dict[str, str]) -> str:
    return json.dumps(provenance(manifest, subjects), indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------- signatures


def signed_files(directory: Path) -> list[Path]:
    """What gets a detached signature: SHA256SUMS (which covers everything else), each SBOM and the provenance."""
    return [directory / "SHA256SUMS", *sorted(directory.glob("*.spdx.json")), directory / PROVENANCE]


def sign_artifacts(directory: Path, env: Mapping[str, str] | None = None) -> list[Path]:
    """<file>.asc beside each of signed_files, by CRIOBUILD_GPG_KEY; nothing without a key."""
    return sign_files(signed_files(directory), f"sign the artifacts in {directory}", env)


def sign_file(path: Path, env: Mapping[str, str] | None = None) -> Path | None:
    """<path>.asc by CRIOBUILD_GPG_KEY; None without a key."""
    return next(iter(sign_files([path], f"sign {path}", env)), None)


def write_pod_report(directory: Path, report: dict[str, Any], tested: list[Path]) -> list[Path]:
    """`doit pod`'s report (builders/pod_report.py), signed when CRIOBUILD_GPG_KEY is set: the files written."""
    path = write_report(directory, report, tested)
    signature = sign_file(path)
    return [path] + ([signature] if signature else [])


def sign_files(paths: list[Path], what: str, env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    key_id = env.get("CRIOBUILD_GPG_KEY", "").strip()
    if not key_id:
        return []
    fingerprint = resolve_key(key_id, what)
    signatures = []
    for path in paths:
        signature = path.with_name(path.name + ".asc")
        with file_atomically(signature) as (_, partial):
            run_gpg(["--local-user", fingerprint, "--armor", "--detach-sign", "--yes", "--output", str(partial), str(path)], passphrase=env.get("CRIOBUILD_GPG_PASSPHRASE"), what=what)
        signatures.append(signature)
    return signatures


def sign_task(recipes: list[Any], settings: Any) -> dict[str, Any]:

    return {
        "doc": "sign every built recipe's SHA256SUMS, SBOMs, provenance and pod report with CRIOBUILD_GPG_KEY (`doit build` signs when it is set)",
        "actions": [(as_action(sign_built), [recipes, settings])],
        "uptodate": [False],
        "verbosity": 2,
    }


def sign_built(recipes: list[Any], settings: Any) -> None:
    """Detached signatures in each artifacts/<recipe>/ that has a SHA256SUMS (downloaded artifacts too)."""
    built = [settings.artifacts / r.name for r in recipes if (settings.artifacts / r.name / "SHA256SUMS").is_file()]
    if not built:
        raise PackageError(f"cannot sign because no recipe in {settings.artifacts} has a SHA256SUMS", hint="build one first: `doit build:<recipe>`")
    if not os.environ.get("CRIOBUILD_GPG_KEY", "").strip():
        raise PackageError("cannot sign because no key was given", hint="set CRIOBUILD_GPG_KEY to the fingerprint of a secret key in your keyring (`gpg --list-secret-keys`)")
    for directory in built:
        report = [report_path(directory)] if report_path(directory).is_file() else []  # `doit pod`'s, if it ran
        for signature in sign_artifacts(directory) + sign_files(report, f"sign {directory / 'pod-report.json'}"):
            print(f"signed: {directory / signature.name}")
