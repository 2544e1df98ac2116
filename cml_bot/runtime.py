"""What a run is given and what it gives back: the effects it may use, the options it was asked,
its outcome; and the factories that connect it to a forge (imported lazily, only when used).

Shared by :mod:`cml_bot.app` (the entry points), :mod:`cml_bot.evaluation` (what the change did)
and :mod:`cml_bot.delivery` (where the report goes).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cml_bot.baseline import ResultStore
from cml_bot.config import Config
from cml_bot.context import CiContext
from cml_bot.forges import token_kind
from cml_bot.forges.sticky import CommentMode, Publication
from cml_bot.git import Runner, run_git
from cml_bot.model import Verdict
from cml_bot.report import Report
from cml_bot.results import LocalStore

if TYPE_CHECKING:
    from cml_bot.forges.base import Forge

log = logging.getLogger(__name__)

DEFAULT_REPORT_DIR = "cml-bot-report"
DEFAULT_BUNDLE_DIR = "cml-bot-bundle"
DEFAULT_SHARDS_DIR = "cml-bot-shards"
RECORDS_DIR = ".cml-bot/records"


class ForgeFactory(Protocol):
    def __call__(self, context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None]) -> Forge: ...


class StoreFactory(Protocol):
    def __call__(
        self, config: Config, context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None] = ...
    ) -> ResultStore: ...


def connect_forge(context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None]) -> Forge:
    """The real drivers, imported only when a run talks to a forge."""
    from cml_bot.forges import connect

    return connect(context, env, sleep=sleep)


def default_store_factory(
    config: Config, context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None] = time.sleep
) -> ResultStore:
    """Results live in the forge's data branch when a token can read it, else in a local folder."""
    if context.platform in ("github", "gitlab", "bitbucket") and token_kind(context, env) != "none":
        return connect_forge(context, env, sleep=sleep).result_store(config.data_branch)
    if context.platform != "local":
        log.warning("Recorded results stay in %s: no token to read the %s data branch", RECORDS_DIR, context.platform)
    return LocalStore(config.root / RECORDS_DIR)


@dataclass(frozen=True)
class Effects:
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    echo: Callable[[str], None] = lambda line: None  # live output of the pipeline and of dvc
    progress: Callable[[str], None] = lambda line: None  # one line per pulled file (redrawn on a terminal)
    transfer: Callable[[str, int, int | None], None] = lambda path, received, size: None  # bytes of a download
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep  # retry backoff of the forge client
    git_runner: Runner = run_git
    forge_factory: ForgeFactory = connect_forge
    store_factory: StoreFactory = default_store_factory
    event: Mapping[str, Any] | None = None  # GitHub event payload; None: read GITHUB_EVENT_PATH


@dataclass(frozen=True)
class Options:
    root: Path
    run_pipeline: bool = False  # `run`: pull data and run the pipeline first
    config_path: Path | None = None
    dry_run: bool = False
    post: bool = True  # False (`--no-post`): save a bundle for `cml-bot publish` in a step with the token
    report_dir: Path | None = None
    bundle_dir: Path | None = None
    mode: CommentMode = CommentMode.UPDATE
    baseline_file: Path | None = None
    base_rev: str | None = None
    compare: tuple[str, str | None] | None = None  # `cml-bot diff A [B]`: exactly A against B (None: workspace)
    junit: Path | None = None
    record: bool | None = None  # None: record when running on the baseline branch outside a PR
    shard: str | None = None  # a matrix job: save a shard bundle for `cml-bot merge` instead of posting


@dataclass(frozen=True)
class Outcome:
    report: Report
    verdict: Verdict
    summary: str
    report_dir: Path
    destination: str  # "github" | "gitlab" | "local" | "shard" | "store"
    publication: Publication | None = None
    bundle_dir: Path | None = None
    notices: tuple[str, ...] = ()  # what the user should know, one line each
    recorded: str | None = None
