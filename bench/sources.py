"""Benchmark: what the MLflow and TensorBoard sources add to a report.

MLflow: a real `mlflow server` (SQLite, 127.0.0.1, started here), 5 runs at the base commit and 5 at
the head commit of a temp git repo, each with 20 metrics x 1,000 steps, logged with the real client.
The server runs with its default number of workers, as deployed. Measured (wall clock):
- fetch: `mlflow_results` in-process with the client already imported (search, 100 metric histories
  per side, both sides), median of --repeat;
- the client's import (`from mlflow.tracking import MlflowClient` in a new process), median;
- `cml-bot report --dry-run` as a new process: with `mlflow:` (20 step plots drawn), with
  `history: false` (no histories, no plots), and with the same final values from a metrics file
  (no MLflow at all), each median of --repeat. The differences are what MLflow adds to a report.

TensorBoard: one event file of 1,000,000 scalars (10 tags x 100,000 steps, written with
tensorboardX as 100,000 scalars, its records repeated 10 times: same bytes per record as a real
file): `read_logdir` time and the peak memory of a process that only reads it, against the same
process reading nothing.

Target: MLflow fetching adds under 1 s to a report.

Run: .venv/bin/python bench/sources.py [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

from _common import GIT_ENV, median_seconds, row  # noqa: E402
from mlflow_server import QUIET, client, start_server  # noqa: E402

RUNS, METRICS, STEPS = 5, 20, 1000


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True, env=_env())
    return result.stdout.strip()


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **GIT_ENV, **QUIET, **(extra or {})}


def log_runs(mlflow: object, experiment: str, commit: str, shift: float) -> dict[str, float]:
    """RUNS runs of METRICS metrics x STEPS steps; returns the mean final value per metric."""
    from mlflow.entities import Metric, Param

    found = mlflow.get_experiment_by_name(experiment)  # type: ignore[attr-defined]
    experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment)  # type: ignore[attr-defined]
    finals: dict[str, list[float]] = {}
    for seed in range(RUNS):
        run = mlflow.create_run(  # type: ignore[attr-defined]
            experiment_id, tags={"mlflow.source.git.commit": commit}, run_name=f"seed-{seed}"
        )
        run_id = run.info.run_id
        batch = []
        for m in range(METRICS):
            for step in range(STEPS):
                value = shift + 1.0 / (1 + step) + m / 100 + seed / 1000
                batch.append(Metric(f"metric_{m:02d}", value, 1_700_000_000_000 + step, step))
            finals.setdefault(f"metric_{m:02d}", []).append(batch[-1].value)
        params = [Param("lr", "0.1"), Param("seed", str(seed))]
        for start in range(0, len(batch), 1000):
            mlflow.log_batch(run_id, metrics=batch[start : start + 1000], params=params if start == 0 else [])  # type: ignore[attr-defined]
        mlflow.set_terminated(run_id)  # type: ignore[attr-defined]
    return {name: sum(values) / len(values) for name, values in finals.items()}


def bench_mlflow(repeat: int, work: Path) -> list[str]:
    lines = []
    started = time.perf_counter()
    server = start_server(work / "server", workers=None)  # the server's default workers, as deployed
    lines.append(row("mlflow server start (new SQLite db)", server.start_seconds))
    try:
        mlflow = client(server.url)
        repo = work / "repo"
        repo.mkdir()
        git(repo, "init", "--quiet", "--initial-branch=main")
        (repo / "cml-bot.yaml").write_text("title: bench\nmlflow:\n  experiment: bench\n", encoding="utf-8")
        (repo / ".gitignore").write_text("cml-bot-report/\n", encoding="utf-8")
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "-m", "main")
        base = git(repo, "rev-parse", "HEAD")
        git(repo, "checkout", "--quiet", "-b", "feature")
        (repo / "train.py").write_text("# change\n", encoding="utf-8")
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "-m", "feature")
        head = git(repo, "rev-parse", "HEAD")
        logging_started = time.perf_counter()
        base_finals = log_runs(mlflow, "bench", base, 0.0)
        head_finals = log_runs(mlflow, "bench", head, -0.01)
        lines.append(
            row("logging 2 x 5 runs x 20 metrics x 1,000 steps", time.perf_counter() - logging_started, "(setup)")
        )

        from cml_bot.baseline import Baseline
        from cml_bot.config import MlflowSource
        from cml_bot.git import Git
        from cml_bot.sources.mlflow import mlflow_results

        env = {"MLFLOW_TRACKING_URI": server.url}
        source = MlflowSource(experiment="bench")
        gitter = Git(repo)
        empty = Baseline(None, base, "main", "no baseline", merge_base=base)
        found = mlflow_results(source, env, gitter, head, empty)  # warm: the client is imported here
        assert len(found.head.results.files) == METRICS, found.head.notes
        assert found.baseline.results is not None and len(found.baseline.results.metrics) == METRICS
        fetch = median_seconds(lambda: mlflow_results(source, env, gitter, head, empty), repeat)
        lines.append(row("fetch: both sides, 10 runs, 200 histories", fetch, f"(median of {repeat}, in-process)"))
        head_only = MlflowSource(experiment="bench")
        no_base = Baseline(None, None, "main", "no baseline")
        one_side = median_seconds(lambda: mlflow_results(head_only, env, gitter, head, no_base), repeat)
        lines.append(row("fetch: this change only, 5 runs, 100 histories", one_side, f"(median of {repeat})"))
        importing = median_seconds(
            lambda: subprocess.run(
                [sys.executable, "-c", "from mlflow.tracking import MlflowClient"], check=True, env=_env()
            ),
            repeat,
        )
        bare = median_seconds(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True, env=_env()), repeat)
        lines.append(row("import of the MLflow client (new process)", importing - bare, "(minus a bare python start)"))

        cml_bot = [sys.executable, "-m", "cml_bot", "report", "--dry-run", "-C", str(repo)]
        report_env = _env({"MLFLOW_TRACKING_URI": server.url})

        def report() -> None:
            subprocess.run(cml_bot, check=True, capture_output=True, env=report_env)

        report()
        with_mlflow = median_seconds(report, repeat)
        (repo / "cml-bot.yaml").write_text(
            "title: bench\nmlflow:\n  experiment: bench\n  history: false\n", encoding="utf-8"
        )
        report()
        without_history = median_seconds(report, repeat)
        # The same final values as files: what the report costs without MLflow.
        (repo / "cml-bot.yaml").write_text("title: bench\nmetrics: [metrics.json]\n", encoding="utf-8")
        (repo / "metrics.json").write_text(json.dumps({k: [v] * RUNS for k, v in head_finals.items()}))
        baseline_file = work / "base.json"
        baseline_file.write_text(json.dumps({k: [v] * RUNS for k, v in base_finals.items()}))
        cml_bot_files = [*cml_bot, "--baseline", str(baseline_file)]
        subprocess.run(cml_bot_files, check=True, capture_output=True, env=report_env)
        files_only = median_seconds(
            lambda: subprocess.run(cml_bot_files, check=True, capture_output=True, env=report_env), repeat
        )
        lines.append(row("cml-bot report, metrics from a file (no MLflow)", files_only, f"(median of {repeat})"))
        lines.append(row("cml-bot report, mlflow, history: false", without_history, f"(median of {repeat})"))
        lines.append(row("cml-bot report, mlflow, 20 step plots", with_mlflow, f"(median of {repeat})"))
        lines.append(row("  added by MLflow without plots", without_history - files_only, "(import + fetch)"))
        lines.append(row("  added by MLflow with 20 step plots", with_mlflow - files_only, "(import + fetch + draw)"))
        verdict = "met" if fetch < 1.0 else "NOT met"
        lines.append(f"target: fetching both sides under 1 s: {verdict} ({fetch:.3f} s)")
    finally:
        server.stop()
    lines.append(row("MLflow part, total wall time", time.perf_counter() - started))
    return lines


def bench_tensorboard(repeat: int, work: Path) -> list[str]:
    import tensorboardX

    folder = work / "tb"
    writer = tensorboardX.SummaryWriter(str(folder / "small"))
    for step in range(10_000):
        for tag in range(10):
            # A tag of 60 characters: about 100 bytes per record, as in the 100 MB for 1M scalars.
            writer.add_scalar(f"train/metric_{tag:02d}_with_a_long_descriptive_name_as_loggers_write", step, step)
    writer.close()
    data = next((folder / "small").glob("*tfevents*")).read_bytes()
    big = folder / "runs" / "events.out.tfevents.1700000000.bench"
    big.parent.mkdir(parents=True)
    with big.open("wb") as out:
        for _ in range(10):
            out.write(data)
    size = big.stat().st_size
    reader = (
        "import resource, sys, time\n"
        "from pathlib import Path\n"
        "from cml_bot.config import TensorBoardSource\n"
        "from cml_bot.sources.tensorboard import read_logdir\n"
        "start = time.perf_counter()\n"
        "found = read_logdir(TensorBoardSource('runs'), Path(sys.argv[1])) if sys.argv[2] == 'read' else None\n"
        "took = time.perf_counter() - start\n"
        "count = len(found.results.metrics) if found else 0\n"
        "print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, count)\n"
    )
    times, peaks = [], []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", reader, str(folder), "read"], check=True, capture_output=True, text=True
        )
        took, peak, count = out.stdout.split()
        assert int(count) == 10, out.stdout
        times.append(float(took))
        peaks.append(int(peak))
    idle = subprocess.run(
        [sys.executable, "-c", reader, str(folder), "idle"], check=True, capture_output=True, text=True
    )
    idle_peak = int(idle.stdout.split()[1])
    times.sort()
    return [
        f"event file: {size / 1e6:.1f} MB, 1,000,000 scalars (10 tags x 100,000 records)",
        row("read_logdir, 1M scalars", times[len(times) // 2], f"(median of {repeat}, new process each)"),
        row(
            "peak memory of the reading process", None, f"{max(peaks) / 1024:.0f} MB (idle: {idle_peak / 1024:.0f} MB)"
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--only", choices=("mlflow", "tensorboard"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cml-bot-bench-sources-"))
    load = os.getloadavg()[0]
    print(f"cores: {os.cpu_count()}, load average at start: {load:.1f}")
    try:
        if args.only in (None, "tensorboard"):
            for line in bench_tensorboard(args.repeat, work):
                print(line)
        if args.only in (None, "mlflow"):
            for line in bench_mlflow(args.repeat, work):
                print(line, flush=True)
    finally:
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
