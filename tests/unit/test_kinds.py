"""The kinds of call user space decides as the kernel does: bpf/kinds.h compiled by gcc, over
every combination of what its rules read, against monitor/kernel/kinds.py."""

import itertools

import pytest

from kcmp_monitor import abi
from kcmp_monitor.kernel import events, kinds
from tests.helpers import ROOT, c_facts

FLAG_BITS = (events.EV_ENTRY, events.EV_COMPAT, events.EV_REGS, events.EV_SECCOMP,
             events.EV_TRACE, events.EV_SLOT_READ)
FLAGS = [sum(c) for n in range(len(FLAG_BITS) + 1) for c in itertools.combinations(FLAG_BITS, n)]
RETS = (0, 1, -abi.EPERM, -abi.ESRCH, -abi.ENOSYS)
OUTSIDE = (0, 1, 2, 4, 7)
TYPES = (-1, *range(abi.KCMP_TYPES + 2))


@pytest.fixture(scope="module")
def c_kinds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kinds")
    (tmp / "values.h").write_text(
        "#include <stdbool.h>\n#define __always_inline inline\n"
        f"#define EPERM_ERRNO {abi.EPERM}\n"
        f"#define KCMP_FILE_TYPE {abi.KcmpType.KCMP_FILE.value}\n"
        f"#define KCMP_EPOLL_TFD {abi.KcmpType.KCMP_EPOLL_TFD.value}\n")
    includes = [f'"{tmp / "values.h"}"', f'"{ROOT / "bpf" / "kcmp.h"}"',
                f'"{ROOT / "bpf" / "kinds.h"}"']
    facts = [(f"urgent_{f}_{i}_{o}", f"urgent_call({f}, {r}, {o})")
             for f in FLAGS for i, r in enumerate(RETS) for o in OUTSIDE]
    facts += [(f"files_{f}_{t + 1}", f"record_names_files({f}, {t})") for f in FLAGS for t in TYPES]
    return c_facts(tmp, includes, facts)


def test_urgent_calls_are_the_kernels(c_kinds):
    python = {f"urgent_{f}_{i}_{o}": int(kinds.urgent_call(f, r, o))
              for f in FLAGS for i, r in enumerate(RETS) for o in OUTSIDE}
    assert python == {name: v for name, v in c_kinds.items() if name.startswith("urgent_")}


def test_calls_naming_files_are_the_kernels(c_kinds):
    python = {f"files_{f}_{t + 1}": int(kinds.names_files(f, t)) for f in FLAGS for t in TYPES}
    assert python == {name: v for name, v in c_kinds.items() if name.startswith("files_")}
