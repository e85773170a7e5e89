"""`keras-reg compare`: the command line, from arguments to written files.

Everything the user typed and every input file is checked before the output
folder is created, so a bad command writes nothing: it prints one line naming
the problem and exits with status 2.
"""

import argparse
import os
import sys
import textwrap
import time
from typing import IO

from keras_reg.compare import data as data_lib
from keras_reg.compare import techniques as techniques_lib

EXIT_USAGE = 2
# 30 epochs: the baseline's validation loss bottoms out near epoch 5 and has
# clearly risen by 30. With five seeds the strictest Holm level over the
# default run's seven claims (0.05 / 7) needs a paired t of 5.07 (4 degrees
# of freedom); with three it would need 11.8, which only a huge, steady
# effect reaches.
# benchmarks/compare_speed.py measures the default run.
DEFAULT_EPOCHS = 30
MAX_GRID = 9
DEFAULT_OUTPUT = "keras_reg_compare"
FILES = ("results.json", "results.csv", "results.png")


STATISTICS = {
    "interval": "Student t, 95%, of the mean over the seeds",
    "test": "paired two-sided t-test against the baseline on the same seeds",
    "correction": "Holm-Bonferroni over the claims judged in the run",
    "alpha": 0.05,
    "selection": "best mean validation metric over the seeds; test data unused",
}


class UsageError(Exception):
    """A bad command line or input, reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage block before its message; the command promises
    # a single line, so its errors travel as UsageError instead.
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="keras-reg", description="keras_reg command line tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    compare = sub.add_parser(
        "compare",
        help="train one model per regularization technique and compare them",
        description=textwrap.fill(
            "Train the same model with each regularization technique on several "
            "seeds (each seed varies the train/validation split, initial "
            "weights, shuffling and dropout masks), try each technique's "
            "strength on a small grid chosen on validation data, print a table "
            "(means and 95% intervals over the seeds, on the fixed test split) "
            "and a verdict on each technique's usual claim (paired against the "
            "baseline, Holm-corrected: holds, does not hold or inconclusive), "
            "and write results.json, results.csv and results.png. Without "
            "--data it uses scikit-learn's bundled digits with deliberately "
            "small training splits, so that the unregularized baseline "
            "overfits. The backend follows KERAS_BACKEND.",
            width=79,
        ),
        epilog="techniques:\n"
        + "\n".join(
            f"  {t.name:<23} {'' if t.default_run else '(opt-in) '}{t.description}"
            for t in techniques_lib.TECHNIQUES
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument(
        "--data",
        metavar="FILE",
        help="a CSV file with a header row and numeric feature columns, or a "
        ".npz file with arrays x (rows x features) and y (default: "
        "scikit-learn's digits, no download)",
    )
    compare.add_argument(
        "--target",
        metavar="COLUMN",
        help="target column of a CSV --data (required there)",
    )
    compare.add_argument(
        "--model",
        metavar="MODEL",
        help="mlp (the built-in MLP), cnn (a built-in convolutional model: "
        "the features as a square image, two 3x3 Conv2D with pooling and a "
        "Dense layer; for DropBlock) or FUNCTION(input_shape, output_size) in "
        "FILE.py, which returns the Keras model (Sequential or functional, "
        "compiled or not); techniques are added with keras_reg.regularize "
        "(default: mlp)",
    )
    compare.add_argument(
        "--task",
        choices=data_lib.TASKS,
        default="auto",
        help="auto: classification when the target has few distinct integer "
        "or string values, regression otherwise (default: auto)",
    )
    compare.add_argument(
        "--techniques",
        nargs="+",
        metavar="NAME",
        help="techniques to train, comma- or space-separated; names match "
        "ignoring case, spaces and punctuation (l1proximal is 'L1 (proximal)'); "
        "a set name stands for its techniques: 'default' (the ten without "
        "'opt-in' below), 'all', 'sparsity' (L1 (proximal), Group lasso "
        "(proximal) and Pruning at the sparsities they reach); the baseline "
        "is always trained (default: default)",
    )
    for flag, default, text in (
        ("--epochs", DEFAULT_EPOCHS, "epoch budget of every technique"),
        ("--batch-size", 32, "batch size"),
        ("--seed", 0, "first seed; the seeds are N, N+1, ..."),
        ("--seeds", 5, "number of seeds per technique"),
    ):
        compare.add_argument(
            flag,
            type=int,
            default=default,
            metavar="N",
            help=f"{text} (default: %(default)s)",
        )
    compare.add_argument(
        "--grid",
        type=int,
        default=3,
        metavar="N",
        help="strengths tried per technique, chosen on validation data; 1 "
        f"takes each default (default: %(default)s, at most {MAX_GRID})",
    )
    compare.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help=f"folder for {', '.join(FILES)}, created if missing "
        "(default: ./%(default)s/)",
    )
    compare.add_argument(
        "--quiet",
        action="store_true",
        help="print only the table and the verdicts (default: off)",
    )
    return parser


def _check_output(path):
    if not path:
        raise UsageError("--output must not be empty")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UsageError(f"output path {path!r} is a file, not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"output directory {path!r} is not writable")
        for name in FILES:
            if os.path.isdir(os.path.join(path, name)):
                raise UsageError(
                    f"cannot write {name!r} in {path!r}: it is a directory"
                )
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"output path {path!r} is inside a file ({parent!r})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create output directory {path!r}: not writable")


def _check_arguments(args):
    if args.epochs < 1:
        raise UsageError(f"--epochs must be a positive integer (got {args.epochs})")
    if args.batch_size < 1:
        raise UsageError(
            f"--batch-size must be a positive integer (got {args.batch_size})"
        )
    if not 1 <= args.seeds <= 100:
        raise UsageError(f"--seeds must be an integer in [1, 100] (got {args.seeds})")
    if not 0 <= args.seed <= 2**20 - args.seeds:
        raise UsageError(
            f"--seed must be an integer in [0, 2**20 - seeds] (got {args.seed})"
        )
    if not 1 <= args.grid <= MAX_GRID:
        raise UsageError(
            f"--grid must be an integer in [1, {MAX_GRID}] (got {args.grid})"
        )
    npz = args.data is not None and args.data.lower().endswith(".npz")
    if args.data is None:
        if args.target is not None:
            raise UsageError("--target needs --data")
        if args.task != "auto":
            raise UsageError("--task needs --data (the digits task is classification)")
    elif npz and args.target is not None:
        raise UsageError("--target is for CSV files; a .npz file holds y")
    elif not npz and args.target is None:
        raise UsageError("--data needs --target COLUMN, the column to predict")
    names = [
        part
        for item in (args.techniques or ["default"])
        for part in item.split(",")
        if part.strip()
    ]
    try:
        chosen = techniques_lib.resolve(names)
    except ValueError as e:
        raise UsageError(str(e)) from None
    _check_output(args.output)
    return chosen


def _load_data(args):
    try:
        if args.data is None:
            return data_lib.load_digits_problem()
        if args.data.lower().endswith(".npz"):
            return data_lib.load_npz_problem(args.data, args.task)
        return data_lib.load_csv_problem(args.data, args.target, args.task)
    except data_lib.DataError as e:
        raise UsageError(str(e)) from None


def run_compare(
    args: argparse.Namespace,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Runs the comparison for parsed `args`; returns the exit status."""
    import keras

    import keras_reg
    from keras_reg.compare import models, plot, report, sparsity, training, verdicts

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    started = time.perf_counter()
    chosen = _check_arguments(args)
    problem = _load_data(args)
    try:
        build = models.builder(args.model, problem)
    except models.ModelError as e:
        raise UsageError(str(e)) from None
    os.makedirs(args.output, exist_ok=True)

    seeds = tuple(range(args.seed, args.seed + args.seeds))
    settings = training.Settings(args.epochs, args.batch_size, seeds, args.grid)
    splits = {seed: problem.split(seed) for seed in seeds}
    backend = keras.backend.backend()
    notes = []
    for technique in list(chosen):
        note = training.skip_note(technique, build, seeds[0])
        if note is not None:
            chosen.remove(technique)
            notes.append(note)
    # With a proximal technique, Pruning trains at most one target sparsity
    # per proximal strength.
    proximal = [
        v for t in chosen if t.name in sparsity.SOURCES for v in t.values(args.grid)
    ]
    matching = bool(proximal) and any(t.name == sparsity.PRUNING for t in chosen)
    towers = sum(
        training.tower_count(
            t, settings, proximal if matching and t.name == sparsity.PRUNING else None
        )
        for t in chosen
    )
    if not args.quiet:
        print(
            f"keras-reg compare: {problem.source} ({problem.task}, "
            f"{problem.n_train} train / {problem.n_val} validation / "
            f"{len(problem.test)} test rows), {len(chosen)} techniques, "
            f"{towers} runs ({args.seeds} seeds, grid {args.grid}) "
            f"x {args.epochs} epochs, backend {backend}",
            file=stderr,
            flush=True,
        )
    progress = report.Progress(towers * args.epochs, stream=stderr, quiet=args.quiet)
    summaries = []
    matched = {}
    width = max(len(t.name) for t in chosen)
    # SWA changes no training step: it averages the baseline's training.
    swa = next((t for t in chosen if t.swa), None)
    riding = None
    for i, technique in enumerate(chosen, start=1):
        prefix = f"[{i}/{len(chosen)}] {technique.name:<{width}}"
        values = None
        if matching and technique.name == sparsity.PRUNING:
            matched = sparsity.targets(summaries)
            values = sparsity.pruning_values(matched)
        if technique.swa:
            runs, wall = riding
            start = technique.swa_start(args.epochs)
            progress.update(
                f"{prefix} {report.seeds_text(seeds)}  the baseline's epochs "
                f"{start + 1}-{args.epochs} averaged",
                0,
            )
            progress.finish()
        elif technique.name == "baseline" and swa is not None:
            runs, wall, *riding = training.train_technique(
                technique, problem, splits, settings, build, progress, prefix, swa=swa
            )
        else:
            runs, wall = training.train_technique(
                technique, problem, splits, settings, build, progress, prefix, values
            )
        summaries.append(
            report.summarize(technique, runs, problem.task, args.epochs, wall)
        )
    sparse = sparsity.section(summaries, matched, problem.task)
    judged = verdicts.judge(
        {
            s["name"]: {"seeds": seeds, "runs": s.pop("chosen_numbers")}
            for s in summaries
        }
    )

    lines = [report.format_table(summaries, problem.task, args.epochs), ""]
    lines += [verdict["text"] for verdict in judged]
    if sparse is not None:
        lines += ["", sparsity.format_section(sparse, len(seeds))]
    if notes:
        lines += ["", *(f"Note: {note}" for note in notes)]
    print("\n".join(lines), file=stdout, flush=True)

    if problem.task == "classification":
        threshold = {"metric": "accuracy", "value": training.ACCURACY_THRESHOLD}
    else:
        threshold = {"metric": "r2", "value": training.R2_THRESHOLD}
    document = {
        "schema_version": report.SCHEMA_VERSION,
        "keras_reg_version": keras_reg.__version__,
        "keras_version": keras.__version__,
        "backend": backend,
        "settings": settings.describe()
        | {
            "model": models.describe(args.model),
            "hidden_units": (
                list(models.HIDDEN_UNITS) if args.model in (None, "mlp") else None
            ),
        },
        "data": problem.describe(),
        "threshold": threshold,
        "statistics": STATISTICS,
        "techniques": summaries,
        "verdicts": judged,
        "sparsity_vs_accuracy": sparse,
        "notes": notes,
        "total_wall_time_s": time.perf_counter() - started,
    }
    json_path, csv_path, png_path = (os.path.join(args.output, f) for f in FILES)
    report.write_json(json_path, document)
    report.write_csv(csv_path, summaries, problem.task)
    source = "digits" if args.data is None else os.path.basename(args.data)
    plot.plot_results(
        png_path,
        summaries,
        problem.task,
        f"keras-reg compare: {source}, {problem.task}, {args.epochs} epochs, "
        f"seeds {seeds[0]}-{seeds[-1]}, backend {backend}",
    )
    if not args.quiet:
        print(
            f"\nWrote {', '.join(FILES)} to {os.path.abspath(args.output)} "
            f"in {time.perf_counter() - started:.1f}s",
            file=stdout,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `keras-reg` and `python -m keras_reg`; returns the status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        return run_compare(build_parser().parse_args(argv))
    except UsageError as e:
        command = "keras-reg compare" if "compare" in argv[:1] else "keras-reg"
        print(f"{command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:
        # --help exits through argparse.
        return e.code if isinstance(e.code, int) else 0
