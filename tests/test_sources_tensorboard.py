"""TensorBoard as a metrics source: real event files written with tensorboardX, read back; the
base side from the committed logdir and from a record; damaged files as notes in the report."""

from __future__ import annotations

import io
import math
import random
import struct
from pathlib import Path

import pytest
from conftest import GitRepo

from cml_bot.cli import Console, main
from cml_bot.config import TensorBoardSource
from cml_bot.results import LocalStore
from cml_bot.sources import HISTORY_BUCKETS, history_plot_specs
from cml_bot.sources.tensorboard import ScalarSeries, read_logdir

tensorboardX = pytest.importorskip("tensorboardX", reason="tensorboardX is in the test extras")
pytest.importorskip("tensorboard", reason="tensorboard is in the test extras (cml-bot[tensorboard])")


def write_run(folder: Path, series: dict[str, list[float]]) -> Path:
    """One event file with the real writer; returns its path."""
    writer = tensorboardX.SummaryWriter(str(folder))
    length = max(len(values) for values in series.values())
    for step in range(length):
        for tag, values in series.items():
            if step < len(values):
                writer.add_scalar(tag, values[step], step)
    writer.close()
    return next(folder.glob("*tfevents*"))


def cli(args: list[str], repo: GitRepo) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], env={"PATH": "/usr/bin:/bin"}, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def report_text(repo: GitRepo) -> str:
    return (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8").replace("\u200b", "")  # as read


def test_scalars_of_run_subfolders_with_per_tag_choice(tmp_path: Path) -> None:
    write_run(tmp_path / "runs" / "train", {"loss": [1.0, 0.2, 0.5], "acc": [0.5, 0.9, 0.7]})
    write_run(tmp_path / "runs" / "eval", {"loss": [0.9, 0.4, 0.6]})
    write_run(tmp_path / "runs", {"lr": [0.1, 0.01]})
    source = TensorBoardSource("runs", reduce=(("*loss", "min"), ("acc", "max")))

    found = read_logdir(source, tmp_path)

    metrics = found.results.metrics
    assert set(metrics) == {"train/loss", "train/acc", "eval/loss", "lr"}
    assert metrics["train/loss"] == pytest.approx(0.2)  # min, by the pattern on the name
    assert metrics["eval/loss"] == pytest.approx(0.4)
    assert metrics["train/acc"] == pytest.approx(0.9)  # max, by the pattern on the tag alone
    assert metrics["lr"] == pytest.approx(0.01)  # last: the default
    assert found.notes == ()
    history = found.results.files["tensorboard:history/train/loss.csv"].decode()
    assert history.splitlines() == ["step,train/loss", "0,1", "1,0.200000003", "2,0.5"]  # float32 values
    titles = {spec.title for spec in history_plot_specs(found.results.files)}
    assert "train/loss (TensorBoard)" in titles


def test_tags_filter_and_no_history(tmp_path: Path) -> None:
    write_run(tmp_path / "logs", {"loss": [1.0, 0.5], "grad_norm": [3.0, 2.0]})

    found = read_logdir(TensorBoardSource("logs", tags=("loss",), history=False), tmp_path)

    assert found.results.metrics == {"loss": 0.5}
    assert found.results.files == {}


def test_tf2_tensor_scalars_are_read(tmp_path: Path) -> None:
    """TF2's tf.summary.scalar writes a float tensor with the scalars plugin, not simple_value."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2
    from tensorboardX.record_writer import masked_crc32c

    records = []
    for step, value in enumerate([0.3, 0.25, 0.125]):
        tensor = tensor_pb2.TensorProto(dtype=1, float_val=[value])
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="val_loss", tensor=tensor, metadata=metadata)]
        )
        records.append(event_pb2.Event(step=step, wall_time=1.0, summary=summary).SerializeToString())
    folder = tmp_path / "tb"
    folder.mkdir()
    with (folder / "events.out.tfevents.1700000000.host").open("wb") as out:
        for data in records:
            header = struct.pack("<Q", len(data))
            out.write(header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data)))

    found = read_logdir(TensorBoardSource("tb"), tmp_path)

    assert found.results.metrics == {"val_loss": 0.125}


def test_envelope_keeps_spikes_ends_and_a_bounded_size() -> None:
    series = ScalarSeries()
    rng = random.Random(7)
    for step in range(100_000):
        value = rng.random()
        if step == 31_337:
            value = -50.0  # a spike a plot must show
        if step == 77_777:
            value = 80.0
        series.add(float(step), value)
    series.add(100_000.0, math.nan)  # a NaN at the end: the last value, not drawn

    points = series.points()

    assert len(points) <= 2 * 2 * HISTORY_BUCKETS + 2
    assert (31_337.0, -50.0) in points and (77_777.0, 80.0) in points
    assert points[0][0] == 0.0 and points[-1][0] == 99_999.0
    assert [p[0] for p in points] == sorted(p[0] for p in points)
    assert math.isnan(series.value("last")) and series.value("min") == -50.0 and series.value("max") == 80.0
    assert series.count == 100_001


def test_report_overlays_the_logdir_committed_at_the_base(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", "title: TB\ntensorboard:\n  logdir: runs\n  reduce: {'*loss': min}\n")
    write_run(repo.root / "runs" / "train", {"loss": [1.0, 0.6, 0.4], "acc": [0.5, 0.6, 0.7]})
    base = repo.commit("main: committed logdir")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.git("rm", "-r", "--quiet", "runs")
    write_run(repo.root / "runs" / "train", {"loss": [0.9, 0.5, 0.3], "acc": [0.6, 0.7, 0.8]})
    repo.commit("feature: new logdir")

    code, _, err = cli(["report", "--dry-run"], repo)

    assert code == 0, err
    report = report_text(repo)
    loss = next(line for line in report.splitlines() if line.startswith("| train/loss"))
    assert "0.4" in loss and "0.3" in loss
    assert f"as committed at the merge-base with main ({base[:10]})" in report
    images = sorted(p.name for p in (repo.root / "cml-bot-report").glob("*.png"))
    assert len([name for name in images if "tensorboard" in name]) == 2, images
    assert "not in main" not in report  # base and head overlaid


def test_report_takes_the_base_from_a_record(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", "title: TB\ntensorboard: logs\n")
    repo.write(".gitignore", "logs/\ncml-bot-report/\n")
    write_run(repo.root / "logs", {"loss": [1.0, 0.5]})
    base = repo.commit("main")
    code, _, err = cli(["record"], repo)
    assert code == 0, err
    recorded = LocalStore(repo.root / ".cml-bot" / "records").load(base)
    assert recorded is not None and recorded.metrics["loss"] == 0.5
    assert "tensorboard:history/loss.csv" in recorded.files
    repo.git("checkout", "--quiet", "-b", "feature")
    for path in (repo.root / "logs").iterdir():
        path.unlink()
    write_run(repo.root / "logs", {"loss": [1.0, 0.7]})
    repo.commit("feature")

    code, _, err = cli(["report", "--dry-run"], repo)

    assert code == 0, err
    report = report_text(repo)
    assert "recorded results of the merge-base" in report
    assert "| loss" in report and "0.5" in report and "0.7" in report
    assert any("tensorboard" in p.name for p in (repo.root / "cml-bot-report").glob("*.png"))


def test_damaged_event_files_are_noted_and_the_rest_is_read(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", "title: TB\ntensorboard: runs\n")
    good = write_run(repo.root / "runs" / "good", {"loss": [1.0, 0.5]})
    truncated = write_run(repo.root / "runs" / "truncated", {"loss": [1.0, 0.8, 0.6]})
    truncated.write_bytes(truncated.read_bytes()[:-7])  # a writer killed mid-record
    damaged = write_run(repo.root / "runs" / "damaged", {"loss": [float(i) for i in range(50)]})
    data = bytearray(damaged.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 40] = b"\xff" * 40
    damaged.write_bytes(bytes(data))
    garbage = repo.root / "runs" / "garbage" / "events.out.tfevents.1.host"
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(random.Random(1).randbytes(5000))
    repo.commit("main")

    code, out, err = cli(["report", "--dry-run"], repo)

    assert code == 0, err
    assert "Traceback" not in out + err
    report = report_text(repo)
    assert "runs/garbage/events.out.tfevents.1.host: not a TensorBoard event file" in report
    assert "runs/damaged/" in report and "values after it were not read" in report
    assert "truncated" not in report.split("### Metrics")[0]  # a partial last record is normal, no note
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    assert "good/loss" in rows and "truncated/loss" in rows and "damaged/loss" in rows
    assert "0.8" in rows["truncated/loss"]  # read up to the partial record
    assert good.exists()


def test_missing_logdir_is_noted(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", "title: TB\ntensorboard: runs\n")
    repo.commit("main")

    code, _, err = cli(["report", "--dry-run"], repo)

    assert code == 0, err
    assert "TensorBoard: no logdir runs in this checkout" in report_text(repo)


def test_symlinked_event_file_outside_the_repo_is_refused(repo: GitRepo, tmp_path: Path) -> None:
    outside = write_run(tmp_path / "elsewhere", {"loss": [1.0]})
    repo.write("cml-bot.yaml", "title: TB\ntensorboard: runs\n")
    (repo.root / "runs").mkdir()
    (repo.root / "runs" / "events.out.tfevents.1.link").symlink_to(outside)
    repo.commit("main")

    code, _, err = cli(["report", "--dry-run"], repo)

    assert code == 2
    assert "points outside the repository" in err and err.count("\n") == 1


def test_missing_reader_is_a_one_line_hint(repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    repo.write("cml-bot.yaml", "title: TB\ntensorboard: runs\n")
    write_run(repo.root / "runs", {"loss": [1.0]})
    repo.commit("main")
    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto", None)  # as without cml-bot[tensorboard]

    code, _, err = cli(["report", "--dry-run"], repo)

    assert code == 2
    assert "pip install 'cml-bot[tensorboard]'" in err


def test_step_plots_are_chosen_and_capped(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", {f"m{i:02d}": [1.0, 0.5] for i in range(35)} | {"loss": [1.0, 0.4]})

    everything = read_logdir(TensorBoardSource("runs"), tmp_path)
    chosen = read_logdir(TensorBoardSource("runs", history=("loss",)), tmp_path)

    assert len(everything.results.metrics) == 36  # every metric is reported ...
    assert len(everything.results.files) == 30  # ... but 30 step plots at most, and the report says so
    assert everything.notes == (
        "TensorBoard: step plots for the first 30 of 36 metrics (by name); choose them with "
        "tensorboard.history patterns.",
    )
    assert list(chosen.results.files) == ["tensorboard:history/loss.csv"] and chosen.notes == ()
