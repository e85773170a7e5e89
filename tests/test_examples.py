"""Every script in examples/ runs, with tiny settings, in a fresh process."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

EXAMPLES = sorted(
    name
    for name in os.listdir(os.path.join(REPO_ROOT, "examples"))
    if name.endswith(".py")
)
# What each example prints when it works; a crash or a wrong result fails.
EXPECTED = {
    "all_six_digits.py": [
        "trained 2 epochs",
        "identical predictions after reload: True",
    ],
    "early_stopping.py": ["ran 3 of 3 epochs", "best epoch "],
    "save_and_reload.py": [
        "BatchNormalization from keras_reg",
        "Dropout from keras_reg",
        "identical predictions after reload: True",
    ],
    "techniques.py": ["epochs run: 1", "weight penalty in the loss: "],
    "tuner_search.py": ["best l2: ", "retrained, validation accuracy "],
}


def test_every_example_has_expectations():
    assert EXAMPLES == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["KERAS_REG_EXAMPLES_QUICK"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Run as `python examples/NAME.py` from the repository root, the way the
    # README says, with a temporary working directory's files kept out of it.
    result = subprocess.run(
        [sys.executable, os.path.join("examples", name)],
        cwd=REPO_ROOT,
        env={**env, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for expected in EXPECTED[name]:
        assert expected in result.stdout
