"""YAML documents a user writes (the rule file, the web configuration), parsed safely; a
document that is not YAML is one UsageError naming where and the line."""

from __future__ import annotations

from typing import Any

import yaml

from .errors import UsageError


def parse(text: str, where: str, loader: type = yaml.SafeLoader) -> Any:
    """The document in text (loader: SafeLoader or a subclass of it)."""
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - SafeLoader's kind only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{where}: not YAML{at}: "
                         f"{getattr(exc, 'problem', None) or 'unreadable'}") from None
