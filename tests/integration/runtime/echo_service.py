"""A test-only service on the runtime: echoes each inbound message as a new, derived one.

Text `boom` makes the core raise (to exercise retries and dead letters); `die` kills the process
with SIGKILL (a record that crashes its service); `slow:<seconds>` makes it
take that long (to have work in flight when the process is signalled). While the file named by
`ECHO_OUTAGE_FILE` exists, every batch fails as if Redis were down (a dependency outage). Topics
and the service name come from the environment so every test gets its own.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import redis.exceptions

from elmo.contracts.events import InboundMessage
from elmo.contracts.topics import Topic
from elmo.runtime import RuntimeSettings, Stage, run_stage


async def echo(events: list[InboundMessage]) -> list[InboundMessage]:
    outage = os.environ.get("ECHO_OUTAGE_FILE")
    if outage and Path(outage).exists():
        raise redis.exceptions.ConnectionError("injected outage: Redis unreachable")
    outputs = []
    for event in events:
        text = event.text or ""
        if text == "boom":
            raise RuntimeError("boom requested by the test")
        if text == "die":  # as a segfault or the OOM killer would: no exception, no cleanup
            os.kill(os.getpid(), signal.SIGKILL)
        if text.startswith("slow:"):
            await asyncio.sleep(float(text.split(":", 1)[1]))
        # Same type out as in, so two echo services can be chained.
        outputs.append(event.derive(InboundMessage, text=text))
    return outputs


def stage_from_env() -> Stage:
    return Stage(
        name=os.environ["ECHO_SERVICE_NAME"],
        consumes=Topic(os.environ["ECHO_IN_TOPIC"], "test input"),
        emits=Topic(os.environ["ECHO_OUT_TOPIC"], "test output"),
        input_type=InboundMessage,
        process_batch=echo,
    )


if __name__ == "__main__":
    run_stage(stage_from_env(), RuntimeSettings())
