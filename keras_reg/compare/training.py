"""Trains every run of a technique at once, as towers of one model.

A run is one strength of one technique on one seed. The runs of a technique
are independent towers of one Keras model (one input per seed, one output per
run) trained by one compiled step on the sum of the towers' losses; each
tower's gradient and optimizer variables are its own, so it trains as it
would alone (docs/compare.md, "Speed"). For a seed, every technique starts
from the same initial weights and sees the same batches. Numbers are
measured in inference mode on whole splits, with the data loss (without the
weight penalties) so that regularized runs compare with the baseline.
"""

import dataclasses
import time

import keras
import numpy as np

import keras_reg
from keras_reg import _rebuild
from keras_reg.compare import report
from keras_reg.compare.apply import add_technique, make_optimizer, pruning_schedule
from keras_reg.compare.data import Problem
from keras_reg.compare.models import outputs_probabilities
from keras_reg.compare.techniques import Technique

# Training accuracy a classifier must reach for "epochs to threshold", and, for
# regression, the training R^2 (on the standardized target, MSE <= 1 - R^2).
ACCURACY_THRESHOLD = 0.95
R2_THRESHOLD = 0.9
# Keras clips probabilities to [eps, 1 - eps] before taking logs.
_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class Settings:
    epochs: int
    batch_size: int
    seeds: tuple
    grid: int

    def describe(self) -> dict:
        return dataclasses.asdict(self) | {"seeds": list(self.seeds)}


class _StandIn:
    """The model EarlyStopping watches for one tower: it keeps what it restores."""

    def __init__(self, tower):
        self.tower = tower
        self.stop_training = False
        self.restored = None

    def get_weights(self):
        return self.tower.get_weights()

    def set_weights(self, weights):
        self.restored = [np.array(w, copy=True) for w in weights]


def _kernels(model):
    return [
        keras.ops.convert_to_numpy(v).astype("float64")
        for v in model.weights
        if v.name in _rebuild.KERNEL_NAMES
    ]


class Group:
    """The towers of one technique: its runs, model, training and numbers."""

    def __init__(
        self,
        technique: Technique,
        problem: Problem,
        splits,
        settings,
        build,
        values=None,
        swa=None,
    ):
        self.technique = technique
        self.splits = splits
        self.settings = settings
        self.classification = problem.task == "classification"
        if values is None:
            values = technique.values(settings.grid)
        if technique.optimizer and len(values) != 1:
            raise ValueError(f"{technique.name}: one Group per strength")
        tower_values = [None] if technique.strength == "patience" else values
        self.runs = [(v, s) for v in values for s in settings.seeds]
        self.towers = []
        inputs = {
            s: keras.Input((problem.n_features,), name=f"seed_{s}") for s in splits
        }
        outputs = []
        for value in tower_values:
            for seed in settings.seeds:
                base, optimizer = build(seed)
                # Distinct Dropout seeds per compare seed (at most 1,000
                # Dropout layers per model).
                tower = add_technique(base, technique, value, seed * 1000)
                tower.name = f"tower_{len(self.towers)}"
                self.towers.append((value, seed, tower))
                outputs.append(tower(inputs[seed]))
        self.probabilities = outputs_probabilities(base)
        # One output (batch, towers, units) and one summed loss: with an
        # output per tower Keras would add a loss tracker per tower on the
        # first step, and TensorFlow would trace that step twice.
        stacked = keras.layers.Concatenate(axis=1)(
            [keras.layers.Reshape((1, -1))(output) for output in outputs]
        )
        self.model = keras.Model([inputs[s] for s in settings.seeds], stacked)
        n = len(splits[settings.seeds[0]].y_train)
        self.batch = min(settings.batch_size, n)
        self.steps = n // self.batch
        schedule = None
        if technique.optimizer == "Pruning":
            schedule = pruning_schedule(values[0], settings.epochs, self.steps)
        self.model.compile(
            optimizer=make_optimizer(
                optimizer,
                technique,
                values[0],
                [tower for _, _, tower in self.towers],
                schedule,
            ),
            loss=self._summed_loss,
            # XLA compiles the many towers for tens of seconds and saves
            # little on CPU; JAX needs its jit.
            jit_compile=False if keras.backend.backend() == "tensorflow" else "auto",
        )
        # Built here, eagerly: built inside the first traced step, TensorFlow
        # takes about 15 ms per optimizer variable.
        self.model.optimizer.build(self.model.trainable_variables)
        self.watchers = self._watchers(values)
        # `swa`: the SWA technique riding on this (the baseline's) training;
        # `swa_results` gives its numbers.
        averaging = technique if technique.swa else swa
        self.swa_rides = swa is not None and not technique.swa
        self.swa = None
        if averaging is not None:
            x = [splits[s].x_train for s in settings.seeds]
            # A BatchNormalization in a --model gets statistics for the
            # averaged weights: one pass over each tower's training inputs.
            self.swa = keras_reg.callbacks.StochasticWeightAveraging(
                averaging.swa_start(settings.epochs),
                data=(x,),
                batch_size=settings.batch_size,
            )
            self.swa.set_model(self.model)
            self.swa.on_train_begin()
        self.history = [
            {"val_data_loss": [], "train_metric": [], "val_metric": []}
            for _ in self.towers
        ]

    def _summed_loss(self, y_true, y_pred):
        """The towers' losses, summed: y_true (batch, towers), y_pred (batch,
        towers, units)."""
        if self.classification:
            per_tower = keras.losses.sparse_categorical_crossentropy(
                y_true, y_pred, from_logits=not self.probabilities
            )
        else:
            # Keras's loss wrapper has already squeezed the units axis of
            # size 1 (y_pred one rank above y_true); squeeze only if not.
            if len(y_pred.shape) == len(y_true.shape) + 1:
                y_pred = y_pred[..., 0]
            per_tower = keras.ops.square(y_true - y_pred)
        return keras.ops.sum(per_tower, axis=-1)

    def _watchers(self, values):
        """(tower index, strength, EarlyStopping, stand-in) for each watch."""
        if not self.technique.early_stopping:
            return []
        watchers = []
        for index, (tower_value, _, tower) in enumerate(self.towers):
            for value in values if tower_value is None else [tower_value]:
                callback = keras_reg.callbacks.EarlyStopping(
                    monitor="val_data_loss",
                    mode="min",
                    patience=self.technique.patience(value),
                    restore_best_weights=True,
                )
                stand_in = _StandIn(tower)
                callback.set_model(stand_in)
                callback.on_train_begin()
                watchers.append((index, value, callback, stand_in))
        return watchers

    def fit(self, on_epoch=None):
        seeds = self.settings.seeds
        n = len(self.splits[seeds[0]].y_train)
        used = self.steps * self.batch
        # SAM: ascent and descent on the same batch.
        repeats = 2 if self.technique.optimizer == "SAM" else 1
        rngs = {s: np.random.default_rng([s, 2026]) for s in seeds}
        tower_seeds = [seed for _, seed, _ in self.towers]
        for epoch in range(self.settings.epochs):
            order = {s: rngs[s].permutation(n)[:used] for s in seeds}
            x = [self.splits[s].x_train[order[s]] for s in seeds]
            y = np.stack([self.splits[s].y_train[order[s]] for s in tower_seeds], 1)
            # train_on_batch: `fit` would rebuild its data pipeline every epoch.
            for start in range(0, used, self.batch):
                end = start + self.batch
                for _ in range(repeats):
                    self.model.train_on_batch([a[start:end] for a in x], y[start:end])
            self._monitor(epoch)
            if self.swa is not None:
                self.swa.on_epoch_end(epoch)
            if on_epoch is not None:
                on_epoch(epoch)
        for _, _, callback, _ in self.watchers:
            callback.on_train_end()
        if self.swa is not None and not self.swa_rides:
            self.swa.on_train_end()

    def swa_results(self):
        """The riding SWA's runs: the average swapped in, then measured."""
        self.swa.on_train_end()
        return self.results()

    def _predict(self, part):
        x = [getattr(self.splits[s], f"x_{part}") for s in self.settings.seeds]
        outputs = np.asarray(self.model.predict_on_batch(x), dtype="float64")
        return [outputs[:, k] for k in range(outputs.shape[1])]

    def _monitor(self, epoch):
        train, val = self._predict("train"), self._predict("val")
        for index, (_, seed, _) in enumerate(self.towers):
            split = self.splits[seed]
            history = self.history[index]
            loss, metric = self._measure(val[index], split.y_val)
            history["val_data_loss"].append(loss)
            history["val_metric"].append(metric)
            history["train_metric"].append(
                self._measure(train[index], split.y_train)[1]
            )
        for index, _, callback, stand_in in self.watchers:
            if not stand_in.stop_training:
                loss = self.history[index]["val_data_loss"][-1]
                callback.on_epoch_end(epoch, {"val_data_loss": loss})

    def _measure(self, predictions, y):
        """`(data loss, metric)`: cross-entropy and accuracy, or MSE twice (on
        the standardized target)."""
        if not self.classification:
            mse = float(np.mean((predictions[:, 0] - y) ** 2))
            return mse, mse
        p = predictions
        if not self.probabilities:
            p = np.exp(predictions - predictions.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
        picked = np.clip(p[np.arange(len(y)), y], _EPSILON, 1 - _EPSILON)
        accuracy = float(np.mean(np.argmax(p, axis=1) == y))
        return float(-np.mean(np.log(picked))), accuracy

    def results(self):
        """One dict of numbers per run (strength, seed), in `self.runs` order."""
        by_run = {}
        watched = {watcher[0] for watcher in self.watchers}
        for index, (value, seed, _) in enumerate(self.towers):
            if index not in watched:  # measured below, at the restored weights
                by_run[(value, seed)] = self._numbers(index, None)
        for index, value, callback, stand_in in self.watchers:
            _, seed, tower = self.towers[index]
            final = tower.get_weights()
            tower.set_weights(stand_in.restored)
            by_run[(value, seed)] = self._numbers(index, callback)
            tower.set_weights(final)
        return [{"strength": v, "seed": s} | by_run[(v, s)] for v, s in self.runs]

    def _numbers(self, index, callback):
        _, seed, tower = self.towers[index]
        split = self.splits[seed]
        parts = {}
        for name, part in (("train", "train"), ("validation", "val"), ("test", "test")):
            x, y = getattr(split, f"x_{part}"), getattr(split, f"y_{part}")
            predictions = keras.ops.convert_to_numpy(tower(x, training=False))
            loss, metric = self._measure(predictions.astype("float64"), y)
            if self.classification:
                parts[name] = {"data_loss": loss, "accuracy": metric}
            else:
                std = split.target_std
                mae = float(np.mean(np.abs(predictions[:, 0] - y)) * std)
                parts[name] = {"data_loss": loss, "mse": metric * std**2, "mae": mae}
        history = self.history[index]
        epochs = self.settings.epochs
        if callback is not None:
            epochs_run = (
                callback.stopped_epoch + 1 if callback.stopped_epoch else epochs
            )
            history = {k: v[:epochs_run] for k, v in history.items()}
            best_epoch = callback.best_epoch + 1
        else:
            epochs_run = epochs
            best_epoch = int(np.argmin(history["val_data_loss"])) + 1
        if self.classification:
            reached = [m >= ACCURACY_THRESHOLD for m in history["train_metric"]]
        else:
            reached = [m <= 1 - R2_THRESHOLD for m in history["train_metric"]]
        kernels = _kernels(tower)
        weights = np.concatenate([k.ravel() for k in kernels])
        # Units: the last-axis slices of the kernels (Dense units, filters).
        zero_units = [np.all(k.reshape(-1, k.shape[-1]) == 0, axis=0) for k in kernels]
        test_loss = parts["test"]["data_loss"]
        return {
            **parts,
            "test_data_loss": test_loss,
            "generalization_gap": float(test_loss - parts["train"]["data_loss"]),
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "epochs_to_threshold": reached.index(True) + 1 if any(reached) else None,
            "zero_weight_fraction": float(np.mean(weights == 0.0)),
            "zero_unit_fraction": float(np.mean(np.concatenate(zero_units))),
            "near_zero_weight_fraction": float(np.mean(np.abs(weights) < 1e-3)),
            "mean_abs_weight": float(np.mean(np.abs(weights))),
            "n_kernel_weights": int(weights.size),
            "history": history,
        }


def train_technique(
    technique, problem, splits, settings, build, progress, prefix, values=None, swa=None
):
    """Trains every run of `technique` (at `values`, by default its grid);
    returns `(runs, wall seconds)`. SAM and Pruning train one tower model
    per strength: one optimizer has one rho, or one schedule.

    With `swa` (the SWA technique, riding on a one-model technique such as
    the baseline), returns `(runs, wall, swa_runs, swa_wall)`.
    """
    begin = time.perf_counter()
    if values is None:
        values = technique.values(settings.grid)
    shown = ", ".join(technique.label(v) for v in values if v is not None)
    seeds = report.seeds_text(settings.seeds)
    parts = [[v] for v in values] if technique.optimizer else [values]
    runs = []
    for part in parts:
        group = Group(technique, problem, splits, settings, build, part, swa)

        def on_epoch(epoch, group=group):
            progress.update(
                f"{prefix}{f' [{shown}]' if shown else ''} {seeds}  epoch "
                f"{epoch + 1:>3}/{settings.epochs}",
                len(group.towers),
            )

        group.fit(on_epoch)
        runs += group.results()
    progress.finish()
    wall = time.perf_counter() - begin
    if swa is None:
        return runs, wall
    begin = time.perf_counter()
    swa_runs = group.swa_results()
    return runs, wall, swa_runs, time.perf_counter() - begin


def skip_note(technique, build, seed):
    """Why `technique` cannot run on the model, or None: DropBlock needs a
    layer with an image (4-D) output to follow."""
    if technique.dropout_layer is None:
        return None
    base, _ = build(seed)
    try:
        add_technique(base, technique, technique.default, 0)
    except ValueError:
        return (
            f"{technique.name} skipped: the model has no hidden layer with an "
            f"image (4-D) output for {technique.dropout_layer} to follow; use "
            "--model cnn or a convolutional --model."
        )
    return None


def tower_count(technique, settings, values=None) -> int:
    """How many towers `technique` trains (its EarlyStopping runs share them;
    SWA's are the baseline's)."""
    if technique.swa:
        return 0
    if values is None:
        values = technique.values(settings.grid)
    return len(settings.seeds) * (
        1 if technique.strength == "patience" else len(values)
    )
