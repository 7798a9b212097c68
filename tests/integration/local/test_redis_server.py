"""The local Redis keeps an append-only file: stopped and started again, it still has its data."""

from __future__ import annotations

import pytest
import redis

from elmo.local.redis_server import redis_down, redis_up
from elmo.local.stack_settings import LocalStackSettings, find_repo_root
from tests.integration.kafka_io import free_port

pytestmark = pytest.mark.integration


def test_a_restarted_local_redis_keeps_what_was_written(tmp_path):
    settings = LocalStackSettings(repo_root=find_repo_root(), state_dir=tmp_path, redis_port=free_port())
    redis_up(settings)
    try:
        client = redis.Redis(port=settings.redis_port)
        client.hset("elmo:bandit:greet", mapping={"success:greet:1": 7})
        client.execute_command("BGREWRITEAOF")
        redis_down(settings)
        redis_up(settings)
        assert redis.Redis(port=settings.redis_port).hget("elmo:bandit:greet", "success:greet:1") == b"7"
        assert any(settings.redis_dir.rglob("*.aof"))
    finally:
        redis_down(settings)
