"""``cml-bot data add`` writes its URL into cml-bot.yaml, a committed file every reader of the repo
sees: a URL holding a user name and password, or a token or signature in its query, is refused with
one line (exit 2) saying how to keep private data instead, and nothing is written."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cml_bot.cli import Console, main
from cml_bot.config import credentials_problem
from cml_bot.secrets import is_credential_parameter

SECRET = "ghp_SECRETTOKEN123456"
SIGNATURE = "SIGf00dfeed"


def data_add(root: Path, url: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["data", "add", "data/x.bin", "--url", url, "-C", str(root)], env={}, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.bin").write_bytes(b"\x00" * 1024)
    (tmp_path / "cml-bot.yaml").write_text("title: t\n")
    return tmp_path


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"https://bob:{SECRET}@host.example/x.bin?X-Amz-Signature={SIGNATURE}", "user name or password"),
        (f"https://{SECRET}@host.example/x.bin", "user name or password"),
        (f"https://bucket.s3.amazonaws.com/x.bin?X-Amz-Credential=a&X-Amz-Signature={SIGNATURE}", "X-Amz-Signature"),
        (f"https://acct.blob.core.windows.net/c/x.bin?sv=2022&sig={SIGNATURE}", "(sig)"),
        (f"https://raw.example/x.bin?token={SECRET}", "(token)"),
        (f"https://api.example/x.bin?access_token={SECRET}", "(access_token)"),
        (f"https://gitlab.example/api/v4/x.bin?private_token={SECRET}", "(private_token)"),
    ],
)
def test_credentials_in_the_url_are_refused(root: Path, url: str, says: str) -> None:
    code, out, err = data_add(root, url)

    assert code == 2
    assert err.strip().count("\n") == 0, err
    assert says in err
    assert "s3://" in err and "environment" in err  # what to do instead
    assert SECRET not in out + err and SIGNATURE not in out + err
    assert (root / "cml-bot.yaml").read_text() == "title: t\n"


@pytest.mark.parametrize(
    "url",
    [
        "https://zenodo.org/records/1/files/x.bin?download=1",
        "https://www.dropbox.com/s/abc/x.bin?dl=1",
        "https://huggingface.co/datasets/o/d/resolve/main/x.bin?download=true",
        "s3://bucket/x.bin",
        "data/source.bin",
    ],
)
def test_urls_without_credentials_are_pinned(root: Path, url: str) -> None:
    code, _, err = data_add(root, url)

    assert code == 0, err
    assert url in (root / "cml-bot.yaml").read_text()


def test_credential_parameter_names() -> None:
    for name in ("X-Amz-Signature", "x-amz-security-token", "X-Goog-Credential", "sig", "token", "api_key", "apikey"):
        assert is_credential_parameter(name), name
    for name in ("download", "dl", "version", "versionId", "alt", "raw", "format", "run"):
        assert not is_credential_parameter(name), name
    assert credentials_problem("C:\\data\\x.bin") is None
    assert credentials_problem("https://[::1/x") is None  # malformed: url_problem names it
