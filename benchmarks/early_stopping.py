"""Per-epoch and peak-memory overhead of EarlyStopping(restore_best_weights=True).

Keras's `keras.callbacks.EarlyStopping` and keras_reg's are measured in the
same process, on the same model, interleaved round by round, against a fit
with no early stopping. The monitored value improves at every epoch, so each
epoch takes a snapshot of the weights: the worst case for the snapshot cost.

Per-epoch time is the median over epochs (after the first) of the time
between two `on_epoch_begin` calls; the overhead is that median minus the one
without early stopping, median over rounds. Because that difference is noisy
on a busy machine, the time spent inside the callback's `on_epoch_end` is also
reported, measured between two marker callbacks placed around it. Peak memory is sampled
from /proc/self/statm every millisecond during each fit: the overhead is the
peak above the resident size at the start of that fit, minus the same for the
fit without early stopping. glibc is told to return large freed blocks to the
system at once (fixed mmap threshold, `malloc_trim` before each fit) so that
one variant's freed memory does not hide the next one's allocations.

Run (one backend per process; prints one JSON object per line):

    KERAS_BACKEND=tensorflow python benchmarks/early_stopping.py
    KERAS_BACKEND=jax python benchmarks/early_stopping.py
    KERAS_BACKEND=torch python benchmarks/early_stopping.py

The default model is the issue's: 6 Dense(2048) layers on 2048 inputs,
25.2M parameters (96 MiB of float32 weights), 1 step of 8 samples per epoch.
"""

import argparse
import ctypes
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_reg  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")
_MIB = 1024 * 1024

try:
    _LIBC = ctypes.CDLL("libc.so.6")
    # M_MMAP_THRESHOLD = -3: a fixed threshold also turns off glibc's dynamic
    # threshold, so every large array is its own mapping, unmapped when freed.
    _LIBC.mallopt(-3, 128 * 1024)
except OSError:
    _LIBC = None


def _rss():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE


def _trim():
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class _RssSampler:
    def __init__(self, period=0.001):
        self.period = period
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.period)

    def __enter__(self):
        self.start = _rss()
        self.peak = self.start
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


class _Improving(keras.callbacks.Callback):
    """Writes a value that improves at every epoch into the logs."""

    def on_epoch_end(self, epoch, logs=None):
        logs["bench"] = 1.0 / (epoch + 1)


class _EpochClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.begins = []

    def on_epoch_begin(self, epoch, logs=None):
        self.begins.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.begins.append(time.perf_counter())

    def epoch_seconds(self):
        durations = np.diff(self.begins)
        return durations[1:] if len(durations) > 1 else durations


class _Mark(keras.callbacks.Callback):
    """Records the time at each epoch end; around the callback under test."""

    def __init__(self, marks):
        super().__init__()
        self.marks = marks

    def on_epoch_end(self, epoch, logs=None):
        # On JAX this syncs the training state, so the sync is not charged
        # to the callback that follows.
        _ = self.model
        self.marks.append(time.perf_counter())


def _model(units, layers):
    model = keras.Sequential(
        [keras.Input((units,))] + [keras.layers.Dense(units) for _ in range(layers)]
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def _callback(variant, folder):
    kwargs = dict(monitor="bench", mode="min", patience=10**6)
    if variant == "keras":
        return keras.callbacks.EarlyStopping(restore_best_weights=True, **kwargs)
    if variant == "keras_reg":
        return keras_reg.callbacks.EarlyStopping(restore_best_weights=True, **kwargs)
    if variant == "keras_reg_checkpoint":
        return keras_reg.callbacks.EarlyStopping(
            restore_best_weights=True,
            checkpoint_path=os.path.join(folder, "best.weights.h5"),
            **kwargs,
        )
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-checkpoint", action="store_true")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    model = _model(args.units, args.layers)
    x = np.random.default_rng(0).normal(size=(8, args.units)).astype("float32")
    y = np.zeros((8, args.units), dtype="float32")
    weight_bytes = sum(
        int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights
    )
    # Compile the train step once, outside the measurements.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)

    variants = ["none", "keras", "keras_reg"]
    if not args.no_checkpoint:
        variants.append("keras_reg_checkpoint")
    times = {v: [] for v in variants}
    inside = {v: [] for v in variants}
    peaks = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            # Rotate the order so that no variant always runs first.
            order = variants[round_index % len(variants) :]
            order += variants[: round_index % len(variants)]
            for variant in order:
                clock = _EpochClock()
                before, after = [], []
                callbacks = [clock, _Improving(), _Mark(before)]
                early_stopping = _callback(variant, folder)
                if early_stopping is not None:
                    callbacks.append(early_stopping)
                callbacks.append(_Mark(after))
                _trim()
                with _RssSampler() as sampler:
                    model.fit(
                        x,
                        y,
                        batch_size=8,
                        epochs=args.epochs,
                        verbose=0,
                        callbacks=callbacks,
                    )
                epoch_ms = float(np.median(clock.epoch_seconds()) * 1000)
                peak_mib = (sampler.peak - sampler.start) / _MIB
                # Time spent in the callback's own epoch-end work, epochs 1+.
                inside_ms = float(np.median(np.subtract(after, before)[1:]) * 1000)
                times[variant].append(epoch_ms)
                inside[variant].append(inside_ms)
                peaks[variant].append(peak_mib)
                print(
                    json.dumps(
                        {
                            "record": "round",
                            "backend": keras.backend.backend(),
                            "round": round_index,
                            "variant": variant,
                            "epoch_ms": round(epoch_ms, 3),
                            "callback_epoch_end_ms": round(inside_ms, 3),
                            "peak_rss_increase_mib": round(peak_mib, 1),
                        }
                    ),
                    flush=True,
                )
                del early_stopping, callbacks

    def overhead_ms(variant):
        return statistics.median(
            t - base for t, base in zip(times[variant], times["none"], strict=True)
        )

    def inside_ms(variant):
        return statistics.median(
            t - base for t, base in zip(inside[variant], inside["none"], strict=True)
        )

    def rss_overhead_mib(variant):
        return statistics.median(
            p - base for p, base in zip(peaks[variant], peaks["none"], strict=True)
        )

    weights_mib = weight_bytes / _MIB
    summary = {
        "record": "summary",
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "params": int(sum(np.prod(w.shape) for w in model.weights)),
        "weights_mib": round(weights_mib, 1),
        "epochs": args.epochs,
        "rounds": args.rounds,
        "epoch_ms_without_early_stopping": round(statistics.median(times["none"]), 2),
        "keras_overhead_ms_per_epoch": round(overhead_ms("keras"), 2),
        "keras_reg_overhead_ms_per_epoch": round(overhead_ms("keras_reg"), 2),
        "keras_peak_rss_overhead_mib": round(rss_overhead_mib("keras"), 1),
        "keras_reg_peak_rss_overhead_mib": round(rss_overhead_mib("keras_reg"), 1),
    }
    summary["keras_callback_ms_per_epoch"] = round(inside_ms("keras"), 2)
    summary["keras_reg_callback_ms_per_epoch"] = round(inside_ms("keras_reg"), 2)
    summary["callback_ratio_keras_reg_over_keras"] = round(
        inside_ms("keras_reg") / inside_ms("keras"), 3
    )
    keras_overhead = overhead_ms("keras")
    summary["overhead_ratio_keras_reg_over_keras"] = (
        round(overhead_ms("keras_reg") / keras_overhead, 3)
        if keras_overhead > 0
        else None
    )
    summary["keras_reg_peak_rss_overhead_over_weights"] = round(
        rss_overhead_mib("keras_reg") / weights_mib, 3
    )
    summary["keras_peak_rss_overhead_over_weights"] = round(
        rss_overhead_mib("keras") / weights_mib, 3
    )
    if "keras_reg_checkpoint" in variants:
        summary["keras_reg_checkpoint_overhead_ms_per_epoch"] = round(
            overhead_ms("keras_reg_checkpoint"), 2
        )
        summary["keras_reg_checkpoint_callback_ms_per_epoch"] = round(
            inside_ms("keras_reg_checkpoint"), 2
        )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
