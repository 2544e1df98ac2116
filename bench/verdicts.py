"""Honest verdicts against the naive rules: false alarms, power, detectable effects and speed.

    python bench/verdicts.py                 # everything (several minutes on 2 cores)
    python bench/verdicts.py --changes 1200 --skip-report

Not a test: it prints a table for bench/RESULTS.md. Every verdict goes through the real path,
``cml_bot.verdicts.judge`` (predictions CSV bytes of both revisions -> pairing -> McNemar / paired
bootstrap -> gates with Benjamini-Hochberg -> verdict), on scikit-learn's bundled digits data set
(with the one-pixel shifts of scikit-learn's RBM example: 8,985 images, half of them held out).

- False alarms: no-op changes. A pool of SGD logistic-regression models is trained on one training
  split, each with another seed; a no-op change is two different seeds of that pool (base, head),
  evaluated on a fresh resample (with replacement) of the held-out examples, with main's recorded
  history made of 8 further seeds evaluated on the same examples (what ``cml-bot record`` on pushes
  to main stores). Gates: accuracy and f1_macro with ``max_drop: 0.5%``. Naive rules beside it:
  "any drop = worse" (either metric lower) and the fixed 0.5% ``max_drop`` on the single numbers
  (what cml-bot did before). The same changes without any recorded history are printed too: a paired
  test alone sees the two seeds as two different models, which they are.
- Power: a true 2 pp accuracy drop on 2,000 examples, with main's history: (a) the base model's own
  predictions with right answers turned wrong at random until its expected accuracy is 2 pp lower
  (a deterministic pipeline: the drop is the change's); (b) the same on the predictions of a model
  trained with another seed, so the seed's own effect adds to the drop (2 pp on average).
- Detectable effect: the smallest accuracy drop the paired test detects with 80% power at alpha
  0.05 (one-sided), from the bootstrap's standard error, for 500 / 2,000 / 10,000 examples.
- Speed: a paired bootstrap of 10,000 resamples over 100,000 examples, and the whole
  ``cml-bot report --dry-run`` with a 100,000-example predictions file against the same project
  without the ``predictions:`` entry (median of --repeat runs each, in new processes).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import GIT_ENV, median_seconds, tool  # noqa: E402

from cml_bot.config import parse_config  # noqa: E402
from cml_bot.model import Verdict  # noqa: E402
from cml_bot.results import RunResults  # noqa: E402
from cml_bot.stats import detectable_effect  # noqa: E402
from cml_bot.stats.example_metrics import EXACT_EXAMPLES, PairedExamples, compare_metrics  # noqa: E402
from cml_bot.verdicts import judge  # noqa: E402

ALPHA = 0.05
MAX_DROP = "0.5%"


def nudged_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits and the same images moved by one pixel up, down, left and right (the
    augmentation of scikit-learn's RBM example): 8,985 real images instead of 1,797."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images
    moved = [images]
    for axis, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
        shifted = np.roll(images, step, axis=axis)
        edge = [slice(None)] * 3
        edge[axis] = 0 if step == 1 else -1
        shifted[tuple(edge)] = 0  # nothing wraps around
        moved.append(shifted)
    data = np.concatenate(moved).reshape(-1, 64)
    return data, np.tile(digits.target, 5)


def train_pool(seeds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predictions per seed [seeds x test], true labels [test], test ids): one split, many seeds."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    data, target = nudged_digits()
    ids = np.arange(len(target))
    x_train, x_test, y_train, y_test, _, id_test = train_test_split(
        data, target, ids, test_size=0.5, random_state=0, stratify=target
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    predictions = []
    for seed in range(seeds):
        model = SGDClassifier(loss="log_loss", alpha=1e-4, learning_rate="constant", eta0=0.01, random_state=seed)
        for _ in range(10):  # epochs, as the demo trains
            model.partial_fit(x_train, y_train, classes=np.arange(10))
        predictions.append(model.predict(x_test))
    return np.asarray(predictions), np.asarray(y_test), np.asarray(id_test)


def csv_bytes(ids: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> bytes:
    lines = ["id,label,prediction", *(f"{i},{y},{p}" for i, y, p in zip(ids, labels, predicted, strict=True))]
    return ("\n".join(lines) + "\n").encode()


def metrics_of(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": round(float(accuracy_score(labels, predicted)), 5),
        "f1_macro": round(float(f1_score(labels, predicted, average="macro")), 5),
    }


CONFIG = parse_config(
    {
        "metrics": ["metrics.json"],
        "predictions": "predictions.csv",
        "thresholds": {"accuracy": {"max_drop": MAX_DROP}, "f1_macro": {"max_drop": MAX_DROP}},
    },
    Path("."),
)
NAIVE = parse_config(
    {
        "metrics": ["metrics.json"],
        "thresholds": {"accuracy": {"max_drop": MAX_DROP}, "f1_macro": {"max_drop": MAX_DROP}},
    },
    Path("."),
)


HISTORY = 8  # recorded commits of main before the base


def verdicts(
    labels: np.ndarray, base: np.ndarray, head: np.ndarray, history: list[np.ndarray] | None = None
) -> tuple[Verdict, bool, bool]:
    """(cml-bot's verdict with predictions, naive "any drop", naive fixed max_drop) for one change."""
    ids = np.arange(len(labels))
    base_metrics, head_metrics = metrics_of(labels, base), metrics_of(labels, head)
    base_results = RunResults("b" * 40, base_metrics, files={"predictions.csv": csv_bytes(ids, labels, base)})
    head_results = RunResults("h" * 40, head_metrics, files={"predictions.csv": csv_bytes(ids, labels, head)})
    recorded = [RunResults(f"{i:040d}", metrics_of(labels, p)) for i, p in enumerate(history or [])]
    if recorded:
        recorded.append(base_results)  # the base itself is the newest recorded commit
    honest = judge(CONFIG, base_results, head_results, recorded).diff.verdict
    any_drop = any(head_metrics[m] < base_metrics[m] for m in head_metrics)
    fixed = judge(NAIVE, RunResults("b" * 40, base_metrics), RunResults("h" * 40, head_metrics)).diff.verdict
    return honest, any_drop, fixed is Verdict.REGRESSED


def degrade(labels: np.ndarray, predicted: np.ndarray, drop: float, rng: np.random.Generator) -> np.ndarray:
    """Turn right answers wrong at random so that the expected accuracy falls by ``drop``."""
    right = predicted == labels
    share = drop / max(right.mean(), 1e-9)
    broken = right & (rng.random(len(labels)) < share)
    out = predicted.copy()
    out[broken] = (labels[broken] + 1 + rng.integers(0, 9, int(broken.sum()))) % 10
    return out


def false_alarms(
    pool: np.ndarray, labels: np.ndarray, changes: int, size: int, rng: np.random.Generator, with_history: bool
) -> None:
    counts = {"regressed": 0, "inconclusive": 0, "any drop": 0, "fixed max_drop": 0}
    started = time.perf_counter()
    for _ in range(changes):
        seeds = rng.choice(len(pool), size=2 + HISTORY, replace=False)
        rows = rng.integers(0, len(labels), size)  # a resampled evaluation set
        history = [pool[s][rows] for s in seeds[2:]] if with_history else None
        honest, any_drop, fixed = verdicts(labels[rows], pool[seeds[0]][rows], pool[seeds[1]][rows], history)
        counts["regressed"] += honest is Verdict.REGRESSED
        counts["inconclusive"] += honest is Verdict.INCONCLUSIVE
        counts["any drop"] += any_drop
        counts["fixed max_drop"] += fixed
    seconds = time.perf_counter() - started
    where = f"main's history of {HISTORY} recorded seeds" if with_history else "no recorded history"
    print(f"\n## False alarms: {changes:,} no-op changes (two seeds, {size:,} resampled examples, {where})\n")
    print(f"(cml-bot's path per change: {seconds / changes * 1000:.0f} ms, both sides' CSV parsed and paired)\n")
    print("| rule | flagged | share |")
    print("|---|---:|---:|")
    for label, key in (
        (f"cml-bot: regressed (max_drop {MAX_DROP} AND significant, alpha {ALPHA}, BH)", "regressed"),
        ("cml-bot: inconclusive (not a failure by default)", "inconclusive"),
        ("naive: any drop = worse", "any drop"),
        (f"naive: fixed max_drop {MAX_DROP} on the single numbers", "fixed max_drop"),
    ):
        share = counts[key] / changes
        print(f"| {label} | {counts[key]:,} | {share:.1%} |")
    share = counts["regressed"] / changes
    verdict = "met" if share <= ALPHA else "NOT met"
    print(f"\nTarget: regressed share <= alpha ({ALPHA:.0%}): **{verdict}** ({share:.1%})")


def power(pool: np.ndarray, labels: np.ndarray, trials: int, size: int, rng: np.random.Generator) -> None:
    print(f"\n## Power: a true 2 pp accuracy drop on {size:,} examples ({trials} trials each, with history)\n")
    print("| case | cml-bot: regressed | naive: any drop | naive: fixed max_drop |")
    print("|---|---:|---:|---:|")
    shares = {}
    for case, other_seed in (("(a) the base model, 2 pp worse", False), ("(b) another seed, 2 pp worse", True)):
        flagged = {"regressed": 0, "any drop": 0, "fixed max_drop": 0}
        for _ in range(trials):
            seeds = rng.choice(len(pool), size=2 + HISTORY, replace=False)
            rows = rng.integers(0, len(labels), size)
            head_model = pool[seeds[1] if other_seed else seeds[0]][rows]
            head = degrade(labels[rows], head_model, 0.02, rng)
            history = [pool[s][rows] for s in seeds[2:]]
            honest, any_drop, fixed = verdicts(labels[rows], pool[seeds[0]][rows], head, history)
            flagged["regressed"] += honest is Verdict.REGRESSED
            flagged["any drop"] += any_drop
            flagged["fixed max_drop"] += fixed
        shares[case] = flagged["regressed"] / trials
        print(
            f"| {case} | {shares[case]:.1%} | {flagged['any drop'] / trials:.1%} | "
            f"{flagged['fixed max_drop'] / trials:.1%} |"
        )
    for case, share in shares.items():
        print(f"\nTarget >= 80% flagged regressed, {case}: **{'met' if share >= 0.8 else 'NOT met'}** ({share:.1%})")


def detectable(pool: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
    print("\n## Detectable effect (accuracy, 80% power, one-sided alpha 0.05, two seeds of the model)\n")
    print("| examples | discordant (median) | detectable drop (median) |")
    print("|---:|---:|---:|")
    for size in (500, 2_000, 10_000):
        effects, discordant = [], []
        for _ in range(20):
            a, b = rng.choice(len(pool), size=2, replace=False)
            rows = rng.integers(0, len(labels), size)
            y, base, head = labels[rows], pool[a][rows], pool[b][rows]
            data = PairedExamples(size, tuple(str(c) for c in range(10)), y, base, head)
            result = compare_metrics(data, ["accuracy"])["accuracy"].result
            effects.append(detectable_effect(result.se) or float("nan"))
            discordant.append(float(np.mean((base == y) != (head == y))))
        print(f"| {size:,} | {statistics.median(discordant):.1%} | {statistics.median(effects) * 100:.2f} pp |")


def bootstrap_speed(repeat: int) -> None:
    rng = np.random.default_rng(0)
    n, k = 100_000, 10
    y = rng.integers(0, k, n)
    base = np.where(rng.random(n) < 0.9, y, rng.integers(0, k, n))
    head = np.where(rng.random(n) < 0.89, y, rng.integers(0, k, n))
    scores = rng.dirichlet(np.ones(k), n)
    data = PairedExamples(n, tuple(str(c) for c in range(k)), y, base, head, scores, scores[::-1].copy())
    print(f"\n## Speed: paired bootstrap, 10,000 resamples over {n:,} examples ({k} classes, median of {repeat})\n")
    print("| metric | seconds |")
    print("|---|---:|")

    for names in (["accuracy"], ["f1_macro"], ["accuracy", "f1_macro", "precision_macro", "recall_macro"]):
        seconds = median_seconds(lambda names=names: compare_metrics(data, names, resamples=10_000), repeat)
        print(f"| {' + '.join(names)} | {seconds:.3f} |")
    for name in ("log_loss", "roc_auc"):
        seconds = median_seconds(lambda name=name: compare_metrics(data, [name], resamples=10_000), repeat)
        print(f"| {name} ({EXACT_EXAMPLES:,} random groups) | {seconds:.3f} |")


REPORT_CONFIG = """\
title: Bench classifier
metrics: [metrics.json]
plots:
  - path: train_log.csv
    x: epoch
    y: [train_loss, val_loss]
  - path: predictions.csv
    template: confusion
    x: label
    y: prediction
thresholds:
  accuracy: {max_drop: 0.01}
  f1_macro: {max_drop: 1%}
"""


def write_side(repo: Path, seed: int, n: int) -> None:
    from sklearn.metrics import f1_score, log_loss

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    predicted = np.where(rng.random(n) < 0.9, y, rng.integers(0, 10, n))
    scores = rng.dirichlet(np.ones(10), n) * 0.5
    scores[np.arange(n), predicted] += 0.5
    buffer = io.StringIO()
    buffer.write("id,label,prediction," + ",".join(f"proba_{c}" for c in range(10)) + "\n")
    for i in range(n):
        buffer.write(f"ex{i},{y[i]},{predicted[i]}," + ",".join(f"{v:.5f}" for v in scores[i]) + "\n")
    (repo / "predictions.csv").write_text(buffer.getvalue(), encoding="utf-8")
    metrics = {
        "accuracy": round(float(np.mean(predicted == y)), 5),
        "f1_macro": round(float(f1_score(y, predicted, average="macro")), 5),
        "loss": round(float(log_loss(y, scores)), 5),
    }
    (repo / "metrics.json").write_text(str(metrics).replace("'", '"'), encoding="utf-8")
    log = ["epoch,train_loss,val_loss", *(f"{e},{1 / e:.4f},{1.1 / e:.4f}" for e in range(1, 51))]
    (repo / "train_log.csv").write_text("\n".join(log) + "\n", encoding="utf-8")


def report_speed(repeat: int, n: int) -> None:
    cml_bot = tool("cml-bot")
    if cml_bot is None:
        print("cml-bot is not installed: pip install -e .", file=sys.stderr)
        return
    env = {**os.environ, **GIT_ENV}
    for name in ("CI", "GITHUB_ACTIONS", "GITLAB_CI"):
        env.pop(name, None)
    times = {}
    with tempfile.TemporaryDirectory(prefix="cml-bot-bench-verdicts-") as folder:
        for label, extra in (("without predictions", ""), ("with predictions", "predictions: predictions.csv\n")):
            repo = Path(folder) / label.replace(" ", "-")
            repo.mkdir()

            def git(*args: str, repo: Path = repo) -> None:
                subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)

            git("init", "--quiet", "--initial-branch=main")
            (repo / "cml-bot.yaml").write_text(REPORT_CONFIG + extra, encoding="utf-8")
            (repo / ".gitignore").write_text("cml-bot-report/\n.cml-bot/\n", encoding="utf-8")
            write_side(repo, 1, n)
            git("add", "-A")
            git("commit", "--quiet", "-m", "base")
            git("checkout", "--quiet", "-b", "change")
            write_side(repo, 2, n)
            git("add", "-A")
            git("commit", "--quiet", "-m", "head")
            command = [cml_bot, "report", "--dry-run", "-C", str(repo)]

            def once(command: list[str] = command) -> None:
                result = subprocess.run(command, env=env, capture_output=True, text=True)
                if result.returncode != 0:
                    raise SystemExit(f"cml-bot failed:\n{result.stdout}\n{result.stderr}")

            once()  # warm the page cache
            times[label] = median_seconds(once, repeat)
            if extra:
                text = (repo / "cml-bot-report" / "report.md").read_text()
                assert "Per-example results" in text and "95% CI" in text, "predictions were not used"
    ratio = times["with predictions"] / times["without predictions"]
    print(f"\n## Speed: `cml-bot report --dry-run`, {n:,} examples (median of {repeat}, new processes)\n")
    print("| report | seconds |")
    print("|---|---:|")
    for label, seconds in times.items():
        print(f"| {label} | {seconds:.3f} |")
    print(f"\nRatio {ratio:.2f}x; target <= 1.5x: **{'met' if ratio <= 1.5 else 'NOT met'}**")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=1200, help="no-op changes simulated")
    parser.add_argument("--trials", type=int, default=300, help="power trials")
    parser.add_argument("--seeds", type=int, default=30, help="models in the pool")
    parser.add_argument("--eval-size", type=int, default=2000, help="resampled evaluation set size (no-op)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--report-examples", type=int, default=100_000)
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--only-speed", action="store_true", help="skip the simulations")
    args = parser.parse_args()
    load = ", load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"# bench/verdicts.py: {os.cpu_count()} cores{load}, Python {sys.version.split()[0]}, numpy {np.__version__}")
    if args.only_speed:
        bootstrap_speed(args.repeat)
        report_speed(args.repeat, args.report_examples)
        return 0
    started = time.perf_counter()
    pool, labels, _ = train_pool(args.seeds)
    accuracies = (pool == labels).mean(axis=1)
    print(
        f"\nPool: {args.seeds} SGD logistic regressions on digits nudged by one pixel "
        f"(half of the 8,985 images for training, {len(labels):,} held out), "
        f"accuracy {accuracies.min():.3f}-{accuracies.max():.3f} (sd {accuracies.std():.4f}); "
        f"trained in {time.perf_counter() - started:.1f} s"
    )
    rng = np.random.default_rng(2024)
    false_alarms(pool, labels, args.changes, args.eval_size, rng, with_history=True)
    false_alarms(pool, labels, args.changes, args.eval_size, rng, with_history=False)
    power(pool, labels, args.trials, 2000, rng)
    detectable(pool, labels, rng)
    bootstrap_speed(args.repeat)
    if not args.skip_report:
        report_speed(args.repeat, args.report_examples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
