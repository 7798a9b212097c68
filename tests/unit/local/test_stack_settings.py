from pathlib import Path

import pytest

from elmo.local.stack_settings import KAFKA_POM, KafkaNode, LocalStackSettings, find_repo_root

_ENV_VARS = (
    "ELMO_LOCAL_KAFKA_PORT",
    "ELMO_LOCAL_KAFKA_CONTROLLER_PORT",
    "ELMO_LOCAL_KAFKA_BROKERS",
    "ELMO_LOCAL_REDIS_PORT",
    "ELMO_LOCAL_STATE_DIR",
)


@pytest.fixture(autouse=True)
def _no_local_stack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def _make_repo(root: Path) -> Path:
    (root / KAFKA_POM).parent.mkdir(parents=True)
    (root / KAFKA_POM).write_text("<project/>")
    (root / "pyproject.toml").write_text("[project]\nname = 'elmo'\n")
    return root


def test_defaults_keep_all_state_under_dot_local(tmp_path: Path) -> None:
    settings = LocalStackSettings(repo_root=tmp_path)

    assert settings.state_dir == tmp_path.resolve() / ".local"
    assert settings.kafka_dir == settings.state_dir / "kafka"
    assert settings.redis_dir == settings.state_dir / "redis"
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert (settings.kafka_controller_port, settings.redis_port) == (9093, 6379)
    assert settings.kafka_start_timeout_s == 120.0
    assert (settings.kafka_brokers, settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (1, 1, 1)
    assert settings.kafka_nodes == (KafkaNode(node_id=1, host="127.0.0.1", port=9092, controller_port=9093),)


def test_from_env_reads_ports_and_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELMO_LOCAL_KAFKA_PORT", "19092")
    monkeypatch.setenv("ELMO_LOCAL_KAFKA_CONTROLLER_PORT", "19093")
    monkeypatch.setenv("ELMO_LOCAL_REDIS_PORT", "16379")
    monkeypatch.setenv("ELMO_LOCAL_STATE_DIR", str(tmp_path / "elsewhere"))

    settings = LocalStackSettings.from_env(tmp_path)

    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.kafka_controller_port == 19093
    assert settings.redis_port == 16379
    assert settings.state_dir == tmp_path / "elsewhere"


def test_from_env_without_variables_gives_the_defaults(tmp_path: Path) -> None:
    assert LocalStackSettings.from_env(tmp_path) == LocalStackSettings(repo_root=tmp_path)


def test_relative_state_dir_is_under_the_repo_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELMO_LOCAL_STATE_DIR", "build/stack")

    assert LocalStackSettings.from_env(tmp_path).state_dir == tmp_path.resolve() / "build" / "stack"


@pytest.mark.parametrize("bad_port", ["kafka", "0", "65536"])
def test_from_env_rejects_a_bad_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_port: str) -> None:
    monkeypatch.setenv("ELMO_LOCAL_REDIS_PORT", bad_port)

    with pytest.raises(ValueError, match="ELMO_LOCAL_REDIS_PORT"):
        LocalStackSettings.from_env(tmp_path)


def test_three_brokers_listen_two_ports_apart_and_replicate_three_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELMO_LOCAL_KAFKA_BROKERS", "3")

    settings = LocalStackSettings.from_env(tmp_path)

    assert [(n.node_id, n.port, n.controller_port) for n in settings.kafka_nodes] == [
        (1, 9092, 9093),
        (2, 9094, 9095),
        (3, 9096, 9097),
    ]
    assert settings.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)


def test_the_node_ports_follow_the_configured_ports(tmp_path: Path) -> None:
    settings = LocalStackSettings(repo_root=tmp_path, kafka_port=19092, kafka_controller_port=19192, kafka_brokers=3)

    assert [(n.port, n.controller_port) for n in settings.kafka_nodes] == [(19092, 19192), (19094, 19194), (19096, 19196)]


@pytest.mark.parametrize("brokers", ["2", "0", "three"])
def test_from_env_rejects_a_broker_count_other_than_one_or_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, brokers: str
) -> None:
    monkeypatch.setenv("ELMO_LOCAL_KAFKA_BROKERS", brokers)

    with pytest.raises(ValueError, match="ELMO_LOCAL_KAFKA_BROKERS"):
        LocalStackSettings.from_env(tmp_path)


def test_a_controller_port_among_the_broker_ports_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="collide"):
        LocalStackSettings(repo_root=tmp_path, kafka_port=9092, kafka_controller_port=9094, kafka_brokers=3)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = LocalStackSettings(repo_root=tmp_path)

    with pytest.raises(AttributeError):
        settings.kafka_port = 1  # type: ignore[misc]


def test_find_repo_root_walks_up_from_a_subdirectory(tmp_path: Path) -> None:
    repo = _make_repo(tmp_path / "repo")
    nested = repo / "services" / "somewhere"
    nested.mkdir(parents=True)

    assert find_repo_root(nested) == repo.resolve()


def test_find_repo_root_uses_the_working_directory_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _make_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)

    assert find_repo_root() == repo.resolve()


def test_find_repo_root_needs_the_kafka_pom_not_just_a_pyproject(tmp_path: Path) -> None:
    repo = _make_repo(tmp_path / "repo")
    inner_project = repo / "vendored"
    inner_project.mkdir()
    (inner_project / "pyproject.toml").write_text("[project]\nname = 'other'\n")

    assert find_repo_root(inner_project) == repo.resolve()


def test_find_repo_root_fails_outside_a_repository(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no elmo repository"):
        find_repo_root(tmp_path)
