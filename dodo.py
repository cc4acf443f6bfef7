"""doit tasks: `doit list` shows them; `doit build:crio-1.18` builds one recipe."""
import sys

from builders import lifecycle, tasks
from builders.errors import BuildError
from builders.recipe import for_every_target, load_all
from builders.settings import load_settings
from builders.view import BuildView

lifecycle.install_signal_handlers()  # SIGTERM and SIGHUP clean up as Ctrl-C does
try:
    SETTINGS = load_settings()
    NEW_MINORS = tasks.requested_minors(sys.argv[1:])  # `doit new:1.38`: any minor, so only those asked for
    RECIPE_FILES = load_all(SETTINGS.recipes, empty_ok=bool(NEW_MINORS))  # each for its own target: crio-1.36 is Debian trixie arm64
    RECIPES = [r for recipe in RECIPE_FILES for r in for_every_target(recipe)]  # and crio-1.36@bookworm-armhf …
    tasks.check_requested(sys.argv[1:], RECIPES, RECIPE_FILES, SETTINGS.recipes)
except BuildError as error:
    sys.exit(f"error: {error}")

# backend: doit's state committed per task (builders/state.py), so a killed run keeps what it finished.
DOIT_CONFIG = {"default_tasks": ["about"], "verbosity": 2, "reporter": BuildView, "backend": "criobuild", "dep_file": ".doit.sqlite"}


def task_about():
    """Say what this tool builds and how (the default task: never a build)."""
    return tasks.about(RECIPE_FILES, SETTINGS)


def task_go():
    """Download, verify and unpack each pinned Go toolchain into the cache."""
    from builders.go_toolchain import go_task
    from builders.modes import resolve_mode

    wanted = {}
    for r in RECIPES:
        arch = resolve_mode(SETTINGS.mode, r.target.arch).toolchain_arch(r.target.arch)
        for go in r.toolchains():
            wanted[(go.version, arch)] = go
    for (_, arch), go in sorted(wanted.items()):
        yield go_task(go, arch, SETTINGS)


def task_source():
    """Fetch each component's pinned commit into the shared clone cache."""
    from builders import sources

    for recipe in RECIPES:
        for name in recipe.components:
            yield sources.source_task(recipe, name, SETTINGS)


def task_new():
    """Write the recipe of a new CRI-O minor from upstream: `doit new:1.38` (`--replace` writes an existing one again)."""
    from builders import new_recipe

    for minor in NEW_MINORS:
        yield new_recipe.new_task(minor, SETTINGS)


def task_pin():
    """Move every recipe (or one: `doit pin:crio-1.36`) to its newest cri-o patch tag; review the diff."""
    from builders import sources

    for recipe in RECIPE_FILES:
        yield sources.pin_task(recipe, SETTINGS)


def task_preflight():
    """Check the Docker engine, QEMU and disk for a recipe before its downloads start."""
    for recipe in RECIPES:
        yield tasks.preflight_task(recipe, SETTINGS)


def task_image():
    """Make each recipe's builder image: its base image and the packages its components build with."""
    for recipe in RECIPES:
        yield tasks.image_task(recipe, SETTINGS)


def task_govolume():
    """Copy each Go toolchain a recipe builds with into a Docker volume its builds mount."""
    for recipe in RECIPES:
        yield tasks.go_volume_task(recipe, SETTINGS)


def task_compile():
    """Build one component of a recipe in a container of its target into its staging tree."""
    for recipe in RECIPES:
        for component in recipe.components:
            yield tasks.compile_task(recipe, component, SETTINGS)


def task_deb():
    """Package each component of a recipe as a .deb."""
    from builders.deb import deb_task

    for recipe in RECIPES:
        for component in recipe.components:
            yield deb_task(recipe, component, SETTINGS)


def task_tarball():
    """Make a recipe's release tarball (binaries, configs, units, install script)."""
    from builders.tarball import tarball_task

    for recipe in RECIPES:
        yield tarball_task(recipe, SETTINGS)


def task_sums():
    """Write SHA256SUMS and manifest.json over a recipe's artifacts."""
    from builders.tarball import sums_task

    for recipe in RECIPES:
        yield sums_task(recipe, SETTINGS)


def task_build():
    """Build every artifact of a recipe: `doit build:crio-1.36` (`doit list --all build`: every recipe)."""
    for recipe in RECIPES:
        yield tasks.build_task(recipe, SETTINGS)


def task_check():
    """Checks before installing: `doit check:kernel [--config PATH] [--crio-version X.Y.Z|crio-1.36] [--json]`."""
    from builders import kernel_report

    yield {
        "name": "kernel",
        "doc": "can this kernel run CRI-O? (hugetlb first; exit 0 ready, 1 missing, 2 unreadable)",
        "actions": [(kernel_report.check_kernel_task, [], {"recipes": RECIPE_FILES})],
        "params": [
            {"name": "config", "long": "config", "default": "", "help": "kernel config from the target (plain or .gz); default: this machine"},
            {"name": "crio_version", "long": "crio-version", "default": "", "help": "CRI-O release or recipe name; default: newest recipe"},
            {"name": "json_output", "long": "json", "type": bool, "default": False, "help": "print JSON"},
        ],
        "uptodate": [False],
        "verbosity": 2,
    }


def task_accept():
    """Install a recipe's .debs in a clean container of its target and run them: `doit accept:crio-1.36`."""
    from builders.acceptance import accept_task

    for recipe in RECIPES:
        yield accept_task(recipe, SETTINGS)


def task_pod():
    """Boot a clean container with a recipe's .debs and run a pod with crictl, natively: `doit pod:crio-1.36@trixie-amd64`."""
    from builders.pod import pod_task

    for recipe in RECIPES:
        yield pod_task(recipe, SETTINGS)


def task_node():
    """Boot an emulated arm64 or armhf machine (QEMU, Debian's own kernel) with a recipe's .debs and run the pod test in it: `doit node:crio-1.36`."""
    from builders.pod import node_task

    for recipe in RECIPES:
        yield node_task(recipe, SETTINGS)  # amd64 too, which says to run `doit pod` instead


def task_sign():
    """Sign each built recipe's SHA256SUMS, SBOMs and provenance with CRIOBUILD_GPG_KEY (`doit build` does when it is set)."""
    from builders.attest import sign_task

    return sign_task(RECIPES, SETTINGS)


def task_verify():
    """Check a recipe's artifacts offline: `doit verify:crio-1.36 --key signer.asc` (sums, signatures, provenance, SBOMs)."""
    from builders.verify import verify_task

    for recipe in RECIPES:
        yield verify_task(recipe, SETTINGS)


def task_repo():
    """Signed apt repository of the built .debs in artifacts/apt/ (CRIOBUILD_GPG_KEY signs it)."""
    from builders.apt_repo import repo_task

    return repo_task(RECIPES, SETTINGS)
