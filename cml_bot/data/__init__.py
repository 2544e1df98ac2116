"""Versioned data: files pinned by URL and sha256, pulled through a content-addressed cache, or DVC.

Pulling pinned files (:func:`pull`):

- The cache holds each blob once at ``<cache>/sha256/ab/abcdef...`` (read-only), with downloads in
  progress at ``<cache>/sha256/ab/abcdef....part``. The default cache is ``data.cache`` from the
  config, else ``$CML_BOT_CACHE``, else ``~/.cache/cml-bot``; a plain folder, so ``actions/cache``
  can keep it between CI runs.
- Every byte is hashed while it is written to the ``.part`` file; only a blob whose sha256 matches
  is renamed into the cache, and only such a blob is placed in the workspace: a hard link to a
  temporary name beside the target, then an atomic rename over it (a copy when the cache is on
  another device). A blob already in the cache from an earlier run is re-hashed before it is placed.
  A failed download removes its ``.part`` file; a killed pull leaves at most a ``.part`` file
  (resumed next time, with an HTTP Range request) and a hidden ``.<name>.cml-bot-*.tmp`` beside the
  target (removed next time), never a half-written file under a real name.
- Bounds: each file has a deadline (:data:`cache.DEADLINE_SLACK` plus its size at
  :data:`cache.MIN_THROUGHPUT`), may not exceed its pinned ``size`` (or
  :data:`cache.UNPINNED_MAX_BYTES` for entries without one), and cache entries are opened without
  following symlinks; anything in the cache that is not a regular file is removed and replaced.
  The cache lock names its holder and is waited for at most :data:`cache.LOCK_TIMEOUT` seconds.
- ``<repo>/.cml-bot/data-state.json`` records size, mtime and inode of each file as placed. A file
  whose stat still matches is up to date without being read: a warm pull is a stat per file, no
  hashing and no network.
- Sources: ``https://``, ``http://`` (a ``requests`` session), ``file://`` URLs and plain paths
  (relative to the repo root), and any other fsspec protocol (``s3://``, ``gs://``, ...) when fsspec
  and its backend are installed. Connection errors, timeouts, 429 and 5xx answers are retried with
  exponential backoff, resuming where the previous attempt stopped.

Writes are atomic against a killed process, not fsync'ed against power loss; blobs taken from the
cache are verified before they are placed, which covers a cache damaged that way.
"""

from cml_bot.data.cache import PulledFile, PullResult, Transfer, blob_path, default_cache, hash_file, pull
from cml_bot.data.changes import DataChange, collect_data_changes, data_changes
from cml_bot.data.dvc import dvc_executable, dvc_pull, is_dvc_repo
from cml_bot.data.pinning import add_file, set_data_entry
from cml_bot.data.sources import Download, Fetcher, RetryableError, SourceFetcher, make_fetcher

__all__ = [
    "DataChange",
    "Download",
    "Fetcher",
    "PullResult",
    "PulledFile",
    "RetryableError",
    "SourceFetcher",
    "Transfer",
    "add_file",
    "blob_path",
    "collect_data_changes",
    "data_changes",
    "default_cache",
    "dvc_executable",
    "dvc_pull",
    "hash_file",
    "is_dvc_repo",
    "make_fetcher",
    "pull",
    "set_data_entry",
]
