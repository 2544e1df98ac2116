"""The plot process: started before matplotlib is imported, it draws while the run goes on; the run
itself never imports matplotlib or pandas, errors come back as they were raised, and closing it
ends it at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import GitRepo

from cml_bot.plotserver import InProcess, start


def _python(code: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_fresh_run_draws_in_the_plot_process_and_never_imports_matplotlib(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", "metrics: [m.json]\nplots: [log.csv]\n")
    repo.write("m.json", {"acc": 0.5})
    repo.write("log.csv", "step,loss\n0,1\n1,0.5\n")
    repo.commit()
    out = _python(
        """
        import sys
        from pathlib import Path
        from cml_bot.app import Effects, Options, build_report, evaluate
        evaluation = evaluate(Options(root=Path("."), dry_run=True), Effects(env={}), draw=True)
        report, images = build_report(evaluation)
        evaluation.plotter.close()
        print(type(evaluation.plotter).__name__, len(images), "matplotlib" in sys.modules, "pandas" in sys.modules)
        """,
        repo.root,
    )
    assert out.split() == ["PlotServer", "1", "False", "False"]


def test_errors_come_back_and_close_ends_the_process(tmp_path: Path) -> None:
    out = _python(
        """
        import time
        from cml_bot import plotserver
        from cml_bot.errors import InputError
        server = plotserver.start()
        try:
            server.call("cml_bot.plots.render:render_plot", __import__("cml_bot.config").config.PlotSpec("a.png",
                        template="image"), b"not an image", None, "a")
        except InputError as exc:
            print("raised", exc)
        started = time.perf_counter()
        server.close()
        print("closed", server.process.is_alive(), time.perf_counter() - started < 2)
        """,
        tmp_path,
    )
    assert out.splitlines() == ["raised a.png: not a PNG, JPEG, GIF, WebP or SVG image", "closed False True"]


def test_with_matplotlib_already_imported_it_draws_in_process() -> None:
    import matplotlib  # noqa: F401  (pytest's process has it: forking would gain nothing)

    plotter = start()
    assert isinstance(plotter, InProcess)
    assert plotter.call("os.path:basename", "a/b.png") == "b.png"
