"""Runs the test suite once per Keras backend, each in its own pytest process.

Usage: python tests/run_backends.py [--backends tensorflow,jax,torch] [pytest args]

The backend must be chosen before Keras is imported, so one process cannot test
all three. Prints each backend's duration and exits non-zero if any run fails.

The tests import keras_reg from this tree, so the optional native mask kernels
(a C extension, see setup.py) are first built here, in place.
"""

import argparse
import os
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated backends to run (default: %(default)s)",
    )
    args, pytest_args = parser.parse_known_args(argv)
    backends = [name for name in args.backends.split(",") if name]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; valid: {list(BACKENDS)}")

    build_native_kernels()
    results = []
    for backend in backends:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        print(f"=== KERAS_BACKEND={backend} ===", flush=True)
        start = time.monotonic()
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
            cwd=REPO_ROOT,
            env=env,
        )
        results.append((backend, code, time.monotonic() - start))

    print("=== summary ===")
    for backend, code, seconds in results:
        status = "passed" if code == 0 else f"FAILED (exit {code})"
        print(f"{backend:<11} {status:<18} {seconds:7.1f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


def build_native_kernels():
    """Builds the optional C extension next to its source, as pip would install it.

    A failed build is not fatal, as in `pip install`: the package then draws
    masks with PyTorch kernels, and the test that checks the extension is
    present where a C compiler exists reports it.
    """
    code = subprocess.call(
        [sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"],
        cwd=REPO_ROOT,
    )
    if code:
        print("note: the native mask kernels were not built", flush=True)


if __name__ == "__main__":
    sys.exit(main())
