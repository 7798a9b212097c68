"""A real Apache Kafka (KRaft) for development and CI: one node by default, three with ``ELMO_LOCAL_KAFKA_BROKERS=3``.

Each node is one JVM acting as broker and controller, run from Maven Central jars
(``deploy/local/kafka/pom.xml``, copied once to ``<state_dir>/kafka/libs``) on the
machine's JVM. A single node keeps its data, logs and pid directly under
``<state_dir>/kafka``. In the three-node cluster node N keeps them under
``<state_dir>/kafka/node-N``; the three are the voters of one static controller
quorum, their storage formatted with the same cluster id (``<state_dir>/kafka/cluster.id``),
and topics get replication factor 3 with ``min.insync.replicas=2``. Node N listens
on ``kafka_port + 2(N-1)`` and ``kafka_controller_port + 2(N-1)``: 9092/9093,
9094/9095, 9096/9097 by default. ``kill_node``/``start_node`` let a test kill one
node with SIGKILL and bring it back.

The module imports only the standard library; kafka-python is imported inside
the readiness probes.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from string import Template

from elmo.local.owned_processes import kill_owned_process, log_tail, owned_pid, startup_lock, stop_owned_process
from elmo.local.stack_settings import KAFKA_POM, KafkaNode, LocalStackSettings

log = logging.getLogger("elmo.local")

PROBE_TOPIC = "__elmo_probe"
_BROKER_MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
_SHUTDOWN_GRACE_S = 30.0
_POLL_INTERVAL_S = 0.5
# Serial GC: a 512 MB heap gains nothing from G1's extra threads on a 2-core machine.
_BROKER_JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# Three JVMs share the machine: a smaller heap each.
_CLUSTER_NODE_JVM_OPTIONS = ("-Xms128m", "-Xmx384m", *_BROKER_JVM_OPTIONS[2:])
_TOOL_JVM_OPTIONS = ("-Xmx256m", "-XX:+UseSerialGC")


@dataclass(frozen=True)
class _BrokerFiles:
    """The files of one local node: its recipe in the repository and its state under ``<state_dir>/kafka``."""

    node: KafkaNode
    pom: Path
    config_template: Path
    log4j_config: Path
    kafka_dir: Path
    home: Path

    @classmethod
    def of(cls, settings: LocalStackSettings, node: KafkaNode) -> _BrokerFiles:
        recipe_dir = settings.repo_root / KAFKA_POM.parent
        return cls(
            node=node,
            pom=settings.repo_root / KAFKA_POM,
            config_template=recipe_dir / "server.properties.template",
            log4j_config=recipe_dir / "log4j2.properties",
            kafka_dir=settings.kafka_dir,
            home=settings.kafka_dir if settings.kafka_brokers == 1 else settings.kafka_dir / f"node-{node.node_id}",
        )

    @property
    def libs(self) -> Path:
        return self.kafka_dir / "libs"

    @property
    def libs_marker(self) -> Path:
        # Not a .jar, so the `libs/*` classpath wildcard skips it.
        return self.libs / ".pom.sha256"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.logs / "stdout.log"

    @property
    def server_properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def cluster_id_file(self) -> Path:
        return self.kafka_dir / "cluster.id"


def kafka_up(settings: LocalStackSettings) -> None:
    """Make sure every broker on the bootstrap addresses accepts produce requests, starting ours where needed."""
    with startup_lock(_lock_file(settings)):
        started = time.monotonic()
        if _accepts_produce(settings):
            log.info("Kafka already running on %s", settings.kafka_bootstrap)
            return
        nodes = _all_node_files(settings)
        # Refuse before starting anything, so a taken port leaves no half-started cluster behind.
        for files in nodes:
            if owned_pid(files.pid_file, _BROKER_MAIN_CLASS) is None:
                _refuse_foreign_listener(settings, files.node)
        watched = [(files, _start_or_join(settings, files)) for files in nodes]
        _wait_until_ready(settings, watched, partial(_accepts_produce_or_error, settings), started)
        log.info("Kafka ready on %s in %.1f s", settings.kafka_bootstrap, time.monotonic() - started)


def kafka_down(settings: LocalStackSettings) -> None:
    """Stop the brokers this module started (per their pid files); a no-op when there are none."""
    with startup_lock(_lock_file(settings)):
        _stop_brokers(_all_node_files(settings))


def kafka_status(settings: LocalStackSettings) -> dict[str, object]:
    """The single node as before (pid, bootstrap, listening, data_dir, log_file); a cluster adds one entry per node."""
    nodes = [_node_status(files) for files in _all_node_files(settings)]
    running = all(node["pid"] is not None for node in nodes)
    if settings.kafka_brokers == 1:
        (node,) = nodes
        return {
            "pid": node["pid"],
            "bootstrap": settings.kafka_bootstrap,
            "listening": node["listening"],
            "data_dir": node["data_dir"],
            "log_file": node["log_file"],
            "running": running,
        }
    return {"bootstrap": settings.kafka_bootstrap, "brokers": settings.kafka_brokers, "running": running, "nodes": nodes}


def kill_node(settings: LocalStackSettings, node_id: int) -> int:
    """SIGKILL one node of ours (no controlled shutdown, like a crash or the OOM killer); returns its pid."""
    files = _node_files(settings, node_id)
    with startup_lock(_lock_file(settings)):
        pid = kill_owned_process(files.pid_file, _BROKER_MAIN_CLASS)
    if pid is None:
        raise RuntimeError(f"Kafka broker {node_id} is not running (no live pid in {files.pid_file})")
    # A killed JVM's command line is gone before the kernel has closed its sockets.
    deadline = time.monotonic() + 5.0
    while _port_accepts_connections(files.node.host, files.node.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    log.info("killed Kafka broker %d (pid %d)", node_id, pid)
    return pid


def start_node(settings: LocalStackSettings, node_id: int) -> None:
    """Start one node again (a no-op if it runs) and wait until the cluster lists it as a live broker."""
    files = _node_files(settings, node_id)
    with startup_lock(_lock_file(settings)):
        started = time.monotonic()
        if owned_pid(files.pid_file, _BROKER_MAIN_CLASS) is None:
            _refuse_foreign_listener(settings, files.node)
        alive = _start_or_join(settings, files)
        _wait_until_ready(settings, [(files, alive)], partial(_node_registered_or_error, files.node), started)
        log.info("Kafka broker %d back on %s in %.1f s", node_id, files.node.address, time.monotonic() - started)


def _lock_file(settings: LocalStackSettings) -> Path:
    return settings.kafka_dir / "up.lock"


def _all_node_files(settings: LocalStackSettings) -> list[_BrokerFiles]:
    return [_BrokerFiles.of(settings, node) for node in settings.kafka_nodes]


def _node_files(settings: LocalStackSettings, node_id: int) -> _BrokerFiles:
    for files in _all_node_files(settings):
        if files.node.node_id == node_id:
            return files
    raise ValueError(f"no Kafka node {node_id}: the local Kafka has nodes 1 to {settings.kafka_brokers}")


def _node_status(files: _BrokerFiles) -> dict[str, object]:
    return {
        "node_id": files.node.node_id,
        "pid": owned_pid(files.pid_file, _BROKER_MAIN_CLASS),
        "address": files.node.address,
        "controller_port": files.node.controller_port,
        "listening": _port_accepts_connections(files.node.host, files.node.port),
        "data_dir": str(files.data),
        "log_file": str(files.server_log),
    }


def _start_or_join(settings: LocalStackSettings, files: _BrokerFiles) -> Callable[[], bool]:
    """Start the node unless our JVM for it already runs; returns how to tell it is still alive."""
    pid = owned_pid(files.pid_file, _BROKER_MAIN_CLASS)
    if pid is not None:
        log.info("Kafka broker %d (pid %d) is already running or starting; waiting for it", files.node.node_id, pid)
        return partial(_owned_broker_running, files, pid)
    _ensure_jars(files)
    _write_server_properties(settings, files)
    _ensure_storage_formatted(settings, files)
    # Watch our own child through its Popen: right after exec its /proc cmdline can still be empty.
    return partial(_child_running, _start_broker(settings, files))


def _stop_brokers(nodes: list[_BrokerFiles]) -> None:
    # All at once: stopped one by one, the last node would wait out its grace for a quorum that is gone.
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        list(pool.map(_stop_broker, nodes))


def _stop_broker(files: _BrokerFiles) -> None:
    pid = stop_owned_process(files.pid_file, _BROKER_MAIN_CLASS, grace_s=_SHUTDOWN_GRACE_S)
    if pid is not None:
        log.info("stopped Kafka broker %d (pid %d)", files.node.node_id, pid)


def _refuse_foreign_listener(settings: LocalStackSettings, node: KafkaNode) -> None:
    """Something that is not a working broker of ours holds a port: starting ours could only fail to bind."""
    for port in (node.port, node.controller_port):
        if _port_accepts_connections(node.host, port):
            raise RuntimeError(
                f"{node.host}:{port} (Kafka node {node.node_id} of {settings.kafka_bootstrap}) is taken by a process "
                f"that is not a working Kafka of ours started from {settings.kafka_dir}; stop it "
                "or set ELMO_LOCAL_KAFKA_PORT / ELMO_LOCAL_KAFKA_CONTROLLER_PORT"
            )


# --- jars -------------------------------------------------------------------------------------------


def _ensure_jars(files: _BrokerFiles) -> None:
    """Copy the POM's runtime jars into libs/, unless they were copied for this exact POM already."""
    pom_hash = hashlib.sha256(files.pom.read_bytes()).hexdigest()
    if files.libs_marker.is_file() and files.libs_marker.read_text().strip() == pom_hash:
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars; install it (apt-get install maven)")
    log.info("resolving Kafka jars with Maven (first run only)")
    shutil.rmtree(files.libs, ignore_errors=True)
    command = [
        mvn, "-B", "-q", "-f", str(files.pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={files.libs}", "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"Maven could not resolve the Kafka jars:\n{_last_lines(result.stdout + result.stderr)}")
    # Written last: an interrupted copy leaves no marker and is redone next time.
    files.libs_marker.write_text(pom_hash + "\n")


# --- configuration and storage -------------------------------------------------------------------


def _write_server_properties(settings: LocalStackSettings, files: _BrokerFiles) -> None:
    if settings.kafka_brokers == 1:
        quorum = f"controller.quorum.bootstrap.servers={files.node.host}:{files.node.controller_port}"
    else:
        voters = ",".join(f"{node.node_id}@{node.host}:{node.controller_port}" for node in settings.kafka_nodes)
        quorum = f"controller.quorum.voters={voters}"
    template = Template(files.config_template.read_text())
    files.home.mkdir(parents=True, exist_ok=True)
    files.server_properties.write_text(
        template.substitute(
            node_id=files.node.node_id,
            quorum=quorum,
            host=files.node.host,
            listener_port=files.node.port,
            controller_port=files.node.controller_port,
            log_dirs=files.data,
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
        )
    )


def _ensure_storage_formatted(settings: LocalStackSettings, files: _BrokerFiles) -> None:
    """KRaft refuses to start on an unformatted log dir; format it once (one node: as the only voter, --standalone)."""
    if (files.data / "meta.properties").is_file():
        return
    log.info("formatting Kafka storage in %s (first run only)", files.data)
    shutil.rmtree(files.data, ignore_errors=True)  # leftovers of an interrupted format
    arguments = ["format", "-t", _cluster_id(settings, files), "-c", str(files.server_properties)]
    if settings.kafka_brokers == 1:
        arguments.append("--standalone")
    _run_storage_tool(files, *arguments)


def _cluster_id(settings: LocalStackSettings, files: _BrokerFiles) -> str:
    """The one cluster id every node is formatted with: kept in a file, else read from a node's storage, else new."""
    if files.cluster_id_file.is_file():
        return files.cluster_id_file.read_text().strip()
    cluster_id = next(
        (found for node in _all_node_files(settings) if (found := _formatted_cluster_id(node))), None
    ) or _run_storage_tool(files, "random-uuid").strip()
    files.cluster_id_file.write_text(cluster_id + "\n")
    return cluster_id


def _formatted_cluster_id(files: _BrokerFiles) -> str | None:
    try:
        lines = (files.data / "meta.properties").read_text().splitlines()
    except FileNotFoundError:
        return None
    return next((line.split("=", 1)[1].strip() for line in lines if line.startswith("cluster.id=")), None)


def _run_storage_tool(files: _BrokerFiles, *arguments: str) -> str:
    command = _java_command(files, _TOOL_JVM_OPTIONS, _STORAGE_TOOL_CLASS, *arguments)
    result = subprocess.run(command, capture_output=True, text=True, cwd=files.home)
    if result.returncode != 0:
        raise RuntimeError(
            f"kafka StorageTool {arguments[0]} failed (exit {result.returncode}):\n"
            f"{_last_lines(result.stdout + result.stderr)}"
        )
    return result.stdout


# --- the broker process ----------------------------------------------------------------------------


def _start_broker(settings: LocalStackSettings, files: _BrokerFiles) -> subprocess.Popen[bytes]:
    files.logs.mkdir(parents=True, exist_ok=True)
    jvm_options = _BROKER_JVM_OPTIONS if settings.kafka_brokers == 1 else _CLUSTER_NODE_JVM_OPTIONS
    command = _java_command(files, jvm_options, _BROKER_MAIN_CLASS, str(files.server_properties))
    with open(files.stdout_log, "wb") as stdout:  # this run only, so its tail explains this run's failure
        # A session of its own: the broker outlives this process and ignores the terminal's Ctrl-C.
        broker = subprocess.Popen(
            command,
            cwd=files.home,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    files.pid_file.write_text(f"{broker.pid}\n")
    log.info("started Kafka broker %d (pid %d) on %s", files.node.node_id, broker.pid, files.node.address)
    return broker


def _child_running(broker: subprocess.Popen[bytes]) -> bool:
    return broker.poll() is None


def _owned_broker_running(files: _BrokerFiles, pid: int) -> bool:
    return owned_pid(files.pid_file, _BROKER_MAIN_CLASS) == pid


def _java_command(files: _BrokerFiles, jvm_options: tuple[str, ...], main_class: str, *arguments: str) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("the local Kafka broker needs a Java 17+ runtime (java) on PATH")
    return [
        java,
        *jvm_options,
        f"-Dlog4j2.configurationFile={files.log4j_config}",
        f"-Dkafka.logs.dir={files.logs}",
        "-cp",
        f"{files.libs}/*",  # expanded by java itself, not by a shell
        main_class,
        *arguments,
    ]


def _wait_until_ready(
    settings: LocalStackSettings,
    watched: list[tuple[_BrokerFiles, Callable[[], bool]]],
    readiness_error: Callable[[], Exception | None],
    started: float,
) -> None:
    """Poll ``readiness_error`` until it reports none; if a JVM dies or time runs out, stop the watched nodes and fail."""
    deadline = started + settings.kafka_start_timeout_s
    while True:
        dead = [files for files, alive in watched if not alive()]
        if dead:
            for files in dead:
                files.pid_file.unlink(missing_ok=True)
            report = "\n".join(_broker_logs(files) for files in dead)
            _stop_brokers([files for files, _ in watched])
            raise RuntimeError(
                f"Kafka broker {', '.join(str(f.node.node_id) for f in dead)} exited while starting.\n{report}"
            )
        last_error = readiness_error()
        if last_error is None:
            return
        if time.monotonic() >= deadline:
            logs_while_starting = "\n".join(_broker_logs(files) for files, _ in watched)  # before the shutdown lines
            _stop_brokers([files for files, _ in watched])
            raise RuntimeError(
                f"Kafka on {settings.kafka_bootstrap} was not ready within {settings.kafka_start_timeout_s:.0f} s "
                f"(last error: {last_error!r}); the nodes started or awaited were stopped.\n{logs_while_starting}"
            )
        time.sleep(_POLL_INTERVAL_S)


def _broker_logs(files: _BrokerFiles) -> str:
    """The end of server.log, plus stdout.log where the JVM reports what log4j cannot (bad flags, crashes)."""
    report = f"--- last lines of {files.server_log} ---\n{log_tail(files.server_log)}"
    if files.stdout_log.is_file() and files.stdout_log.stat().st_size:
        report += f"\n--- last lines of {files.stdout_log} ---\n{log_tail(files.stdout_log)}"
    return report


def _last_lines(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- readiness --------------------------------------------------------------------------------------


def _port_accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _accepts_produce(settings: LocalStackSettings) -> bool:
    return _accepts_produce_or_error(settings) is None


def _accepts_produce_or_error(settings: LocalStackSettings) -> Exception | None:
    """None when every node's port is open, the cluster lists them all and an acks=all produce succeeds."""
    closed = [node.address for node in settings.kafka_nodes if not _port_accepts_connections(node.host, node.port)]
    if closed:
        return ConnectionRefusedError(f"nothing listens on {', '.join(closed)}")
    try:
        _produce_probe_record(settings.kafka_bootstrap, settings.kafka_brokers)
    except Exception as error:  # any failure just means "not ready yet"
        return error
    return None


def _node_registered_or_error(node: KafkaNode) -> Exception | None:
    """None once the node itself answers metadata that lists it as a live (unfenced) broker."""
    if not _port_accepts_connections(node.host, node.port):
        return ConnectionRefusedError(f"nothing listens on {node.address}")
    from kafka import KafkaAdminClient

    try:
        with _kafka_client_logs_muted():
            admin = KafkaAdminClient(**_quick_client_config(node.address))
            try:
                brokers = _live_brokers(admin)
            finally:
                admin.close()
    except Exception as error:
        return error
    return None if node.node_id in brokers else LookupError(f"broker {node.node_id} is not in the cluster's metadata yet")


def _live_brokers(admin) -> set[int]:  # noqa: ANN001 - a KafkaAdminClient, imported lazily
    return {broker["broker_id"] for broker in admin.describe_cluster()["brokers"] if not broker.get("is_fenced")}


def _quick_client_config(bootstrap: str) -> dict[str, object]:
    # kafka-python's defaults retry a missing broker for 30 s; a probe must fail fast and be polled again.
    return {
        "bootstrap_servers": bootstrap,
        "bootstrap_timeout_ms": 3000,
        "request_timeout_ms": 5000,
        "reconnect_backoff_max_ms": 500,
    }


def _produce_probe_record(bootstrap: str, brokers: int = 1) -> None:
    """Create the probe topic if missing and produce one record with acks=all; raise if the brokers can't take it.

    A produce is the honest readiness test: an open port or a metadata answer
    comes seconds before the broker can host a partition leader. A cluster must
    also list all its ``brokers``, or a node still joining would count as ready.
    """
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import TopicAlreadyExistsError

    quick = _quick_client_config(bootstrap)
    with _kafka_client_logs_muted():
        admin = KafkaAdminClient(**quick)
        try:
            live = len(_live_brokers(admin)) if brokers > 1 else 1
            if live < brokers:
                raise LookupError(f"{live} of {brokers} brokers are in the cluster's metadata")
            if PROBE_TOPIC not in admin.list_topics():
                topic = {"num_partitions": 1, "replication_factor": brokers, "configs": {"retention.ms": "3600000"}}
                admin.create_topics({PROBE_TOPIC: topic})
        except TopicAlreadyExistsError:
            pass  # created concurrently, fine
        finally:
            admin.close()
        producer = KafkaProducer(acks="all", max_block_ms=5000, **quick)
        try:
            producer.send(PROBE_TOPIC, b"ready?").get(timeout=5)
        finally:
            producer.close(timeout=2)


@contextmanager
def _kafka_client_logs_muted() -> Iterator[None]:
    """kafka-python logs every refused connection at ERROR; while polling a starting broker that is expected."""
    kafka_logger = logging.getLogger("kafka")
    previous_level = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka_logger.setLevel(previous_level)
