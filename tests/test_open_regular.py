"""files.open_regular (the one open-without-waiting + regular-file check) and read_limited's one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cml_bot.data.sources import make_fetcher
from cml_bot.errors import DataError, InputError
from cml_bot.files import NotRegularFile, open_regular, read_limited

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


def test_open_regular_gives_the_descriptor_and_its_stat(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"12345")
    fd, info = open_regular(path)
    try:
        assert info.st_size == 5
        assert os.get_blocking(fd)  # read as usual once it is known to be a regular file
        assert os.read(fd, 10) == b"12345"
    finally:
        os.close(fd)


@needs_fifo
def test_open_regular_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile) as caught:
        open_regular(fifo)
    assert caught.value.kind == "a FIFO"
    with pytest.raises(NotRegularFile, match="a folder"):
        open_regular(tmp_path)


def test_read_limited_errors_are_one_line_whatever_the_name_holds(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_limited(tmp_path / "missing.json", 100, shown="evil\nname.json")
    assert str(caught.value) == "evil name.json: file not found"


@needs_fifo
def test_a_local_data_source_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "source.bin")
    with pytest.raises(DataError, match="the source is not a regular file"):
        make_fetcher(tmp_path)("source.bin", 0)


def test_a_local_data_source_says_its_size(tmp_path: Path) -> None:
    (tmp_path / "source.bin").write_bytes(b"x" * 1234)
    download = make_fetcher(tmp_path)("source.bin", 1000)
    try:
        assert (download.offset, download.total) == (1000, 1234)
        assert b"".join(download.chunks) == b"x" * 234
    finally:
        download.close()
