"""The Starlette app of ``soundlib serve``: routes over :class:`soundlib.serve.engine.Engine`, static page, guards.

Routes (every answer is JSON except audio, pictures, the page and the export zip; an error is
``{"error": "one line"}`` with a 4xx/5xx status)::

    GET  /                               the page (static/index.html; ES modules under /static/)
    GET  /api/info                       collection, model, categories, limits
    POST /api/query                      multipart: files (pictures / a video), k, category (repeat), as (words
                                         saying what the pictures are; without files, the words alone) -> rankings
    GET  /api/like/{file}?k=&category=   "more like this" for a library file
    GET  /api/peaks/{file}               waveform overview + loudness of a library file
    GET  /api/frame/{query}/{index}.png  a picture of a recent query, as the model saw it
    GET  /api/explain?query=&frame=&window=   heatmap PNG: where that sound is in that picture
    GET  /audio/{file}[?download=1]      the sound file itself (Range requests answer 206), by id only
    POST /api/picks                      JSON {picks, clip} -> zip of the picks (originals or clips + manifests)

No route writes to the collection. Sound files are found by their id in the collection, never by a path from
the request. Middleware, outermost first: Host header check, token, request body limit (see
:mod:`soundlib.serve.security`).
"""

from __future__ import annotations

import contextlib
import mimetypes
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from soundlib.errors import SoundlibError
from soundlib.serve.config import ServeConfig, allowed_hosts
from soundlib.serve.engine import Engine, NotFound, UploadError, _upload_name
from soundlib.serve.security import BodyLimit, TokenGate

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Headers on every page and file: no framing by other sites, no MIME sniffing, scripts only from here.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self'; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"X-Content-Type-Options": "nosniff"})


def _int(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UploadError(f"{name} must be a whole number, got '{value[:40]}'", status=422) from None


def create_app(engine: Engine, token: str | None = None) -> Starlette:
    """The ASGI app for ``engine`` (its config says which Host headers are accepted).

    Args:
        engine: the model, store and settings.
        token: required on every request when given (``$SOUNDLIB_SERVE_TOKEN``).
    """
    cfg = engine.cfg

    async def page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    async def info(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(engine.info))

    async def query(request: Request) -> Response:
        async with request.form(max_files=cfg.max_files + 1, max_fields=64) as form:
            k = _int(form.get("k"), "k", cfg.default_k)  # type: ignore[arg-type]
            categories = [str(c) for c in form.getlist("category") if str(c)]
            as_words = str(form.get("as") or "").strip() or None
            files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
            folder = Path(tempfile.mkdtemp(prefix="soundlib-serve-"))
            try:
                uploads = []
                for i, f in enumerate(files):
                    name = _upload_name(f.filename or "")
                    path = folder / f"{i:03d}{Path(name).suffix[:16]}"
                    with path.open("wb") as out:
                        while chunk := await f.read(1 << 20):
                            out.write(chunk)
                    uploads.append((name, path))
                if not uploads and as_words:  # words alone: the library ranked by what its sounds are
                    doc = await run_in_threadpool(engine.query_words, as_words, k, categories)
                else:
                    doc = await run_in_threadpool(engine.query_uploads, uploads, k, categories, as_words)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        return JSONResponse(doc)

    async def like(request: Request) -> Response:
        k = _int(request.query_params.get("k"), "k", cfg.default_k)
        cats = [c for c in request.query_params.getlist("category") if c]
        return JSONResponse(await run_in_threadpool(engine.more_like, request.path_params["file"], k, cats))

    async def peaks(request: Request) -> Response:
        doc = await run_in_threadpool(engine.peaks, request.path_params["file"])
        return JSONResponse(doc, headers={"Cache-Control": "private, max-age=3600"})

    async def frame(request: Request) -> Response:
        png = await run_in_threadpool(engine.frame_png, request.path_params["query"], request.path_params["index"])
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    async def explain(request: Request) -> Response:
        q = request.query_params
        png = await run_in_threadpool(engine.explain_png, q.get("query", ""), _int(q.get("frame"), "frame", 0),
                                      q.get("window", ""))
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    async def audio(request: Request) -> Response:
        f = engine.file(request.path_params["file"])
        if not f.path.is_file():
            raise NotFound(f"the file of {f.rel} is no longer where the collection says ({f.path.parent})")
        media = mimetypes.guess_type(f.path.name)[0] or "application/octet-stream"
        disposition = "attachment" if request.query_params.get("download") else "inline"
        return FileResponse(f.path, media_type=media, filename=f.path.name, content_disposition_type=disposition,
                            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=600"})

    async def picks(request: Request) -> Response:
        import os

        from starlette.background import BackgroundTask

        try:
            doc = await request.json()
        except ValueError:
            raise UploadError("the picks must be a JSON document", status=400) from None
        path, report = await run_in_threadpool(engine.picks_zip, doc)
        return FileResponse(path, media_type="application/zip", filename="soundlib-picks.zip",
                            headers={"X-Soundlib-Skipped": str(len(report.skipped))},
                            background=BackgroundTask(os.unlink, path))

    async def on_upload_error(request: Request, exc: Exception) -> Response:
        return _error(getattr(exc, "status", 422), str(exc))

    async def on_not_found(request: Request, exc: Exception) -> Response:
        return _error(404, str(exc))

    async def on_soundlib_error(request: Request, exc: Exception) -> Response:
        return _error(422, str(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail))

    async def on_crash(request: Request, exc: Exception) -> Response:
        return _error(500, f"unexpected {type(exc).__name__}: {exc}")

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/query", query, methods=["POST"]),
        Route("/api/like/{file}", like),
        Route("/api/peaks/{file}", peaks),
        Route("/api/frame/{query}/{index:int}.png", frame),
        Route("/api/explain", explain),
        Route("/audio/{file}", audio),
        Route("/api/picks", picks, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(cfg.host)),
        Middleware(TokenGate, token=token),
        Middleware(BodyLimit, max_bytes=cfg.max_upload_bytes),
    ]
    handlers: dict[Any, Any] = {UploadError: on_upload_error, NotFound: on_not_found,
                                SoundlibError: on_soundlib_error, HTTPException: on_http, Exception: on_crash}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one).

    Raises:
        SoundlibError: the address cannot be used (in use, not this machine's, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise SoundlibError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def _server(app: Any, sock: socket.socket) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    return uvicorn.Server(config)


def run(app: Any, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C (uvicorn)."""
    server = _server(app, sock)
    server.run(sockets=[sock])


@contextlib.contextmanager
def background(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread for the block; yields the base URL (``http://host:port``).

    Used by the browser tests and ``bench/serve.py``: a real server on a real socket.
    """
    sock = listen(host, port)
    server = _server(app, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        import time

        for _ in range(500):
            if server.started:
                break
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
