"""Test helpers: where the installed command is, and skipping that CI turns into failure."""

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def monitor_command():
    """The console script as a user runs it: the venv's, else the one on PATH."""
    beside = Path(sys.executable).parent / "kcmp-monitor"
    return str(beside) if beside.exists() else shutil.which("kcmp-monitor")


def skip_or_fail(reason: str):
    """Skip with the reason; under CI, where every test must run, fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"cannot run in CI: {reason}")
    pytest.skip(reason)
