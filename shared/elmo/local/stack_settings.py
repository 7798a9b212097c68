"""Where the local stack keeps its state and which ports it listens on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KAFKA_POM = Path("deploy/local/kafka/pom.xml")
_REPO_MARKER = Path("pyproject.toml")


@dataclass(frozen=True)
class LocalStackSettings:
    repo_root: Path
    # None means "<repo_root>/.local"; __post_init__ fills it in, so it is always a Path after construction.
    state_dir: Path = None  # type: ignore[assignment]
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    kafka_start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        repo_root = Path(self.repo_root).resolve()
        state_dir = repo_root / ".local" if self.state_dir is None else Path(self.state_dir)
        if not state_dir.is_absolute():
            state_dir = repo_root / state_dir
        # Frozen dataclass: normalising the fields has to bypass __setattr__.
        object.__setattr__(self, "repo_root", repo_root)
        object.__setattr__(self, "state_dir", state_dir)

    @classmethod
    def from_env(cls, repo_root: Path) -> LocalStackSettings:
        """Defaults, overridden by ``ELMO_LOCAL_*`` environment variables (a relative state dir is under repo_root)."""
        overrides: dict[str, object] = {}
        for env_name, field_name in (
            ("ELMO_LOCAL_KAFKA_PORT", "kafka_port"),
            ("ELMO_LOCAL_KAFKA_CONTROLLER_PORT", "kafka_controller_port"),
            ("ELMO_LOCAL_REDIS_PORT", "redis_port"),
        ):
            if value := os.environ.get(env_name):
                overrides[field_name] = _port(env_name, value)
        if state_dir := os.environ.get("ELMO_LOCAL_STATE_DIR"):
            overrides["state_dir"] = Path(state_dir)
        return cls(repo_root=repo_root, **overrides)  # type: ignore[arg-type]

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def redis_dir(self) -> Path:
        return self.state_dir / "redis"


def find_repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding pyproject.toml and the Kafka POM."""
    start = (start or Path.cwd()).resolve()
    for candidate in (start, *start.parents):
        if (candidate / _REPO_MARKER).is_file() and (candidate / KAFKA_POM).is_file():
            return candidate
    raise FileNotFoundError(f"no elmo repository (a directory with {_REPO_MARKER} and {KAFKA_POM}) at or above {start}")


def _port(env_name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(f"{env_name}={value!r} is not a TCP port")
    return port
