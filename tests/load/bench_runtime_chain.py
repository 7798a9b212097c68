"""Benchmark: five no-op services on the Elmo runtime against five bare aiokafka loops.

Both chains run on the same broker in the same run, one after the other, each on fresh topics:
  1. latency: events replayed at a fixed rate (`--rate`, default 200/s) for `--seconds`;
     p50/p99 of (received at the end of the chain - created at the start);
  2. throughput: `--burst` events published as fast as possible; events/s through all five hops.

Run: `make bench` (starts Kafka and Redis if needed), or `.venv/bin/python tests/load/bench_runtime_chain.py`.
Results are printed as a table and written as JSON to `.local/bench/runtime_chain.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from kafka import KafkaConsumer

from elmo.contracts.topics import Topic, dead_letter_topic
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from tests.integration.kafka_io import EchoService, REPO_ROOT

HOPS = 5
TEMPLATE = Path(__file__).parent / "fixtures" / "runtime_chain_inbound.jsonl"


@dataclass
class PhaseResult:
    chain: str
    phase: str
    events: int
    received: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float


class Sink(threading.Thread):
    """Reads the last topic and records each event's end-to-end latency."""

    def __init__(self, topic: str, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.latencies: list[float] = []
        self.received_at: list[float] = []
        self._consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            for records in self._consumer.poll(timeout_ms=100).values():
                now = time.time()
                for record in records:
                    event = json.loads(record.value)
                    created = datetime.fromisoformat(event.get("origin_created_at") or event["created_at"]).timestamp()
                    self.latencies.append(now - created)
                    self.received_at.append(now)
        self._consumer.close()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.latencies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.latencies) >= count

    def stop(self) -> None:
        self._stop.set()
        self.join()


def write_fixture(directory: Path, count: int) -> Path:
    """`count` inbound events built from the template, with ids unique to this run."""
    template = [json.loads(line) for line in TEMPLATE.read_text().splitlines() if line.strip()]
    path = directory / f"fixture-{uuid.uuid4().hex[:8]}.jsonl"
    with path.open("w") as out:
        for i in range(count):
            event = dict(template[i % len(template)])
            event["event_id"] = f"{uuid.uuid4().hex}"
            out.write(json.dumps(event) + "\n")
    return path


def replay(path: Path, topic: str, rate: float | None) -> None:
    command = [str(REPO_ROOT / ".venv/bin/elmo"), "replay", str(path), "--topic", topic]
    if rate:
        command += ["--rate", str(rate)]
    subprocess.run(command, check=True, capture_output=True)


def start_runtime_chain(topics: list[Topic], bootstrap: str) -> list:
    services = [
        EchoService(f"bench-{uuid.uuid4().hex[:6]}-{i}", topics[i].name, topics[i + 1].name, bootstrap,
                    extra_env={"ELMO_LOG_LEVEL": "WARNING"})
        for i in range(HOPS)
    ]
    create_topics(bootstrap, tuple(dead_letter_topic(s.name) for s in services))
    for service in services:
        service.start(wait_ready=False)
    for service in services:
        service.wait_ready()
    return [s.process for s in services]


def start_bare_chain(topics: list[Topic], bootstrap: str) -> list:
    group = f"bare-{uuid.uuid4().hex[:6]}"
    return [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "bare_aiokafka_hop.py")],
            env={**os.environ, "BARE_IN_TOPIC": topics[i].name, "BARE_OUT_TOPIC": topics[i + 1].name,
                 "BARE_GROUP": f"{group}-{i}", "ELMO_KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        )
        for i in range(HOPS)
    ]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else values[0]


def run_chain(name: str, starter, args: argparse.Namespace, bootstrap: str, workdir: Path) -> list[PhaseResult]:
    run = uuid.uuid4().hex[:8]
    topics = [Topic(f"bench.{run}.t{i}", "benchmark", partitions=6) for i in range(HOPS + 1)]
    create_topics(bootstrap, tuple(topics))
    sink = Sink(topics[-1].name, bootstrap)
    sink.start()
    processes = starter(topics, bootstrap)
    results = []
    try:
        # Warm-up: every hop has joined its group and handled traffic before anything is measured.
        replay(write_fixture(workdir, 50), topics[0].name, rate=None)
        if not sink.wait_for(50, 120):
            raise RuntimeError(f"{name}: warm-up events did not come through")
        time.sleep(1)
        for phase, count, rate in (("latency", int(args.rate * args.seconds), args.rate), ("throughput", args.burst, None)):
            before = len(sink.latencies)
            fixture = write_fixture(workdir, count)
            started = time.time()
            replay(fixture, topics[0].name, rate)
            sink.wait_for(before + count, timeout_s=max(120, count / 200))
            received = len(sink.latencies) - before
            latencies = sink.latencies[before:]
            seconds = (max(sink.received_at[before:]) - started) if received else float("nan")
            results.append(PhaseResult(
                name, phase, count, received, round(seconds, 2), round(received / seconds, 1) if received else 0.0,
                round(percentile(latencies, 0.50) * 1000, 1) if latencies else float("nan"),
                round(percentile(latencies, 0.99) * 1000, 1) if latencies else float("nan"),
            ))
            time.sleep(1)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        sink.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency phase")
    parser.add_argument("--burst", type=int, default=20000, help="events in the throughput phase")
    args = parser.parse_args()
    bootstrap = ConnectionSettings().kafka_bootstrap_servers
    workdir = REPO_ROOT / ".local" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)

    results = run_chain("bare-aiokafka", start_bare_chain, args, bootstrap, workdir)
    results += run_chain("elmo-runtime", start_runtime_chain, args, bootstrap, workdir)

    print(f"{'chain':14} {'phase':10} {'events':>7} {'received':>8} {'seconds':>8} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7}")
    for r in results:
        print(f"{r.chain:14} {r.phase:10} {r.events:7} {r.received:8} {r.seconds:8} {r.throughput:9} {r.p50_ms:7} {r.p99_ms:7}")
    by = {(r.chain, r.phase): r for r in results}
    ratios = {
        "throughput_runtime_over_bare": round(by["elmo-runtime", "throughput"].throughput / by["bare-aiokafka", "throughput"].throughput, 2),
        "p50_runtime_over_bare": round(by["elmo-runtime", "latency"].p50_ms / by["bare-aiokafka", "latency"].p50_ms, 2),
        "p99_runtime_over_bare": round(by["elmo-runtime", "latency"].p99_ms / by["bare-aiokafka", "latency"].p99_ms, 2),
    }
    print(json.dumps(ratios))
    (workdir / "runtime_chain.json").write_text(json.dumps({"args": vars(args), "results": [asdict(r) for r in results], "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
