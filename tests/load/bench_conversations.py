"""Load test: conversation turns through the whole chain (intake -> [asr for voice] -> nlu ->
sentiment -> recommender -> generator) on the real broker and Redis, one process per service, as `elmo up` runs them.

Phases (every inbound event gets fresh ids per phase, so phases never dedupe each other):
  paced   the 1,000 text turns of `fixtures/conversation_turns.jsonl` plus `--voice` voice notes
          (espeak-ng -> Ogg/Opus, inline; one after every 20 text turns) at `--rate` turns/s;
          latency per turn type, from publishing the inbound event to its reply arriving.
  burst   the same 1,000 text turns (new conversation ids) published as fast as possible;
          sustained throughput = turns / (last reply - first publish).
Every phase checks that every inbound event got exactly one reply (by `origin_event_id`).

Run, with Kafka and Redis up (`make infra-up`) and models trained (`make models`):
    PYTHONPATH=. .venv/bin/python tests/load/bench_conversations.py [--rate 20] [--voice 50]
Results are printed and written as JSON to `.local/bench/conversations.json`.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from elmo.contracts import topics
from elmo.runtime.settings import ConnectionSettings, RuntimeSettings
from elmo.tools.replay import read_fixture
from elmo.tools.test_data import synthesize_speech, to_ogg_opus
from tests.integration.kafka_io import chain_services

FIXTURE = Path(__file__).parent / "fixtures" / "conversation_turns.jsonl"
SERVICES = ("intake", "asr", "nlu", "sentiment", "recommender", "generator")
VOICE_PHRASES = [
    "Hi, do you have the Pixel 9 in stock?",
    "I want to return my order please",
    "How long does shipping take to Vienna?",
    "Can you recommend some running shoes?",
    "Thank you so much, that was helpful",
]


class ReplyCollector(threading.Thread):
    """Reads elmo.replies from its current end; records each reply's arrival by origin event id."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        partitions = [TopicPartition(topics.REPLIES.name, p) for p in self.consumer.partitions_for_topic(topics.REPLIES.name)]
        self.consumer.assign(partitions)
        self.consumer.seek_to_end(*partitions)
        for partition in partitions:
            self.consumer.position(partition)
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.replies: dict[str, dict] = {}
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            for batch in self.consumer.poll(timeout_ms=100).values():
                now = time.monotonic()
                for record in batch:
                    reply = json.loads(record.value)
                    self.arrivals[reply["origin_event_id"]].append(now)
                    self.replies[reply["origin_event_id"]] = reply

    def wait_for(self, ids: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not ids <= self.arrivals.keys():
            time.sleep(0.2)
        time.sleep(2.0)  # a doubled reply would arrive right after the first

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        self.consumer.close()


def voice_notes(count: int, workdir: Path) -> list[dict]:
    notes = []
    for index in range(count):
        phrase = VOICE_PHRASES[index % len(VOICE_PHRASES)]
        ogg = to_ogg_opus(synthesize_speech(phrase, workdir / f"v{index}.wav"), workdir / f"v{index}.ogg")
        notes.append({"audio": {"data_b64": base64.b64encode(ogg.read_bytes()).decode(), "mime_type": "audio/ogg"}})
    return notes


def fresh(event: dict, run: str) -> dict:
    return {**event, "event_id": f"{event['event_id']}-{run}", "conversation_id": f"{event['conversation_id']}-{run}"}


def send(producer: KafkaProducer, events: list[dict], rate: float | None) -> dict[str, float]:
    """Publish `events` (paced at `rate`/s, or flat out); returns each event's send time."""
    sent_at = {}
    started = time.monotonic()
    for index, event in enumerate(events):
        if rate:
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        event = {**event, "created_at": datetime.now(UTC).isoformat()}
        sent_at[event["event_id"]] = time.monotonic()
        producer.send(topics.INBOUND.name, key=event["conversation_id"].encode(), value=json.dumps(event).encode())
    producer.flush()
    return sent_at


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def summarise(name: str, sent_at: dict[str, float], kinds: dict[str, str], collector: ReplyCollector) -> dict:
    counts = Counter(len(collector.arrivals.get(event_id, [])) for event_id in sent_at)
    result = {"phase": name, "sent": len(sent_at), "answered_once": counts[1], "unanswered": counts[0],
              "answered_more_than_once": sum(v for k, v in counts.items() if k > 1)}
    for kind in sorted(set(kinds.values())):
        latencies = [
            (collector.arrivals[event_id][0] - sent_at[event_id]) * 1000
            for event_id in sent_at if kinds[event_id] == kind and collector.arrivals.get(event_id)
        ]
        result[kind] = {"turns": len(latencies), "p50_ms": round(percentile(latencies, 0.5), 1),
                        "p99_ms": round(percentile(latencies, 0.99), 1),
                        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None}
    answered = [collector.arrivals[e][0] for e in sent_at if collector.arrivals.get(e)]
    if answered:
        span = max(answered) - min(sent_at.values())
        result["sustained_turns_per_s"] = round(len(answered) / span, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="Turns per second in the paced phase.")
    parser.add_argument("--voice", type=int, default=50, help="Voice notes mixed into the paced phase.")
    parser.add_argument("--model-store", type=Path, default=RuntimeSettings().model_store)
    args = parser.parse_args()

    bootstrap = ConnectionSettings().kafka_bootstrap_servers
    run = uuid.uuid4().hex[:6]
    texts = read_fixture(FIXTURE)
    with tempfile.TemporaryDirectory() as workdir:
        notes = voice_notes(args.voice, Path(workdir))
    collector = ReplyCollector(bootstrap)
    collector.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    results = []
    env = {"ELMO_MODEL_STORE": str(args.model_store), "ELMO_LOG_LEVEL": "WARNING"}
    try:
        with chain_services(bootstrap, SERVICES, "bench", env, timeout_s=240):
            # Warm-up: a few turns through every stage, not measured.
            warm = [fresh(e, f"{run}w") for e in texts[:40]]
            collector.wait_for(set(send(producer, warm, 20.0)), timeout_s=60)

            paced, kinds = [], {}
            for index, event in enumerate(texts):
                paced.append(fresh(event, f"{run}p"))
                kinds[paced[-1]["event_id"]] = "text"
                voice_number = (index + 1) // 20 - 1
                if (index + 1) % 20 == 0 and voice_number < len(notes):
                    voice = {"event_id": f"voice-{voice_number}-{run}", "conversation_id": f"voice-{voice_number}-{run}",
                             "user_id": f"voice-user-{voice_number}", "channel": "whatsapp", **notes[voice_number]}
                    paced.append(voice)
                    kinds[voice["event_id"]] = "voice"
            sent = send(producer, paced, args.rate)
            collector.wait_for(set(sent), timeout_s=120)
            results.append(summarise(f"paced {args.rate:g}/s", sent, kinds, collector))
            print(json.dumps(results[-1]), flush=True)

            burst = [fresh(e, f"{run}b") for e in texts]
            sent = send(producer, burst, None)
            collector.wait_for(set(sent), timeout_s=180)
            results.append(summarise("burst", sent, {e: "text" for e in sent}, collector))
            print(json.dumps(results[-1]), flush=True)
    finally:
        producer.close()
        collector.stop()
    out = Path(".local/bench/conversations.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
