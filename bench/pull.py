"""Benchmark: pulling pinned data with cml-bot against `dvc pull` and a plain `cp -r`.

Data: 1,000 files of 100 KB and 10 files of 50 MB (600 MB of random bytes), served from a local
HTTP server on 127.0.0.1 (a separate process, HTTP/1.1 keep-alive) and from a local folder.

Measured (median of --repeat runs; the page cache is warm, the machine may be shared):
- cml-bot cold pull (empty cache, empty workspace) from HTTP and from the folder, in-process;
- cml-bot warm pull (everything in place), in-process and as a fresh `python` process that loads
  cml-bot.yaml (what `cml-bot pull` costs, minus argument parsing);
- `dvc pull` cold and no-op from a local remote, when dvc is installed;
- `cp -r` of the folder, and `cp -r` followed by `sync`.

Run: .venv/bin/python bench/pull.py [--repeat 3] [--small 1000] [--large 10] [--keep]
Everything lives in a temporary folder that is deleted at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cml_bot.config import Config, DataConfig, DataFile
from cml_bot.data import dvc_executable, pull

SMALL_SIZE = 100 * 1000
LARGE_SIZE = 50 * 1000 * 1000


def serve(directory: str, port: int) -> None:
    """Run a threaded HTTP/1.1 file server (in its own process, so it does not share our GIL)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=directory, **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    httpd.serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_data(src: Path, small: int, large: int) -> list[tuple[str, str]]:
    """Write the files; return (relative path, sha256) for each."""
    entries = []
    for folder, count, size in (("small", small, SMALL_SIZE), ("large", large, LARGE_SIZE)):
        (src / folder).mkdir(parents=True)
        for i in range(count):
            rel = f"{folder}/f{i:04d}.bin"
            digest = hashlib.sha256()
            with (src / rel).open("wb") as handle:
                left = size
                while left:
                    block = os.urandom(min(left, 1 << 22))
                    handle.write(block)
                    digest.update(block)
                    left -= len(block)
            entries.append((rel, digest.hexdigest()))
    return entries


def rmtree(path: Path) -> None:
    if path.exists():
        for p in path.rglob("*"):  # blobs are read-only
            if p.is_file() and not p.is_symlink():
                os.chmod(p, 0o644)
        shutil.rmtree(path)


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--serve", nargs=2, metavar=("DIR", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0

    base = Path(tempfile.mkdtemp(prefix="cml-bot-bench-"))
    server = None
    try:
        src = base / "src"
        started = time.perf_counter()
        entries = make_data(src, args.small, args.large)
        total = args.small * SMALL_SIZE + args.large * LARGE_SIZE
        print(
            f"data: {args.small} x 100 KB + {args.large} x 50 MB = {total / 1e6:.0f} MB "
            f"(made in {time.perf_counter() - started:.1f} s); median of {args.repeat} runs"
        )

        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(src), str(port)])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

        repo, cache = base / "repo", base / "cache"
        repo.mkdir()

        def config(url_of: Callable[[str], str]) -> Config:
            files = tuple(DataFile(f"data/{rel}", url_of(rel), digest) for rel, digest in entries)
            return Config(root=repo, data=DataConfig(files=files, cache=str(cache)))

        http_config = config(lambda rel: f"http://127.0.0.1:{port}/{rel}")
        local_config = config(lambda rel: str(src / rel))

        def reset_cold() -> None:
            rmtree(repo / "data")
            rmtree(repo / ".cml-bot")
            rmtree(cache)

        lines = ["data:", "  cache: " + str(cache), "  files:"]
        for f in local_config.data.files:
            lines += [f"    - path: {f.path}", f"      url: {f.url}", f"      sha256: {f.sha256}"]
        (repo / "cml-bot.yaml").write_text("\n".join(lines) + "\n")
        script = (
            "import sys; from pathlib import Path; from cml_bot.config import load_config; "
            "from cml_bot.data import pull; "
            "r = pull(load_config(Path(sys.argv[1]))); "
            "assert r.count('up-to-date') == len(r.files), r.summary"
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        copy_dst = base / "copy"

        def copy() -> None:
            run(["cp", "-r", str(src), str(copy_dst)], base)

        def copy_and_sync() -> None:
            copy()
            run(["sync"], base)

        # (name, action, reset before it); one round runs them all in this order, so drift in the
        # machine's load affects every contender alike.
        scenarios: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = [
            ("cml-bot cold, HTTP", lambda: pull(http_config, jobs=args.jobs), reset_cold),
            ("cml-bot cold, folder", lambda: pull(local_config, jobs=args.jobs), reset_cold),
            ("cml-bot warm, in-process", lambda: pull(local_config), None),
            (
                "cml-bot warm, new process + config",
                lambda: run([sys.executable, "-c", script, str(repo)], repo, env),
                None,
            ),
            (
                "python startup + import cml_bot.data",
                lambda: run([sys.executable, "-c", "import cml_bot.data"], repo, env),
                None,
            ),
            ("cp -r", copy, lambda: rmtree(copy_dst)),
            ("cp -r + sync", copy_and_sync, lambda: rmtree(copy_dst)),
        ]

        dvc = dvc_executable()
        if dvc is not None:
            dvc_env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
            project = base / "dvc-project"
            project.mkdir()
            run([dvc, "init", "--no-scm", "-q"], project, dvc_env)
            run([dvc, "remote", "add", "-d", "local", str(base / "dvc-remote")], project, dvc_env)
            shutil.copytree(src, project / "data")
            run([dvc, "add", "-q", "data"], project, dvc_env)
            run([dvc, "push", "-q"], project, dvc_env)

            def reset_dvc() -> None:
                rmtree(project / "data")
                rmtree(project / ".dvc" / "cache")
                rmtree(project / ".dvc" / "tmp")

            def dvc_pull() -> None:
                run([dvc, "pull", "-q"], project, dvc_env)

            scenarios += [("dvc pull cold, local remote", dvc_pull, reset_dvc), ("dvc pull no-op", dvc_pull, None)]
        else:
            print("dvc not installed: skipping the DVC comparison (pip install dvc)")

        times: dict[str, list[float]] = {name: [] for name, _, _ in scenarios}
        for _ in range(args.repeat):
            for name, action, reset in scenarios:
                if reset is not None:
                    reset()
                start = time.perf_counter()
                action()
                times[name].append(time.perf_counter() - start)
        rmtree(copy_dst)
        results = {name: statistics.median(values) for name, values in times.items()}

        width = max(map(len, results))
        for name, seconds in results.items():
            spread = f"(min {min(times[name]):.3f}, max {max(times[name]):.3f})"
            print(f"  {name:<{width}}  {seconds:7.3f} s  {spread}")
        print("ratios (below 1.0: cml-bot is faster):")
        cp = results["cp -r"]
        for name in ("cml-bot cold, HTTP", "cml-bot cold, folder"):
            print(f"  {name} / cp -r: {results[name] / cp:.2f}")
        if "dvc pull cold, local remote" in results:
            dvc_cold, dvc_warm = results["dvc pull cold, local remote"], results["dvc pull no-op"]
            for name in ("cml-bot cold, HTTP", "cml-bot cold, folder"):
                print(f"  {name} / dvc pull cold: {results[name] / dvc_cold:.2f}")
            for name in ("cml-bot warm, in-process", "cml-bot warm, new process + config"):
                print(
                    f"  {name} / dvc pull no-op: {results[name] / dvc_warm:.3f}"
                    f" ({dvc_warm / results[name]:.0f}x faster)"
                )
            print(f"  dvc pull cold / cp -r: {dvc_cold / cp:.2f}")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        if args.keep:
            print(f"kept {base}")
        else:
            rmtree(base)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
