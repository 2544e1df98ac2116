"""What a failed pull says about where it was sent: the configured URL is shown without its query
(:func:`cml_bot.secrets.redact_url`), and so is every URL inside an error's own text: requests names the
URL a redirect led to (``InvalidSchema: No connection adapters were found for 'ftp://...?token=...'``)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cml_bot.data import make_fetcher
from cml_bot.errors import DataError
from cml_bot.secrets import redact_url, redact_urls

SECRET = "QTOKEN-secret-in-a-redirect-5521"


class _Redirecting(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        where = {
            "/to-ftp": f"ftp://user:pw@127.0.0.1/file?{query}",
            "/to-bad-port": f"http://127.0.0.1:99999/file?{query}",
        }.get(path)
        self.send_response(302)
        self.send_header("Location", where or f"/{path.strip('/')}?{query}")  # else: to itself, forever
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize("path", ["/to-ftp", "/to-bad-port", "/loop"])
def test_an_error_after_a_redirect_does_not_show_the_query(redirecting: str, path: str, tmp_path: Path) -> None:
    fetch = make_fetcher(tmp_path)
    try:
        with pytest.raises(DataError) as raised:
            fetch(f"{redirecting}{path}?token={SECRET}", 0)
    finally:
        fetch.close()

    message = str(raised.value)
    assert SECRET not in message
    assert "pw" not in message.replace("http", "")
    assert message.startswith(f"{redirecting}{path}?...: ")


def test_redact_urls_in_text() -> None:
    text = (
        "No connection adapters were found for 'ftp://u:p@h/x?token=SECRET#f'; "
        'see https://h2.example/a?sig=SECRET2, or "s3://b/k?X-Amz-Signature=S3" (and /local/path?x=1)'
    )
    assert redact_urls(text) == (
        "No connection adapters were found for 'ftp://h/x?...'; "
        'see https://h2.example/a?..., or "s3://b/k?..." (and /local/path?x=1)'
    )
    assert redact_urls("nothing here") == "nothing here"
    assert redact_url("https://u:p@h/x?token=1") == "https://h/x?..."
