import numpy as np

from elmo.models.classifier import EmbeddingClassifier, HeadConfig
from elmo.models.evaluation import classification_report


def blobs(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    centres = {"a": np.eye(8)[0] * 3, "b": np.eye(8)[1] * 3, "c": np.eye(8)[2] * 3}
    features, labels = [], []
    for label, centre in centres.items():
        features.append(centre + rng.normal(size=(n, 8)))
        labels += [label] * n
    return np.vstack(features).astype(np.float32), labels


def test_training_is_deterministic_and_learns_separable_classes(tmp_path):
    x, y = blobs(0)
    x_test, y_test = blobs(1)
    config = HeadConfig(hidden=16, epochs=30, seed=7)
    first = EmbeddingClassifier.fit(x, y, ["a", "b", "c"], config, validation=(x_test, y_test))
    second = EmbeddingClassifier.fit(x, y, ["a", "b", "c"], config, validation=(x_test, y_test))
    assert np.array_equal(first.predict_proba(x_test), second.predict_proba(x_test))
    report = classification_report(y_test, [label for label, _ in first.predict(x_test)], ["a", "b", "c"])
    assert report.accuracy > 0.9


def test_save_and_load_give_the_same_predictions(tmp_path):
    x, y = blobs(0)
    head = EmbeddingClassifier.fit(x, y, ["a", "b", "c"], HeadConfig(hidden=0, epochs=20), validation=blobs(2))
    head.save(tmp_path)
    loaded = EmbeddingClassifier.load(tmp_path)
    assert loaded.labels == head.labels and loaded.temperature == head.temperature
    assert np.allclose(loaded.predict_proba(x), head.predict_proba(x))


def test_calibrated_confidence_is_lower_on_ambiguous_inputs():
    x, y = blobs(0)
    head = EmbeddingClassifier.fit(x, y, ["a", "b", "c"], HeadConfig(hidden=16, epochs=30), validation=blobs(3))
    clear = head.predict(np.eye(8, dtype=np.float32)[:1] * 3)[0][1]
    ambiguous = head.predict(((np.eye(8)[0] + np.eye(8)[1]) * 1.5).astype(np.float32)[None, :])[0][1]
    assert clear > ambiguous


def test_report_counts_a_confusion_matrix():
    report = classification_report(["a", "a", "b"], ["a", "b", "b"], ["a", "b"])
    assert report.confusion == [[1, 1], [0, 1]]
    assert round(report.accuracy, 3) == 0.667
