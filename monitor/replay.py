"""`kcmp-monitor detect`: the signatures over recorded events (the JSON stream's or the event
file's lines), their findings printed, and what was not an event counted."""

from __future__ import annotations

import sys

from .detect import offline, rules
from .detect.engine import Detector
from .errors import EXIT_OK, BadData, NoSuchTarget, UsageError
from .flags import flag
from .sinks.console import format_finding
from .sinks.jsonout import dumps


def run(files: list[str], rules_file: str | None, output: str, print_rules: bool) -> int:
    if print_rules:
        if files or rules_file:
            raise UsageError(f"{flag('print_rules')} prints the shipped rules alone: leave out "
                             "the rest")
        sys.stdout.write(rules.default_text())
        return EXIT_OK
    if not files:
        raise UsageError("name the recorded events: a FILE, or - for standard input")
    detector = Detector(rules.load(rules_file))
    skipped = offline.Skipped()
    for path in files:
        try:
            stream = offline.open_events(path, sys.stdin.buffer)
        except FileNotFoundError:
            raise NoSuchTarget(f"{path}: no such file") from None
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
        with stream:
            try:
                for finding in offline.findings(stream, path, detector, skipped):
                    print(dumps(finding.record()) if output == "json"
                          else format_finding(finding))
            except (OSError, EOFError) as exc:  # a gzip cut short, a read error
                skipped.add(path, f"unreadable past this point ({exc})")
    if skipped.count:
        raise BadData(f"{skipped.count} line{'s' if skipped.count > 1 else ''} skipped, not "
                      f"events (first: {skipped.first})")
    return EXIT_OK
