"""Test helpers: where the installed command is, and skipping that CI turns into failure."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def monitor_command():
    """The console script as a user runs it: the venv's, else the one on PATH."""
    beside = Path(sys.executable).parent / "kcmp-monitor"
    return str(beside) if beside.exists() else shutil.which("kcmp-monitor")


def in_guest() -> bool:
    """Run by the kernel matrix in a QEMU guest (tests/matrix), where each monitor start
    costs half a minute of compiling."""
    return os.environ.get("KCMP_TEST_GUEST") == "1"


def trampolines() -> bool:
    """Whether this kernel takes the fentry hooks (what --hooks auto picks), as the monitor
    asks it: an fexit program attached to each function they need."""
    from kcmp_monitor.kernel import trampolines as probe

    return probe.refused() is None


def patience(seconds: float) -> float:
    """A test's wait for the monitor: ten times as long in a guest, which emulates its CPU."""
    return seconds * (10 if in_guest() else 1)


def skip_or_fail(reason: str):
    """Skip with the reason; under CI, where every test must run, fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"cannot run in CI: {reason}")
    pytest.skip(reason)


def c_facts(tmp_path, includes, facts):
    """Compile a C program printing `name value` for each (name, C expression of type size_t
    or int) and return them as a dict: the C compiler's view of a layout."""
    if not shutil.which("gcc"):
        skip_or_fail("needs gcc to compile C headers (run `sudo make setup`)")
    lines = "\n".join(f'printf("{name} %lld\\n", (long long)({expr}));' for name, expr in facts)
    src = tmp_path / "facts.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n"
                   + "".join(f"#include {inc}\n" for inc in includes)
                   + f"int main(void) {{\n{lines}\nreturn 0;\n}}\n")
    exe = tmp_path / "facts"
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}
