r"""A local HTTP server that answers like a Slack incoming webhook, for the alert tests.

Paths choose the behaviour (Slack's own answers, from its webhook documentation):

* ``/ok/...``: 200 ``ok``
* ``/ratelimit/...``: 429 with ``Retry-After: 2`` the first time, then 200 ``ok``
* ``/error/...``: 500 ``rollup_error``
* ``/notfound/...``: 404 ``channel_not_found``
* ``/slow/...``: answers only after 30 s

And answers a careless or hostile server gives:

* ``/retry429/<Retry-After, percent-encoded>/...``: always 429 with that header
* ``/redirect/...``: 307 to the same path under ``/ok``
* ``/echo/...``: 500 whose body repeats the request's path (the secret token)
* ``/endless/...``: 200, then a body that never ends
* ``/trickle/...``: 200, then a body of one byte every 0.2 s, for ever
* ``/slowheaders/...``: a status line, then header bytes one every 0.2 s, for ever
* ``/reset/...`` and ``/reset503/...``: 200 (or 503) promising 1,000 bytes, then a connection
  reset after 10
* ``/echojson/...``: 404 whose JSON body repeats the whole URL, ``/`` escaped as ``\/``
* ``/echolong/...``: 404 whose body pads the path so that a cut at 100 characters falls
  inside the token

Every request is recorded with its arrival time and JSON body.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    at: float
    status: int


@dataclass
class SlackStandIn:
    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    arrived: int = 0  # requests that reached the server, answered or not yet
    body_bytes_sent: int = 0  # of the endless and trickling bodies, until the client hung up
    _rate_limited: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, behaviour: str, retry_after: str = "") -> str:
        # The path stands in for Slack's secret token: it must never be printed.
        if behaviour == "retry429":
            behaviour += "/" + urllib.parse.quote(retry_after, safe="")
        return f"{self.base}/{behaviour}/services/T0SECRET/B0SECRET/XSECRETTOKEN"

    def delivered(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.status == 200]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.delivered()
            if len(done) >= count:
                return done
            time.sleep(0.02)
        return self.delivered()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start() -> SlackStandIn:
    stand_in: SlackStandIn

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            with stand_in._lock:
                stand_in.arrived += 1
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            behaviour = self.path.strip("/").split("/")[0]
            status, text, headers = 200, "ok", {}
            if behaviour == "retry429":
                value = urllib.parse.unquote(self.path.strip("/").split("/")[1])
                status, text, headers = 429, "rate_limited", {"Retry-After": value}
            elif behaviour == "redirect":
                status, text = 307, ""
                headers = {"Location": "/ok/" + self.path.strip("/").split("/", 1)[1]}
            elif behaviour == "echo":
                status, text = 500, f"no such webhook: {self.path}"
            elif behaviour == "echojson":
                url = f"http://{self.headers.get('Host')}{self.path}"
                status, text = 404, json.dumps({"error": "no_such_hook", "url": url})
                text = text.replace("/", "\\/")
            elif behaviour == "echolong":
                status, text = 404, "channel_not_found " + "a" * 37 + self.path
            elif behaviour in ("slowheaders", "reset", "reset503"):
                with stand_in._lock:
                    stand_in.received.append(Received(self.path, body, time.monotonic(), 0))
                self._misbehave(behaviour)
                return
            elif behaviour in ("endless", "trickle"):
                with stand_in._lock:
                    stand_in.received.append(Received(self.path, body, time.monotonic(), 200))
                self._stream_body(behaviour)
                return
            elif behaviour == "ratelimit":
                with stand_in._lock:
                    first = self.path not in stand_in._rate_limited
                    stand_in._rate_limited.add(self.path)
                if first:
                    status, text, headers = 429, "rate_limited", {"Retry-After": "2"}
            elif behaviour == "error":
                status, text = 500, "rollup_error"
            elif behaviour == "notfound":
                status, text = 404, "channel_not_found"
            elif behaviour == "slow":
                time.sleep(30)
            with stand_in._lock:
                stand_in.received.append(Received(self.path, body, time.monotonic(), status))
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(text.encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, as it should

        def _misbehave(self, behaviour: str) -> None:
            try:
                if behaviour == "slowheaders":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    while True:
                        self.wfile.write(b"X")
                        self.wfile.flush()
                        time.sleep(0.2)
                status = b"200 OK" if behaviour == "reset" else b"503 Service Unavailable"
                self.wfile.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 1000\r\n\r\n")
                self.wfile.write(b"0123456789")
                self.wfile.flush()
                time.sleep(0.2)
                # A reset, not an orderly close: the client's read fails mid-body.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _stream_body(self, behaviour: str) -> None:
            chunk, pause = (b"x" * 65536, 0.0) if behaviour == "endless" else (b"x", 0.2)
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                while True:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    with stand_in._lock:
                        stand_in.body_bytes_sent += len(chunk)
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading and hung up, as it should

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stand_in = SlackStandIn(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return stand_in


def refused_url() -> str:
    """A URL on this machine where nothing listens: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/refused/services/T0SECRET/B0SECRET/XSECRETTOKEN"
