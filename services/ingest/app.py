"""The ingest HTTP app: webhook endpoints, the tracking redirect, health and metrics.

Each webhook reads the raw body (at most `ELMO_INGEST_MAX_BODY_BYTES`: 413), checks who sent it
over those exact bytes (401 unsigned, 403 wrong or not configured), parses JSON (400), reads the
platform's events and hands the messages to `IngestCore`. Every refusal is a JSON body
`{"error": <code>, "detail": <text>}` and a metric; bad input is never a 5xx. 503 means "not
published, send it again" (Kafka or Redis unreachable, a voice note to fetch again later); 429
means the sender is over its rate, and the platform's redelivery gets through later.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as redis
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from elmo.contracts.events import InboundMessage
from elmo.link_settings import LinkSettings
from elmo.tracking_links import InvalidTrackingToken, read_token
from services.ingest import meta, telegram, whatsapp
from services.ingest.core import IngestCore, Outcome, Unavailable
from services.ingest.dedupe import MessageClaims, RedisMessageClaims
from services.ingest.media import AudioStore, MediaFetchers, fetchers_from_settings
from services.ingest.messages import Parsed
from services.ingest.metrics import IngestMetrics
from services.ingest.publishing import KafkaPublisher, Publisher
from services.ingest.rate_limit import RateLimiter, RedisFixedWindow
from services.ingest.settings import IngestSettings
from services.ingest.signatures import check_hmac, check_secret_token, check_verify_token

log = logging.getLogger("elmo.ingest")

CLICK_PUBLISH_WAIT_S = 2.0
STATUS_BY_REASON = {"unsigned": 401, "bad_signature": 403, "not_configured": 403}


class ErrorBody(BaseModel):
    error: str
    detail: str


class Accepted(BaseModel):
    published: int
    duplicates: int
    ignored: int
    rate_limited: int
    media_retry: int
    media_dropped: int


class Refused(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _body_doc(description: str, schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema, "example": example}},
        }
    }


WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Accepted, "description": "Read; every message in it was published (or was a duplicate, or ignored)."},
    400: {"model": ErrorBody, "description": "The body is not JSON."},
    401: {"model": ErrorBody, "description": "No signature."},
    403: {"model": ErrorBody, "description": "Wrong signature, or the endpoint's secret is not configured."},
    413: {"model": ErrorBody, "description": "Body larger than ELMO_INGEST_MAX_BODY_BYTES."},
    429: {"model": ErrorBody, "description": "A sender is over its rate; its messages were not published (redeliver later)."},
    503: {
        "model": ErrorBody,
        "description": "Not (fully) published: Kafka or Redis unreachable, or a voice note to fetch again. Redeliver.",
    },
}
MESSENGER_EXAMPLE = {
    "object": "page",
    "entry": [{"id": "PAGE_ID", "time": 1458692752478, "messaging": [{
        "sender": {"id": "PSID"}, "recipient": {"id": "PAGE_ID"}, "timestamp": 1458692752478,
        "message": {"mid": "mid.1457764197618:41d102a3e1ae206a38", "text": "hello, world!"}}]}],
}  # fmt: skip
WHATSAPP_EXAMPLE = {
    "object": "whatsapp_business_account",
    "entry": [{"id": "WABA_ID", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1234567890"},
        "contacts": [{"profile": {"name": "A"}, "wa_id": "33612345678"}],
        "messages": [{"from": "33612345678", "id": "wamid.XXX", "timestamp": "1603059201", "text": {"body": "Hello"}, "type": "text"}]}}]}],
}  # fmt: skip
TELEGRAM_EXAMPLE = {
    "update_id": 100001,
    "message": {
        "message_id": 1,
        "from": {"id": 123, "is_bot": False, "first_name": "Test"},
        "chat": {"id": 123, "type": "private"},
        "date": 1714121016,
        "text": "hello",
    },
}
GENERIC_EXAMPLE = {"event_id": "e-1", "conversation_id": "c-1", "user_id": "u-1", "channel": "web", "text": "do you have it in blue?"}


class IngestService:
    """The app plus what it talks to; anything not given is built from settings at startup."""

    def __init__(
        self,
        settings: IngestSettings | None = None,
        *,
        publisher: Publisher | None = None,
        claims: MessageClaims | None = None,
        limiter: RateLimiter | None = None,
        media: MediaFetchers | None = None,
    ) -> None:
        self.settings = settings or IngestSettings()
        self.links = LinkSettings()  # tracking links redirect to the shop's product pages
        self.metrics = IngestMetrics()
        self.publisher, self.claims, self.limiter, self.media = publisher, claims, limiter, media
        self.redis: redis.Redis | None = None
        self.core: IngestCore | None = None
        self.started = False
        self.stopping = False
        self._resources = AsyncExitStack()
        if None not in (publisher, claims, limiter, media):
            self.core = self._build_core()
            self.started = True
        self.app = self._build_app()

    def _build_core(self) -> IngestCore:
        assert self.publisher and self.claims and self.limiter and self.media
        return IngestCore(self.publisher, self.claims, self.limiter, self.media, AudioStore(self.settings.blob_dir), self.metrics)

    async def start(self) -> None:
        settings = self.settings
        if self.claims is None or self.limiter is None:
            self.redis = redis.Redis.from_url(settings.redis_url)
            self._resources.push_async_callback(self.redis.aclose)
            self.claims = self.claims or RedisMessageClaims(self.redis, settings.ingest_dedupe_ttl_s)
            self.limiter = self.limiter or RedisFixedWindow(self.redis, settings.ingest_rate_limit, settings.ingest_rate_window_s)
        if self.media is None:
            timeout = settings.ingest_media_timeout_s
            client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)))
            self._resources.push_async_callback(client.aclose)
            self.media = fetchers_from_settings(settings, client)
        if self.publisher is None:
            kafka = KafkaPublisher(settings.kafka_bootstrap_servers, settings.ingest_publish_timeout_s)
            await kafka.start()
            self._resources.push_async_callback(kafka.stop)
            self.publisher = kafka
        self.core = self._build_core()
        self.started = True
        log.info("accepting webhooks", extra={"fields": {"port": settings.http_port}})

    async def stop(self) -> None:
        self.stopping = True
        await self._resources.aclose()
        log.info("stopped")

    @asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        if self.core is None:
            await self.start()
        try:
            yield
        finally:
            await self.stop()

    # --- the app -------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(
            title="Elmo ingest",
            version="1",
            description="Platform webhooks in (to elmo.inbound), tracking-link clicks (to elmo.feedback). See docs/edges.md.",
            lifespan=self._lifespan,
        )
        settings = self.settings

        @app.get("/webhooks/meta", response_class=PlainTextResponse, tags=["webhooks"], responses={403: {"model": ErrorBody}})
        async def meta_handshake(
            hub_mode: str | None = Query(None, alias="hub.mode"),
            hub_verify_token: str | None = Query(None, alias="hub.verify_token"),
            hub_challenge: str | None = Query(None, alias="hub.challenge"),
        ) -> Response:
            """Messenger/Instagram subscription handshake: the challenge when the verify token matches."""
            return self._handshake("meta", settings.meta_verify_token, hub_mode, hub_verify_token, hub_challenge)

        @app.post(
            "/webhooks/meta",
            tags=["webhooks"],
            responses=WEBHOOK_RESPONSES,
            openapi_extra=_body_doc(
                "A Messenger (`object: page`) or Instagram (`object: instagram`) webhook.", {"type": "object"}, MESSENGER_EXAMPLE
            ),
        )
        async def meta_webhook(request: Request, x_hub_signature_256: str | None = Header(None, alias="X-Hub-Signature-256")) -> Response:
            """Messenger and Instagram messages, signed with the app secret."""
            return await self._webhook(
                request, "meta", lambda body: check_hmac(settings.meta_app_secret, body, x_hub_signature_256), meta.parse
            )

        @app.get("/webhooks/whatsapp", response_class=PlainTextResponse, tags=["webhooks"], responses={403: {"model": ErrorBody}})
        async def whatsapp_handshake(
            hub_mode: str | None = Query(None, alias="hub.mode"),
            hub_verify_token: str | None = Query(None, alias="hub.verify_token"),
            hub_challenge: str | None = Query(None, alias="hub.challenge"),
        ) -> Response:
            """WhatsApp subscription handshake: the challenge when the verify token matches."""
            return self._handshake("whatsapp", settings.whatsapp_verify_token, hub_mode, hub_verify_token, hub_challenge)

        @app.post(
            "/webhooks/whatsapp",
            tags=["webhooks"],
            responses=WEBHOOK_RESPONSES,
            openapi_extra=_body_doc("A WhatsApp Cloud API webhook.", {"type": "object"}, WHATSAPP_EXAMPLE),
        )
        async def whatsapp_webhook(
            request: Request, x_hub_signature_256: str | None = Header(None, alias="X-Hub-Signature-256")
        ) -> Response:
            """WhatsApp Cloud API messages, signed with the app secret."""
            return await self._webhook(
                request, "whatsapp", lambda body: check_hmac(settings.whatsapp_app_secret, body, x_hub_signature_256), whatsapp.parse
            )

        @app.post(
            "/webhooks/telegram",
            tags=["webhooks"],
            responses=WEBHOOK_RESPONSES,
            openapi_extra=_body_doc("A Telegram Bot API update.", {"type": "object"}, TELEGRAM_EXAMPLE),
        )
        async def telegram_webhook(
            request: Request,
            x_telegram_bot_api_secret_token: str | None = Header(None, alias="X-Telegram-Bot-Api-Secret-Token"),
        ) -> Response:
            """Telegram updates, carrying the secret token given to setWebhook."""
            bot_id = settings.telegram_bot_id()
            return await self._webhook(
                request,
                "telegram",
                lambda body: check_secret_token(settings.telegram_secret_token, x_telegram_bot_api_secret_token),
                lambda document: telegram.parse(document, bot_id),
            )

        @app.post(
            "/webhooks/generic",
            tags=["webhooks"],
            responses={**WEBHOOK_RESPONSES, 422: {"model": ErrorBody, "description": "Not inbound messages of the contract."}},
            openapi_extra=_body_doc(
                "An inbound message of the contract (docs/schemas), or a list of them.",
                {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}, "minItems": 1}]},
                GENERIC_EXAMPLE,
            ),
        )
        async def generic_webhook(request: Request, x_elmo_signature: str | None = Header(None, alias="X-Elmo-Signature")) -> Response:
            """Inbound messages of the contract from any client, signed with the generic secret."""
            return await self._webhook(request, "generic", lambda body: check_hmac(settings.generic_secret, body, x_elmo_signature), None)

        @app.get(
            "/r/{token}",
            tags=["tracking"],
            status_code=302,
            response_class=RedirectResponse,
            responses={302: {"description": "To the link's target; the click is on elmo.feedback."}, 404: {"model": ErrorBody}},
        )
        async def tracking_redirect(token: str, user_agent: str | None = Header(None)) -> Response:
            """A recommendation's tracking link: record the click, then redirect to the product."""
            return await self._redirect(token, user_agent)

        @app.get("/healthz", tags=["operations"])
        async def healthz() -> dict[str, Any]:
            """Alive: the event loop answers (an edge has no processing loop to stall)."""
            return {"status": "ok", "started": self.started}

        @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready."}})
        async def readyz() -> Response:
            """Ready: started, not stopping, Kafka and Redis reachable."""
            broker = await self.publisher.reachable() if self.publisher is not None else False
            redis_ok = True
            if self.redis is not None:
                try:
                    redis_ok = bool(await self.redis.ping())
                except (redis.RedisError, OSError):
                    redis_ok = False
            ok = self.started and not self.stopping and broker and redis_ok
            detail = {
                "status": "ok" if ok else "fail",
                "started": self.started,
                "stopping": self.stopping,
                "broker_reachable": broker,
                "redis_reachable": redis_ok,
            }
            return JSONResponse(detail, status_code=200 if ok else 503)

        @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
        async def metrics() -> Response:
            """Prometheus metrics."""
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        return app

    # --- handlers ------------------------------------------------------------------------------

    def _handshake(self, endpoint: str, expected: str, mode: str | None, token: str | None, challenge: str | None) -> Response:
        if not check_verify_token(expected, mode, token) or challenge is None:
            self.metrics.rejected(endpoint, "verification_failed")
            return _error(403, "verification_failed", "hub.mode must be subscribe and hub.verify_token must match")
        return PlainTextResponse(challenge)

    async def _webhook(
        self, request: Request, endpoint: str, authenticate: Callable[[bytes], str | None], parse: Callable[[Any], Parsed] | None
    ) -> Response:
        started = time.perf_counter()
        try:
            response = await self._handle_webhook(request, endpoint, authenticate, parse)
        except Refused as refused:
            self.metrics.rejected(endpoint, refused.error)
            response = _error(refused.status, refused.error, refused.detail)
        self.metrics.request(endpoint, response.status_code, time.perf_counter() - started)
        return response

    async def _handle_webhook(
        self, request: Request, endpoint: str, authenticate: Callable[[bytes], str | None], parse: Callable[[Any], Parsed] | None
    ) -> Response:
        body = await self._read_body(request)
        if (problem := authenticate(body)) is not None:
            detail = {
                "unsigned": "the request carries no signature",
                "bad_signature": "the signature does not match the body",
                "not_configured": f"the {endpoint} endpoint has no secret configured, so it accepts nothing",
            }[problem]
            raise Refused(STATUS_BY_REASON[problem], problem, detail)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise Refused(400, "malformed", f"the body is not JSON: {str(error)[:200]}") from None
        if self.core is None:
            return _error(503, "not_ready", "the service is starting")
        try:
            if parse is None:
                outcome = await self.core.accept_events(self._inbound_events(document))
            else:
                outcome = await self.core.accept_platform(endpoint, parse(document))
        except Unavailable as error:
            return _error(503, "unavailable", f"not published ({error}); send it again")
        return self._answer(endpoint, outcome)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.ingest_max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise Refused(413, "too_large", f"the body is {declared} bytes; the limit is {limit}")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refused(413, "too_large", f"the body is larger than {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise Refused(400, "disconnected", "the client went away before sending the whole body") from None
        return b"".join(chunks)

    @staticmethod
    def _inbound_events(document: Any) -> list[InboundMessage]:
        items = document if isinstance(document, list) else [document]
        if not items:
            raise Refused(422, "invalid", "an empty list holds no message")
        events, problems = [], []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                problems.append(f"item {index}: expected a JSON object")
                continue
            try:
                event = InboundMessage.model_validate(item)
            except ValidationError as error:
                first = error.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"]) or "<root>"
                problems.append(f"item {index}: {where}: {first['msg']}")
            except (TypeError, ValueError, RecursionError) as error:
                problems.append(f"item {index}: {type(error).__name__}")
            else:
                if event.schema_version in InboundMessage.SUPPORTED_SCHEMA_VERSIONS:
                    events.append(event)
                else:
                    problems.append(f"item {index}: schema_version {event.schema_version} is not supported")
        if problems:
            raise Refused(422, "invalid", "; ".join(problems)[:1000])
        return events

    def _answer(self, endpoint: str, outcome: Outcome) -> Response:
        body: dict[str, Any] = outcome.as_dict()
        if outcome.status == 503:
            body |= {"error": "media_unavailable", "detail": "a voice note could not be fetched yet; send it again"}
            return JSONResponse(body, status_code=503)
        if outcome.status == 429:
            self.metrics.rejected(endpoint, "rate_limited")
            limit, window = self.settings.ingest_rate_limit, self.settings.ingest_rate_window_s
            body |= {"error": "rate_limited", "detail": f"more than {limit} messages per {window} s from one sender"}
            return JSONResponse(body, status_code=429, headers={"Retry-After": str(window)})
        return JSONResponse(body, status_code=200)

    async def _redirect(self, token: str, user_agent: str | None) -> Response:
        secret = self.settings.tracking_secret
        try:
            if not secret:
                raise InvalidTrackingToken("no tracking secret configured")
            link = read_token(token, secret)
        except (InvalidTrackingToken, ValueError):
            self.metrics.redirect("bad_token")
            return _error(404, "unknown_link", "this link is not valid")
        if self.core is None:
            outcome = "feedback_lost"
        else:
            outcome = await self.core.record_click(link, user_agent, CLICK_PUBLISH_WAIT_S)
        self.metrics.redirect(outcome)
        target = self.links.product_url(link.item_id)
        return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
