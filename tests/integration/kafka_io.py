"""Talking to the real broker from tests: produce, read back, and run the test-only echo service."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen | None, grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `grace_s`."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def produce(bootstrap: str, topic: str, values: list[bytes | dict], key: bytes | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value in values:
        raw = json.dumps(value).encode() if isinstance(value, dict) else value
        record_key = key if key is not None else (value.get("conversation_id", "k").encode() if isinstance(value, dict) else b"k")
        producer.send(topic, key=record_key, value=raw)
    producer.flush()
    producer.close()


def consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0, settle_s: float = 0.0) -> list:
    """Read the topic from the beginning until `expected` records arrived (then `settle_s` more)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    records: list = []
    deadline = time.monotonic() + timeout_s
    settle_until = None
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if len(records) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
    finally:
        consumer.close()
    return records


@dataclass
class EchoService:
    """One process of the test-only echo service (tests/integration/runtime/echo_service.py)."""

    name: str
    in_topic: str
    out_topic: str
    bootstrap: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self, wait_ready: bool = True) -> EchoService:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "ECHO_SERVICE_NAME": self.name,
            "ECHO_IN_TOPIC": self.in_topic,
            "ECHO_OUT_TOPIC": self.out_topic,
            "ELMO_HTTP_PORT": str(self.port),
            "ELMO_RETRY_BACKOFF_S": "0.05",
            **self.extra_env,
        }
        log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"{self.name}-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "tests/integration/runtime/echo_service.py")], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        if wait_ready:
            self.wait_ready()
        return self

    def http(self, path: str) -> tuple[int, dict | str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                body = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as error:
            body, status = error.read().decode(), error.code
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, body

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, f"{self.name} exited with {self.process.returncode}"
            try:
                if self.http("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout_s} s")

    def stop(self) -> None:
        stop_process(self.process)


def inbound(event_id: str, conversation: str, text: str) -> dict:
    return {"event_id": event_id, "conversation_id": conversation, "user_id": "u-" + conversation, "channel": "web", "text": text}


@dataclass
class ServiceProcess:
    """One `python -m <module>` service process with its own consumer group and HTTP port."""

    module: str
    group: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "ELMO_HTTP_PORT": str(self.port),
            "ELMO_CONSUMER_GROUP": self.group,
            **self.env,
        }
        log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"{self.module}-{self.group}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        while self.readiness()[0] != 200:
            assert self.process.poll() is None, f"{self.module} exited with {self.process.returncode}; see {log.name}"
            assert time.monotonic() < deadline, f"{self.module} not ready after {timeout_s} s; see {log.name}"
            time.sleep(0.3)

    def readiness(self) -> tuple[int, dict]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        except OSError:
            return 0, {}

    def metric(self, name: str) -> float:
        """The sum of a metric's samples (all label sets) on the service's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
            lines = response.read().decode().splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith((name + " ", name + "{")))

    def stop(self) -> None:
        stop_process(self.process)


def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return consumer.end_offsets([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    finally:
        consumer.close()


def start_group_at_end(bootstrap: str, topic: str, group: str) -> None:
    """Commit `group`'s offsets at the topic's end, so a new service skips what earlier runs left."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in end_offsets(bootstrap, topic).items()})
    finally:
        consumer.close()


def read_from(bootstrap: str, offsets: dict[TopicPartition, int], keep: Callable, expected: int, timeout_s: float = 90.0) -> list:
    """Records after `offsets` that `keep` accepts, until `expected` of them (or the timeout)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    consumer.assign(list(offsets))
    for partition, offset in offsets.items():
        consumer.seek(partition, offset)
    kept: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(kept) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                kept.extend(record for record in batch if keep(record))
    finally:
        consumer.close()
    return kept


@contextmanager
def chain_services(
    bootstrap: str, names: Sequence[str], label: str, env: dict[str, str] | None = None, timeout_s: float = 120.0
) -> Iterator[list[ServiceProcess]]:
    """The named services as processes, each in a group of its own that starts at the end of the
    topic it consumes (from the chain registry), stopped on exit. `env` goes to every one."""
    from elmo.contracts.chain import CHAIN

    run = uuid.uuid4().hex[:8]
    consumes = {hop.service: hop.consumes.name for hop in CHAIN}
    services = []
    for name in names:
        group = f"{label}-{name}-{run}"
        start_group_at_end(bootstrap, consumes[name], group)
        services.append(ServiceProcess(f"services.{name.replace('-', '_')}", group, dict(env or {})))
    try:
        for service in services:
            service.start(timeout_s=timeout_s)
        yield services
    finally:
        for service in services:
            service.stop()


def elmo_cli(bootstrap: str, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    """The `elmo` command of this environment, as an operator runs it, against `bootstrap`; it must succeed."""
    env = {**os.environ, "ELMO_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "elmo"), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, f"elmo {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done
