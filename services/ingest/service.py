"""The ingest service: platform webhooks -> elmo.inbound, tracking-link clicks -> elmo.feedback.

Unlike the other services it consumes no topic: it is an HTTP edge (FastAPI under uvicorn) whose
handlers publish and wait for Kafka's acknowledgement before answering. The work is in
`services.ingest.core`; the endpoints in `services.ingest.app`.
"""

from __future__ import annotations

import asyncio
import signal

import uvicorn

from elmo.runtime.json_logs import configure_logging
from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings


def main() -> None:
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    # uvicorn re-raises the stop signal once it has drained; after a clean drain exit 0 (as run_stage does).
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    config = uvicorn.Config(
        IngestService(settings).app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
    )
    asyncio.run(uvicorn.Server(config).serve())
