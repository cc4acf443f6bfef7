"""A signed apt repository made from the built .debs, with Debian's own tools (apt-ftparchive, gpg).

    artifacts/apt/
      criobuild-archive-keyring.gpg       the public key, binary, for `signed-by=`
      criobuild-archive-keyring.asc       the same key, armored, for people
      dists/<suite>/{Release,InRelease,Release.gpg}
      dists/<suite>/<recipe>/binary-<arch>/{Packages,Packages.gz,Packages.xz,Release}
      pool/<recipe>/<first letter>/<source package>/<file>.deb

The suite is each recipe's target suite (bookworm), the architectures the recipes' targets, and each
CRI-O minor its own component, named after its recipe (crio-1.36). A node subscribes to one minor
(`deb [signed-by=…] <url> bookworm crio-1.36`): apt upgrades it to every patch release of that minor
and never to the next minor, whose packages are in another component it does not read (the kubelet's
version skew); moving on is a deliberate edit of that line. Each component has its own pool, so two
minors may pin the same conmon without sharing (or fighting over) a file.

The key is given by the user (CRIOBUILD_GPG_KEY: a key id or fingerprint of a secret key in gpg's
keyring; GNUPGHOME is honoured; CRIOBUILD_GPG_PASSPHRASE if the key has one). The repository is built
in a temporary directory next to the output and swapped in at the end; it holds what artifacts/ holds.
"""
from __future__ import annotations

import gzip
import lzma
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .actions import as_action
from .errors import PackageError
from .files import dir_atomically, sha256_file
from .recipe import Recipe, recipe_sort_key
from .settings import Settings

ORIGIN = "criobuild"
KEYRING = "criobuild-archive-keyring.gpg"
KEYRING_ASC = "criobuild-archive-keyring.asc"
TOOLS = {"apt-ftparchive": "apt-utils", "gpg": "gnupg", "gpgv": "gpgv", "dpkg-deb": "dpkg"}
# What apt takes as a component: one word of letters, digits and . + _ - (no spaces, no slashes).
COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$")


class Place(NamedTuple):
    """Where a .deb goes: the suite (the recipe's target release) and the component (the recipe, one CRI-O minor)."""

    suite: str
    component: str


def component_of(recipe: Recipe) -> str:
    """The recipe's name without its target: crio-1.36 for crio-1.36@bookworm-armhf too (suites and architectures differ)."""
    return recipe.base_name


def component_order(component: str) -> tuple[tuple[int, ...], str]:
    """crio-1.9 before crio-1.10."""
    return recipe_sort_key(Path(component)), component


def repo_dir(settings: Settings, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("CRIOBUILD_APT_REPO") or settings.artifacts / "apt").absolute()


def repo_task(recipes: list[Recipe], settings: Settings) -> dict[str, Any]:
    """`doit repo`: every built recipe's .debs as one signed apt repository (a dists/<suite> per target suite, a component per recipe)."""

    suites = ", ".join(sorted({r.target.suite for r in recipes})) or "no suite"
    return {
        "doc": f"signed apt repository ({suites}; a component per CRI-O minor) of the built .debs in {repo_dir(settings)}; key from CRIOBUILD_GPG_KEY",
        "actions": [(as_action(build_repo_from_env), [recipes, settings])],
        "uptodate": [False],
        "verbosity": 2,
    }


def build_repo_from_env(recipes: list[Recipe], settings: Settings, env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    key_id = env.get("CRIOBUILD_GPG_KEY", "").strip()
    if not key_id:
        raise PackageError(
            "cannot sign the apt repository because no key was given",
            hint="set CRIOBUILD_GPG_KEY to the fingerprint of a secret key in your keyring (`gpg --list-secret-keys`); "
            "make one with `gpg --quick-gen-key 'criobuild archive <you@example.org>' ed25519 sign never`",
        )
    out = build_repo(recipes, settings, key_id=key_id, out=repo_dir(settings, env), passphrase=env.get("CRIOBUILD_GPG_PASSPHRASE"))
    print_usage(out, recipes)


def build_repo(
    recipes: list[Recipe],
    settings: Settings,
    *,
    key_id: str,
    suite: str | None = None,
    out: Path | None = None,
    passphrase: str | None = None,
) -> Path:
    """Write a signed repository of the recipes' .debs (those targeting `suite`, default every suite) to out:
    dists/<suite>/<recipe>/…, one component per recipe."""
    check_tools()
    out = (out or repo_dir(settings)).absolute()
    if suite is not None:
        chosen = [r for r in recipes if r.target.suite == suite]
        if not chosen:
            raise PackageError(
                f"cannot make the apt repository for suite {suite!r} because no recipe targets it",
                hint=f"recipes target: {', '.join(sorted({r.target.suite for r in recipes})) or 'nothing'}",
            )
        recipes = chosen
    check_components(recipes)
    fingerprint = resolve_key(key_id)
    debs = collect_debs(recipes, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    with dir_atomically(out) as tmp:
        pool = fill_pool(tmp, debs)
        for suite_name, archs in sorted(suite_archs(recipes, debs).items()):
            components = {place.component: {pool[d] for d in debs if debs[d] == place} for place in debs.values() if place.suite == suite_name}
            write_suite(tmp, suite_name, archs, components, fingerprint, passphrase)
        export_key(fingerprint, tmp)
        for suite_name in sorted({place.suite for place in debs.values()}):
            verify_suite(tmp / "dists" / suite_name, tmp / KEYRING)
    return out


# -- inputs ------------------------------------------------------------------------------------------


def check_tools() -> None:
    for tool, package in TOOLS.items():
        if not shutil.which(tool):
            raise PackageError(f"cannot make the apt repository because {tool} is not installed", hint=f"sudo apt-get install {package}")


def gnupg_home() -> str:
    return os.environ.get("GNUPGHOME") or str(Path.home() / ".gnupg")


def resolve_key(key_id: str, what: str = "sign the apt repository") -> str:
    """The fingerprint of the one secret key that key_id names (a key id, fingerprint or user id)."""
    result = run_gpg(["--with-colons", "--list-secret-keys", "--", key_id], check=False)
    fingerprints: list[str] = []
    expect_fpr = False
    for line in result.stdout.splitlines():
        fields = line.split(":")
        if fields[0] == "sec":
            expect_fpr = True
        elif fields[0] == "fpr" and expect_fpr:
            fingerprints.append(fields[9])
            expect_fpr = False
    if not fingerprints:
        raise PackageError(
            f"cannot {what} because key {key_id!r} is not in the secret keyring {gnupg_home()}",
            hint="import it (`gpg --import private-key.asc`), or point GNUPGHOME at the keyring that holds it; "
            "`gpg --list-secret-keys` shows what is there",
        )
    if len(fingerprints) > 1:
        raise PackageError(
            f"cannot {what} because key {key_id!r} matches {len(fingerprints)} secret keys ({', '.join(fingerprints)})",
            hint="set CRIOBUILD_GPG_KEY to the full fingerprint of one of them",
        )
    return fingerprints[0]


def check_components(recipes: list[Recipe]) -> None:
    """Each recipe becomes a component: its name must be one apt reads, and one recipe per name."""
    seen: dict[str, Recipe] = {}
    for r in recipes:
        component = component_of(r)
        if not COMPONENT_RE.match(component):
            raise PackageError(
                f"cannot make the apt repository because recipe {r.path} would be component {component!r}, which apt cannot read",
                hint="name the recipe file with letters, digits, '.', '+', '_' and '-' only, like crio-1.36.toml",
            )
        first = seen.setdefault(component, r)
        if first is not r and first.path != r.path:
            raise PackageError(
                f"cannot make the apt repository because {first.path} and {r.path} would both be component {component!r}",
                hint="give each CRI-O minor one recipe (rename one of them)",
            )


def collect_debs(recipes: list[Recipe], settings: Settings) -> dict[Path, Place]:
    """Each recipe's packages (as deb_task names them) -> the suite and component they go to; recipes not built are skipped."""
    from .deb import deb_path

    found: dict[Path, Place] = {}
    by_name: dict[tuple[str, str], Path] = {}
    for recipe in recipes:
        wanted = [deb_path(recipe, c, settings) for c in recipe.components]
        present = [d for d in wanted if d.is_file()]
        if not present:
            continue
        if len(present) < len(wanted):
            missing = ", ".join(d.name for d in wanted if d not in present)
            raise PackageError(
                f"cannot make the apt repository because {settings.artifacts / recipe.name} lacks some of {recipe.name}'s packages: {missing}",
                hint=f"run `doit build:{recipe.name}` first",
            )
        place = Place(recipe.target.suite, component_of(recipe))
        for deb in present:
            # Two minors pinning the same conmon each keep their own copy, in their own component's pool;
            # within one component a name and version is one file (the same recipe given twice).
            earlier = by_name.get((place.component, deb.name))
            if earlier is not None and earlier != deb:
                if sha256_file(earlier) != sha256_file(deb):
                    print(f"note: {deb.name} differs between {earlier.parent} and {deb.parent}; the apt repository gets {deb.parent}'s", file=sys.stderr)
                del found[earlier]
            by_name[(place.component, deb.name)] = deb
            found[deb] = place
    if not found:
        dirs = " or ".join(str(settings.artifacts / r.name) for r in recipes) or str(settings.artifacts)
        first = recipes[0].name if recipes else "crio-1.18"
        raise PackageError(f"cannot make the apt repository because there are no .debs in {dirs}", hint=f"run `doit build:{first}` first")
    return found


def suite_archs(recipes: list[Recipe], debs: dict[Path, Place]) -> dict[str, list[str]]:
    built = {place.suite for place in debs.values()}
    archs: dict[str, set[str]] = {}
    for r in recipes:
        if r.target.suite in built:
            archs.setdefault(r.target.suite, set()).add(r.target.arch.to_deb())
    return {s: sorted(a) for s, a in archs.items()}


# -- the repository ------------------------------------------------------------------------------------


def control_fields(deb: Path, *names: str) -> dict[str, str]:
    result = run(["dpkg-deb", "--show", "--showformat=" + "".join(f"${{{n}}}\\n" for n in names), str(deb)])
    return dict(zip(names, result.stdout.split("\n")))


def pool_dir(component: str, source: str) -> str:
    """Debian's pool layout, a pool per component: pool/crio-1.36/c/cri-o/, pool/crio-1.36/libf/libfoo/."""
    prefix = source[:4] if source.startswith("lib") else source[0]
    return f"pool/{component}/{prefix}/{source}"


def fill_pool(root: Path, debs: dict[Path, Place]) -> dict[Path, str]:
    """Link (or copy) each .deb into its component's pool; return deb -> its pool path relative to root."""
    placed: dict[Path, str] = {}
    for deb, place in debs.items():
        fields = control_fields(deb, "Package", "Source")
        source = (fields.get("Source") or fields["Package"]).split(" ", 1)[0]
        rel = f"{pool_dir(place.component, source)}/{deb.name}"
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(deb, dest)
        except OSError:
            shutil.copy2(deb, dest)
        placed[deb] = rel
    return placed


def write_suite(root: Path, suite: str, archs: list[str], components: dict[str, set[str]], fingerprint: str, passphrase: str | None) -> None:
    """dists/<suite>: each component's Packages per architecture (empty where it has none), then the signed Release."""
    dist = root / "dists" / suite
    order = sorted(components, key=component_order)
    for component in order:
        files = components[component]
        for arch in archs:
            index = run(["apt-ftparchive", "--arch", arch, "packages", f"pool/{component}"], cwd=root).stdout
            stanzas = [s for s in index.split("\n\n") if s.strip() and stanza_field(s, "Filename") in files]
            text = "\n\n".join(s.strip("\n") for s in stanzas) + ("\n" if stanzas else "")
            binary = dist / component / f"binary-{arch}"
            binary.mkdir(parents=True, exist_ok=True)
            write_indexes(binary / "Packages", text.encode())
            (binary / "Release").write_text(
                f"Archive: {suite}\nOrigin: {ORIGIN}\nLabel: {ORIGIN}\nComponent: {component}\nArchitecture: {arch}\n"
            )
    options = {
        "Origin": ORIGIN,
        "Label": ORIGIN,
        "Suite": suite,
        "Codename": suite,
        "Architectures": " ".join(archs),
        "Components": " ".join(order),
        "Description": "CRI-O, conmon, CNI plugins and cri-tools built from source by criobuild; a component per CRI-O minor",
    }
    argv = ["apt-ftparchive"]
    for key, value in options.items():
        argv += ["-o", f"APT::FTPArchive::Release::{key}={value}"]
    release = run([*argv, "release", "."], cwd=dist).stdout
    (dist / "Release").write_text(release)
    sign = ["--local-user", fingerprint, "--digest-algo", "SHA512"]
    run_gpg([*sign, "--clearsign", "--output", str(dist / "InRelease"), str(dist / "Release")], passphrase=passphrase)
    run_gpg([*sign, "--armor", "--detach-sign", "--output", str(dist / "Release.gpg"), str(dist / "Release")], passphrase=passphrase)


def stanza_field(stanza: str, name: str) -> str | None:
    for line in stanza.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return None


def write_indexes(path: Path, data: bytes) -> None:
    """Packages plus .gz and .xz, compressed reproducibly (no name or time in the gzip header)."""
    path.write_bytes(data)
    with path.with_name(path.name + ".gz").open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(data)
    path.with_name(path.name + ".xz").write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ))


def export_key(fingerprint: str, root: Path) -> None:
    binary = run_gpg(["--export", "--export-options", "export-minimal", fingerprint], text=False).stdout
    (root / KEYRING).write_bytes(binary)
    armored = run_gpg(["--armor", "--export", "--export-options", "export-minimal", fingerprint]).stdout
    (root / KEYRING_ASC).write_text(armored)


def verify_suite(dist: Path, keyring: Path) -> None:
    """What apt will do: check InRelease and Release.gpg against the exported keyring alone."""
    for argv in (["gpgv", "--keyring", str(keyring), str(dist / "InRelease")],
                 ["gpgv", "--keyring", str(keyring), str(dist / "Release.gpg"), str(dist / "Release")]):  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise PackageError(
                f"the apt repository's signature does not verify because gpgv said: {result.stderr.strip()}",
                hint="check that the key can sign and has not expired (`gpg --list-secret-keys --with-subkey-fingerprints`)",
            )


def built_components(out: Path, recipes: list[Recipe]) -> dict[str, list[str]]:
    """suite -> the components (CRI-O minors) the repository in out has for it, oldest first."""
    found: dict[str, set[str]] = {}
    for r in recipes:
        if (out / "dists" / r.target.suite / component_of(r)).is_dir():
            found.setdefault(r.target.suite, set()).add(component_of(r))
    return {suite: sorted(components, key=component_order) for suite, components in sorted(found.items())}


def print_usage(out: Path, recipes: list[Recipe]) -> None:
    url = "https://<your host>/<path>"
    built = built_components(out, recipes)
    listing = "; ".join(f"{suite}: {' '.join(components)}" for suite, components in built.items())
    print(f"apt repository in {out} ({listing}); serve that directory over HTTP(S).")
    print("A node subscribes to one CRI-O minor (a component) and gets its patch releases; the next minor is an edit of the deb line.")
    for suite, components in built.items():
        print(f"On a {suite} Pi, for {components[-1]} (another minor: its component in place of {components[-1]}):")
        for line in pi_owner_lines(url, suite, components[-1]):
            print(f"  {line}")
    print("No apt preference is needed: cri-o depends on this repository's runtimes, conmon and CNI plugins by names of their own.")


def pi_owner_lines(url: str, suite: str, component: str) -> list[str]:
    """The commands a Raspberry Pi owner types to follow one CRI-O minor (the README shows the same ones)."""
    return [
        f"sudo install -d /etc/apt/keyrings && curl -fsSL {url}/{KEYRING} | sudo tee /etc/apt/keyrings/criobuild.gpg >/dev/null",
        f'echo "deb [signed-by=/etc/apt/keyrings/criobuild.gpg] {url} {suite} {component}" | sudo tee /etc/apt/sources.list.d/criobuild.list',
        "sudo apt-get update && sudo apt-get install cri-o",
    ]


# -- helpers -------------------------------------------------------------------------------------------


def run(argv: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise PackageError(f"cannot make the apt repository because `{' '.join(argv)}` returned {result.returncode}: {result.stderr.strip()}")
    return result


def run_gpg(args: list[str], *, check: bool = True, text: bool = True, passphrase: str | None = None, what: str = "sign the apt repository") -> subprocess.CompletedProcess[Any]:
    argv = ["gpg", "--batch", "--no-tty", "--yes"]
    if passphrase is not None:
        argv += ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
    argv += args
    data: Any = passphrase if passphrase is not None else None
    if data is not None and not text:
        data = data.encode()
    result = subprocess.run(argv, input=data, capture_output=True, text=text)
    if check and result.returncode != 0:
        err = result.stderr if text else result.stderr.decode(errors="replace")
        raise PackageError(
            f"cannot {what} because `gpg {' '.join(args[:3])} …` returned {result.returncode}: {err.strip()}",
            hint=f"the keyring is {gnupg_home()}; a key with a passphrase needs CRIOBUILD_GPG_PASSPHRASE",
        )
    return result
