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
import tempfile
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

DEFAULT_HOPS = 5
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
    cpu_ms_per_event_hop: float


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the given processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


class Sink(threading.Thread):
    """Reads the last topic and records each event's end-to-end latency."""

    def __init__(self, topic: str, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.latencies: list[float] = []
        self.received_at: list[float] = []
        self._consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
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
        self._halt.set()
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
        for i in range(len(topics) - 1)
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
        for i in range(len(topics) - 1)
    ]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else values[0]


def run_chain(name: str, starter, args: argparse.Namespace, bootstrap: str, workdir: Path) -> list[PhaseResult]:
    run = uuid.uuid4().hex[:8]
    topics = [Topic(f"bench.{run}.t{i}", "benchmark", partitions=6) for i in range(args.hops + 1)]
    create_topics(bootstrap, tuple(topics))
    sink = Sink(topics[-1].name, bootstrap)
    sink.start()
    processes = starter(topics, bootstrap)
    results = []
    try:
        # Warm-up: every hop has joined its group and handled traffic at the measured rate (lazy
        # connections and first-call paths are paid for) before anything is measured.
        warm_up = int(args.rate * 3)
        replay(write_fixture(workdir, warm_up), topics[0].name, rate=args.rate)
        if not sink.wait_for(warm_up, 120):
            raise RuntimeError(f"{name}: warm-up events did not come through")
        time.sleep(1)
        for phase, count, rate in (("latency", int(args.rate * args.seconds), args.rate), ("throughput", args.burst, None)):
            before = len(sink.latencies)
            fixture = write_fixture(workdir, count)
            cpu_before = cpu_seconds([p.pid for p in processes])
            started = time.time()
            replay(fixture, topics[0].name, rate)
            sink.wait_for(before + count, timeout_s=max(120, count / 200))
            received = len(sink.latencies) - before
            cpu_per_event_hop = (cpu_seconds([p.pid for p in processes]) - cpu_before) / max(1, received) / (len(topics) - 1)
            latencies = sink.latencies[before:]
            seconds = (max(sink.received_at[before:]) - started) if received else float("nan")
            results.append(PhaseResult(
                name, phase, count, received, round(seconds, 2), round(received / seconds, 1) if received else 0.0,
                round(percentile(latencies, 0.50) * 1000, 1) if latencies else float("nan"),
                round(percentile(latencies, 0.99) * 1000, 1) if latencies else float("nan"),
                round(cpu_per_event_hop * 1000, 3),
            ))
            time.sleep(1)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        sink.stop()
    return results


def median_of(results: list[PhaseResult], chain: str, phase: str, field: str) -> float:
    return statistics.median(getattr(r, field) for r in results if r.chain == chain and r.phase == phase)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency phase")
    parser.add_argument("--hops", type=int, default=DEFAULT_HOPS, help="services in each chain")
    parser.add_argument("--burst", type=int, default=20000, help="events in the throughput phase")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/runtime rounds; medians are reported")
    args = parser.parse_args()
    bootstrap = ConnectionSettings().kafka_bootstrap_servers
    workdir = REPO_ROOT / ".local" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)

    # Alternate the chains round by round so a noisy moment on the machine hits both alike.
    results: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="elmo-bench-") as fixtures:
        for _ in range(args.rounds):
            results += run_chain("bare-aiokafka", start_bare_chain, args, bootstrap, Path(fixtures))
            results += run_chain("elmo-runtime", start_runtime_chain, args, bootstrap, Path(fixtures))

    header = f"{'chain':14} {'phase':10} {'events':>7} {'received':>8} {'seconds':>8} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/event/hop':>16}"
    print(header)
    for r in results:
        print(f"{r.chain:14} {r.phase:10} {r.events:7} {r.received:8} {r.seconds:8} {r.throughput:9} {r.p50_ms:7} {r.p99_ms:7} {r.cpu_ms_per_event_hop:16}")
    summary = {
        chain: {
            "throughput_events_per_s": median_of(results, chain, "throughput", "throughput"),
            "p50_ms": median_of(results, chain, "latency", "p50_ms"),
            "p99_ms": median_of(results, chain, "latency", "p99_ms"),
            "cpu_ms_per_event_hop_at_rate": median_of(results, chain, "latency", "cpu_ms_per_event_hop"),
        }
        for chain in ("bare-aiokafka", "elmo-runtime")
    }
    bare, runtime = summary["bare-aiokafka"], summary["elmo-runtime"]
    summary["ratios_runtime_over_bare"] = {
        "throughput": round(runtime["throughput_events_per_s"] / bare["throughput_events_per_s"], 2),
        "p50": round(runtime["p50_ms"] / bare["p50_ms"], 2),
        "p99": round(runtime["p99_ms"] / bare["p99_ms"], 2),
    }
    print("medians over", args.rounds, "rounds:", json.dumps(summary, indent=2))
    all_received = all(r.received == r.events for r in results)
    print("every event came through every run:", all_received)
    (workdir / "runtime_chain.json").write_text(
        json.dumps({"args": vars(args), "results": [asdict(r) for r in results], "summary": summary}, indent=2)
    )


if __name__ == "__main__":
    main()
