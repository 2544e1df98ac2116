"""Progress people expect: bytes of each download as they arrive, a bar on a terminal, plain lines in CI."""

from __future__ import annotations

import io
from pathlib import Path

from test_data import Server, config_for, server, sha  # noqa: F401 (server is a fixture)

from cml_bot.cli import Console
from cml_bot.config import DataFile
from cml_bot.data import pull
from cml_bot.progress import TransferMeter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_http_download_reports_bytes_as_they_arrive_with_the_size(server: Server, tmp_path: Path) -> None:  # noqa: F811
    base, served = server
    body = bytes(range(256)) * 4096 * 3  # 3 MB: many 64 KB blocks
    served.files["/big.bin"] = body
    served.faults["/big.bin"] = ["truncate"]  # the second attempt resumes from the middle
    seen: list[tuple[str, int, int | None]] = []
    config = config_for(tmp_path / "repo", [DataFile("big.bin", f"{base}/big.bin", sha(body))], tmp_path / "cache")

    result = pull(config, transfer=lambda *event: seen.append(event), sleep=lambda s: None)

    assert result.count("downloaded") == 1
    assert {path for path, _, _ in seen} == {"big.bin"}
    assert {size for _, _, size in seen} == {len(body)}
    counts = [received for _, received, _ in seen]
    assert len(counts) > 20 and counts[-1] == len(body)
    resumed_at = counts.index(len(body) // 2)  # the resumed attempt starts where the first stopped
    assert counts[: resumed_at + 1] == sorted(counts[: resumed_at + 1])
    assert counts[resumed_at:] == sorted(counts[resumed_at:])


def test_local_source_reports_its_size(tmp_path: Path) -> None:
    source = tmp_path / "train.csv"
    source.write_bytes(b"x" * 3_000_000)
    seen: list[tuple[str, int, int | None]] = []
    pinned = DataFile("train.csv", str(source), sha(source.read_bytes()))
    config = config_for(tmp_path / "repo", [pinned], tmp_path / "cache")
    pull(config, transfer=lambda *event: seen.append(event))
    assert seen[0] == ("train.csv", 0, 3_000_000)
    assert seen[-1] == ("train.csv", 3_000_000, 3_000_000)


def test_ci_log_gets_a_plain_line_every_tenth_or_ten_seconds_never_a_flood() -> None:
    out, clock = io.StringIO(), Clock()
    meter = TransferMeter(out, interactive=False, clock=clock)
    meter.update("a.bin", 0, 80_000_000)
    for step in range(1, 65):  # 1.25 MB every 0.125 s: 10% every 0.8 s, faster than the minimum gap
        clock.now += 0.125
        meter.update("a.bin", step * 1_250_000, 80_000_000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 8  # one a second (the minimum gap), 8 s of transfer
    assert lines[0] == "cml-bot: downloading: 10.0 MB of 80.0 MB (12%) at 10.0 MB/s"
    assert lines[-1] == "cml-bot: downloading: 80.0 MB of 80.0 MB (100%) at 10.0 MB/s"

    quick, clock = io.StringIO(), Clock()
    meter = TransferMeter(quick, interactive=False, clock=clock)
    meter.update("small.csv", 0, 1000)
    clock.now += 0.2
    meter.update("small.csv", 1000, 1000)
    assert quick.getvalue() == ""  # a pull under a second adds nothing to the log


def test_ci_log_without_a_known_size_prints_every_ten_seconds() -> None:
    out, clock = io.StringIO(), Clock()
    meter = TransferMeter(out, interactive=False, clock=clock)
    meter.update("a", 0, None)
    meter.update("b", 0, 5)
    for _ in range(240):  # 30 s at 1 MB/s (0.125 s is exact in binary: no drift in the sum)
        clock.now += 0.125
        meter.update("a", meter.files["a"][0] + 125_000, None)
    assert out.getvalue().splitlines() == [
        "cml-bot: downloading: 10.0 MB at 1.0 MB/s, 2 files in flight",
        "cml-bot: downloading: 20.0 MB at 1.0 MB/s, 2 files in flight",
        "cml-bot: downloading: 30.0 MB at 1.0 MB/s, 2 files in flight",
    ]


def test_terminal_shows_one_bar_that_the_next_line_replaces() -> None:
    out = io.StringIO()
    console = Console(out, io.StringIO(), interactive=True)
    console.transfer("a.bin", 0, 4_000_000)
    console.transfer("b.bin", 0, 4_000_000)
    console.transfer("a.bin", 4_000_000, 4_000_000)
    console.progress("[1/2] a.bin: downloaded 4.0 MB")
    console.transfer("b.bin", 2_000_000, 4_000_000)
    console.say("cml-bot: 2 data files (2 downloaded) in 0.40 s")
    text = out.getvalue()
    assert "\r" in text and "B/s" in text
    assert "8.00M" in text  # the total of both files, in one bar
    assert "[1/2] a.bin" in text  # the per-file line is shown in front of the bar, not on a line of its own
    assert text.endswith("cml-bot: 2 data files (2 downloaded) in 0.40 s\n")
    assert "\n" not in text[: -len("cml-bot: 2 data files (2 downloaded) in 0.40 s\n")]


def test_console_in_ci_keeps_counting_across_per_file_lines() -> None:
    out = io.StringIO()
    console = Console(out, io.StringIO(), interactive=False)
    console.transfer("a.bin", 0, 10)
    console.progress("[1/2] a.bin: downloaded 10 B")
    assert console._meter is not None and console._meter.files == {"a.bin": (0, 10)}
    assert out.getvalue() == "[1/2] a.bin: downloaded 10 B\n"
