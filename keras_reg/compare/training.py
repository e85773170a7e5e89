"""Trains every run of a technique at once, as towers of one model.

A run is one strength of one technique on one seed. The runs of a technique
are independent towers of one Keras model (one input per seed, one output per
run) trained by one compiled step: the loss is the sum of the towers' losses,
so each tower's gradient is its own, and each optimizer variable belongs to
one tower, so each tower trains exactly as it would alone. One compiled step
instead of one per run is what keeps the default comparison fast.

For a seed, every technique starts from the same initial weights (the base
model built under that seed, then `keras_reg.regularize`d, which keeps them)
and sees the same training batches: the seed's training split, reshuffled
every epoch with that seed. Each epoch uses the full batches of the split.
EarlyStopping changes no training step: its runs are plain towers, and one
`keras_reg.callbacks.EarlyStopping` per patience watches each tower's
validation loss through a stand-in model and keeps its best weights.
StochasticWeightAveraging changes no training step either: it rides on the
baseline's training. One callback, driven by hand, averages the baseline's
whole tower model (elementwise, so tower by tower); once the baseline's
numbers are taken, the average is swapped in and SWA's are.

Three optimizer wrappers need care to keep towers independent. SAM's
perturbation takes one gradient norm over its variables: it is given one
norm group per tower. SAM spreads an update over two train steps (ascent,
then descent), so each batch is fed twice in a row: Foret et al.'s exact
update, and as many updates per epoch as the baseline. An optimizer has one
rho and one pruning schedule: SAM and Pruning train one tower model per
strength (Pruning's per-layer masks are per tower).

Numbers are measured in inference mode on whole splits. The curves and
EarlyStopping use the data loss (cross-entropy or MSE without the weight
penalties), so that regularized runs compare with the baseline.
"""

import dataclasses
import time

import keras
import numpy as np

import keras_reg
from keras_reg import _rebuild
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


class _Stand_in:
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


def _kernel_weights(model):
    return np.concatenate([k.ravel() for k in _kernels(model)])


def _zero_unit_fraction(model):
    """The fraction of units (last-axis slices of the kernels: Dense units,
    Conv filters) whose kernel weights are all exactly 0."""
    zero = [np.all(k.reshape(-1, k.shape[-1]) == 0, axis=0) for k in _kernels(model)]
    return float(np.mean(np.concatenate(zero)))


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
        self.problem = problem
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
        self.steps = n // min(settings.batch_size, n)
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
        # its numbers come from `swa_results` after this group's own.
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
        """(tower index, patience, EarlyStopping, stand-in) for each watch."""
        watchers = []
        for index, (tower_value, _, tower) in enumerate(self.towers):
            for value in values if tower_value is None else [tower_value]:
                patience = self.technique.patience(value)
                if patience is None:
                    continue
                callback = keras_reg.callbacks.EarlyStopping(
                    monitor="val_data_loss",
                    mode="min",
                    patience=patience,
                    restore_best_weights=True,
                )
                stand_in = _Stand_in(tower)
                callback.set_model(stand_in)
                callback.on_train_begin()
                watchers.append((index, value, callback, stand_in))
        return watchers

    def fit(self, on_epoch=None):
        seeds = self.settings.seeds
        n = len(self.splits[seeds[0]].y_train)
        batch = min(self.settings.batch_size, n)
        steps = n // batch
        # SAM: ascent and descent on the same batch.
        repeats = 2 if self.technique.optimizer == "SAM" else 1
        rngs = {s: np.random.default_rng([s, 2026]) for s in seeds}
        tower_seeds = [seed for _, seed, _ in self.towers]
        for epoch in range(self.settings.epochs):
            order = {s: rngs[s].permutation(n)[: steps * batch] for s in seeds}
            x = [self.splits[s].x_train[order[s]] for s in seeds]
            y = np.stack([self.splits[s].y_train[order[s]] for s in tower_seeds], 1)
            # train_on_batch: `fit` would rebuild its data pipeline every epoch.
            for start in range(0, steps * batch, batch):
                end = start + batch
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
            measured = self._measure(val[index], split.y_val)
            history["val_data_loss"].append(measured["data_loss"])
            history["val_metric"].append(measured["metric"])
            history["train_metric"].append(
                self._measure(train[index], split.y_train)["metric"]
            )
        for index, _, callback, stand_in in self.watchers:
            if not stand_in.stop_training:
                loss = self.history[index]["val_data_loss"][-1]
                callback.on_epoch_end(epoch, {"val_data_loss": loss})

    def _measure(self, predictions, y):
        """`data_loss` and the primary `metric` (accuracy, or MSE on the
        standardized target) of `predictions`, with `accuracy`/`mse` extras."""
        if self.classification:
            if self.probabilities:
                p = predictions
            else:
                p = np.exp(predictions - predictions.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
            picked = np.clip(p[np.arange(len(y)), y], _EPSILON, 1 - _EPSILON)
            accuracy = float(np.mean(np.argmax(p, axis=1) == y))
            return {"data_loss": float(-np.mean(np.log(picked))), "metric": accuracy}
        mse = float(np.mean((predictions[:, 0] - y) ** 2))
        return {"data_loss": mse, "metric": mse}

    def results(self):
        """One dict of numbers per run (strength, seed), in `self.runs` order."""
        by_run = {}
        for index, (value, seed, tower) in enumerate(self.towers):
            by_run[(value, seed)] = self._numbers(index, tower, None)
        for index, value, callback, stand_in in self.watchers:
            tower = self.towers[index][2]
            final = tower.get_weights()
            tower.set_weights(stand_in.restored)
            by_run[(value, self.towers[index][1])] = self._numbers(
                index, tower, callback
            )
            tower.set_weights(final)
        return [{"strength": v, "seed": s} | by_run[(v, s)] for v, s in self.runs]

    def _numbers(self, index, tower, callback):
        split = self.splits[self.towers[index][1]]
        parts = {}
        for part in ("train", "val", "test"):
            x, y = getattr(split, f"x_{part}"), getattr(split, f"y_{part}")
            predictions = keras.ops.convert_to_numpy(tower(x, training=False))
            parts[part] = self._measure(predictions.astype("float64"), y)
            metric = parts[part].pop("metric")
            if self.classification:
                parts[part]["accuracy"] = metric
            else:
                std = split.target_std
                parts[part]["mse"] = metric * std**2
                parts[part]["mae"] = float(np.mean(np.abs(predictions[:, 0] - y)) * std)
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
        # Overfitting: how much worse the data loss is on unseen rows.
        gap = parts["test"]["data_loss"] - parts["train"]["data_loss"]
        if self.classification:
            reached = [m >= ACCURACY_THRESHOLD for m in history["train_metric"]]
        else:
            reached = [m <= 1 - R2_THRESHOLD for m in history["train_metric"]]
        weights = _kernel_weights(tower)
        return {
            "train": parts["train"],
            "validation": parts["val"],
            "test": parts["test"],
            "test_data_loss": parts["test"]["data_loss"],
            "generalization_gap": float(gap),
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "epochs_to_threshold": reached.index(True) + 1 if any(reached) else None,
            "zero_weight_fraction": float(np.mean(weights == 0.0)),
            "zero_unit_fraction": _zero_unit_fraction(tower),
            "near_zero_weight_fraction": float(np.mean(np.abs(weights) < 1e-3)),
            "mean_abs_weight": float(np.mean(np.abs(weights))),
            "n_kernel_weights": int(weights.size),
            "history": history,
        }


def train_technique(
    technique,
    problem,
    splits,
    settings,
    build,
    progress,
    prefix,
    values=None,
    swa=None,
):
    """Trains every run of `technique` (at `values`, by default its grid);
    returns `(runs, wall seconds)`. SAM and Pruning train one tower model
    per strength: one optimizer has one rho, or one schedule.

    With `swa` (the SWA technique; `technique` must have one tower model,
    such as the baseline), SWA averages this training's weights and the
    result is `(runs, wall, swa_runs, swa_wall)`: SWA changes no step, so it
    shares the training.
    """
    begin = time.perf_counter()
    if values is None:
        values = technique.values(settings.grid)
    shown = ", ".join(technique.label(v) for v in values if v is not None)
    seeds = settings.seeds
    seeds_text = (
        f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    )
    # One optimizer has one rho (SAM) or one schedule (Pruning).
    parts = [[v] for v in values] if technique.optimizer else [values]
    runs = []
    for part in parts:
        group = Group(technique, problem, splits, settings, build, part, swa)

        def on_epoch(epoch, group=group):
            progress.update(
                f"{prefix}{f' [{shown}]' if shown else ''} {seeds_text}  epoch "
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
