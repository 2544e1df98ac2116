"""One version everywhere: pyproject.toml, the package, the Action, the GitLab template and the docs.

A user installs exactly the release the file in front of them names (never a bare package name that
anyone could register), so every place that names the release must name the same one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

import cml_bot

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
DOCS = ["README.md", "docs/github.md", "docs/gitlab.md", "templates/cml-bot.gitlab-ci.yml", "Dockerfile"]
WORKFLOWS = sorted((ROOT / ".github" / "workflows" / "examples").glob("*.yml"))

# How a release is named in text: a pin, an action ref, a git tag, an image tag.
RELEASE_NAMES = [
    re.compile(r"cml-bot(?:\[[a-z,]+\])?==([0-9][^\s\"'`)]*)"),
    re.compile(r"cml-bot@v([0-9][^\s\"'`)]*)"),
    re.compile(r"cml-bot/v([0-9][0-9.]*[0-9])/"),
    re.compile(r"ghcr\.io/[A-Za-z0-9_.-]+/cml-bot:([0-9][^\s\"'`)]*)"),
]
# Installing by bare name: `pip install cml-bot`, `"cml-bot"` as what to install, `cml-bot[demo]`
# (a pin `==1.2.3` or a direct reference `cml-bot @ git+https://...@v1.2.3` is not bare).
BARE_INSTALL = re.compile(r"(?:pip install|PIP_SPEC:)\s+[\"']?cml-bot(?:\[[a-z,]+\])?(?![\w=\[-]|\s*@)")


def _steps() -> dict[str, dict[str, Any]]:
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    return {step["name"]: step for step in action["runs"]["steps"]}


def test_the_package_says_the_version_of_pyproject() -> None:
    assert cml_bot.__version__ == VERSION


def test_the_action_installs_exactly_this_release() -> None:
    locate = _steps()["Locate cml-bot's virtualenv"]
    assert locate["env"]["CML_BOT_VERSION"] == VERSION
    assert 'spec=cml-bot==$CML_BOT_VERSION"' in locate["run"]
    assert "$CML_BOT_VERSION" in locate["run"].split("key=", 1)[1].splitlines()[0]  # a new release, a new cache


def test_the_gitlab_template_pins_this_release() -> None:
    template = yaml.safe_load((ROOT / "templates" / "cml-bot.gitlab-ci.yml").read_text(encoding="utf-8"))
    assert template[".cml-bot"]["variables"]["CML_BOT_PIP_SPEC"] == f"cml-bot=={VERSION}"


def test_every_release_named_in_the_docs_is_this_one() -> None:
    named: dict[str, set[str]] = {}
    for path in [ROOT / name for name in DOCS] + WORKFLOWS:
        text = path.read_text(encoding="utf-8")
        for pattern in RELEASE_NAMES:
            for match in pattern.finditer(text):
                named.setdefault(match.group(1), set()).add(path.name)
    assert set(named) == {VERSION}, named
    for must_name in ("README.md", "docs/gitlab.md", "templates/cml-bot.gitlab-ci.yml", "docs/github.md"):
        assert Path(must_name).name in named[VERSION], f"{must_name} names no release"


def test_the_gitlab_docs_show_the_git_tag_and_the_image_of_this_release() -> None:
    for name in ("docs/gitlab.md", "templates/cml-bot.gitlab-ci.yml"):
        text = (ROOT / name).read_text(encoding="utf-8")
        assert f"cml-bot @ git+https://github.com/OWNER/cml-bot@v{VERSION}" in text, name
        assert f"ghcr.io/OWNER/cml-bot:{VERSION}" in text, name


def test_nothing_installs_cml_bot_by_bare_name() -> None:
    code = sorted((ROOT / "cml_bot").rglob("*.py"))
    sources = [ROOT / name for name in DOCS] + WORKFLOWS + [ROOT / "action.yml", *code]
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in sources for m in BARE_INSTALL.finditer(p.read_text())]
    assert found == []
    assert BARE_INSTALL.search("python -m pip install cml-bot")
    assert BARE_INSTALL.search('CML_BOT_PIP_SPEC: "cml-bot"')
    assert BARE_INSTALL.search("pip install 'cml-bot[demo]'")
    assert not BARE_INSTALL.search("pip install 'cml-bot[demo]==1.2.3'")
    assert not BARE_INSTALL.search('PIP_SPEC: "cml-bot @ git+https://github.com/OWNER/cml-bot@v1.2.3"')


def test_the_demo_hint_names_this_release(monkeypatch: Any) -> None:
    import importlib.util

    from cml_bot import demo
    from cml_bot.errors import CmlBotError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    try:
        demo.run_demo()
    except CmlBotError as exc:
        assert f"cml-bot[demo]=={VERSION}" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("the demo ran without scikit-learn")
