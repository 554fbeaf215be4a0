"""A hostile Hub: a proxy in front of the emulator that rewrites its answers (headers, JSON, bodies).

The emulator's `Faults` cover bodies and listings; a hostile or broken mirror can also lie in the
headers the Hub client builds paths from (`ETag`, `X-Linked-Etag`, `X-Repo-Commit`) and sizes.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    """One upstream answer, for a `Rewrite` to change in place."""

    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: bytes
    authorization: str = ""  # what the client sent, for a Hub that echoes it back

    @property
    def is_file(self) -> bool:
        return "/resolve/" in self.path

    def json(self) -> Any:
        return json.loads(self.body)

    def set_json(self, value: Any) -> None:
        self.body = json.dumps(value).encode()


Rewrite = Callable[[Answer], None]


@dataclass
class _State:
    upstream: str
    rewrite: Rewrite
    log: list[tuple[str, str, int]] = field(default_factory=list)
    authorizations: set[str] = field(default_factory=set)  # Authorization headers the client sent


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._relay()

    def do_HEAD(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def _relay(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        up = urlsplit(state.upstream)
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        state.authorizations.update(v for k, v in headers.items() if k.lower() == "authorization")
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        auth = self.headers.get("Authorization", "")
        answer = Answer(self.command, self.path, resp.status, dict(resp.getheaders()), resp.read(), auth)
        conn.close()
        length_given = "Content-Length" in answer.headers
        state.rewrite(answer)
        state.log.append((self.command, self.path, answer.status))
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        if self.command == "HEAD" and length_given:
            self.send_header("Content-Length", answer.headers.get("Content-Length", "0"))
        else:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: _State) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)


class HostileHub:
    """``with HostileHub(hub.url, rewrite) as proxy:`` then use ``proxy.url`` as HF_ENDPOINT."""

    def __init__(self, upstream: str, rewrite: Rewrite = lambda answer: None) -> None:
        self.state = _State(upstream, rewrite)
        self._server = _Server(self.state)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> HostileHub:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
