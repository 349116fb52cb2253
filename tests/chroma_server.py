"""A real Chroma server for the tests: ``chroma run`` (from the chromadb package) on 127.0.0.1 and a free port.

Use the fixture (``from tests.chroma_server import chroma_server``) or the class directly::

    with ChromaServer(tmp_path / "srv") as server:
        server.url            # "http://127.0.0.1:<port>"
        server.kill()         # SIGKILL, as a crash would
        server.start()        # again, same folder and port: the data persists

The server runs in its own process group and is always stopped (and waited for) when the block or test ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def chroma_executable() -> str | None:
    """The ``chroma`` console script of this interpreter's environment (or on PATH), or ``None``."""
    here = Path(sys.executable).parent / "chroma"
    if here.exists():
        return str(here)
    return shutil.which("chroma")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaServer:
    """One ``chroma run --path FOLDER --host 127.0.0.1 --port PORT`` process (restartable on the same port).

    Attributes:
        path: the server's persistence folder.
        port: its port; ``url`` is ``http://127.0.0.1:<port>``.
        proc: the running process (``None`` when stopped).
    """

    def __init__(self, path: str | os.PathLike, port: int | None = None, startup_timeout: float = 60.0) -> None:
        exe = chroma_executable()
        if exe is None:
            pytest.skip("the chroma server executable (chromadb package) is not installed")
        self.exe = exe
        self.path = Path(path)
        self.port = port or free_port()
        self.timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log = self.path.parent / f"chroma-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        """True if the server answers its heartbeat."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self) -> "ChromaServer":
        """Start the server and wait until it answers (fails the test after ``startup_timeout`` seconds)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.exe, "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.proc = None
                pytest.fail(f"chroma run exited at startup:\n{tail}")
            if self.alive():
                return self
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"chroma run did not answer within {self.timeout:.0f} s")

    def _signal(self, sig: int) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)  # its own session: the group holds only the server
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    def kill(self) -> None:
        """SIGKILL the server (a crash: nothing is flushed) and wait until the port is closed."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM, then SIGKILL after 15 s)."""
        self._signal(signal.SIGTERM)

    def __enter__(self) -> "ChromaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    """A running ``chroma run`` on 127.0.0.1 with a fresh folder (``tmp_path/"srv"``); stopped after the test."""
    server = ChromaServer(tmp_path / "srv")
    try:
        yield server.start()
    finally:
        server.stop()


class TokenProxy:
    """An authenticating reverse proxy on 127.0.0.1 in front of a Chroma server, as a deployment would put one.

    ``chroma run`` (chromadb 1.x) has no authentication of its own, so a server reachable beyond localhost sits
    behind a proxy (nginx, Caddy, Envoy) that checks a token; soundlib sends ``Authorization: Bearer
    $SOUNDLIB_CHROMA_TOKEN``. This proxy answers 401 without a token, 403 with a wrong one, and forwards the rest.
    """

    def __init__(self, upstream: str, token: str) -> None:
        import http.server
        import threading
        import urllib.parse

        target = urllib.parse.urlparse(upstream)
        expected = f"Bearer {token}"
        self.refused: list[int] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _forward(self) -> None:
                import http.client

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got = self.headers.get("Authorization")
                if got != expected:
                    status = 401 if got is None else 403
                    proxy.refused.append(status)
                    data = b'{"error": "Unauthorized", "message": "token required"}'
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="token-proxy", daemon=True)

    def __enter__(self) -> "TokenProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
