"""Wall time of the default `python -m keras_reg compare` run.

Runs the command exactly as a user would (a fresh process, the default
arguments: digits, the ten default techniques, 5 seeds, a 3-value strength
grid, 30 epochs) `--repeat` times, in a temporary output folder, and prints one
JSON object per run and a summary. The process start, imports and file
writing are included. Target (issue 19): <= 90 s on 2 CPU cores with
TensorFlow.

Usage:

    python benchmarks/compare_speed.py
    python benchmarks/compare_speed.py --repeat 3 -- --seeds 3
    KERAS_BACKEND=jax python benchmarks/compare_speed.py
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_S = 90.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs (default 1)")
    parser.add_argument(
        "extra", nargs="*", help="arguments passed on to compare, after --"
    )
    args = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    walls = []
    for index in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder:
            command = [
                sys.executable,
                "-m",
                "keras_reg",
                "compare",
                "--quiet",
                "--output",
                folder,
                *args.extra,
            ]
            start = time.perf_counter()
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if result.returncode != 0:
                sys.exit(result.stderr[-2000:])
            with open(os.path.join(folder, "results.json"), encoding="utf-8") as f:
                document = json.load(f)
        walls.append(wall)
        runs = sum(len(t["runs"]) for t in document["techniques"])
        print(
            json.dumps(
                {
                    "run": index,
                    "backend": document["backend"],
                    "wall_s": round(wall, 2),
                    "inside_s": round(document["total_wall_time_s"], 2),
                    "runs": runs,
                    "settings": document["settings"],
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "summary": "compare_speed",
                "cpu_count": os.cpu_count(),
                "median_wall_s": round(statistics.median(walls), 2),
                "target_s": TARGET_S,
                "meets_target": statistics.median(walls) <= TARGET_S,
            }
        )
    )


if __name__ == "__main__":
    main()
