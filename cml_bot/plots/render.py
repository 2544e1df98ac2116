"""Plot specs + data -> PNG images: one plot (:func:`render_plot`) or many at once in forked workers
(:func:`render_all`)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cml_bot.config import PlotSpec
from cml_bot.errors import InputError
from cml_bot.model import Image
from cml_bot.plots.figures import build_figure, image_outputs
from cml_bot.plots.style import (
    plot_style,
    safe_name,
    to_png,
)
from cml_bot.plots.tables import (
    load_table,
    load_table_named,
)

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def render_plot(
    spec: PlotSpec,
    head: bytes,
    base: bytes | None,
    name: str,
    head_label: str = "this change",
    base_label: str = "main",
) -> list[Image]:
    """Render ``spec`` from the data file's bytes at head (and base) into images named after ``name``.

    ``name`` is passed through :func:`safe_name`; a data plot yields ``<name>.png``. The image
    template returns the user's file as is (``<name>.<ext>``) and, when the base differs,
    ``<name>-base.<ext>``. A base file that cannot be read is logged and left out, so a broken
    main never hides the head's plot; a head file that cannot be read raises :class:`InputError`.
    """
    stem = safe_name(name)
    if spec.template == "image":
        return image_outputs(spec, head, base, stem)
    head_frame = load_table(head, spec.path)
    base_frame = None
    if base is not None:
        try:
            base_frame = load_table_named(base, spec.path, f"{spec.path} at {base_label}")
        except InputError as exc:
            log.warning("plot %s: base data left out: %s", spec.path, exc)
    with plot_style():
        figure = build_figure(spec, head_frame, base_frame, head_label, base_label)
        data = to_png(figure, spec.path)
    log.debug("plot %s: %s.png, %d bytes", spec.path, stem, len(data))
    return [Image(f"{stem}.png", data)]


# Many plots


@dataclass(frozen=True)
class PlotJob:
    spec: PlotSpec
    head: bytes
    base: bytes | None
    name: str
    base_label: str = "main"


_JOBS: Sequence[PlotJob] = ()  # read by forked workers (inherited, never pickled)


def render_all(jobs: Sequence[PlotJob], workers: int | None = None) -> list[list[Image] | str]:
    """Render every job: its images, or the reason it could not be drawn (see :func:`start_render_all`)."""
    return start_render_all(jobs, workers)()


def start_render_all(jobs: Sequence[PlotJob], workers: int | None = None) -> Callable[[], list[list[Image] | str]]:
    """Start rendering every job; the returned function waits and gives each job's images, or the
    reason it could not be drawn (an InputError's text).

    Drawing is CPU-bound and holds the GIL, so with several plots and cores the jobs run in forked
    worker processes, which inherit the already imported matplotlib and the data. Forking is only
    done where it is safe: on Linux, in a process with no other thread running.
    """
    global _JOBS
    count = min(workers or os.cpu_count() or 1, len(jobs))
    if count < 2 or not _fork_is_safe():
        return lambda: [_render_job(job) for job in jobs]
    # Largest inputs first, so the slow plot does not start last.
    order = sorted(range(len(jobs)), key=lambda i: -(len(jobs[i].head) + len(jobs[i].base or b"")))
    _JOBS = jobs
    try:
        pool = multiprocessing.get_context("fork").Pool(processes=count)  # the workers fork here
    finally:
        _JOBS = ()  # the workers have their copy
    pending = pool.map_async(_render_index, order, chunksize=1)

    def finish() -> list[list[Image] | str]:
        try:
            results = pending.get()
        finally:
            pool.terminate()
            pool.join()
        by_index = dict(zip(order, results, strict=True))
        return [by_index[i] for i in range(len(jobs))]

    return finish


def _fork_is_safe() -> bool:
    return sys.platform == "linux" and threading.active_count() == 1 and os.environ.get("CML_BOT_PLOT_WORKERS") != "1"


def _render_index(index: int) -> list[Image] | str:
    return _render_job(_JOBS[index])


def _render_job(job: PlotJob) -> list[Image] | str:
    try:
        return render_plot(job.spec, job.head, job.base, job.name, base_label=job.base_label)
    except InputError as exc:
        return str(exc)
