"""Plot specs + data -> PNG images: one plot (:func:`render_plot`) or many at once in forked workers
(:func:`render_all`)."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from cml_bot.config import PlotSpec
from cml_bot.errors import InputError
from cml_bot.model import Image
from cml_bot.plots.figures import build_figure, image_outputs
from cml_bot.plots.jobs import PlotJob, safe_name
from cml_bot.plots.style import (
    plot_style,
    to_png,
)
from cml_bot.plots.tables import (
    load_table,
    load_table_named,
)
from cml_bot.plotserver import fork_is_safe

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def render_plot(
    spec: PlotSpec,
    head: Mapping[str, bytes] | bytes,
    base: Mapping[str, bytes] | bytes | None,
    name: str,
    head_label: str = "this change",
    base_label: str = "main",
) -> list[Image]:
    """Render ``spec`` from its data files' bytes at head (and base), by file (bare bytes are the
    plot's own file), into images named after ``name``.

    ``name`` is passed through :func:`safe_name`; a data plot yields ``<name>.png``. The image
    template returns the user's file as is (``<name>.<ext>``) and, when the base differs,
    ``<name>-base.<ext>``. A base file that cannot be read is logged and left out, so a broken
    main never hides the head's plot; a head file that cannot be read raises :class:`InputError`.
    """
    stem = safe_name(name)
    head_files = {spec.path: head} if isinstance(head, bytes) else head
    base_files = {spec.path: base} if isinstance(base, bytes) else base
    if spec.template == "image":
        data = head_files.get(spec.path)
        if data is None:
            raise InputError(f"{spec.path}: not found")
        return image_outputs(spec, data, base_files.get(spec.path) if base_files else None, stem)
    head_tables = {file: load_table(data, file, spec.header) for file, data in head_files.items()}
    base_tables = None
    if base_files is not None:
        base_tables = {}
        for file, data in base_files.items():
            try:
                base_tables[file] = load_table_named(data, file, f"{file} at {base_label}", spec.header)
            except InputError as exc:
                log.warning("plot %s: base data left out: %s", spec.path, exc)
    with plot_style():
        figure = build_figure(spec, head_tables, base_tables, head_label, base_label)
        data = to_png(figure, spec.path)
    log.debug("plot %s: %s.png, %d bytes", spec.path, stem, len(data))
    return [Image(f"{stem}.png", data)]


# Many plots


_JOBS: Sequence[PlotJob] = ()  # read by forked workers (inherited, never pickled)


def render_all(jobs: Sequence[PlotJob], workers: int | None = None) -> list[list[Image] | str]:
    """Render every job: its images, or the reason it could not be drawn (an InputError's text).

    Drawing is CPU-bound and holds the GIL, so with several plots and cores this process draws its
    share while forked workers (one per other core) draw theirs: they inherit the already imported
    matplotlib, its loaded fonts and the data. Forking is only done where it is safe: on Linux, in a
    process with no other thread running.
    """
    global _JOBS
    count = min(workers or os.cpu_count() or 1, len(jobs))
    if count < 2 or not fork_is_safe():
        return [_render_job(job) for job in jobs]
    # Shares of about equal size, the largest inputs first so a slow plot does not start last.
    shares: list[list[int]] = [[] for _ in range(count)]
    loads = [0] * count
    for index in sorted(range(len(jobs)), key=lambda i: -jobs[i].size):
        lightest = loads.index(min(loads))
        shares[lightest].append(index)
        loads[lightest] += jobs[index].size + 1
    mine, theirs = shares[0], [i for share in shares[1:] for i in share]
    _JOBS = jobs
    try:
        with multiprocessing.get_context("fork").Pool(processes=count - 1) as pool:
            pending = pool.map_async(_render_index, theirs, chunksize=1)
            results = {i: _render_job(jobs[i]) for i in mine}
            results.update(zip(theirs, pending.get(), strict=True))
    finally:
        _JOBS = ()
    return [results[i] for i in range(len(jobs))]


def _render_index(index: int) -> list[Image] | str:
    return _render_job(_JOBS[index])


def _render_job(job: PlotJob) -> list[Image] | str:
    try:
        return render_plot(job.spec, job.head, job.base, job.name, base_label=job.base_label)
    except InputError as exc:
        return str(exc)
