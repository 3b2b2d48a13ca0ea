"""The kernel matrix: the tests marked `guest` run in QEMU guests booting Debian's kernels.

Each guest starts the monitor's `--check`, then pytest on the marked tests (CI=true inside, so
nothing there may skip); its results come back through the run folder and are kept for the
README's table (`python -m tests.matrix.guest table`)."""

import json
import shlex
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import skip_or_fail
from tests.matrix import guest

KERNELS = guest.kernels()
# Every guest at once: QEMU's TCG runs a guest's CPU on one host thread, and a guest left to run
# alone after the others would leave the second core idle.
PARALLEL = 3
# Seconds a guest may take, boot to power-off: about 1,000 s on an idle machine, 2,000 to 2,700
# with three at once on CI's two cores.
TIMEOUT = 3600
IN_GUEST = (
    "export CI=true KCMP_TEST_GUEST=1 PYTHONUNBUFFERED=1\n"
    ".venv/bin/kcmp-monitor --check >/run/guest/check.txt 2>&1; echo $? >/run/guest/check.rc\n"
    "exec .venv/bin/python -m pytest -m guest -p no:cacheprovider -q -rfEs --durations=12 "
    "--junitxml=/run/guest/junit.xml {deselect} tests/kernel\n"
)


def in_guest(kernel: guest.Kernel) -> str:
    return IN_GUEST.format(deselect=" ".join(f"--deselect {shlex.quote(t)}"
                                             for t in kernel.deselect))


@pytest.fixture(scope="session")
def guest_runs(tmp_path_factory):
    """Every kernel's guest run, started together (two at a time) on first use."""
    try:
        guest.check_host()
        guest.fetch(KERNELS)
    except guest.GuestError as exc:
        skip_or_fail(str(exc))
    accel = guest.accelerator(KERNELS[0])
    workdir = tmp_path_factory.mktemp("guests")
    pool = ThreadPoolExecutor(PARALLEL)
    runs = {k.name: pool.submit(guest.run, k, in_guest(k), TIMEOUT, accel, workdir=workdir)
            for k in KERNELS}
    yield runs
    pool.shutdown(wait=True)


def _junit(result: guest.Result) -> dict:
    path = result.files / "junit.xml"
    if not path.exists():
        return {}
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}


@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_the_kernel_tests_pass_in_a_guest(guest_runs, kernel):
    result = guest_runs[kernel.name].result()
    check = (result.files / "check.txt").read_text(errors="replace")
    counts = _junit(result)
    guest.save_result(result, check, counts)
    tail = result.output[-6000:]
    assert (result.files / "check.rc").read_text().strip() == "0", \
        f"{kernel.release}: kcmp-monitor --check failed:\n{check[-4000:]}"
    assert check.rstrip().endswith("check: ok"), check
    assert result.returncode == 0, f"{kernel.release}: the guest's tests failed:\n{tail}"
    assert counts.get("tests", 0) > 0 and counts["skipped"] == 0, (counts, tail)
    print(f"{kernel.release}: {json.dumps(counts)} in {result.seconds:.0f} s "
          f"({result.accel}); {shlex.quote(str(result.files))}")
