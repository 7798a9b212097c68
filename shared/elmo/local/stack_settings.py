"""Where the local stack keeps its state and which ports it listens on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KAFKA_POM = Path("deploy/local/kafka/pom.xml")
_REPO_MARKER = Path("pyproject.toml")
# One node by default; three form a cluster with a 3-voter controller quorum and replication factor 3.
KAFKA_BROKER_COUNTS = (1, 3)
# Node i (0-based) listens on kafka_port + 2i and kafka_controller_port + 2i: 9092/9094/9096, 9093/9095/9097.
_KAFKA_NODE_PORT_STEP = 2


@dataclass(frozen=True)
class KafkaNode:
    """One JVM of the local Kafka: a combined broker and KRaft controller."""

    node_id: int
    host: str
    port: int
    controller_port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class LocalStackSettings:
    repo_root: Path
    # None means "<repo_root>/.local"; __post_init__ fills it in, so it is always a Path after construction.
    state_dir: Path = None  # type: ignore[assignment]
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_brokers: int = 1
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
        if self.kafka_brokers not in KAFKA_BROKER_COUNTS:
            raise ValueError(f"kafka_brokers={self.kafka_brokers}: the local Kafka runs 1 or 3 brokers")
        ports = [port for node in self.kafka_nodes for port in (node.port, node.controller_port)]
        if len(set(ports)) != len(ports) or max(ports) > 65535:
            raise ValueError(
                f"the Kafka ports {ports} (node i on kafka_port + {_KAFKA_NODE_PORT_STEP}i and "
                f"kafka_controller_port + {_KAFKA_NODE_PORT_STEP}i) collide or run past 65535"
            )

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
        if brokers := os.environ.get("ELMO_LOCAL_KAFKA_BROKERS"):
            overrides["kafka_brokers"] = _broker_count(brokers)
        return cls(repo_root=repo_root, **overrides)  # type: ignore[arg-type]

    @property
    def kafka_nodes(self) -> tuple[KafkaNode, ...]:
        return tuple(
            KafkaNode(
                node_id=index + 1,
                host=self.kafka_host,
                port=self.kafka_port + _KAFKA_NODE_PORT_STEP * index,
                controller_port=self.kafka_controller_port + _KAFKA_NODE_PORT_STEP * index,
            )
            for index in range(self.kafka_brokers)
        )

    @property
    def kafka_bootstrap(self) -> str:
        """Every broker, comma-separated: a client then still connects while one of them is down."""
        return ",".join(node.address for node in self.kafka_nodes)

    @property
    def kafka_replication_factor(self) -> int:
        return self.kafka_brokers

    @property
    def kafka_min_insync_replicas(self) -> int:
        """With three replicas an acks=all write survives one broker down, and is on two before it is acknowledged."""
        return 1 if self.kafka_brokers == 1 else 2

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


def _broker_count(value: str) -> int:
    if value.strip() not in {str(count) for count in KAFKA_BROKER_COUNTS}:
        raise ValueError(f"ELMO_LOCAL_KAFKA_BROKERS={value!r}: the local Kafka runs 1 or 3 brokers")
    return int(value)


def _port(env_name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(f"{env_name}={value!r} is not a TCP port")
    return port
