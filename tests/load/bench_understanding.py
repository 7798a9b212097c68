"""Benchmark: the nlu and sentiment services, one at a time, on the real broker and Redis.

Models are trained once into a temporary model store (nlu on `intents.jsonl`, sentiment on the
VADER tweets plus the brand examples, as the integration tests do), unless `--model-store` names a
store that already has both. Then each variant runs against its own fresh service process
(`python -m services.nlu` / `python -m services.sentiment`, own consumer group and HTTP port,
`ELMO_LOG_LEVEL=WARNING`, every other setting at its default or as set in the environment):

  nlu                   Utterance events (texts from shared/elmo/models/training_data/intents/intents.jsonl)
                        on elmo.utterances -> elmo.understandings;
  sentiment-reused      Understanding events carrying nlu's embedding (`embedding_b64` from the same
                        MiniLM), so the service reuses it: elmo.understandings -> elmo.sentiments;
  sentiment-embedded    the same events without an embedding, so the service must embed.

The services' topics are the real ones, so before a service starts its new consumer group is
committed at the end of its input topic (nothing older is reprocessed), and outputs are read from
the output topic's end offsets taken before publishing, keeping only this run's conversations (a
conversation-id prefix unique to the run and phase). Per variant:
  1. warm-up: `--warm-up` events, not measured;
  2. latency (paced): `--rate` events/s for `--seconds` (0 skips it): service time without a queue;
  3. throughput (burst): `--events` events published as fast as possible; sustained throughput is
     events / (last output received - first publish), latencies there include the queue.
Latency is end to end from the input's `created_at` (set when it is published) to the output's
arrival at the reader. CPU is read from /proc for the service, the broker, Redis, this process and
the rest of the machine (`other`: more than a little there means a busy, shared machine skewed the
run); peak RSS is the service's VmHWM at the end. `--profile` samples the service with py-spy during the
burst and prints where its time goes.

Run: `make bench` (with the other benchmarks), or, with Kafka and Redis up (`.venv/bin/elmo kafka up &&
.venv/bin/elmo redis up && .venv/bin/elmo topics create`):
    .venv/bin/python tests/load/bench_understanding.py [--events 3000] [--only nlu,sentiment-reused] [--profile]
`--model-store DIR` skips training (about 40 s on 2 idle cores) by using DIR's current models.
Results are printed as a table and written as JSON to `.local/bench/understanding.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

if str(Path(__file__).resolve().parents[2]) not in sys.path:  # run as a script without PYTHONPATH=.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from elmo.contracts import topics  # noqa: E402
from elmo.contracts.topics import Topic  # noqa: E402
from elmo.runtime.settings import RuntimeSettings  # noqa: E402
from elmo.models.intent_model import TRAINING_DATA  # noqa: E402
from tests.integration.kafka_io import REPO_ROOT, free_port, stop_process  # noqa: E402

TARGET_PER_S = 300.0
VARIANTS = ("nlu", "sentiment-reused", "sentiment-embedded")
INTENTS_FILE = TRAINING_DATA  # the intent model's own data file


# --- measuring ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def find_pids(matches: Callable[[list[str]], bool]) -> list[int]:
    """Processes whose command line (split on NULs) `matches`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if matches(argv):
                pids.append(int(entry.name))
    return pids


def infrastructure_pids() -> dict[str, list[int]]:
    return {
        "broker": find_pids(lambda argv: "kafka.Kafka" in argv),
        "redis": find_pids(lambda argv: bool(argv[0]) and Path(argv[0].split()[0]).name == "redis-server"),
    }


def other_services_running(own: set[int]) -> list[str]:
    """Other `python -m services.*` processes: they may consume the same topics and share the CPU."""
    found = find_pids(lambda argv: any(a.startswith("services.") for a in argv) and "-m" in argv)
    return [f"{pid}: {' '.join(Path(f'/proc/{pid}/cmdline').read_bytes().decode(errors='replace').split(chr(0)))[:120]}"
            for pid in found if pid not in own]


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent busy so far (the first line of /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds of the service, the broker, Redis, this process and everything else over one phase.

    `other` is what the rest of the machine used meanwhile: more than a little means the numbers
    were measured on a shared, busy machine.
    """

    def __init__(self, service_pid: int) -> None:
        self.pids = {"service": [service_pid], **infrastructure_pids(), "bench": [os.getpid()]}
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        return {**{name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}, "machine": machine_busy_seconds()}

    def used(self) -> dict[str, float]:
        now = self._read()
        used = {name: now[name] - self._start[name] for name in now}
        used["other"] = max(0.0, used.pop("machine") - sum(used.values()))
        return used


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else values[0]


# --- Kafka -------------------------------------------------------------------------------------


def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist: run `.venv/bin/elmo topics create`")
        return consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        consumer.close()


def start_group_at_end(bootstrap: str, topic: str, group: str) -> None:
    """Commit `group` at the end of every partition of `topic`, so a new service skips older records."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_end(*partitions)
        consumer.commit({tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in partitions})
    finally:
        consumer.close()


class Sink(threading.Thread):
    """Reads `topic` from `offsets`, keeping records whose key starts with `prefix`, one per event id."""

    def __init__(self, bootstrap: str, offsets: dict[TopicPartition, int], prefix: str) -> None:
        super().__init__(daemon=True)
        self.prefix = prefix.encode()
        self.latencies: list[float] = []
        self.received_at: list[float] = []
        self.events: list[dict] = []
        self.duplicates = 0
        self._ids: set[str] = set()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20)
        self._consumer.assign(list(offsets))
        for partition, offset in offsets.items():
            self._consumer.seek(partition, offset)
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for records in self._consumer.poll(timeout_ms=100).values():
                    now = time.time()
                    for record in records:
                        if record.key is None or not record.key.startswith(self.prefix):
                            continue
                        event = json.loads(record.value)
                        if event["event_id"] in self._ids:  # another consumer of the same topic made it too
                            self.duplicates += 1
                            continue
                        self._ids.add(event["event_id"])
                        created = datetime.fromisoformat(event.get("origin_created_at") or event["created_at"]).timestamp()
                        self.latencies.append(now - created)
                        self.received_at.append(now)
                        self.events.append(event)
        finally:
            self._consumer.close()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.latencies) < count and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.05)
        return len(self.latencies) >= count

    def stop(self) -> None:
        self._halt.set()
        self.join()


def publish(bootstrap: str, topic: str, events: list[dict], rate: float | None) -> tuple[float, float]:
    """Send `events` (created_at set as each is sent), paced at `rate`/s or as fast as possible.

    Returns (time of the first send, seconds until the last was acknowledged).
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024)
    try:
        first = time.time()
        for i, event in enumerate(events):
            if rate:
                delay = first + i / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            now = datetime.now(UTC).isoformat()
            event = {**event, "created_at": now, "origin_created_at": now}
            producer.send(topic, key=event["conversation_id"].encode(), value=json.dumps(event).encode())
        producer.flush()
        return first, time.time() - first
    finally:
        producer.close()


# --- the service under test --------------------------------------------------------------------


@dataclass
class Service:
    module: str
    consumes: Topic
    model_store: Path
    group: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    def start(self, bootstrap: str, timeout_s: float = 180.0) -> None:
        start_group_at_end(bootstrap, self.consumes.name, self.group)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "ELMO_MODEL_STORE": str(self.model_store),
            "ELMO_HTTP_PORT": str(self.port),
            "ELMO_CONSUMER_GROUP": self.group,
            "ELMO_LOG_LEVEL": "WARNING",
        }
        self.log_path = Path(tempfile.gettempdir()) / f"bench-{self.module}-{self.group}.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", self.module], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while self.ready() != 200:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.module} not ready after {timeout_s} s; see {self.log_path}")
            time.sleep(0.3)

    def ready(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def stop(self) -> None:
        stop_process(self.process)


# --- events ------------------------------------------------------------------------------------


def read_texts(seed: int = 13) -> list[str]:
    """The texts of intents.jsonl in a fixed shuffled order, so every phase gets a mix of intents and lengths."""
    texts = [json.loads(line)["text"] for line in INTENTS_FILE.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(texts)
    return texts


class EventFactory:
    """Input events for a variant, in conversations of `turns` turns each, ids unique to a prefix."""

    def __init__(self, variant: str, texts: list[str], understandings: dict[str, dict] | None, turns: int) -> None:
        self.variant = variant
        self.texts = texts
        self.understandings = understandings
        self.turns = turns

    def make(self, prefix: str, count: int) -> list[dict]:
        conversations = max(1, count // self.turns)
        events = []
        for i in range(count):
            text = self.texts[i % len(self.texts)]
            conversation = f"{prefix}-c{i % conversations}"
            base = {
                "event_id": uuid.uuid4().hex,
                "conversation_id": conversation,
                "user_id": "u-" + conversation,
                "channel": "web",
                "text": text,
                "source": "text",
            }
            if self.variant == "nlu":
                events.append({"event_type": "utterance", **base})
            else:
                understanding = dict(self.understandings[text])  # type: ignore[index]
                if self.variant == "sentiment-embedded":
                    understanding.pop("embedding_b64")
                    understanding.pop("embedding_model")
                events.append({**understanding, **base})
        return events


def build_understandings(model_store: Path, texts: list[str]) -> tuple[dict[str, dict], str]:
    """One real `Understanding` (intent, entities, embedding from nlu's model) per distinct text.

    Returns them as JSON-ready dicts without identity fields, and the embedding model's version.
    """
    from elmo.brand.catalog import load_catalog
    from elmo.contracts.events import DialogueContext, Intent, Understanding
    from elmo.models.artifacts import ArtifactStore
    from elmo.models.embeddings import SentenceEmbedder, vector_to_b64
    from services.nlu.entities import extract_entities
    from elmo.models.intent_model import IntentModel

    embedder = SentenceEmbedder()
    model = IntentModel.load(ArtifactStore(model_store), embedder, min_confidence=0.3)
    catalog = load_catalog()
    distinct = list(dict.fromkeys(texts))
    understandings = {}
    for text, prediction in zip(distinct, model.predict(distinct), strict=True):
        event = Understanding(
            conversation_id="template", user_id="template", channel="web", text=text, source="text",
            intent=Intent(name=prediction.intent, confidence=round(prediction.confidence, 4)),
            entities=extract_entities(text, catalog), context=DialogueContext(turn=1),
            embedding_b64=vector_to_b64(prediction.embedding), embedding_model=embedder.version,
            nlu_model_version=model.version,
        )
        understandings[text] = event.model_dump(
            mode="json", exclude={"event_id", "created_at", "origin_event_id", "origin_created_at", "parent_event_id"}
        )
    return understandings, embedder.version


def train_models(model_store: Path) -> dict:
    from elmo.models.artifacts import ArtifactStore
    from elmo.models.embeddings import SentenceEmbedder
    from elmo.tools.test_data import fetch_vader_ratings
    from elmo.models.intent_model import train as train_nlu
    from elmo.models.sentiment_model import find_vader_directory
    from elmo.models.sentiment_model import train as train_sentiment

    store = ArtifactStore(model_store)
    embedder = SentenceEmbedder()
    started = time.perf_counter()
    nlu_version, report = train_nlu(store, embedder)
    vader = find_vader_directory(fetch_vader_ratings(REPO_ROOT / ".local" / "test-data"))
    sentiment_version, _ = train_sentiment(store, embedder, vader, vader_sources=("tweets",))
    return {
        "nlu": nlu_version.version,
        "nlu_held_out_accuracy": report.accuracy,
        "sentiment": sentiment_version.version,
        "training_seconds": round(time.perf_counter() - started, 1),
    }


# --- one variant -------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    variant: str
    phase: str
    events: int
    received: int
    duplicates: int
    publish_seconds: float
    seconds: float
    throughput_per_s: float
    p50_ms: float
    p99_ms: float
    service_cpu_ms_per_event: float
    service_cores: float
    broker_cpu_s: float
    redis_cpu_s: float
    bench_cpu_s: float
    other_cpu_s: float


@dataclass
class VariantResult:
    variant: str
    phases: list[PhaseResult]
    peak_rss_mb: float
    startup_seconds: float
    checks: dict
    profile: dict | None = None


def run_phase(variant: str, phase: str, service: Service, factory: EventFactory, emits: Topic,
              count: int, rate: float | None, bootstrap: str, run: str) -> tuple[PhaseResult, list[dict]]:
    """Publish `count` fresh events and wait for their outputs; returns the result and the outputs."""
    prefix = f"bu{run}-{variant[:4]}{variant[-4:]}-{phase[:4]}"
    events = factory.make(prefix, count)
    sink = Sink(bootstrap, end_offsets(bootstrap, emits.name), prefix + "-")
    sink.start()
    assert service.process is not None
    meter = CpuMeter(service.process.pid)
    try:
        first, publish_seconds = publish(bootstrap, service.consumes.name, events, rate)
        sink.wait_for(count, timeout_s=max(120.0, count / 20))
        cpu = meter.used()
    finally:
        sink.stop()
    received = len(sink.latencies)
    seconds = (max(sink.received_at) - first) if received else float("nan")
    result = PhaseResult(
        variant, phase, count, received, sink.duplicates, round(publish_seconds, 2), round(seconds, 2),
        round(received / seconds, 1) if received else 0.0,
        round(percentile(sink.latencies, 0.50) * 1000, 1), round(percentile(sink.latencies, 0.99) * 1000, 1),
        round(cpu["service"] / max(1, received) * 1000, 2), round(cpu["service"] / seconds, 2) if received else 0.0,
        round(cpu["broker"], 2), round(cpu["redis"], 2), round(cpu["bench"], 2), round(cpu["other"], 2),
    )
    return result, sink.events


def check_outputs(variant: str, events: list[dict]) -> dict:
    """What the outputs say about the run: every one well-formed, the embedding reused or not."""
    if variant == "nlu":
        return {
            "with_embedding": sum(1 for e in events if e.get("embedding_b64")),
            "intents": dict(Counter(e["intent"]["name"] for e in events).most_common(5)),
            "max_turn": max((e["context"]["turn"] for e in events), default=0),
        }
    return {
        "scored": sum(1 for e in events if e.get("sentiment", {}).get("label")),
        "labels": dict(Counter(e["sentiment"]["label"] for e in events)),
        "with_embedding": sum(1 for e in events if e.get("embedding_b64")),
    }


def profile_burst(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not found; --profile skipped", file=sys.stderr)
        return None
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100", "--format", "raw",
         "--threads", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


# Where a sample's time goes: the first category, in this order, with a frame anywhere in the stack
# that contains one of its needles (so torch inside the classifier head counts as the head).
CATEGORIES = (
    ("embedding (MiniLM encode)", ("SentenceEmbedder.encode",)),
    ("classifier head", ("EmbeddingClassifier",)),
    ("n-gram features", ("text_features.py",)),
    ("VADER lexicon", ("vaderSentiment",)),
    ("entities", ("entities.py",)),
    ("dialogue state (Redis + pydantic)", ("dialogue.py", "dialogue_turn.py")),
    ("idempotency (Redis)", ("idempotency.py",)),
    ("decode input (JSON + pydantic)", ("codec.py:", "BatchProcessor._decode")),
    ("build outputs (derive, encode)", ("BatchProcessor._output", "Event.derive", "score_batch", "vector_to_b64", "vector_from_b64")),
    ("Kafka client", ("aiokafka", "faststream", "kafka/")),
    ("redis client", ("redis/",)),
    ("event loop waiting (select)", ("selectors.py",)),
    ("asyncio / threads", ("asyncio", "anyio", "threading.py", "concurrent/")),
)


def summarise_profile(path: Path) -> dict:
    """Share of py-spy's samples (Python threads; torch's own worker threads are not seen) per category."""
    totals: Counter = Counter()
    leaves: Counter = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        leaves[frames[-1][:110]] += count
        category = next((name for name, needles in CATEGORIES if any(n in f for f in frames for n in needles)), "other")
        totals[category] += count
    return {
        "samples": samples,
        "by_category_pct": {name: round(100 * n / samples, 1) for name, n in totals.most_common()} if samples else {},
        "top_leaf_frames_pct": {name: round(100 * n / samples, 1) for name, n in leaves.most_common(12)} if samples else {},
    }


def run_variant(variant: str, args: argparse.Namespace, model_store: Path, texts: list[str],
                understandings: dict[str, dict] | None, bootstrap: str, run: str, workdir: Path) -> VariantResult:
    module, consumes, emits = (
        ("services.nlu", topics.UTTERANCES, topics.UNDERSTANDINGS) if variant == "nlu"
        else ("services.sentiment", topics.UNDERSTANDINGS, topics.SENTIMENTS)
    )
    factory = EventFactory(variant, texts, understandings, args.turns)
    service = Service(module, consumes, model_store)
    phases: list[PhaseResult] = []
    profile = None
    try:
        started = time.perf_counter()
        service.start(bootstrap)
        startup = time.perf_counter() - started
        assert service.process is not None
        others = other_services_running({service.process.pid})
        if others:
            print(f"warning: other services are running and may share the topics or the CPU: {others}", file=sys.stderr)
        warm, _ = run_phase(variant, "warm-up", service, factory, emits, args.warm_up, None, bootstrap, run)
        if warm.received < warm.events:
            raise RuntimeError(f"{variant}: warm-up events did not come through ({warm.received}/{warm.events}); see {service.log_path}")
        time.sleep(1)
        if args.rate and args.seconds:
            phases.append(run_phase(variant, "latency", service, factory, emits, int(args.rate * args.seconds), args.rate, bootstrap, run)[0])
            time.sleep(1)
        raw = workdir / f"understanding-{variant}.pyspy.txt"
        spy = profile_burst(service.process.pid, max(5.0, args.events / TARGET_PER_S), raw) if args.profile else None
        if spy is not None:
            time.sleep(1.0)  # py-spy attaches
        burst, outputs = run_phase(variant, "throughput", service, factory, emits, args.events, None, bootstrap, run)
        phases.append(burst)
        checks = check_outputs(variant, outputs)
        if spy is not None:
            spy.wait(timeout=120)
            profile = summarise_profile(raw) if raw.exists() else None
        rss = peak_rss_mb(service.process.pid)
    finally:
        service.stop()
    return VariantResult(variant, phases, rss, round(startup, 1), {"other_services_running": others, **checks}, profile)


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000, help="events in the throughput (burst) phase")
    parser.add_argument("--rate", type=float, default=100.0, help="events/s in the paced latency phase (0: skip it)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the paced latency phase")
    parser.add_argument("--warm-up", type=int, default=300, help="events sent before measuring")
    parser.add_argument("--turns", type=int, default=6, help="turns per conversation (nlu keeps dialogue state per conversation)")
    parser.add_argument("--only", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--model-store", type=Path, default=None, help="use this store's current models instead of training")
    parser.add_argument("--profile", action="store_true", help="sample the service with py-spy during the burst")
    args = parser.parse_args()
    variants = [v.strip() for v in args.only.split(",") if v.strip()]
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}")

    settings = RuntimeSettings()
    bootstrap = settings.kafka_bootstrap_servers
    workdir = REPO_ROOT / ".local" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:6]
    temporary = None
    try:
        if args.model_store is None:
            temporary = tempfile.mkdtemp(prefix="elmo-bench-models-")
            model_store = Path(temporary)
            print(f"training models into {model_store} ...", file=sys.stderr)
            models = train_models(model_store)
        else:
            model_store = args.model_store.resolve()
            models = {"store": str(model_store)}
        print(f"models: {models}", file=sys.stderr)
        texts = read_texts()
        understandings = None
        if any(v.startswith("sentiment") for v in variants):
            understandings, embedding_model = build_understandings(model_store, texts)
            models["embedding_model"] = embedding_model
        results = []
        for variant in variants:
            print(f"running {variant} ...", file=sys.stderr)
            results.append(run_variant(variant, args, model_store, texts, understandings, bootstrap, run, workdir))
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)

    print(f"\nbatch_max_records={settings.batch_max_records} model_threads={settings.model_threads} cores={os.cpu_count()} "
          f"target={TARGET_PER_S:.0f}/s")
    header = (f"{'variant':19} {'phase':10} {'events':>6} {'recv':>5} {'seconds':>7} {'events/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'svc CPU ms/ev':>13} {'svc cores':>9} {'broker s':>8} {'redis s':>7} {'bench s':>7} {'other s':>7} {'peak RSS MB':>11}")
    print(header)
    for result in results:
        for p in result.phases:
            print(f"{p.variant:19} {p.phase:10} {p.events:6} {p.received:5} {p.seconds:7} {p.throughput_per_s:8} {p.p50_ms:8} "
                  f"{p.p99_ms:8} {p.service_cpu_ms_per_event:13} {p.service_cores:9} {p.broker_cpu_s:8} {p.redis_cpu_s:7} "
                  f"{p.bench_cpu_s:7} {p.other_cpu_s:7} {result.peak_rss_mb:11}")
    for result in results:
        print(f"{result.variant}: startup {result.startup_seconds} s, checks {json.dumps(result.checks)}")
        if result.profile:
            print(f"{result.variant} profile ({result.profile['samples']} samples): {json.dumps(result.profile['by_category_pct'])}")
    summary = {
        r.variant: {
            "throughput_per_s": next((p.throughput_per_s for p in r.phases if p.phase == "throughput"), None),
            "meets_target": next((p.throughput_per_s >= TARGET_PER_S for p in r.phases if p.phase == "throughput"), None),
            "peak_rss_mb": r.peak_rss_mb,
        }
        for r in results
    }
    print("summary:", json.dumps(summary))
    complete = all(p.received == p.events for r in results for p in r.phases)
    print("every event came through:", complete)
    (workdir / "understanding.json").write_text(json.dumps({
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "settings": {"batch_max_records": settings.batch_max_records, "model_threads": settings.model_threads, "cpu_count": os.cpu_count()},
        "models": models,
        "results": [asdict(r) for r in results],
        "summary": summary,
        "every_event_came_through": complete,
    }, indent=2))


if __name__ == "__main__":
    main()
