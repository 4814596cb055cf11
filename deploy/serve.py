"""Serve a web deployment folder over HTTP the way the browser needs it (`edgeformer serve`, the web check).

onnxruntime-web runs its WASM kernels on several threads only in a cross-origin isolated page
(`crossOriginIsolated`): the page must come with `Cross-Origin-Opener-Policy: same-origin` and
`Cross-Origin-Embedder-Policy: require-corp`, and every file it loads with a
`Cross-Origin-Resource-Policy` the page accepts. Without them the page still works, on one thread.
ES modules (.mjs, .js) must be served as JavaScript and the WASM binary as application/wasm
(streaming compilation refuses any other type).

    with serve_folder("deploy-web/") as server:   # a free port on 127.0.0.1, in a background thread
        print(server.url)
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from edgeformer.runtime.errors import EdgeformerError

LOOPBACK = "127.0.0.1"
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MIME_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".onnx": "application/octet-stream",
    ".data": "application/octet-stream",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}


class ServeError(EdgeformerError):
    """A folder that cannot be served (missing, not a folder)."""


class IsolatedHandler(SimpleHTTPRequestHandler):
    """Static files with the isolation headers, the types above, and no caching (a folder may be rewritten)."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}
    quiet = True

    def end_headers(self):
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


class FolderServer:
    """A running server of one folder; `url` ends with '/'."""

    def __init__(self, folder: Path, host: str, port: int, quiet: bool = True):
        handler = functools.partial(type("Handler", (IsolatedHandler,), {"quiet": quiet}), directory=str(folder))
        self.folder = folder
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as e:  # the port is taken, the address is not this machine's, ...
            raise ServeError(f"cannot listen on {host} port {port}: {e.strerror or e}; pass another --host or "
                             "--port (--port 0 picks a free one)") from None
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> "FolderServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="edgeformer-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()


def check_folder(folder: str | os.PathLike) -> Path:
    path = Path(folder)
    if not path.exists():
        raise ServeError(f"{path} does not exist; expected a folder to serve (e.g. one written by "
                         "`edgeformer deploy BUNDLE --target web`)")
    if not path.is_dir():
        raise ServeError(f"{path} is not a folder; expected a folder to serve (e.g. one written by "
                         "`edgeformer deploy BUNDLE --target web`)")
    return path.resolve()


def make_server(folder: str | os.PathLike, host: str = LOOPBACK, port: int = 0, quiet: bool = True) -> FolderServer:
    """A server of `folder` bound to host:port (port 0: a free one), not yet serving."""
    return FolderServer(check_folder(folder), host, port, quiet=quiet)


@contextlib.contextmanager
def serve_folder(folder: str | os.PathLike, host: str = LOOPBACK, port: int = 0) -> Iterator[FolderServer]:
    """Serve `folder` in a background thread for the duration of the block."""
    server = make_server(folder, host, port).start()
    try:
        yield server
    finally:
        server.close()
