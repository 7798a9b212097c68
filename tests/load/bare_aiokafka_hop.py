"""Baseline for the runtime benchmark: a bare aiokafka consume -> produce -> commit loop.

It does what the runtime must at minimum (at-least-once: commit after the outputs are acknowledged)
and nothing else: no validation, deduplication, dead letters, metrics or health.
"""

from __future__ import annotations

import asyncio
import os
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def main() -> None:
    bootstrap = os.environ.get("ELMO_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    consumer = AIOKafkaConsumer(
        os.environ["BARE_IN_TOPIC"],
        bootstrap_servers=bootstrap,
        group_id=os.environ["BARE_GROUP"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # The same fetch setting as the runtime's default, so the two chains differ only in code.
        fetch_max_wait_ms=int(os.environ.get("ELMO_FETCH_MAX_WAIT_MS", "50")),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    out_topic = os.environ["BARE_OUT_TOPIC"]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=64)
            futures = [
                await producer.send(out_topic, record.value, key=record.key)
                for records in batches.values()
                for record in records
            ]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
