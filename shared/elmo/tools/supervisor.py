"""A small process supervisor for running the chain locally: one process per service.

It restarts a service that exits (with growing back-off, reset once it has stayed up a while),
writes each service's log under `.local/logs/`, and on SIGTERM/SIGINT stops every service with
SIGTERM, giving each its graceful-shutdown period before SIGKILL.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from elmo.contracts.topics import EDGE_SERVICES, SERVICES

log = logging.getLogger("elmo.supervisor")

# Local HTTP ports for /healthz, /readyz and /metrics (ingest: also its webhooks and click links);
# in a pod every service uses 8080. Fixed per service, so adding one moves no other's port.
SERVICE_HTTP_PORTS = {
    "asr": 8101,
    "nlu": 8102,
    "sentiment": 8103,
    "recommender": 8104,
    "generator": 8105,
    "feedback-trainer": 8106,
    "delivery": 8107,
    "ingest": 8108,
    "intake": 8109,
}
RESTART_BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0
POLL_INTERVAL_S = 0.5


def service_module(service: str) -> str:
    return f"services.{service.replace('-', '_')}"


def implemented_services() -> list[str]:
    """Services whose package exists in this checkout (the chain grows issue by issue)."""
    found = []
    for service in SERVICES + EDGE_SERVICES:
        try:
            if importlib.util.find_spec(f"{service_module(service)}.__main__") is not None:
                found.append(service)
        except ModuleNotFoundError:
            continue
    return found


@dataclass
class SupervisedProcess:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start_at: float = 0.0
    backoff_s: float = 1.0
    _log_file: object = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT)
        self.started_at = time.monotonic()
        log.info("started %s (pid %s), log %s", self.name, self.process.pid, self.log_path)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def schedule_restart(self) -> None:
        if time.monotonic() - self.started_at > STABLE_AFTER_S:
            self.backoff_s = 1.0
        self.next_start_at = time.monotonic() + self.backoff_s
        log.warning("%s exited with %s; restarting in %.0f s", self.name, self.exited(), self.backoff_s)
        self.backoff_s = min(self.backoff_s * 2, RESTART_BACKOFF_MAX_S)
        self.restarts += 1
        self.process = None

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


class Supervisor:
    def __init__(self, processes: list[SupervisedProcess], grace_s: float) -> None:
        self.processes = processes
        self.grace_s = grace_s
        self._stopping = False

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        for process in self.processes:
            process.start()
        while not self._stopping:
            now = time.monotonic()
            for process in self.processes:
                if process.process is None and now >= process.next_start_at:
                    process.start()
                elif process.process is not None and process.exited() is not None:
                    process.schedule_restart()
            time.sleep(POLL_INTERVAL_S)
        self.stop_all()

    def stop_all(self) -> None:
        for process in self.processes:
            process.terminate()
        deadline = time.monotonic() + self.grace_s + 5
        for process in self.processes:
            if process.process is None:
                continue
            try:
                process.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop within its grace period; killing it", process.name)
                process.process.kill()
                process.process.wait()
        log.info("all services stopped")


def build_processes(services: list[str], logs_dir: Path) -> list[SupervisedProcess]:
    processes = []
    for service in services:
        env = {**os.environ, "ELMO_HTTP_PORT": str(SERVICE_HTTP_PORTS[service])}
        processes.append(
            SupervisedProcess(
                name=service,
                command=[sys.executable, "-m", service_module(service)],
                env=env,
                log_path=logs_dir / f"{service}.log",
            )
        )
    return processes


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logs_dir = Path(os.environ.get("ELMO_LOGS_DIR", ".local/logs"))
    services = sys.argv[1:] or implemented_services()
    grace_s = float(os.environ.get("ELMO_SHUTDOWN_GRACE_S", "20"))
    if not services:
        log.info("no services implemented yet; supervising nothing")
    Supervisor(build_processes(services, logs_dir), grace_s).run()


if __name__ == "__main__":
    main()
