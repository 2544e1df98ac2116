"""Pinned data: pull through the cache from a real local HTTP server, files and fsspec; data add;
data changes between base and head."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from cml_bot.config import Config, DataConfig, DataFile, load_config
from cml_bot.data import (
    DataChange,
    Download,
    add_file,
    blob_path,
    data_changes,
    default_cache,
    make_fetcher,
    pull,
    set_data_entry,
)
from cml_bot.errors import ConfigError, DataError
from cml_bot.secrets import redact_url


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------ a real HTTP server


@dataclass
class Served:
    """In-memory files with faults to inject, consumed one per request: 'truncate', 'wrong', '503', '404'."""

    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    ranges: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


Server = tuple[str, Served]  # base URL, served files


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served: Served

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        served = self.served
        with served.lock:
            served.requests.append((path, self.headers.get("Range")))
            faults = served.faults.get(path) or []
            fault = faults.pop(0) if faults else None
        if fault == "503" or fault == "404" or path not in served.files:
            code = 404 if fault == "404" or path not in served.files else 503
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = served.files[path]
        if fault == "wrong":
            body = bytes(b ^ 0xFF for b in body)
        start = 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if match and served.ranges:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        if fault == "truncate":
            self.send_header("Connection", "close")
        self.end_headers()
        if fault == "truncate":
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server() -> Iterator[Server]:
    served = Served()
    handler = type("BoundHandler", (Handler,), {"served": served})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def config_for(root: Path, files: list[DataFile], cache: Path) -> Config:
    return Config(root=root, data=DataConfig(files=tuple(files), cache=str(cache)))


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def no_network(url: str, offset: int) -> Download:
    raise AssertionError(f"unexpected fetch of {url}")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    return root


# ------------------------------------------------------------------------------------------ pulling


def test_cold_pull_over_http_places_hardlinks_to_verified_read_only_blobs(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    url, served = server
    contents = {f"/f{i}.csv": f"a,b\n{i},{i * i}\n".encode() * (i + 1) for i in range(6)}
    served.files.update(contents)
    files = [DataFile(f"data/sub/f{i}.csv", f"{url}/f{i}.csv?token=x", sha(contents[f"/f{i}.csv"])) for i in range(6)]
    cache = tmp_path / "cache"
    lines: list[str] = []

    result = pull(config_for(repo, files, cache), progress=lines.append, jobs=4)

    assert [f.action for f in result.files] == ["downloaded"] * 6
    assert result.bytes_downloaded == sum(map(len, contents.values()))
    for i, f in enumerate(files):
        target = repo / f.path
        assert target.read_bytes() == contents[f"/f{i}.csv"]
        blob = blob_path(cache, f.sha256)
        assert blob == cache / "sha256" / f.sha256[:2] / f.sha256
        assert os.path.samefile(target, blob)
        assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert len(lines) == 6 and lines[-1].startswith("[6/6] ")
    assert sorted(re.sub(r"^\[\d/6\] ", "", line).split(":")[0] for line in lines) == [f.path for f in files]
    assert (repo / ".cml-bot" / "data-state.json").is_file()
    assert (repo / ".cml-bot" / ".gitignore").read_text() == "*\n"
    assert not list(cache.rglob("*.part"))
    assert "6 data files (6 downloaded)" in result.summary


def test_warm_pull_is_a_stat_check_without_hashing_or_network(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    served.files["/a.bin"] = b"x" * 5000
    files = [DataFile("a.bin", f"{url}/a.bin", sha(b"x" * 5000))]
    config = config_for(repo, files, tmp_path / "cache")
    pull(config)
    target = repo / "a.bin"
    # Change the bytes behind pull's back, keeping size, mtime and inode: only a pull that reads
    # the file could notice, and a warm pull must not read it.
    before = target.stat()
    os.chmod(target, 0o644)
    with target.open("r+b") as handle:
        handle.write(b"y")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))

    result = pull(config, fetch=no_network)

    assert [f.action for f in result.files] == ["up-to-date"]
    assert target.read_bytes().startswith(b"y")
    assert len(served.requests) == 1


def test_changed_mtime_rehashes_in_place_without_network(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    served.files["/a.bin"] = b"abc" * 100
    config = config_for(repo, [DataFile("a.bin", f"{url}/a.bin", sha(b"abc" * 100))], tmp_path / "cache")
    pull(config)
    os.utime(repo / "a.bin", (1, 1))

    assert [f.action for f in pull(config, fetch=no_network).files] == ["verified"]
    assert [f.action for f in pull(config, fetch=no_network).files] == ["up-to-date"]


def test_modified_workspace_file_is_restored_and_cache_stays_intact(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    served.files["/a.csv"] = b"good\n"
    cache = tmp_path / "cache"
    config = config_for(repo, [DataFile("a.csv", f"{url}/a.csv", sha(b"good\n"))], cache)
    pull(config)
    target = repo / "a.csv"
    target.unlink()
    target.write_bytes(b"edited locally\n")  # a new file, not the cache's inode

    result = pull(config, fetch=no_network)

    assert [f.action for f in result.files] == ["cached"]
    assert target.read_bytes() == b"good\n"
    assert blob_path(cache, sha(b"good\n")).read_bytes() == b"good\n"


def test_damaged_cache_blob_is_not_placed_but_downloaded_again(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    served.files["/a.csv"] = b"good\n"
    cache = tmp_path / "cache"
    digest = sha(b"good\n")
    blob = blob_path(cache, digest)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"bad!\n")
    config = config_for(repo, [DataFile("a.csv", f"{url}/a.csv", digest)], cache)

    assert [f.action for f in pull(config).files] == ["downloaded"]
    assert (repo / "a.csv").read_bytes() == b"good\n" and blob.read_bytes() == b"good\n"


def test_cache_is_shared_between_repos(server: Server, tmp_path: Path) -> None:
    url, served = server
    served.files["/a.csv"] = b"1,2\n"
    cache = tmp_path / "cache"
    files = [DataFile("a.csv", f"{url}/a.csv", sha(b"1,2\n"))]
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    pull(config_for(first, files, cache))

    result = pull(config_for(second, files, cache), fetch=no_network)

    assert [f.action for f in result.files] == ["cached"]
    assert os.path.samefile(first / "a.csv", second / "a.csv")


def test_same_content_at_two_paths_is_downloaded_once(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    served.files["/a.csv"] = b"same\n"
    files = [DataFile(p, f"{url}/a.csv", sha(b"same\n")) for p in ("x/a.csv", "y/a.csv", "z.csv")]

    result = pull(config_for(repo, files, tmp_path / "cache"), jobs=8)

    assert len(served.requests) == 1
    assert sorted(f.action for f in result.files) == ["downloaded"] * 3
    assert all((repo / f.path).read_bytes() == b"same\n" for f in files)


def test_hash_mismatch_names_file_and_both_hashes_and_leaves_nothing(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    url, served = server
    served.files["/a.csv"] = b"actual content\n"
    expected = sha(b"what was pinned\n")
    cache = tmp_path / "cache"
    config = config_for(repo, [DataFile("data/a.csv", f"{url}/a.csv?sig=SECRET", expected)], cache)

    with pytest.raises(DataError) as caught:
        pull(config)

    message = str(caught.value)
    assert "data/a.csv" in message and expected in message and sha(b"actual content\n") in message
    assert "SECRET" not in message
    assert not (repo / "data" / "a.csv").exists()
    assert [p.name for p in cache.rglob("*") if p.is_file()] == [".lock"]


def test_wrong_bytes_once_are_caught_and_not_cached(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    served.files["/a.csv"] = b"0123456789" * 10
    served.faults["/a.csv"] = ["wrong"]
    body = b"0123456789" * 10
    config = config_for(repo, [DataFile("a.csv", f"{url}/a.csv", sha(body))], tmp_path / "cache")

    with pytest.raises(DataError, match="sha256 mismatch"):
        pull(config)
    assert not (repo / "a.csv").exists()

    assert [f.action for f in pull(config).files] == ["downloaded"]
    assert (repo / "a.csv").read_bytes() == b"0123456789" * 10


def test_503_is_retried_with_backoff(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    served.files["/a.csv"] = b"ok\n"
    served.faults["/a.csv"] = ["503", "503"]
    sleeps = Sleeps()

    pull(config_for(repo, [DataFile("a.csv", f"{url}/a.csv", sha(b"ok\n"))], tmp_path / "c"), sleep=sleeps)

    assert sleeps == [0.5, 1.0]
    assert (repo / "a.csv").read_bytes() == b"ok\n"


def test_persistent_503_gives_up_and_places_nothing(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    served.files["/a.csv"] = b"ok\n"
    served.faults["/a.csv"] = ["503"] * 10
    sleeps = Sleeps()
    config = config_for(repo, [DataFile("a.csv", f"{url}/a.csv", sha(b"ok\n"))], tmp_path / "c")

    with pytest.raises(DataError, match=r"a\.csv: download failed after 5 attempts: .*HTTP 503"):
        pull(config, sleep=sleeps)

    assert sleeps == [0.5, 1.0, 2.0, 4.0]
    assert not (repo / "a.csv").exists()


def test_404_fails_at_once_without_leaking_the_query(server: Server, repo: Path, tmp_path: Path) -> None:
    url, _ = server
    sleeps = Sleeps()
    pin = DataFile("a.csv", f"{url}/missing.csv?token=SECRET", "0" * 64)
    config = config_for(repo, [pin], tmp_path / "c")

    with pytest.raises(DataError) as caught:
        pull(config, sleep=sleeps)

    assert "HTTP 404" in str(caught.value) and "missing.csv?..." in str(caught.value)
    assert "SECRET" not in str(caught.value)
    assert sleeps == []


def test_truncated_response_is_resumed_with_a_range_request(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    body = bytes(range(256)) * 4000  # 1 MB
    served.files["/big.bin"] = body
    served.faults["/big.bin"] = ["truncate"]
    sleeps = Sleeps()

    pull(config_for(repo, [DataFile("big.bin", f"{url}/big.bin", sha(body))], tmp_path / "c"), sleep=sleeps)

    assert (repo / "big.bin").read_bytes() == body
    [first, second] = served.requests
    assert first == ("/big.bin", None)
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", second[1] or "")[1])  # type: ignore[index]
    assert len(body) // 4 < resumed_at <= len(body) // 2
    assert sleeps == []  # the attempt made progress, so it resumes at once


def test_killed_pull_leftovers_are_resumed_or_cleaned(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    body = b"line of data\n" * 1000
    served.files["/d.csv"] = body
    cache = tmp_path / "cache"
    digest = sha(body)
    part = blob_path(cache, digest).with_name(digest + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(body[:5000])  # what a killed download left
    (repo / "data").mkdir()
    leftover = repo / "data" / ".d.csv.cml-bot-123-456.tmp"  # what a killed placement left
    leftover.write_bytes(body[:10])

    pull(config_for(repo, [DataFile("data/d.csv", f"{url}/d.csv", digest)], cache))

    assert (repo / "data" / "d.csv").read_bytes() == body
    assert served.requests == [("/d.csv", "bytes=5000-")]
    assert not part.exists() and not leftover.exists()
    assert sorted(p.name for p in (repo / "data").iterdir()) == ["d.csv"]


def test_leftover_part_with_wrong_bytes_is_redownloaded_from_scratch(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    url, served = server
    body = b"0123456789" * 500
    served.files["/d.csv"] = body
    cache = tmp_path / "cache"
    part = blob_path(cache, sha(body)).with_name(sha(body) + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage" * 100)

    pull(config_for(repo, [DataFile("d.csv", f"{url}/d.csv", sha(body))], cache))

    assert (repo / "d.csv").read_bytes() == body
    assert served.requests == [("/d.csv", "bytes=700-"), ("/d.csv", None)]


def test_leftover_part_longer_than_the_file_restarts(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    served.files["/d.csv"] = b"short\n"
    cache = tmp_path / "cache"
    part = blob_path(cache, sha(b"short\n")).with_name(sha(b"short\n") + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 100)

    pull(config_for(repo, [DataFile("d.csv", f"{url}/d.csv", sha(b"short\n"))], cache))

    assert (repo / "d.csv").read_bytes() == b"short\n"
    assert served.requests == [("/d.csv", "bytes=100-"), ("/d.csv", None)]


def test_server_without_range_support_restarts_the_file(server: Server, repo: Path, tmp_path: Path) -> None:
    url, served = server
    served.ranges = False
    body = b"abcdefgh" * 1000
    served.files["/d.bin"] = body
    cache = tmp_path / "cache"
    part = blob_path(cache, sha(body)).with_name(sha(body) + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(body[:3000])

    pull(config_for(repo, [DataFile("d.bin", f"{url}/d.bin", sha(body))], cache))

    assert (repo / "d.bin").read_bytes() == body
    assert served.requests == [("/d.bin", "bytes=3000-")]


def test_file_urls_and_plain_paths(repo: Path, tmp_path: Path) -> None:
    source = tmp_path / "remote"
    source.mkdir()
    (source / "a.csv").write_bytes(b"a\n1\n")
    (repo / "vendor").mkdir()
    (repo / "vendor" / "b.csv").write_bytes(b"b\n2\n")
    files = [
        DataFile("data/a.csv", (source / "a.csv").as_uri(), sha(b"a\n1\n")),
        DataFile("data/b.csv", "vendor/b.csv", sha(b"b\n2\n")),
        DataFile("data/c.csv", str(source / "a.csv"), sha(b"a\n1\n")),
    ]

    pull(config_for(repo, files, tmp_path / "cache"))

    assert (repo / "data" / "a.csv").read_bytes() == b"a\n1\n"
    assert (repo / "data" / "b.csv").read_bytes() == b"b\n2\n"
    assert (repo / "data" / "c.csv").read_bytes() == b"a\n1\n"


def test_missing_local_source_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    config = config_for(repo, [DataFile("a.csv", str(tmp_path / "nope.csv"), "0" * 64)], tmp_path / "cache")
    with pytest.raises(DataError, match=r"nope\.csv: cannot read source"):
        pull(config)


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a second filesystem")
def test_cache_on_another_device_is_copied(repo: Path, tmp_path: Path) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        cache = Path(shm) / "cache"
        if os.stat(shm).st_dev == repo.stat().st_dev:
            pytest.skip("/dev/shm is on the same device")
        (tmp_path / "a.csv").write_bytes(b"copy me\n")
        config = config_for(repo, [DataFile("a.csv", str(tmp_path / "a.csv"), sha(b"copy me\n"))], cache)
        pull(config)
        target = repo / "a.csv"
        assert target.read_bytes() == b"copy me\n"
        assert not os.path.samefile(target, blob_path(cache, sha(b"copy me\n")))
        assert [f.action for f in pull(config, fetch=no_network).files] == ["up-to-date"]


def test_fsspec_sources(repo: Path, tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    with fsspec.open("memory://bucket/a.csv", "wb") as handle:
        handle.write(b"from memory\n")
    files = [DataFile("a.csv", "memory://bucket/a.csv", sha(b"from memory\n"))]

    pull(config_for(repo, files, tmp_path / "cache"))

    assert (repo / "a.csv").read_bytes() == b"from memory\n"


def test_s3_without_its_backend_says_what_to_install(repo: Path) -> None:
    with pytest.raises(DataError, match=r"s3://bucket/key: s3:// sources need .*pip install s3fs"):
        make_fetcher(repo)("s3://bucket/key", 0)


@pytest.mark.parametrize("path", ["../outside.csv", "/etc/passwd", "a/../../b.csv", "C:/x.csv"])
def test_paths_escaping_the_repo_are_rejected(path: str, repo: Path, tmp_path: Path) -> None:
    config = config_for(repo, [DataFile(path, "x.csv", "0" * 64)], tmp_path / "cache")
    with pytest.raises(DataError, match="must stay inside the repo"):
        pull(config, fetch=no_network)


def test_symlinked_folder_out_of_the_repo_is_rejected(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "data").symlink_to(outside)
    (tmp_path / "src.csv").write_bytes(b"x\n")
    files = [DataFile("data/a.csv", str(tmp_path / "src.csv"), sha(b"x\n"))]

    with pytest.raises(DataError, match="leaves the repo through a symlink"):
        pull(config_for(repo, files, tmp_path / "cache"))

    assert list(outside.iterdir()) == []


def test_symlink_file_out_of_the_repo_is_rejected(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("keep me")
    (repo / "a.csv").symlink_to(tmp_path / "secret")
    config = config_for(repo, [DataFile("a.csv", "x.csv", "0" * 64)], tmp_path / "cache")

    with pytest.raises(DataError, match="symlink out of the repo"):
        pull(config, fetch=no_network)

    assert (tmp_path / "secret").read_text() == "keep me"


def test_corrupt_state_file_only_costs_a_rehash(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"x\n")
    config = config_for(repo, [DataFile("a.csv", str(tmp_path / "a.csv"), sha(b"x\n"))], tmp_path / "cache")
    pull(config)
    (repo / ".cml-bot" / "data-state.json").write_text("{not json")

    assert [f.action for f in pull(config, fetch=no_network).files] == ["verified"]
    assert [f.action for f in pull(config, fetch=no_network).files] == ["up-to-date"]


def test_new_pin_replaces_an_old_version_without_hashing_it(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "v1.csv").write_bytes(b"v1\n")
    (tmp_path / "v2.csv").write_bytes(b"v2\n")
    cache = tmp_path / "cache"
    pull(config_for(repo, [DataFile("a.csv", str(tmp_path / "v1.csv"), sha(b"v1\n"))], cache))

    result = pull(config_for(repo, [DataFile("a.csv", str(tmp_path / "v2.csv"), sha(b"v2\n"))], cache))

    assert [f.action for f in result.files] == ["downloaded"]
    assert (repo / "a.csv").read_bytes() == b"v2\n"
    assert blob_path(cache, sha(b"v1\n")).read_bytes() == b"v1\n"


def test_empty_config_pulls_nothing(repo: Path, tmp_path: Path) -> None:
    result = pull(config_for(repo, [], tmp_path / "cache"), fetch=no_network)
    assert result.files == () and not (repo / ".cml-bot").exists()


def test_default_cache_location(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_BOT_CACHE", str(tmp_path / "env-cache"))
    assert default_cache(Config(root=repo)) == tmp_path / "env-cache"
    assert default_cache(Config(root=repo, data=DataConfig(cache=".cache/data"))) == repo / ".cache" / "data"
    monkeypatch.delenv("CML_BOT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache(Config(root=repo)) == tmp_path / "home" / ".cache" / "cml-bot"


def test_redact_hides_credentials_and_queries() -> None:
    assert redact_url("https://user:pw@host:8443/a/b.csv?X-Amz-Signature=s") == "https://host:8443/a/b.csv?..."
    assert redact_url("data/local.csv") == "data/local.csv"


# ----------------------------------------------------------------------------------------- data add

ENTRY_RE = re.compile(r"sha256: ([0-9a-f]{64})")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_add_file_to_a_config_without_data_keeps_everything_else(repo: Path) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_bytes(b"x,y\n1,2\n")
    original = "# my project\ntitle: Demo  # shown on top\npipeline:\n  - python train.py\n"
    config_file = write(repo / "cml-bot.yaml", original)

    entry = add_file(repo, "data/train.csv", "https://example.com/train.csv", config_file)

    assert entry == DataFile("data/train.csv", "https://example.com/train.csv", sha(b"x,y\n1,2\n"), size=8)
    text = config_file.read_text()
    assert text.startswith(original)
    assert load_config(repo).data.files == (entry,)


def test_add_file_appends_and_replaces_in_a_commented_block_list(repo: Path) -> None:
    for name in ("a.csv", "b.csv"):
        (repo / name).write_bytes(name.encode())
    original = (
        "title: Demo\n"
        "data:\n"
        "  # pinned inputs\n"
        "  files:\n"
        "    - path: a.csv   # the first\n"
        "      url: https://example.com/a.csv\n"
        "      sha256: " + "a" * 64 + "  # stale\n"
        "  label_column: y\n"
        "# trailing comment\n"
        "metrics: [metrics.json]\n"
    )
    config_file = write(repo / "cml-bot.yaml", original)

    b = add_file(repo, "b.csv", "https://example.com/b.csv", config_file)
    a = add_file(repo, str(repo / "a.csv"), "https://example.com/a2.csv", config_file)

    text = config_file.read_text()
    assert load_config(repo).data.files == (a, b)
    assert load_config(repo).data.label_column == "y"
    for kept in ("# pinned inputs", "# trailing comment", "metrics: [metrics.json]", "  label_column: y\n"):
        assert kept in text
    assert "a" * 64 not in text
    assert text.count("    - path:") == 2 and "      url: https://example.com/b.csv\n" in text


def test_add_file_into_flow_style_or_shorthand_data(repo: Path) -> None:
    (repo / "a.csv").write_bytes(b"a")
    for original in (
        "data: {files: [], cache: .cache}\ntitle: T\n",
        "data: []\ntitle: T\n",
        "data:\n  - {path: old.csv, url: u, sha256: " + "1" * 64 + "}\ntitle: T\n",
        "data:\ntitle: T\n",
    ):
        config_file = write(repo / "cml-bot.yaml", original)
        entry = add_file(repo, "a.csv", "https://h/a.csv?x=1 #frag", config_file)
        config = load_config(repo)
        assert entry in config.data.files, original
        assert config.title == "T"
        assert entry.url == "https://h/a.csv?x=1 #frag"


def test_add_file_into_a_missing_or_empty_config(repo: Path) -> None:
    (repo / "a.csv").write_bytes(b"a")
    entry = add_file(repo, "a.csv", "s3://bucket/a.csv", repo / "cml-bot.yaml")
    assert load_config(repo).data.files == (entry,)


def test_add_file_rejects_paths_outside_and_missing_files(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.csv").write_bytes(b"x")
    config_file = write(repo / "cml-bot.yaml", "title: T\n")
    with pytest.raises(DataError, match="not inside the repo"):
        add_file(repo, "../outside.csv", "u", config_file)
    with pytest.raises(DataError, match="not a file"):
        add_file(repo, "nope.csv", "u", config_file)
    assert config_file.read_text() == "title: T\n"


def test_set_data_entry_refuses_a_non_mapping_config() -> None:
    with pytest.raises(ConfigError, match="mapping at the top level"):
        set_data_entry("- a\n- b\n", DataFile("a", "u", "0" * 64))


def test_set_data_entry_keeps_the_item_indentation_style() -> None:
    text = "data:\n  files:\n  - path: a.csv\n    url: u\n    sha256: " + "0" * 64 + "\n"
    out = set_data_entry(text, DataFile("b.csv", "v", "b" * 64))
    assert out == text + "  - path: b.csv\n    url: v\n    sha256: " + "b" * 64 + "\n"
    assert yaml.safe_load(out)["data"]["files"][1]["path"] == "b.csv"


def test_set_data_entry_quotes_values_yaml_would_read_as_something_else() -> None:
    digits = "1" * 64  # unquoted, YAML would read an int
    out = set_data_entry("", DataFile("yes", "https://h/x?a=1#b", digits))
    files = yaml.safe_load(out)["data"]["files"]
    assert files == [{"path": "yes", "url": "https://h/x?a=1#b", "sha256": digits}]


# ------------------------------------------------------------------------------------- data changes


def test_csv_changes_with_rows_columns_and_label_distribution() -> None:
    base = b"x,label\n1,cat\n2,dog\n3,cat\n"
    head = b"x,label,weight\n1,cat,1\n2,dog,1\n3,dog,1\n4,bird,2\n"

    [change] = data_changes({"data/train.csv": base}, {"data/train.csv": head}, "label")

    assert change == DataChange(
        path="data/train.csv",
        base_sha256=sha(base),
        head_sha256=sha(head),
        base_rows=3,
        head_rows=4,
        columns_added=("weight",),
        columns_removed=(),
        label_counts=(("bird", 0, 1), ("cat", 2, 1), ("dog", 1, 2)),
    )
    assert change.changed


def test_unchanged_new_removed_and_binary_files() -> None:
    same = b"a\tb\n1\t2\n"
    changes = data_changes(
        {"same.tsv": same, "gone.csv": b"a\n1\n", "model.bin": b"\x00\x01", "absent.csv": None},
        {"same.tsv": same, "new.csv": b"a,b\n1,2\n2,3\n", "model.bin": b"\x00\x02"},
        "b",
    )
    by_path = {c.path: c for c in changes}

    assert [c.path for c in changes] == ["gone.csv", "model.bin", "new.csv", "same.tsv"]
    assert by_path["same.tsv"] == DataChange("same.tsv", sha(same), sha(same), 1, 1)
    assert not by_path["same.tsv"].changed
    assert by_path["gone.csv"] == DataChange("gone.csv", sha(b"a\n1\n"), None, base_rows=1)
    assert by_path["new.csv"] == DataChange(
        "new.csv", None, sha(b"a,b\n1,2\n2,3\n"), head_rows=2, label_counts=(("2", 0, 1), ("3", 0, 1))
    )
    assert by_path["model.bin"] == DataChange("model.bin", sha(b"\x00\x01"), sha(b"\x00\x02"))
    assert by_path["model.bin"].changed


def test_label_column_missing_and_quoted_csv() -> None:
    base = b'text,y\n"hello, world",1\n"multi\nline",0\n'
    head = b'text,z\n"hello, world",1\n'
    [change] = data_changes({"t.csv": base}, {"t.csv": head}, "y")
    assert (change.base_rows, change.head_rows) == (2, 1)
    assert change.columns_added == ("z",) and change.columns_removed == ("y",)
    assert change.label_counts == (("0", 1, 0), ("1", 1, 0))


def test_parquet_summary_when_pyarrow_is_installed() -> None:
    pytest.importorskip("pyarrow")
    import pandas as pd

    def parquet(frame: pd.DataFrame) -> bytes:
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        return buffer.getvalue()

    base = parquet(pd.DataFrame({"x": [1, 2], "label": ["a", "b"]}))
    head = parquet(pd.DataFrame({"x": [1, 2, 3], "label": ["a", "a", "b"], "w": [1, 1, 1]}))
    [change] = data_changes({"d.parquet": base}, {"d.parquet": head}, "label")
    assert (change.base_rows, change.head_rows, change.columns_added) == (2, 3, ("w",))
    assert change.label_counts == (("a", 1, 2),)


def test_set_data_entry_keeps_a_comment_after_a_re_emitted_section() -> None:
    out = set_data_entry("title: T\ndata:\n  cache: x # keep\n", DataFile("a.csv", "u", "b" * 64))
    assert "# keep" in out
    assert yaml.safe_load(out) == {
        "title": "T",
        "data": {"cache": "x", "files": [{"path": "a.csv", "url": "u", "sha256": "b" * 64}]},
    }


def test_pulls_sharing_a_cache_take_turns(repo: Path, tmp_path: Path) -> None:
    import fcntl

    (tmp_path / "a.csv").write_bytes(b"x\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    config = config_for(repo, [DataFile("a.csv", str(tmp_path / "a.csv"), sha(b"x\n"))], cache)
    lines: list[str] = []
    with (cache / ".lock").open("ab") as other:
        fcntl.flock(other, fcntl.LOCK_EX)  # another process's pull holds the cache
        thread = threading.Thread(target=pull, args=(config,), kwargs={"progress": lines.append})
        thread.start()
        deadline = time.monotonic() + 5
        while not lines and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lines == [f"waiting for the data cache {cache}, locked by another process (unknown)"]
        assert not (repo / "a.csv").exists()
    thread.join(5)
    assert (repo / "a.csv").read_bytes() == b"x\n"
