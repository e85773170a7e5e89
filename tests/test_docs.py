"""The README and the manual in docs/ stay true.

Every fenced `python` block runs: the blocks of one page in order, in one fresh
process, in an empty working directory, on the backend under test. A block
right after the comment `<!-- runs on: tensorflow -->` runs on that backend
only. Every `bash` command runs too, on the TensorFlow session, except the
installs and the test command, which CI runs (`.ci/run`, checked below to be
the README's). `mkdocs build --strict` builds the manual.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys

import keras
import pytest
from helpers import REPO_ROOT, run_python

BACKEND = keras.backend.backend()
PAGES = [pathlib.Path(REPO_ROOT, "README.md")] + sorted(
    pathlib.Path(REPO_ROOT, "docs").glob("*.md")
)
_BLOCK = re.compile(
    r"(?:<!-- runs on: (?P<backend>\w+) -->\n)?```(?P<language>\w*)\n(?P<code>.*?)```",
    re.DOTALL,
)


def _blocks(page, language):
    for match in _BLOCK.finditer(page.read_text()):
        if match["language"] == language:
            yield match["backend"], match["code"]


def _name(page):
    return page.relative_to(REPO_ROOT).as_posix()


def test_every_fenced_block_is_python_or_bash():
    for page in PAGES:
        for match in _BLOCK.finditer(page.read_text()):
            assert match["language"] in ("python", "bash", "text"), _name(page)


@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(_blocks(p, "python"))], ids=_name
)
def test_python_blocks_run(page, tmp_path):
    code = "\n\n".join(
        block
        for backend, block in _blocks(page, "python")
        if backend in (None, BACKEND)
    )
    result = run_python(code, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _commands(page):
    for _, block in _blocks(page, "bash"):
        for line in block.splitlines():
            for command in line.split("&&"):
                yield command.strip()


def _readme_test_command():
    (block, *_) = (b for _, b in _blocks(PAGES[0], "bash"))
    return block.splitlines()[1]


def test_readme_is_a_front_page_under_200_lines():
    # The manual lives in docs/; the README keeps what, quick start, one example
    # per technique, the API table, the differences table and links.
    assert len(PAGES[0].read_text().splitlines()) < 200


def test_ci_runs_the_readme_test_command():
    ci = pathlib.Path(REPO_ROOT, ".ci", "run").read_text()
    assert _readme_test_command() in ci


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="run once, from the TensorFlow session"
)
@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(_blocks(p, "bash"))], ids=_name
)
def test_bash_commands_run(page, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    for command in _commands(page):
        words = shlex.split(command)
        if words[1:3] == ["-m", "pip"] or words[1:] == ["tests/run_backends.py"]:
            continue  # CI's own steps
        assert words[0] in ("python", "python3"), command
        result = subprocess.run(
            [sys.executable, *words[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (command, result.stderr[-3000:])


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="run once, from the TensorFlow session"
)
def test_manual_builds_strictly(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-q",
            "-d",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _differences_table(text):
    start = text.index("| class | difference | why |")
    return text[start : text.index("\n\n", start)]


def test_readme_and_manual_list_the_same_differences_from_keras():
    readme = PAGES[0].read_text()
    manual = pathlib.Path(REPO_ROOT, "docs", "differences.md").read_text() + "\n"
    assert _differences_table(readme) == _differences_table(manual)
