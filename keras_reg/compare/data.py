"""Datasets for `keras-reg compare`: bundled digits, or a user's CSV file.

Every problem with a user's file is found here, before anything is trained or
written, and reported as a `DataError` whose message is one line naming the
problem. Reading uses only the standard library and NumPy.
"""

import csv
import dataclasses
import io
import math
import os

import numpy as np

MIN_ROWS = 20
# A numeric target is read as class labels when it holds at most this many
# distinct integer values (and no more than half as many as there are rows).
MAX_CLASSES_AUTO = 20
DIGITS_TRAIN_SIZE = 300
DIGITS_VALIDATION_SIZE = 300
CSV_VALIDATION_FRACTION = 0.2
CSV_TEST_FRACTION = 0.2
_MISSING = {"", "nan", "na", "n/a", "null", "none", "?"}
TASKS = ("auto", "classification", "regression")


class DataError(ValueError):
    """A problem with the input data, reported to the user in one line."""


@dataclasses.dataclass
class Dataset:
    """Standardized train/validation/test splits of one problem.

    Features are standardized with the mean and standard deviation of the
    training split only, so no statistic leaks from validation or test rows.
    A regression target is standardized the same way; `target_mean` and
    `target_std` map predictions back to the target's units.
    """

    source: str
    target: str | None
    task: str
    feature_names: list[str]
    class_names: list[str] | None
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def describe(self) -> dict:
        """The `data` section of results.json."""
        return {
            "source": self.source,
            "target": self.target,
            "task": self.task,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "class_names": self.class_names,
            "n_train": int(len(self.x_train)),
            "n_validation": int(len(self.x_val)),
            "n_test": int(len(self.x_test)),
        }


def _standardize(x_train, *others):
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    # A feature constant on the training split carries no information; keep it
    # at zero instead of dividing by zero.
    std = np.where(std > 0, std, 1.0)
    return [((x - mean) / std).astype("float32") for x in (x_train, *others)]


def _split(n, seed, validation_fraction, test_fraction, labels=None):
    """Returns train, validation, test index arrays, stratified when possible."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(n)
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * validation_fraction))
    try:
        rest, test = train_test_split(
            indices, test_size=n_test, random_state=seed, stratify=labels
        )
        train, val = train_test_split(
            rest,
            test_size=n_val,
            random_state=seed,
            stratify=None if labels is None else labels[rest],
        )
    except ValueError:
        # Too few members in some class to stratify: split at random.
        rest, test = train_test_split(indices, test_size=n_test, random_state=seed)
        train, val = train_test_split(rest, test_size=n_val, random_state=seed)
    return train, val, test


def load_digits_dataset(seed: int) -> Dataset:
    """scikit-learn's bundled 8x8 digits with a deliberately small train split.

    300 training images for a wide network is few enough that the
    unregularized baseline fits them perfectly and overfits visibly.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data.astype("float64")
    y = digits.target.astype("int64")
    n = len(x)
    train, val, test = _split(
        n,
        seed,
        DIGITS_VALIDATION_SIZE / n,
        (n - DIGITS_TRAIN_SIZE - DIGITS_VALIDATION_SIZE) / n,
        labels=y,
    )
    x_train, x_val, x_test = _standardize(x[train], x[val], x[test])
    return Dataset(
        source="digits",
        target=None,
        task="classification",
        feature_names=[f"pixel_{i}" for i in range(x.shape[1])],
        class_names=[str(c) for c in range(10)],
        x_train=x_train,
        y_train=y[train].astype("int32"),
        x_val=x_val,
        y_val=y[val].astype("int32"),
        x_test=x_test,
        y_test=y[test].astype("int32"),
    )


def _read_rows(path):
    if not os.path.exists(path):
        raise DataError(f"data file {path!r} does not exist")
    if os.path.isdir(path):
        raise DataError(f"data file {path!r} is a directory, not a CSV file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"cannot read data file {path!r}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path!r} is not a CSV file: it is not UTF-8 text") from None
    if "\x00" in text:
        raise DataError(f"{path!r} is not a CSV file: it contains binary data")
    rows = []
    try:
        # line_num counts physical lines, so a quoted field spanning lines
        # still gets the number an editor shows for the record's last line.
        reader = csv.reader(io.StringIO(text, newline=""))
        for row in reader:
            if row and any(cell.strip() for cell in row):
                rows.append((reader.line_num, [cell.strip() for cell in row]))
    except csv.Error as e:
        raise DataError(f"{path!r} is not a CSV file: {e}") from None
    if not rows:
        raise DataError(f"data file {path!r} is empty")
    header = rows[0][1]
    if len(header) < 2:
        raise DataError(
            f"{path!r} is not a CSV file with a header row and at least two "
            "comma-separated columns"
        )
    for i, name in enumerate(header, start=1):
        if not name:
            raise DataError(f"{path!r}: column {i} has an empty name in the header")
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{path!r}: column {name!r} appears twice in the header")
        seen.add(name)
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(
                f"{path!r} is not a CSV file: line {number} has {len(row)} "
                f"fields, the header has {len(header)}"
            )
    return header, rows[1:]


def _to_float(cell):
    try:
        return float(cell)
    except ValueError:
        return None


def _classes(values):
    """Sorted distinct labels: numerically when all are numbers."""
    numbers = [_to_float(v) for v in values]
    if all(n is not None for n in numbers):
        by_value = {}
        for v, n in zip(values, numbers, strict=True):
            by_value.setdefault(n, v)
        ordered = sorted(by_value)
        names = [_label_name(n) for n in ordered]
        index = {n: i for i, n in enumerate(ordered)}
        return names, np.array([index[n] for n in numbers], dtype="int64")
    names = sorted(set(values))
    index = {v: i for i, v in enumerate(names)}
    return names, np.array([index[v] for v in values], dtype="int64")


def _label_name(number):
    return str(int(number)) if float(number).is_integer() else repr(number)


def _detect_task(values):
    numbers = [_to_float(v) for v in values]
    if any(n is None for n in numbers):
        return "classification"
    distinct = set(numbers)
    if all(n.is_integer() for n in numbers) and len(distinct) <= min(
        MAX_CLASSES_AUTO, len(values) // 2
    ):
        return "classification"
    return "regression"


def _show(names, limit=8):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def load_csv_dataset(path: str, target: str, task: str, seed: int) -> Dataset:
    """Reads, checks, splits (60/20/20) and standardizes a user's CSV file.

    Raises DataError, with a one-line message naming the problem, for every
    file that cannot be compared on.
    """
    header, rows = _read_rows(path)
    if target not in header:
        raise DataError(
            f"target column {target!r} not found in {path!r}; columns: {_show(header)}"
        )
    for number, row in rows:
        for name, cell in zip(header, row, strict=True):
            if cell.lower() in _MISSING:
                what = "an empty value" if not cell else f"a missing value {cell!r}"
                raise DataError(
                    f"{path!r} has {what} in column {name!r} at line {number}; "
                    "fill or drop incomplete rows first"
                )
    target_index = header.index(target)
    feature_names = [name for name in header if name != target]
    features = np.empty((len(rows), len(feature_names)), dtype="float64")
    non_numeric = []
    for j, name in enumerate(n for n in header if n != target):
        col = header.index(name)
        for i, (number, row) in enumerate(rows):
            value = _to_float(row[col])
            if value is None:
                non_numeric.append(f"{name!r} (e.g. {row[col]!r} at line {number})")
                break
            if not math.isfinite(value):
                raise DataError(
                    f"{path!r} has a non-finite value {row[col]!r} in column "
                    f"{name!r} at line {number}"
                )
            features[i, j] = value
    if non_numeric:
        raise DataError(
            f"{path!r} has non-numeric feature column(s): {', '.join(non_numeric)}; "
            "encode them as numbers first"
        )
    if len(rows) < MIN_ROWS:
        raise DataError(
            f"{path!r} has {len(rows)} data rows; compare needs at least {MIN_ROWS}"
        )
    values = [row[target_index] for _, row in rows]
    chosen = _detect_task(values) if task == "auto" else task
    if chosen == "regression":
        numbers = [_to_float(v) for v in values]
        if any(n is None for n in numbers):
            bad = next(v for v, n in zip(values, numbers, strict=True) if n is None)
            raise DataError(
                f"target column {target!r} is not numeric (e.g. {bad!r}); "
                "regression needs numbers"
            )
        if any(not math.isfinite(n) for n in numbers):
            raise DataError(f"target column {target!r} has a non-finite value")
        y = np.array(numbers, dtype="float64")
        if np.all(y == y[0]):
            raise DataError(
                f"target column {target!r} is constant ({values[0]}); "
                "regression needs varying values"
            )
        train, val, test = _split(
            len(y), seed, CSV_VALIDATION_FRACTION, CSV_TEST_FRACTION
        )
        mean = float(y[train].mean())
        std = float(y[train].std()) or 1.0
        y_scaled = ((y - mean) / std).astype("float32")
        class_names = None
    else:
        class_names, y_int = _classes(values)
        if len(class_names) < 2:
            raise DataError(
                f"target column {target!r} has a single class ({class_names[0]!r}); "
                "classification needs at least two"
            )
        train, val, test = _split(
            len(y_int), seed, CSV_VALIDATION_FRACTION, CSV_TEST_FRACTION, y_int
        )
        mean, std = 0.0, 1.0
        y_scaled = y_int.astype("int32")
    x_train, x_val, x_test = _standardize(
        features[train], features[val], features[test]
    )
    return Dataset(
        source=os.path.abspath(path),
        target=target,
        task=chosen,
        feature_names=feature_names,
        class_names=class_names,
        x_train=x_train,
        y_train=y_scaled[train],
        x_val=x_val,
        y_val=y_scaled[val],
        x_test=x_test,
        y_test=y_scaled[test],
        target_mean=mean,
        target_std=std,
    )
