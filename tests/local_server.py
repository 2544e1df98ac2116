"""The HTTP side of the fake forges: a threaded server on 127.0.0.1 (a free port) that hands every
request, whatever its method, to the fake's own handler. What a request means is the fake's."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from typing import Any

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class LocalServer:
    def __init__(self, handle: Callable[[http.server.BaseHTTPRequestHandler], None]) -> None:
        self.handle = handle
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        handle = self.handle

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def dispatch(self) -> None:
                handle(self)

        for method in METHODS:
            setattr(Handler, f"do_{method}", Handler.dispatch)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def address(self) -> str:
        """``host:port``, once started."""
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"
