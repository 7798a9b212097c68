from pathlib import Path

import pytest

from elmo.local.stack_settings import KAFKA_POM, LocalStackSettings, find_repo_root

_ENV_VARS = (
    "ELMO_LOCAL_KAFKA_PORT",
    "ELMO_LOCAL_KAFKA_CONTROLLER_PORT",
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
