"""--check: load, attach, and say what works on this machine."""

from __future__ import annotations

from ..errors import EXIT_INTERNAL, EXIT_OK
from ..escape import escape
from ..kernel.features import KERNEL_FEATURES
from .daemon import bpf_stats_enabled
from .webconfig import WebConfig


def check(program, web: WebConfig | None = None) -> int:
    """What is attached and readable (and the web configuration /metrics would be served
    with), on stdout; 0 only if all of it works."""
    ok = True
    print(escape(program.hooks()))
    for hook, attached in program.attached().items():
        ok &= attached
        print(f"hook {hook}: {'attached' if attached else 'NOT ATTACHED'}")
    sides = " (entry and exit)" if program.compat_entry or program.fentry else " (exit only)"
    print(f"32-bit capture: {'on' + sides if program.compat else 'off'}"
          + (f" ({escape(program.compat_error)})" if program.compat_error else ""))
    for feature, what in KERNEL_FEATURES.items():
        if feature in program.kernel_on:
            print(f"{what}: on")
        elif feature in program.kernel_off:
            print(f"{what}: off ({escape(program.kernel_off[feature])})")
    try:
        snap = program.snapshot()
        print(f"counters: readable ({sum(sum(t.outcome) for t in snap.types)} calls so far)")
    except Exception as exc:  # what a scrape would hit: report it
        ok = False
        print(f"counters: NOT READABLE ({escape(str(exc))})")
    print("bpf run time: sampled by the programs" + (
        ", and the kernel's own exported" if bpf_stats_enabled() else
        " (the kernel's own with sysctl kernel.bpf_stats_enabled=1, at a cost to every BPF "
        "program's run)"))
    if web is not None:
        print(f"web configuration: {escape(web.describe())}")
    if program.policy is not None:
        print(f"policy: {escape(program.policy.describe())}")
    print(f"check: {'ok' if ok else 'FAILED'}")
    return EXIT_OK if ok else EXIT_INTERNAL
