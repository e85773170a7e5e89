"""Layer benchmarks on every backend: BatchNormalization and the dropout family.

Usage: python benchmarks/layers.py [--backends tensorflow,jax,torch]

Runs `bench_batch_normalization.py` and `bench_dropout.py` once per backend, each
in its own process (the backend is fixed when Keras is imported), and prints
their JSON lines, one per case and backend, each comparing keras_reg with the
Keras built-in timed in the same process. Extra arguments are not forwarded;
run a script directly for its own options (`--threads 1` on torch, ...).
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = ("bench_batch_normalization.py", "bench_dropout.py")
BACKENDS = ("tensorflow", "jax", "torch")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args(argv)
    failed = False
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        for script in SCRIPTS:
            result = subprocess.run(
                [sys.executable, os.path.join(HERE, script)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            sys.stdout.write(result.stdout)
            sys.stdout.flush()
            failed = failed or result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
