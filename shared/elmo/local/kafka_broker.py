"""A real single-node Apache Kafka broker (KRaft, broker and controller in one JVM) for development and CI.

The broker runs from Maven Central jars (``deploy/local/kafka/pom.xml``) on the
machine's JVM; its jars, data, logs and pid live under ``<state_dir>/kafka``.
The module imports only the standard library; kafka-python is imported inside
the readiness probe.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from string import Template

from elmo.local.owned_processes import log_tail, owned_pid, startup_lock, stop_owned_process
from elmo.local.stack_settings import KAFKA_POM, LocalStackSettings

log = logging.getLogger("elmo.local")

PROBE_TOPIC = "__elmo_probe"
_NODE_ID = 1
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
_TOOL_JVM_OPTIONS = ("-Xmx256m", "-XX:+UseSerialGC")


@dataclass(frozen=True)
class _BrokerFiles:
    """The files of one local broker: its recipe in the repository and its state under ``<state_dir>/kafka``."""

    pom: Path
    config_template: Path
    log4j_config: Path
    home: Path

    @classmethod
    def of(cls, settings: LocalStackSettings) -> _BrokerFiles:
        recipe_dir = settings.repo_root / KAFKA_POM.parent
        return cls(
            pom=settings.repo_root / KAFKA_POM,
            config_template=recipe_dir / "server.properties.template",
            log4j_config=recipe_dir / "log4j2.properties",
            home=settings.kafka_dir,
        )

    @property
    def libs(self) -> Path:
        return self.home / "libs"

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
    def lock_file(self) -> Path:
        return self.home / "up.lock"


def kafka_up(settings: LocalStackSettings) -> None:
    """Make sure a broker on the bootstrap address accepts produce requests, starting ours if needed."""
    files = _BrokerFiles.of(settings)
    with startup_lock(files.lock_file):
        started = time.monotonic()
        if _accepts_produce(settings):
            log.info("Kafka broker already running on %s", settings.kafka_bootstrap)
            return
        pid = owned_pid(files.pid_file, _BROKER_MAIN_CLASS)
        if pid is None:
            _refuse_foreign_listener(settings)
            _ensure_jars(files)
            _write_server_properties(settings, files)
            _ensure_storage_formatted(files)
            # Watch our own child through its Popen: right after exec its /proc cmdline can still be empty.
            broker_alive = partial(_child_running, _start_broker(files))
        else:
            log.info("Kafka broker (pid %d) is still starting; waiting for it", pid)
            broker_alive = partial(_owned_broker_running, files, pid)
        _wait_until_ready(settings, files, broker_alive, deadline=started + settings.kafka_start_timeout_s)
        log.info("Kafka broker ready on %s in %.1f s", settings.kafka_bootstrap, time.monotonic() - started)


def kafka_down(settings: LocalStackSettings) -> None:
    """Stop the broker this module started (per its pid file); a no-op when there is none."""
    files = _BrokerFiles.of(settings)
    with startup_lock(files.lock_file):
        _stop_broker(files)


def kafka_status(settings: LocalStackSettings) -> dict[str, object]:
    files = _BrokerFiles.of(settings)
    return {
        "pid": owned_pid(files.pid_file, _BROKER_MAIN_CLASS),
        "bootstrap": settings.kafka_bootstrap,
        "listening": _port_accepts_connections(settings.kafka_host, settings.kafka_port),
        "data_dir": str(files.data),
        "log_file": str(files.server_log),
    }


def _stop_broker(files: _BrokerFiles) -> None:
    pid = stop_owned_process(files.pid_file, _BROKER_MAIN_CLASS, grace_s=_SHUTDOWN_GRACE_S)
    if pid is not None:
        log.info("stopped Kafka broker (pid %d)", pid)


def _refuse_foreign_listener(settings: LocalStackSettings) -> None:
    """Something that is not a working broker of ours holds the port: starting ours could only fail to bind."""
    if _port_accepts_connections(settings.kafka_host, settings.kafka_port):
        raise RuntimeError(
            f"{settings.kafka_bootstrap} is taken by a process that does not accept Kafka produce requests "
            f"and was not started from {settings.kafka_dir}; stop it or set ELMO_LOCAL_KAFKA_PORT"
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
    template = Template(files.config_template.read_text())
    files.server_properties.write_text(
        template.substitute(
            node_id=_NODE_ID,
            host=settings.kafka_host,
            listener_port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            log_dirs=files.data,
        )
    )


def _ensure_storage_formatted(files: _BrokerFiles) -> None:
    """KRaft refuses to start on an unformatted log dir; format it once, as the only voter (--standalone)."""
    if (files.data / "meta.properties").is_file():
        return
    log.info("formatting Kafka storage in %s (first run only)", files.data)
    shutil.rmtree(files.data, ignore_errors=True)  # leftovers of an interrupted format
    cluster_id = _run_storage_tool(files, "random-uuid").strip()
    _run_storage_tool(files, "format", "-t", cluster_id, "-c", str(files.server_properties), "--standalone")


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


def _start_broker(files: _BrokerFiles) -> subprocess.Popen[bytes]:
    files.logs.mkdir(parents=True, exist_ok=True)
    command = _java_command(files, _BROKER_JVM_OPTIONS, _BROKER_MAIN_CLASS, str(files.server_properties))
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
    log.info("started Kafka broker (pid %d); waiting until it accepts produce requests", broker.pid)
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
    settings: LocalStackSettings, files: _BrokerFiles, broker_alive: Callable[[], bool], deadline: float
) -> None:
    """Poll with a real produce until it succeeds; fail fast if the JVM dies, stop it if time runs out."""
    last_error: Exception | None = None
    while True:
        if not broker_alive():
            files.pid_file.unlink(missing_ok=True)
            raise RuntimeError(f"the Kafka broker exited while starting.\n{_broker_logs(files)}")
        if _port_accepts_connections(settings.kafka_host, settings.kafka_port):
            try:
                _produce_probe_record(settings.kafka_bootstrap)
                return
            except Exception as error:  # any failure just means "not ready yet"
                last_error = error
        if time.monotonic() >= deadline:
            logs_while_starting = _broker_logs(files)  # before stopping appends the shutdown to them
            _stop_broker(files)
            raise RuntimeError(
                f"the Kafka broker did not accept a produce on {settings.kafka_bootstrap} within "
                f"{settings.kafka_start_timeout_s:.0f} s (last error: {last_error!r}); it was stopped.\n"
                f"{logs_while_starting}"
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
    if not _port_accepts_connections(settings.kafka_host, settings.kafka_port):
        return False
    try:
        _produce_probe_record(settings.kafka_bootstrap)
    except Exception:  # whatever answers there, it is not a broker we can use
        return False
    return True


def _produce_probe_record(bootstrap: str) -> None:
    """Create the probe topic if missing and produce one record with acks=all; raise if the broker can't take it.

    A produce is the honest readiness test: an open port or a metadata answer
    comes seconds before the broker can host a partition leader.
    """
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import TopicAlreadyExistsError

    # kafka-python's defaults retry a missing broker for 30 s; a probe must fail fast and be polled again.
    quick = {
        "bootstrap_servers": bootstrap,
        "bootstrap_timeout_ms": 3000,
        "request_timeout_ms": 5000,
        "reconnect_backoff_max_ms": 500,
    }
    with _kafka_client_logs_muted():
        admin = KafkaAdminClient(**quick)
        try:
            if PROBE_TOPIC not in admin.list_topics():
                topic = {"num_partitions": 1, "replication_factor": 1, "configs": {"retention.ms": "3600000"}}
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
