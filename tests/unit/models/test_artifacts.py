import pytest

from elmo.models.artifacts import ArtifactStore, NoModelVersion


def write(content: str):
    return lambda directory: (directory / "weights.bin").write_text(content)


def test_versions_are_content_addressed_and_current_moves_atomically(tmp_path):
    store = ArtifactStore(tmp_path)
    first = store.save("nlu-intent", write("a"), {"metrics": {"accuracy": 0.9}})
    again = store.save("nlu-intent", write("a"), {"metrics": {"accuracy": 0.9}})
    second = store.save("nlu-intent", write("b"), {})
    assert first.version == again.version != second.version
    assert store.current("nlu-intent").version == second.version
    assert second.meta["parent_version"] == first.version
    assert first.meta["metrics"] == {"accuracy": 0.9}
    store.set_current("nlu-intent", first.version)
    assert store.current("nlu-intent").path.joinpath("weights.bin").read_text() == "a"
    assert [v.version for v in store.versions("nlu-intent")] == [first.version, second.version]


def test_missing_models_say_how_to_make_one(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(NoModelVersion, match="elmo train nlu"):
        store.current("nlu-intent")
    with pytest.raises(NoModelVersion):
        store.set_current("nlu-intent", "nope")
