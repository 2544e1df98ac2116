"""Install time of cml-bot as the Action does it, side by side in one run, against CML's own install.

    python bench/install.py             # --repeat 3 by default; the scenarios take turns each round

Each figure is the wall time until ``cml-bot --version`` runs from a fresh virtualenv:

- cold pip: ``python -m venv`` + ``pip install --no-cache-dir`` (what the Action did before);
- cold uv: the "Install cml-bot" script of action.yml, run as the Action runs it, with an empty uv
  cache (``uv venv`` + ``uv pip install``);
- warm cache: what a cache hit of ``actions/cache`` does: unpack the saved virtualenv (tar + zstd,
  the format actions/cache uses; saved after a first run has imported and so compiled cml-bot's
  modules, as the Action's post step saves it) and run the "Check cml-bot" step. The download of the archive
  from GitHub's cache service is not part of it (its size is printed);
- CML: ``npm ci --omit=dev`` of @dvcorg/cml (an empty npm cache), where the npm registry serves it.

cml-bot is not on PyPI yet, so every run installs the wheel built from this checkout, with all its
dependencies downloaded from PyPI. Installers run without this machine's pip or uv configuration
(no local mirrors, no find-links), from the real index.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CML_PACKAGE = "@dvcorg/cml"
CML_VERSION = "0.20.6"
CML_REFERENCE = 15.0  # s: npm ci --omit=dev of CML 0.20.6 as measured in issue 14 on this kind of machine
UV_VERSION = "0.13.9"  # the version action.yml's setup-uv step installs
ARCHIVE = "cache.tzst"  # in the work folder: the cached virtualenv


def clean_env(work: Path) -> dict[str, str]:
    """The environment of a fresh CI runner: no pip/uv configuration, caches in ``work``."""
    # A runner writes bytecode (the cache then keeps it); this machine's PYTHONDONTWRITEBYTECODE must not
    # make the cached virtualenv smaller than a runner's.
    skipped = ("PIP_", "UV_", "VIRTUAL_ENV", "npm_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skipped)}
    env.update(
        {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_CACHE_DIR": "1",
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
        }
    )
    if "PIP_CERT" in os.environ:  # the CA bundle the machine needs for any TLS, not a package source
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    return env


def base_python() -> str:
    """The interpreter under this one's virtualenv (a runner's python3, not a venv's)."""
    return str(getattr(sys, "_base_executable", None) or sys.executable)


def run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


CPU_OF_LAST: list[float] = [0.0]  # user + system seconds of the processes the last timed() ran


def timed(action: Callable[[], None]) -> float:
    """Wall seconds of ``action``; its child processes' CPU seconds go to CPU_OF_LAST.

    The CPU figure barely moves with the load of a shared machine; the wall figure is what a user
    waits, and does.
    """
    # Start on a settled disk: writes of the previous scenario (hundreds of MB) still being flushed
    # would slow this one, where a fresh CI runner starts with nothing pending.
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    action()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_OF_LAST[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall


def action_script(step: str) -> str:
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    for item in action["runs"]["steps"]:
        if item.get("name") == step:
            return str(item["run"])
    raise KeyError(f"action.yml has no step {step!r}")


def build_wheel(work: Path, env: dict[str, str]) -> Path:
    out = work / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)], dict(os.environ))
    (wheel,) = out.glob("cml_bot-*.whl")
    return wheel


def find_uv(work: Path, env: dict[str, str]) -> tuple[str, float | None]:
    """uv on PATH, else installed here with pip (timed: the cost of bootstrapping uv without setup-uv)."""
    found = shutil.which("uv") or (
        str(Path(sys.executable).parent / "uv") if (Path(sys.executable).parent / "uv").exists() else None
    )
    if found:
        return found, None
    target = work / "uv-tool"
    seconds = timed(
        lambda: run(
            [base_python(), "-m", "pip", "install", "--quiet", "--target", str(target), f"uv=={UV_VERSION}"], env
        )
    )
    return str(target / "bin" / "uv"), seconds


def cold_pip(work: Path, env: dict[str, str], wheel: Path) -> float:
    venv = work / "venv-pip"
    shutil.rmtree(venv, ignore_errors=True)

    def install() -> None:
        run([base_python(), "-m", "venv", str(venv)], env)
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir", str(wheel)], env)
        run([str(venv / "bin" / "cml-bot"), "--version"], env)

    return timed(install)


def cold_uv(work: Path, env: dict[str, str], wheel: Path, uv: str) -> float:
    """action.yml's own install script, with uv on PATH and an empty uv cache."""
    venv = work / "venv-uv"
    cache = work / "uv-cache"
    shutil.rmtree(venv, ignore_errors=True)  # a cache miss on a runner starts with no virtualenv
    shutil.rmtree(cache, ignore_errors=True)
    step_env = {
        **env,
        "PATH": f"{Path(uv).parent}{os.pathsep}{env['PATH']}",
        "UV_CACHE_DIR": str(cache),
        "VENV": str(venv),
        "PYTHON": base_python(),
        "SPEC": str(wheel),
    }
    install, check = action_script("Install cml-bot"), action_script("Check cml-bot")

    def steps() -> None:
        run(["bash", "-e", "-c", install], step_env)
        run(["bash", "-e", "-c", check], step_env)

    seconds = timed(steps)
    shutil.rmtree(cache, ignore_errors=True)  # outside the timing: an empty cache for the next round
    return seconds


# What a first run imports (and so compiles to bytecode, which the cache then keeps, as the Action's
# post step saves the virtualenv after the run): the whole report path. Also proves the pruned
# virtualenv (no tests folders, stubs, headers) still works.
FIRST_RUN = (
    "import cml_bot.app, cml_bot.plots.render, cml_bot.plots.figures, cml_bot.report, cml_bot.data, cml_bot.verdicts,"
    " cml_bot.stats.paired, cml_bot.stats.history, cml_bot.predictions,"
    " cml_bot.forges.github, cml_bot.forges.gitlab, cml_bot.forges.bitbucket;"
    "import matplotlib.pyplot, pandas, scipy.stats, ruptures, markdown_it, tqdm, yaml"
)


def save_cache(work: Path, env: dict[str, str]) -> Path:
    """The uv-made virtualenv after a first run, archived as actions/cache archives it (tar, zstd)."""
    run([str(work / "venv-uv" / "bin" / "python"), "-c", FIRST_RUN], env)
    archive = work / ARCHIVE
    archive.unlink(missing_ok=True)
    run(
        ["tar", "--posix", "--use-compress-program", "zstd -T0", "-cf", str(archive), "-C", str(work), "venv-uv"],
        dict(os.environ),
    )
    return archive


def warm(work: Path, env: dict[str, str], archive: Path) -> float:
    venv = work / "venv-uv"
    shutil.rmtree(venv, ignore_errors=True)
    step_env = {**env, "VENV": str(venv)}
    check = action_script("Check cml-bot")

    def restore() -> None:
        run(["tar", "--use-compress-program", "zstd -d", "-xf", str(archive), "-C", str(work)], env)
        run(["bash", "-e", "-c", check], step_env)

    return timed(restore)


def cml_project(work: Path, env: dict[str, str]) -> tuple[Path | None, str]:
    """An npm project depending on CML with its lock file, or None and why not."""
    if shutil.which("npm") is None:
        return None, "npm not installed"
    project = work / "cml"
    project.mkdir(exist_ok=True)
    manifest = {"name": "cml-bench", "version": "1.0.0", "private": True, "dependencies": {CML_PACKAGE: CML_VERSION}}
    (project / "package.json").write_text(json.dumps(manifest))
    done = subprocess.run(
        [
            "npm",
            "install",
            "--package-lock-only",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--cache",
            str(work / "npm-lock-cache"),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("npm error") and CML_PACKAGE in line]
        return None, (
            errors[0] if errors else done.stderr.strip().splitlines()[-1]
        ) if done.stderr.strip() else "npm failed"
    return project, ""


def cml_install(work: Path, env: dict[str, str], project: Path) -> float:
    shutil.rmtree(project / "node_modules", ignore_errors=True)
    cache = work / "npm-cache"
    shutil.rmtree(cache, ignore_errors=True)
    args = ["npm", "ci", "--omit=dev", "--no-audit", "--no-fund", "--cache", str(cache)]
    return timed(lambda: run(args, env, cwd=project))


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def file_count(path: Path) -> int:
    return sum(1 for f in path.rglob("*") if f.is_file())


def empty_files(work: Path, count: int) -> float:
    """Seconds to create ``count`` empty files, 10 a folder, in ``work``: the warm restore's floor on
    this disk, whatever the bytes (unpacking costs per file far more than per byte on some disks)."""
    folder = work / "empty-files"
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    for index in range(count):
        if index % 10 == 0:
            (folder / str(index // 10)).mkdir(parents=True)
        os.close(os.open(folder / str(index // 10) / str(index), os.O_CREAT | os.O_WRONLY, 0o644))
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return seconds


def show(label: str, times: list[float], cpu: list[float], note: str = "") -> str:
    if not times:
        return f"| {label} | n/a | | | {note} |"
    runs = ", ".join(f"{t:.2f}" for t in times)
    return f"| {label} | **{statistics.median(times):.2f}** | {runs} | {statistics.median(cpu):.2f} | {note} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3); the median is shown")
    parser.add_argument("--no-cml", action="store_true", help="skip CML's npm install")
    parser.add_argument(
        "--work-dir", type=Path, help="where the virtualenvs go (default: the temp folder; /dev/shm: no disk)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cml-bot-install-bench-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        env = clean_env(work)
        wheel = build_wheel(work, env)
        uv, bootstrap = find_uv(work, env)
        project, why_not = (None, "skipped (--no-cml)") if args.no_cml else cml_project(work, env)
        results: dict[str, list[float]] = {"pip": [], "uv": [], "warm": [], "cml": []}
        cpu: dict[str, list[float]] = {name: [] for name in results}
        bootstrap_cpu = CPU_OF_LAST[0]
        archive = None
        for round_number in range(1, args.repeat + 1):  # the scenarios take turns: load drifts hit all
            scenarios: dict[str, Callable[[], float]] = {
                "pip": lambda: cold_pip(work, env, wheel),
                "uv": lambda: cold_uv(work, env, wheel, uv),
                "warm": lambda: warm(work, env, work / ARCHIVE),
            }
            if project is not None:
                scenarios["cml"] = lambda: cml_install(work, env, project)
            for name, scenario in scenarios.items():
                if name == "warm" and archive is None:
                    archive = save_cache(work, env)
                results[name].append(scenario())
                cpu[name].append(CPU_OF_LAST[0])
            shown = ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items() if v)
            print(f"round {round_number}: {shown}, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        assert archive is not None
        venv_mb = size(work / "venv-uv") / 1e6
        venv_files = file_count(work / "venv-uv")
        floor = statistics.median(empty_files(work, venv_files) for _ in range(args.repeat))
        archive_mb = archive.stat().st_size / 1e6
        pip_v = subprocess.run(
            [str(work / "venv-pip" / "bin" / "python"), "-m", "pip", "--version"], capture_output=True, text=True
        ).stdout.split(" from")[0]
        uv_v = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip()
        packages = subprocess.run(
            [uv, "pip", "list", "--python", str(work / "venv-uv" / "bin" / "python")],
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        count = max(len(packages.strip().splitlines()) - 2, 0)

    cml = statistics.median(results["cml"]) if results["cml"] else None
    reference = cml if cml is not None else CML_REFERENCE
    cold = statistics.median(results["uv"])
    warm_s = statistics.median(results["warm"])
    print(
        f"Python {sys.version.split()[0]}, {pip_v}, {uv_v}, nproc {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, "
        f"work dir {args.work_dir or tempfile.gettempdir()}; "
        f"{count} packages, virtualenv {venv_mb:.0f} MB in {venv_files:,} files, "
        f"cache archive {archive_mb:.0f} MB (tar + zstd)"
    )
    print()
    print("| scenario | median wall s | runs (s) | median CPU s | note |")
    print("| --- | --- | --- | --- | --- |")
    print(show("cold pip (venv + pip install --no-cache-dir)", results["pip"], cpu["pip"]))
    print(show("cold uv (action.yml's install step, empty uv cache)", results["uv"], cpu["uv"]))
    archived = f"download of the {archive_mb:.0f} MB archive not included"
    print(show("warm cache (unpack the cached venv + check step)", results["warm"], cpu["warm"], archived))
    print(show(f"CML {CML_VERSION} (npm ci --omit=dev, empty npm cache)", results["cml"], cpu["cml"], why_not))
    if bootstrap is not None:
        print(show("(uv itself via pip install; setup-uv on GitHub)", [bootstrap], [bootstrap_cpu]))
    print()
    source = (
        "measured above"
        if cml is not None
        else f"issue 14's figure for this kind of machine, {CML_REFERENCE:.0f} s: not measurable in this run"
    )
    verdict = "met" if cold <= reference / 2 else "MISSED"
    print(f"cold uv / CML: {cold / reference:.2f} (CML: {source}); target <= 0.5: {verdict}")
    print(f"warm: {warm_s:.2f} s; target < 2 s: {'met' if warm_s < 2 else 'MISSED'}")
    print(
        f"creating {venv_files:,} empty files in the same folder (median of {args.repeat}): {floor:.2f} s, "
        f"{floor / venv_files * 1e3:.2f} ms a file; warm / that floor: {warm_s / floor:.1f}x"
    )
    print(f"cold pip / cold uv: {statistics.median(results['pip']) / cold:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
