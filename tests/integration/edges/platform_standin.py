"""A local stand-in for the platforms' APIs (Graph API, Telegram Bot API, their media CDNs).

It serves media for ingest's fetchers and receives delivery's sends, records every request, and
answers what a test scripted (a status, a delay, or a body), so retries, timeouts and refusals can
be exercised without the internet. `serve(app)` runs any ASGI app on a free local port in a
thread; the unit tests (ingest media, delivery senders) and the integration tests share both.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

GRAPH_TOKEN = "graph-test-token"
BOT_TOKEN = "4242:test-bot-secret"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    json: Any


@dataclass
class Reply:
    """One scripted answer: `status` after `delay_s`, with `body` (JSON) and headers."""

    status: int = 200
    body: Any = None
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Media:
    data: bytes
    content_type: str
    bearer: str | None = None  # required Authorization: Bearer value, if any


class PlatformStandIn:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.media: dict[str, Media] = {}
        self.scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.base_url = ""
        self._lock = threading.Lock()
        self.app = self._build()

    # --- what tests set up and read -------------------------------------------------------------

    def add_media(self, name: str, data: bytes, content_type: str = "audio/ogg", bearer: str | None = None) -> str:
        """Serve `data` at /cdn/<name>; returns its URL."""
        self.media[name] = Media(data, content_type, bearer)
        return f"{self.base_url}/cdn/{name}"

    def script(self, key: str, *replies: Reply | int) -> None:
        """Answers for the next requests about `key` (a media id, file id or recipient), in order."""
        with self._lock:
            self.scripts[key].extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def sends(self, recipient: str | None = None) -> list[Recorded]:
        sent = [r for r in self.requests if r.method == "POST" and r.path.endswith(("/messages", "/sendMessage"))]
        return [r for r in sent if recipient is None or _recipient(r.json) == recipient]

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    # --- the app -------------------------------------------------------------------------------

    def _next(self, key: str) -> Reply | None:
        with self._lock:
            queue = self.scripts.get(key)
            return queue.popleft() if queue else None

    async def _scripted(self, key: str) -> Response | None:
        reply = self._next(key)
        if reply is None:
            return None
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return JSONResponse(reply.body if reply.body is not None else {"scripted": reply.status}, reply.status, headers=reply.headers)

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next):  # noqa: ANN001, ANN202
            body = await request.body()
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = body.decode("utf-8", "replace")
            self.requests.append(Recorded(request.method, request.url.path, dict(request.headers), dict(request.query_params), parsed))
            return await call_next(request)

        @app.get("/cdn/{name}")
        async def cdn(name: str, request: Request) -> Response:
            if (scripted := await self._scripted(f"cdn:{name}")) is not None:
                return scripted
            media = self.media.get(name)
            if media is None:
                return JSONResponse({"error": "gone"}, 404)
            if media.bearer is not None and request.headers.get("authorization") != f"Bearer {media.bearer}":
                return JSONResponse({"error": "unauthorized"}, 401)
            return Response(media.data, media_type=media.content_type)

        @app.get("/graph/{media_id}")
        async def graph_media(media_id: str, request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {GRAPH_TOKEN}":
                return JSONResponse({"error": {"message": "Invalid OAuth access token", "code": 190}}, 401)
            if (scripted := await self._scripted(media_id)) is not None:
                return scripted
            media = self.media.get(media_id)
            if media is None:
                return JSONResponse({"error": {"message": "Unsupported get request", "code": 100}}, 400)
            return JSONResponse({"url": f"{self.base_url}/cdn/{media_id}", "mime_type": media.content_type, "id": media_id})

        @app.get("/tg/bot{token}/getFile")
        async def get_file(token: str, file_id: str) -> Response:
            if token != BOT_TOKEN:
                return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
            if (scripted := await self._scripted(file_id)) is not None:
                return scripted
            if file_id not in self.media:
                return JSONResponse({"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}, 400)
            return JSONResponse({"ok": True, "result": {"file_id": file_id, "file_path": f"voice/{file_id}.oga"}})

        @app.get("/tgfile/bot{token}/voice/{name}")
        async def tg_file(token: str, name: str) -> Response:
            media = self.media.get(name.removesuffix(".oga"))
            if token != BOT_TOKEN or media is None:
                return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
            # Telegram's file server does not label voice notes as audio.
            return Response(media.data, media_type="application/octet-stream")

        async def send(request: Request, expected_auth: str | None) -> Response:
            if expected_auth is not None and request.headers.get("authorization") != expected_auth:
                return JSONResponse({"error": {"message": "Invalid OAuth access token", "code": 190}}, 401)
            body = await request.json()
            if (scripted := await self._scripted(_recipient(body) or "")) is not None:
                return scripted
            return JSONResponse({"ok": True, "message_id": f"sent-{len(self.sends())}"})

        @app.post("/graph/me/messages")
        async def messenger_send(request: Request) -> Response:
            return await send(request, f"Bearer {GRAPH_TOKEN}")

        @app.post("/graph/{phone_number_id}/messages")
        async def whatsapp_send(phone_number_id: str, request: Request) -> Response:
            return await send(request, f"Bearer {GRAPH_TOKEN}")

        @app.post("/tg/bot{token}/sendMessage")
        async def telegram_send(token: str, request: Request) -> Response:
            if token != BOT_TOKEN:
                return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
            return await send(request, None)

        return app


def _recipient(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for candidate in (body.get("chat_id"), body.get("to"), (body.get("recipient") or {}).get("id")):
        if candidate is not None:
            return str(candidate)
    return None


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app on a free local port in a background thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "stand-in server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def platform_standin() -> Iterator[PlatformStandIn]:
    standin = PlatformStandIn()
    with serve(standin.app) as base_url:
        standin.base_url = base_url
        yield standin
