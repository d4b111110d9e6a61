"""The LSTM classifier, its training loop and its weights as a table.

One LSTM layer reads the 24 hourly input vectors; a linear layer maps its
last hidden state to the logit of the outcome. Training: Adam on the binary
cross-entropy in shuffled mini-batches, one pass per epoch; after each epoch
the validation loss decides early stopping, and the weights of the best
epoch are kept. Everything runs on one CPU thread with deterministic
algorithms and seeded generators, so a seed fixes every bit of the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

PREDICT_BATCH = 4096


class LstmClassifier(nn.Module):
    def __init__(self, n_inputs: int, hidden_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_inputs, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)
        logits: torch.Tensor = self.head(h[-1]).squeeze(-1)
        return logits


@dataclass(frozen=True)
class TrainingConfig:
    hidden_size: int = 32
    max_epochs: int = 30
    patience: int = 5
    batch_size: int = 128
    learning_rate: float = 0.003
    seed: int = 0


@dataclass(frozen=True)
class Trained:
    model: LstmClassifier
    best_epoch: int  # 1-based
    train_loss: tuple[float, ...]  # per epoch run
    validation_loss: tuple[float, ...]


@contextmanager
def deterministic(threads: int = 1) -> Iterator[None]:
    """One thread, deterministic kernels and a private global RNG for the
    duration; restores the caller's settings (tests train in-process)."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(was_threads)


def _mean_loss(model: LstmClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    loss = nn.functional.binary_cross_entropy_with_logits(_logits(model, x), y, reduction="sum")
    return float(loss) / max(1, len(y))


def _logits(model: LstmClassifier, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        parts = [model(x[i : i + PREDICT_BATCH]) for i in range(0, len(x), PREDICT_BATCH)]
    return torch.cat(parts) if parts else torch.empty(0)


def train(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_validation: np.ndarray,
    y_validation: np.ndarray,
    config: TrainingConfig,
) -> Trained:
    """Trains on (x_train, y_train); stops when the validation loss has not
    improved for ``patience`` epochs (without validation patients: runs
    ``max_epochs``) and returns the best epoch's weights."""
    with deterministic():
        torch.manual_seed(config.seed)
        shuffle = torch.Generator().manual_seed(config.seed)
        xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
        yt = torch.from_numpy(np.asarray(y_train, dtype=np.float32))
        xv = torch.from_numpy(np.ascontiguousarray(x_validation, dtype=np.float32))
        yv = torch.from_numpy(np.asarray(y_validation, dtype=np.float32))
        model = LstmClassifier(xt.shape[2], config.hidden_size)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        best_state = {k: v.clone() for k, v in model.state_dict().items()}
        best_loss, best_epoch = float("inf"), 0
        train_losses: list[float] = []
        validation_losses: list[float] = []
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            order = torch.randperm(len(xt), generator=shuffle)
            total = 0.0
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                optimiser.zero_grad()
                loss = nn.functional.binary_cross_entropy_with_logits(model(xt[batch]), yt[batch])
                torch.autograd.backward(loss)
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            train_losses.append(total / max(1, len(xt)))
            monitored = _mean_loss(model, xv, yv) if len(yv) else train_losses[-1]
            validation_losses.append(monitored)
            if monitored < best_loss:
                best_loss, best_epoch = monitored, epoch
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            elif epoch - best_epoch >= config.patience:
                break
        model.load_state_dict(best_state)
        model.eval()
    return Trained(model, best_epoch, tuple(train_losses), tuple(validation_losses))


def predict(model: LstmClassifier, x: np.ndarray) -> np.ndarray:
    """Logits (float64) for inputs (patients, hours, features)."""
    with deterministic():
        logits = _logits(model, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return logits.numpy().astype(np.float64)


def weights_table(model: LstmClassifier) -> pd.DataFrame:
    """Every parameter as rows ``tensor``, ``index`` (position in the flattened
    tensor, row-major), ``value``. float32 values are exact in float64, and
    the CSV writer prints float64 round-trip, so the table rebuilds the model
    bit for bit."""
    frames = []
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().reshape(-1).numpy().astype(np.float64)
        frames.append(pd.DataFrame({"tensor": name, "index": np.arange(len(flat)), "value": flat}))
    return pd.concat(frames, ignore_index=True)


def shapes(model: LstmClassifier) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in model.state_dict().items()}


def load_weights(table: pd.DataFrame, n_inputs: int, hidden_size: int) -> LstmClassifier:
    """The inverse of weights_table (for recipients and tests)."""
    model = LstmClassifier(n_inputs, hidden_size)
    state = {}
    for name, template in model.state_dict().items():
        rows = table[table["tensor"] == name].sort_values("index")
        values = rows["value"].to_numpy(dtype=np.float64).astype(np.float32)
        if len(values) != template.numel():
            raise ValueError(f"tensor {name!r} has {len(values)} values, not {template.numel()}")
        state[name] = torch.from_numpy(values.reshape(tuple(template.shape)))
    model.load_state_dict(state)
    model.eval()
    return model
