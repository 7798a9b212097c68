"""A small classification head on sentence embeddings, trained with torch, with calibrated confidence.

Used for intents (nlu) and sentiment. Training is deterministic for a given seed and data (CPU,
fixed shuffling), and confidence is calibrated by temperature scaling on a validation split, so a
threshold on it means what it says. Weights are saved as safetensors (byte-identical for identical
weights, which keeps artefact versions content-addressed).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_FILE = "head.safetensors"
CONFIG_FILE = "head.json"


@dataclass(frozen=True)
class HeadConfig:
    hidden: int = 256
    dropout: float = 0.1
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    seed: int = 13


def _network(input_dim: int, classes: int, config: HeadConfig) -> nn.Module:
    if config.hidden == 0:
        return nn.Linear(input_dim, classes)
    return nn.Sequential(
        nn.Linear(input_dim, config.hidden), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.hidden, classes)
    )


class EmbeddingClassifier:
    def __init__(self, labels: list[str], network: nn.Module, config: HeadConfig, temperature: float = 1.0) -> None:
        self.labels = labels
        self.network = network.eval()
        self.config = config
        self.temperature = temperature

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        targets: list[str],
        labels: list[str],
        config: HeadConfig = HeadConfig(),
        validation: tuple[np.ndarray, list[str]] | None = None,
        sample_weights: np.ndarray | None = None,
    ) -> EmbeddingClassifier:
        torch.manual_seed(config.seed)
        index = {label: i for i, label in enumerate(labels)}
        x = torch.from_numpy(np.asarray(features, dtype=np.float32))
        y = torch.tensor([index[t] for t in targets])
        weights = torch.ones(len(y)) if sample_weights is None else torch.from_numpy(sample_weights.astype(np.float32))
        network = _network(x.shape[1], len(labels), config)
        head = cls(labels, network, config)
        head._train(x, y, weights, config.epochs)
        if validation is not None and len(validation[1]):
            head.calibrate(*validation)
        return head

    def _train(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, epochs: int, learning_rate: float | None = None) -> None:
        config = self.config
        optimiser = torch.optim.Adam(self.network.parameters(), lr=learning_rate or config.learning_rate, weight_decay=config.weight_decay)
        loss_fn = nn.CrossEntropyLoss(reduction="none", label_smoothing=config.label_smoothing)
        shuffler = torch.Generator().manual_seed(config.seed)
        self.network.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(y), generator=shuffler).split(config.batch_size):
                optimiser.zero_grad()
                loss = (loss_fn(self.network(x[batch]), y[batch]) * weights[batch]).sum() / weights[batch].sum()
                loss.backward()
                optimiser.step()
        self.network.eval()

    def fine_tune(self, features: np.ndarray, targets: list[str], epochs: int = 5, learning_rate: float = 5e-4,
                  sample_weights: np.ndarray | None = None) -> None:
        """A few Adam steps on new examples (the caller mixes in replayed old ones); seeded like `fit`
        (dropout draws from torch's global generator, so without it a fine-tune varied run to run)."""
        torch.manual_seed(self.config.seed)
        index = {label: i for i, label in enumerate(self.labels)}
        x = torch.from_numpy(np.asarray(features, dtype=np.float32))
        y = torch.tensor([index[t] for t in targets])
        weights = torch.ones(len(y)) if sample_weights is None else torch.from_numpy(sample_weights.astype(np.float32))
        self._train(x, y, weights, epochs, learning_rate)

    def calibrate(self, features: np.ndarray, targets: list[str]) -> None:
        """Temperature scaling: the one scalar that minimises validation log-loss."""
        index = {label: i for i, label in enumerate(self.labels)}
        logits = self._logits(features)
        y = torch.tensor([index[t] for t in targets])
        log_temperature = torch.zeros(1, requires_grad=True)
        optimiser = torch.optim.LBFGS([log_temperature], lr=0.1, max_iter=100)

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(logits / log_temperature.exp(), y)
            loss.backward()
            return loss

        optimiser.step(closure)
        self.temperature = float(log_temperature.detach().exp().clamp(0.05, 20.0))

    def _logits(self, features: np.ndarray) -> torch.Tensor:
        with torch.no_grad():  # not inference_mode: calibration differentiates through these
            return self.network(torch.from_numpy(np.asarray(features, dtype=np.float32)))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return torch.softmax(self._logits(features) / self.temperature, dim=1).numpy()

    def predict(self, features: np.ndarray) -> list[tuple[str, float]]:
        probabilities = self.predict_proba(features)
        best = probabilities.argmax(axis=1)
        return [(self.labels[i], float(probabilities[row, i])) for row, i in enumerate(best)]

    def save(self, directory: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.network.state_dict().items()}, str(directory / WEIGHTS_FILE))
        (directory / CONFIG_FILE).write_text(
            json.dumps(
                {"labels": self.labels, "temperature": self.temperature, "config": asdict(self.config), "input_dim": self.input_dim},
                indent=2,
                sort_keys=True,
            )
        )

    @property
    def input_dim(self) -> int:
        first = self.network if isinstance(self.network, nn.Linear) else self.network[0]
        return int(first.in_features)

    @classmethod
    def load(cls, directory: Path) -> EmbeddingClassifier:
        saved = json.loads((directory / CONFIG_FILE).read_text())
        config = HeadConfig(**saved["config"])
        network = _network(saved["input_dim"], len(saved["labels"]), config)
        network.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        return cls(saved["labels"], network, config, saved["temperature"])
