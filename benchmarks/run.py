"""Measure one recipe's build: cold per mode, the make-step floor, a warm no-op and a one-pin rebuild.

Run by hand, never in CI's pass/fail:

    python benchmarks/run.py --recipe crio-1.18 --modes qemu,cross --repin conmon=v2.0.18@<commit>
    python benchmarks/run.py --fixtures            # the test fixture upstreams, offline
    python benchmarks/run.py --shared              # reuse: fixture recipes that share components (below)

The recipe comes from CRIOBUILD_RECIPES (default recipes/); clones honour git's insteadOf, Go comes
from CRIOBUILD_GO_MIRROR, as for doit. Each mode builds cold: fresh cache, artifacts and doit state,
and its Go build-cache volume removed (builder images are reused and reported separately).
The floor is the time spent in the upstream make/script steps inside the build container (recorded
per step in the staging manifests); the pipeline is the wall time of one `doit compile:…` run of all
the recipe's components, and per component the wall time of its compile task (also in the manifests).
Then, in the last mode, `doit build:<recipe>` packages once (not timed), runs again as a warm no-op
(timed), and runs once more after --repin changed one component's pin (timed: that component's
compile, the packages and sums that depend on it).
Prints a table and writes benchmarks/results/<date>-<recipe>.json.

--shared measures content-keyed reuse (builders/store.py) on the fixture upstreams, offline: three recipes
that share their companions the way the real ones do (SHARED_RECIPES: conmon v2.0.19 in two, cni-plugins
v0.8.5, cri-tools v1.18.0 and runc in all three) compiled cold in one `doit` run, then one more recipe that
shares some of them. It reports the component builds asked for, the distinct builds done (staging manifests
without reused_from), the total wall time of the two runs, and that total over the distinct builds' own
make steps (the floor); and for the real recipes (recipes/, each on its own target), the component builds they
ask for and their distinct content keys, counted from the recipes, not built (GitHub is out of reach here).
Writes benchmarks/results/<date>-shared-fixtures.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import docker  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from builders.recipe import load_recipe  # noqa: E402
from builders.sources import rewrite_table, write_recipe  # noqa: E402

console = Console()


def doit(env: dict[str, str], db: Path, *tasks: str) -> float:
    """Run doit, returning its wall time; fail loudly if it fails."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "doit", "--db-file", str(db), *tasks], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"doit {' '.join(tasks)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return round(seconds, 2)


def fresh_env(work: Path, recipes: Path, mode: str) -> dict[str, str]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return os.environ | {
        "CRIOBUILD_RECIPES": str(recipes), "CRIOBUILD_CACHE": str(work / "cache"),
        "CRIOBUILD_ARTIFACTS": str(work / "artifacts"), "CRIOBUILD_MODE": mode, "CI": "true",
    }  # fmt: skip


def drop_go_cache_volume(mode: str) -> None:
    client = docker.from_env()
    for volume in client.volumes.list(filters={"name": f"criobuild-gocache-arm64-{mode}"}):
        volume.remove(force=True)


def component_times(artifacts: Path, recipe: str, component: str) -> dict[str, float]:
    manifest = json.loads((artifacts / recipe / "staging" / f"{component}.json").read_text())
    floor = round(sum(step["seconds"] for step in manifest["steps"]), 2)
    return {"pipeline_seconds": manifest["wall_seconds"], "floor_seconds": floor}


def measure_mode(mode: str, recipe: str, recipes: Path, workroot: Path) -> dict:
    work = workroot / mode
    env = fresh_env(work, recipes, mode)
    drop_go_cache_volume(mode)
    db = work / "doit.db"
    names = list(load_recipe(recipes / f"{recipe}.toml").components)
    console.print(f"[bold]{mode}[/]: preparing toolchain, sources and builder image (not timed)")
    doit(env, db, *(f"source:{recipe}:{c}" for c in names))
    prepare_images(env, db, [recipe])
    console.print(f"[bold]{mode}[/]: compile all {len(names)} (cold)")
    total = doit(env, db, *(f"compile:{recipe}:{c}" for c in names))
    components = {c: component_times(work / "artifacts", recipe, c) for c in names}
    floor = round(sum(c["floor_seconds"] for c in components.values()), 2)
    return {"cold_seconds": total, "floor_seconds": floor, "pipeline_over_floor": round(total / floor, 3), "components": components, "env": env, "db": db}


def prepare_images(env: dict[str, str], db: Path, recipes: list[str]) -> None:
    """Make the builder images and Go toolchain volumes (doit's image and govolume steps) outside the timed part."""
    started = time.monotonic()
    doit(env, db, *(f"{step}:{r}" for r in recipes for step in ("image", "govolume")))
    console.print(f"  images and toolchain ready in {time.monotonic() - started:.1f} s")


def repin(recipe_path: Path, spec: str) -> None:
    """--repin conmon=v2.0.18@<commit>: rewrite that component's tag and commit in a copy of the recipe."""
    component, _, pin = spec.partition("=")
    tag, _, commit = pin.partition("@")
    text = rewrite_table(recipe_path.read_text(), f"components.{component}", {"tag": tag, "commit": commit}, recipe_path)
    write_recipe(recipe_path, text)  # validated first


def fixture_recipes(root: Path) -> tuple[Path, str]:
    """Fixture upstreams and a served Go toolchain, as the tests use them; returns (recipes dir, repin spec)."""
    from tests.fixtures.images import TEST_PACKAGES
    from tests.fixtures.upstreams import write_recipe

    upstreams, go_table = fixture_upstreams(root)
    recipes = root / "recipes"
    write_recipe(recipes, upstreams, go_table, packages=TEST_PACKAGES)
    return recipes, f"conmon=v2.0.18@{upstreams['conmon'].tags['v2.0.18']}"


def fixture_upstreams(root: Path) -> tuple[dict, str]:
    """The fixture upstreams' git repositories and a local server of the Go toolchain (CRIOBUILD_GO_MIRROR)."""
    from builders.arch import Arch
    from tests.fixtures.go_tarball import build_go_tarballs
    from tests.fixtures.http_server import LocalHTTPServer
    from tests.fixtures.upstreams import make_upstreams

    shutil.rmtree(root, ignore_errors=True)
    upstreams = make_upstreams(root / "upstreams")
    go = build_go_tarballs()
    (root / "www").mkdir()
    server = LocalHTTPServer(root / "www")
    server.start()
    for arch in (Arch.arm64, Arch.amd64):
        shutil.copy(go.path[arch], server.root)
    os.environ["CRIOBUILD_GO_MIRROR"] = server.url
    return upstreams, go.toml()


# Recipes of the 1.18 shape that share components as the real ones do (write_recipe's pins); the last is "one more".
SHARED_RECIPES = {
    "crio-1.18": {"crio_tag": "v1.18.1"},
    "crio-1.19": {"crio_tag": "v1.18.0"},
    "crio-1.20": {"crio_tag": None, "crio_version": "1.18.1", "conmon_tag": "v2.0.18"},  # the branch's tip
    "crio-1.21": {"crio_tag": "v1.18.0", "conmon_tag": "v2.0.18", "plugins_tag": "v0.8.4"},
}


def measure_shared(mode: str, workroot: Path) -> dict:
    """Compile the first recipes cold in one run, then the last one: what was built, what was reused, how long."""
    from tests.fixtures.images import TEST_PACKAGES
    from tests.fixtures.upstreams import write_recipe

    upstreams, go_table = fixture_upstreams(workroot / "fixtures")
    work = workroot / "shared"
    env = fresh_env(work, work / "recipes", mode) | {"CRIOBUILD_BASE": "bootstrap", "CRIOBUILD_MIN_FREE_GIB": "1"}
    for name, pins in SHARED_RECIPES.items():
        write_recipe(work / "recipes", upstreams, go_table, name=name, packages=TEST_PACKAGES, **pins)
    names = list(SHARED_RECIPES)
    tasks = {r: [f"compile:{r}:{c}" for c in load_recipe(work / "recipes" / f"{r}.toml").components] for r in names}
    db = work / "doit.db"
    console.print(f"[bold]{mode}[/]: sources, builder image and toolchain for {len(names)} recipes (not timed)")
    doit(env, db, *(t.replace("compile:", "source:") for r in names for t in tasks[r]))
    prepare_images(env, db, names)
    console.print(f"[bold]{mode}[/]: compile {', '.join(names[:-1])} (cold, one run), then {names[-1]}")
    cold = doit(env, db, *(t for r in names[:-1] for t in tasks[r]))
    more = doit(env, db, *tasks[names[-1]])
    manifests = [json.loads((work / "artifacts" / r / "staging" / f"{t.rsplit(':', 1)[1]}.json").read_text()) for r in names for t in tasks[r]]
    built = [m for m in manifests if "reused_from" not in m]
    floor = round(sum(step["seconds"] for m in built for step in m["steps"]), 2)
    total = round(cold + more, 2)
    return {
        "mode": mode, "recipes": SHARED_RECIPES, "builds_asked": len(manifests), "distinct_builds_done": len(built),
        "reused": len(manifests) - len(built), "distinct_keys": len({m["content_key"] for m in manifests}),
        "cold_run_seconds": cold, "one_more_recipe_seconds": more, "total_seconds": total, "floor_seconds": floor,
        "total_over_floor": round(total / floor, 3), "within_1_10": total <= 1.10 * floor,
        "go_build_cache": "the machine's shared Go build-cache volume, not emptied (other work uses it)",
    } | real_recipes_sharing(mode)  # fmt: skip


def real_recipes_sharing(mode: str) -> dict:
    """How many component builds the real recipes ask for on their own target and how many distinct content keys
    they have (counted, not built: the builder image stands as its Dockerfile, one base image id for all)."""
    from builders.build import build_inputs, builder_setup
    from builders.images import base_image_name, builder_dockerfile
    from builders.modes import resolve_mode
    from builders.recipe import load_all

    recipes, keys = load_all(REPO / "recipes"), []
    for recipe in recipes:
        chosen = resolve_mode(mode, recipe.target.arch)
        base = base_image_name(chosen.builder_target(recipe.target))
        image = builder_dockerfile(base, "sha256:base", chosen.build_packages(recipe), builder_setup(chosen))
        keys += [json.dumps(build_inputs(recipe, c, chosen, image), sort_keys=True) for c in recipe.components]
    return {"real_recipes": len(recipes), "real_builds_asked": len(keys), "real_distinct_keys": len(set(keys))}


def report_shared(results: dict) -> None:
    for key in ("builds_asked", "distinct_builds_done", "reused", "distinct_keys", "cold_run_seconds", "one_more_recipe_seconds",
                "total_seconds", "floor_seconds", "total_over_floor", "within_1_10", "real_recipes", "real_builds_asked", "real_distinct_keys"):  # fmt: skip
        console.print(f"{key}: {results[key]}")


def report(results: dict) -> None:
    table = Table(title=f"{results['recipe']} on {results['cores']} cores ({results['machine']})")
    for column in ("measure", *results["modes"]):
        table.add_column(column, justify="right")
    for component in next(iter(results["modes"].values()))["components"]:
        table.add_row(f"{component}: pipeline / floor (s)", *(f"{m['components'][component]['pipeline_seconds']} / {m['components'][component]['floor_seconds']}" for m in results["modes"].values()))
    table.add_row("cold build, every component (s)", *(str(m["cold_seconds"]) for m in results["modes"].values()))
    table.add_row("floor: make steps only (s)", *(str(m["floor_seconds"]) for m in results["modes"].values()))
    table.add_row("pipeline / floor", *(str(m["pipeline_over_floor"]) for m in results["modes"].values()))
    console.print(table)
    for name, value in results["ratios"].items():
        console.print(f"{name}: {value}")
    build = f"doit build:{results['recipe']}"
    console.print(f"warm no-op `{build}` ({results['warm_mode']}): {results['warm_noop_seconds']} s")
    if results.get("repin_seconds") is not None:
        console.print(f"`{build}` after repinning {results['repin']} ({results['warm_mode']}): {results['repin_seconds']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="crio-1.18")
    parser.add_argument("--modes", default="qemu,cross")
    parser.add_argument("--repin", help="component=<tag>@<commit> for the one-pin rebuild")
    parser.add_argument("--fixtures", action="store_true", help="build the test fixture upstreams (offline)")
    parser.add_argument("--shared", action="store_true", help="reuse across fixture recipes that share components (first mode of --modes)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "criobuild-bench")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    if args.shared:
        results = {"date": datetime.date.today().isoformat(), "cores": os.cpu_count(), "machine": platform.machine()} | measure_shared(args.modes.split(",")[0], args.workdir)
        report_shared(results)
        path = args.out / f"{results['date']}-shared-fixtures.json"
        path.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"wrote {path}")
        return
    recipes = args.workdir / "recipes"
    shutil.rmtree(recipes, ignore_errors=True)
    if args.fixtures:
        recipes, fixture_repin = fixture_recipes(args.workdir / "fixtures")
        args.repin = args.repin or fixture_repin
    else:
        source = Path(os.environ.get("CRIOBUILD_RECIPES") or REPO / "recipes") / f"{args.recipe}.toml"
        recipes.mkdir(parents=True)
        shutil.copy(source, recipes)
    modes = {mode: measure_mode(mode, args.recipe, recipes, args.workdir) for mode in args.modes.split(",")}

    warm_mode = list(modes)[-1]
    env, db = modes[warm_mode].pop("env"), modes[warm_mode].pop("db")
    build = f"build:{args.recipe}"
    console.print(f"[bold]{warm_mode}[/]: packaging once (not timed), then a warm no-op `doit {build}`")
    doit(env, db, build)
    warm = doit(env, db, build)
    repin_seconds = None
    if args.repin:
        console.print(f"[bold]{warm_mode}[/]: `doit {build}` after repinning {args.repin}")
        repin(recipes / f"{args.recipe}.toml", args.repin)
        repin_seconds = doit(env, db, build)
    for m in modes.values():
        m.pop("env", None), m.pop("db", None)

    ratios = {}
    if "qemu" in modes and "cross" in modes:
        ratios["qemu / cross (cold)"] = round(modes["qemu"]["cold_seconds"] / modes["cross"]["cold_seconds"], 2)
    results = {
        "date": datetime.date.today().isoformat(), "recipe": args.recipe, "fixtures": args.fixtures,
        "go": load_recipe(recipes / f"{args.recipe}.toml").go.version,
        "cores": os.cpu_count(), "machine": platform.machine(), "modes": modes, "ratios": ratios,
        "warm_mode": warm_mode, "warm_noop_seconds": warm, "repin": args.repin, "repin_seconds": repin_seconds,
    }  # fmt: skip
    report(results)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-fixtures" if args.fixtures else ""
    path = args.out / f"{results['date']}-{args.recipe}{suffix}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
