"""The vendored copy of the contracts (tests/contracts) matches ../shared/contracts."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "contracts"
VENDORED = ROOT / "tests" / "contracts"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_vendored_contracts_match_shared() -> None:
    if not SHARED.is_dir():
        pytest.skip("../shared/contracts is not beside this checkout")
    vendored = {name: data for name, data in _files(VENDORED).items() if name != "README.md"}
    assert vendored == _files(SHARED)
