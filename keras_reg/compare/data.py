"""Data for `keras-reg compare`: bundled digits, or a user's CSV or .npz file.

Every problem with a user's file is found here, before anything is trained or
written, and raised as a one-line `DataError`.
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
DIGITS_TEST_SIZE = 597
CSV_VALIDATION_FRACTION = 0.2
CSV_TEST_FRACTION = 0.2
_MISSING = {"", "nan", "na", "n/a", "null", "none", "?"}
TASKS = ("auto", "classification", "regression")


class DataError(ValueError):
    """A problem with the input data, reported to the user in one line."""


@dataclasses.dataclass
class Split:
    """One seed's standardized splits; `target_std` maps a regression back."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    target_std: float = 1.0


@dataclasses.dataclass
class Problem:
    """A data set to compare on: all rows, and the fixed test rows."""

    source: str
    target: str | None
    task: str
    class_names: list[str] | None
    x: np.ndarray
    y: np.ndarray
    n_train: int
    n_val: int
    n_test: int
    test: np.ndarray = dataclasses.field(init=False)
    pool: np.ndarray = dataclasses.field(init=False)

    def __post_init__(self):
        if self.n_val < 1 or self.n_test < 1 or self.n_train < 2:
            raise DataError(
                f"{self.source!r} has {len(self.y)} rows: too few to split into "
                "training, validation and test rows"
            )
        rows = np.arange(len(self.y))
        self.pool, self.test = _draw(rows, self.n_test, 0, self._labels(rows))

    @property
    def n_features(self) -> int:
        return self.x.shape[1]

    @property
    def n_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def _labels(self, rows):
        return self.y[rows] if self.task == "classification" else None

    def split(self, seed: int) -> Split:
        """Training and validation rows drawn with `seed`, standardized with
        the training rows' statistics."""
        rest, val = _draw(self.pool, self.n_val, seed, self._labels(self.pool))
        if len(rest) > self.n_train:
            _, train = _draw(rest, self.n_train, seed, self._labels(rest))
        else:
            train = rest
        parts = (train, val, self.test)
        xs = _standardize(*(self.x[rows] for rows in parts))
        if self.task == "classification":
            ys = [self.y[rows].astype("int32") for rows in parts]
            std = 1.0
        else:
            mean = float(self.y[train].mean())
            std = float(self.y[train].std()) or 1.0
            ys = [((self.y[rows] - mean) / std).astype("float32") for rows in parts]
        return Split(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], std)

    def describe(self) -> dict:
        """The `data` section of results.json."""
        return {
            "source": self.source,
            "target": self.target,
            "task": self.task,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "class_names": self.class_names,
            "n_train": self.n_train,
            "n_validation": self.n_val,
            "n_test": int(len(self.test)),
        }


def _standardize(x_train, *others):
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    # A feature constant on the training split carries no information; keep it
    # at zero instead of dividing by zero.
    std = np.where(std > 0, std, 1.0)
    return [((x - mean) / std).astype("float32") for x in (x_train, *others)]


def _draw(rows, size, seed, labels=None):
    """Splits `rows` into (rest, `size` drawn rows), stratified when it can."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(
            rows, test_size=size, random_state=seed, stratify=labels
        )
    except ValueError:
        # Too few members in some class to stratify: draw at random.
        return train_test_split(rows, test_size=size, random_state=seed)


def load_digits_problem() -> Problem:
    """scikit-learn's bundled 8x8 digits with deliberately small training splits.

    300 training images for a wide network is few enough that the
    unregularized baseline fits them perfectly and overfits visibly; each
    seed draws its 300 training and 300 validation images from the 1,200
    rows outside the fixed test split of 597.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    return Problem(
        source="digits",
        target=None,
        task="classification",
        class_names=[str(c) for c in range(10)],
        x=digits.data.astype("float64"),
        y=digits.target.astype("int64"),
        n_train=DIGITS_TRAIN_SIZE,
        n_val=DIGITS_VALIDATION_SIZE,
        n_test=DIGITS_TEST_SIZE,
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
    if "" in header:
        i = header.index("") + 1
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


def _classes(values, numbers):
    """Sorted distinct labels (numerically when all are numbers), and the
    class index of each value."""
    keys = values if None in numbers else numbers
    ordered = sorted(set(keys))
    index = {key: i for i, key in enumerate(ordered)}
    names = ordered if keys is values else [_label_name(n) for n in ordered]
    return names, np.array([index[key] for key in keys], dtype="int64")


def _label_name(number):
    return str(int(number)) if number.is_integer() else repr(number)


def _detect_task(numbers):
    if None in numbers:
        return "classification"
    few = len(set(numbers)) <= min(MAX_CLASSES_AUTO, len(numbers) // 2)
    labels = few and all(n.is_integer() for n in numbers)
    return "classification" if labels else "regression"


def _show(names, limit=8):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def load_csv_problem(path: str, target: str, task: str) -> Problem:
    """Reads and checks a user's CSV file (60/20/20 train/validation/test).

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
    columns = [j for j, name in enumerate(header) if name != target]
    features = np.empty((len(rows), len(columns)), dtype="float64")
    non_numeric = []
    for j, col in enumerate(columns):
        name = header[col]
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
    values = [row[header.index(target)] for _, row in rows]
    return _problem(path, target, task, features, values)


def load_npz_problem(path: str, task: str) -> Problem:
    """Reads and checks a user's .npz file with arrays `x` (rows x features) and `y`."""
    if not os.path.isfile(path):
        raise DataError(f"data file {path!r} does not exist or is not a file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            files = arrays.files
            missing = [name for name in ("x", "y") if name not in files]
            if not missing:
                x, y = arrays["x"], arrays["y"]
    except (OSError, ValueError, TypeError, AttributeError) as e:
        # np.load gives an array, without `files`, for a .npy file.
        raise DataError(f"{path!r} is not a readable .npz file: {e}") from None
    if missing:
        raise DataError(
            f"{path!r} has no array named {missing[0]!r}; arrays: {_show(files)}"
        )
    real = np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    if x.ndim != 2 or x.shape[1] < 1 or not real:
        raise DataError(
            f"{path!r}: x must be a 2D array of real numbers with at least one "
            f"column (got {x.dtype} {x.shape})"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{path!r}: y must be 1D with one value per row of x")
    x = x.astype("float64")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path!r}: x has a value that is NaN or infinite")
    if len(x) < MIN_ROWS:
        raise DataError(
            f"{path!r} has {len(x)} rows; compare needs at least {MIN_ROWS}"
        )
    return _problem(path, "y", task, x, [str(v) for v in y.tolist()])


def _problem(path, target, task, features, values):
    numbers = [_to_float(v) for v in values]
    chosen = _detect_task(numbers) if task == "auto" else task
    if chosen == "regression":
        if None in numbers:
            bad = values[numbers.index(None)]
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
        class_names = None
    else:
        class_names, y = _classes(values, numbers)
        if len(class_names) < 2:
            raise DataError(
                f"target column {target!r} has a single class ({class_names[0]!r}); "
                "classification needs at least two"
            )
    n = len(y)
    n_val = max(1, round(n * CSV_VALIDATION_FRACTION))
    n_test = max(1, round(n * CSV_TEST_FRACTION))
    return Problem(
        source=os.path.abspath(path),
        target=target,
        task=chosen,
        class_names=class_names,
        x=features,
        y=y,
        n_train=n - n_val - n_test,
        n_val=n_val,
        n_test=n_test,
    )
