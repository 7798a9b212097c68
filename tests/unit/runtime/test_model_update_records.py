"""Any producer can write elmo.model-updates: a bad record there is skipped, never fatal."""

from types import SimpleNamespace

import pytest

from elmo.runtime.model_updates import decode_update


@pytest.mark.parametrize(
    "value",
    [
        b'{"n": ' + b"1" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe",
        b"",
        b"[1, 2]",
        b'{"model_kind": "nlu", "version": {"deep": [' * 2000 + b"]}}" * 2000,
    ],
    ids=["huge-int", "deep-array", "not-utf8", "empty", "array", "deep-object"],
)
def test_a_poison_model_update_is_ignored(value):
    assert decode_update(SimpleNamespace(value=value, offset=7)) is None


def test_a_tombstone_is_no_update():
    assert decode_update(SimpleNamespace(value=None, offset=7)) is None
