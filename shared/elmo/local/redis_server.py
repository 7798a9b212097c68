"""A real Redis for development and CI: reuse whatever answers PING, else start our own under ``<state_dir>/redis``.

Our Redis keeps an append-only file (`appendonly yes`, `appendfsync everysec`, in
``<state_dir>/redis/appendonlydir``; no RDB snapshots), like the deployed one
(deploy/k8s/base/redis/redis.yaml): a restart keeps what it held, a crash loses at most
a second. What the feedback loop learnt is still a cache of what Kafka holds: if it is
lost anyway, `elmo state rebuild` derives it again from elmo.replies and elmo.feedback.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from elmo.local.owned_processes import log_tail, owned_pid, startup_lock, stop_owned_process
from elmo.local.stack_settings import LocalStackSettings

log = logging.getLogger("elmo.local")

_START_TIMEOUT_S = 20.0
_SHUTDOWN_GRACE_S = 10.0
_PROCESS_MARKER = "redis-server"


def redis_up(settings: LocalStackSettings) -> None:
    """Make sure something answers PING on the configured address, starting our own Redis if needed."""
    with startup_lock(settings.redis_dir / "up.lock"):
        if _answers_ping(settings.redis_host, settings.redis_port):
            log.info("Redis already answering on %s:%d", settings.redis_host, settings.redis_port)
            return
        redis_server = _ensure_redis_server_installed()
        # Installing the Debian package may have started its own service on the default port.
        if _answers_ping(settings.redis_host, settings.redis_port):
            log.info("Redis already answering on %s:%d", settings.redis_host, settings.redis_port)
            return
        started = time.monotonic()
        _start_redis(redis_server, settings)
        _wait_for_ping(settings, deadline=started + _START_TIMEOUT_S)
        log.info("Redis ready on %s:%d in %.1f s", settings.redis_host, settings.redis_port, time.monotonic() - started)


def redis_down(settings: LocalStackSettings) -> None:
    """Stop the Redis this module started (per its pid file); a no-op when there is none."""
    with startup_lock(settings.redis_dir / "up.lock"):
        pid = stop_owned_process(_pid_file(settings), _PROCESS_MARKER, grace_s=_SHUTDOWN_GRACE_S)
    if pid is not None:
        log.info("stopped Redis (pid %d)", pid)


def redis_status(settings: LocalStackSettings) -> dict[str, object]:
    return {
        "pid": owned_pid(_pid_file(settings), _PROCESS_MARKER),
        "address": f"{settings.redis_host}:{settings.redis_port}",
        "answers_ping": _answers_ping(settings.redis_host, settings.redis_port),
        "log_file": str(_log_file(settings)),
    }


def _pid_file(settings: LocalStackSettings) -> Path:
    return settings.redis_dir / "redis.pid"


def _log_file(settings: LocalStackSettings) -> Path:
    return settings.redis_dir / "redis.log"


def _answers_ping(host: str, port: int) -> bool:
    """Speak just enough RESP (an inline PING) to tell a Redis from a closed or foreign port."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _ensure_redis_server_installed() -> str:
    """The redis-server binary; fresh CI machines get it from Debian's package (needs root)."""
    installed = shutil.which("redis-server")
    if installed:
        return installed
    if shutil.which("apt-get") is None:
        raise RuntimeError("redis-server is not installed and apt-get is unavailable: install Redis 7+ yourself")
    log.info("installing redis-server with apt-get (first run on this machine)")
    noninteractive = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "redis-server"]):
        result = subprocess.run(command, capture_output=True, text=True, env=noninteractive)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise RuntimeError(
                f"`{' '.join(command)}` failed (exit {result.returncode}); it needs root. "
                f"Install redis-server yourself, or run as root.\n{output}"
            )
    installed = shutil.which("redis-server")
    if installed is None:
        raise RuntimeError("apt-get installed redis-server but it is not on PATH")
    return installed


def _start_redis(redis_server: str, settings: LocalStackSettings) -> None:
    settings.redis_dir.mkdir(parents=True, exist_ok=True)
    command = [
        redis_server,
        "--port", str(settings.redis_port),
        "--bind", settings.redis_host,
        "--dir", str(settings.redis_dir),
        "--daemonize", "yes",
        "--pidfile", str(_pid_file(settings)),
        "--logfile", str(_log_file(settings)),
        # An append-only file, like the deployed Redis: a restart keeps dialogue state, histories,
        # the bandit's counts and idempotency keys (everysec: at most a second lost on a crash).
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
    ]  # fmt: skip
    # With --daemonize the command returns once the server has forked off; it writes the pid file itself.
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"redis-server failed to start (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    log.info("started Redis on %s:%d; waiting for PING", settings.redis_host, settings.redis_port)


def _wait_for_ping(settings: LocalStackSettings, deadline: float) -> None:
    while not _answers_ping(settings.redis_host, settings.redis_port):
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"Redis did not answer PING on {settings.redis_host}:{settings.redis_port} "
                f"within {_START_TIMEOUT_S:.0f} s.\n--- last lines of {_log_file(settings)} ---\n"
                f"{log_tail(_log_file(settings))}"
            )
        time.sleep(0.1)
