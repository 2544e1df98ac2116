"""The Action's install steps (action.yml), run with bash as the runner would run them.

bench/install.py runs the same "Install cml-bot" script with the real uv and times it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _steps() -> dict[str, dict[str, Any]]:
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    return {step["name"]: step for step in action["runs"]["steps"]}


def _run(step: str, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    output = tmp_path / "github-output"
    output.write_text("")
    script = _steps()[step]["run"]
    full = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), **env}
    done = subprocess.run(["bash", "-e", "-c", script], env=full, capture_output=True, text=True, timeout=60)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return done, outputs


def _locate(tmp_path: Path, python_dir: Path, install_from: str = "pypi") -> tuple[int, dict[str, str], str]:
    version = _steps()["Locate cml-bot's virtualenv"]["env"]["CML_BOT_VERSION"]
    env = {
        "PATH": f"{python_dir}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path / "runner-temp"),
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
        "CML_BOT_VERSION": version,
        "INSTALL_FROM": install_from,
    }
    done, outputs = _run("Locate cml-bot's virtualenv", tmp_path, env)
    return done.returncode, outputs, done.stdout + done.stderr


def test_the_cache_key_names_the_release_the_platform_and_the_exact_python(tmp_path: Path) -> None:
    code, outputs, log = _locate(tmp_path, Path(sys.executable).parent)
    assert code == 0, log
    version = _steps()["Locate cml-bot's virtualenv"]["env"]["CML_BOT_VERSION"]
    python3 = str(Path(sys.executable).parent / "python3")  # what `python3` on PATH says it is
    where = hashlib.sha256(python3.encode()).hexdigest()[:12]
    assert outputs == {
        "dir": str(tmp_path / "runner-temp" / "cml-bot-venv"),
        "python": python3,
        "spec": f"cml-bot=={version}",
        "key": f"cml-bot-venv-{version}-Linux-X64-py{platform.python_version()}-{where}",
    }
    # The same Python version at another path (another runner image, a setup-python update): another key.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "python3").symlink_to(Path(sys.executable).resolve())
    code, moved, log = _locate(tmp_path, elsewhere)
    assert code == 0, log
    assert moved["key"] != outputs["key"] and moved["python"] == str(elsewhere / "python3")


def test_an_unknown_install_source_is_refused(tmp_path: Path) -> None:
    code, _, log = _locate(tmp_path, Path(sys.executable).parent, install_from="https://evil.example/x.whl")
    assert code == 2
    assert "::error title=cml-bot::input install-from must be pypi or checkout" in log


def test_install_makes_a_fresh_venv_with_that_python_and_installs_the_spec(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "uv-calls"
    (fake / "uv").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" = venv ] && mkdir -p "$6/lib"\nexit 0\n')
    (fake / "uv").chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "stale").mkdir(parents=True)  # a half-restored folder must not survive
    env = {
        "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
        "VENV": str(venv),
        "PYTHON": "/usr/bin/python3",
        "SPEC": "cml-bot==9.9.9",
    }
    done, _ = _run("Install cml-bot", tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        f"venv --quiet --no-project --python /usr/bin/python3 {venv}",
        f"pip install --quiet --python {venv}/bin/python cml-bot==9.9.9",
    ]
    assert not (venv / "stale").exists()  # the folder was made anew


def test_install_drops_test_suites_stubs_headers_and_cython_sources_only(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.12" / "site-packages"
    # The fake uv lays out what a real install would, tests folders included.
    (fake / "uv").write_text(
        '#!/bin/sh\n[ "$1" = pip ] || exit 0\n'
        f"mkdir -p {site}/pandas/tests/io {site}/numpy/_core/tests {site}/numpy/_core/include\n"
        f"mkdir -p {site}/cml_bot/tests_data\n"
        f"touch {site}/pandas/tests/io/test_x.py {site}/pandas/core.py {site}/cml_bot/tests_data/keep\n"
        # Stubs, headers and Cython sources go; a compiled module, data files and py.typed stay.
        f"touch {site}/numpy/__init__.pyi {site}/numpy/_core/include/ndarrayobject.h {site}/numpy/random.pxd\n"
        f"touch {site}/numpy/_core/_helper.c {site}/numpy/random.pyx {site}/numpy/py.typed\n"
        f"touch {site}/numpy/_core/_multiarray.cpython-312-x86_64-linux-gnu.so {site}/pandas/io.json\n"
    )
    (fake / "uv").chmod(0o755)
    env = {"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "VENV": str(venv), "PYTHON": "python3", "SPEC": "x"}
    done, _ = _run("Install cml-bot", tmp_path, env)
    assert done.returncode == 0, done.stderr
    remaining = sorted(str(p.relative_to(site)) for p in site.rglob("*"))
    assert remaining == [
        "cml_bot",
        "cml_bot/tests_data",
        "cml_bot/tests_data/keep",
        "numpy",
        "numpy/_core",
        "numpy/_core/_multiarray.cpython-312-x86_64-linux-gnu.so",
        "numpy/_core/include",
        "numpy/py.typed",
        "pandas",
        "pandas/core.py",
        "pandas/io.json",
    ]


def test_install_runs_unless_the_cache_was_hit_and_only_pypi_installs_are_cached() -> None:
    steps = _steps()
    assert steps["Restore cml-bot's virtualenv"]["if"] == "inputs.install-from == 'pypi'"
    assert steps["Restore cml-bot's virtualenv"]["uses"].startswith("actions/cache@")
    for name in ("Set up uv", "Install cml-bot"):
        assert steps[name]["if"] == "steps.cml-bot-cache.outputs.cache-hit != 'true'"
    spec = steps["Install cml-bot"]["env"]["SPEC"]
    assert spec == "${{ inputs.install-from == 'checkout' && github.action_path || steps.cml-bot-venv.outputs.spec }}"
