"""Argument types and help text the command-line tools (`emulate`, `plena-profile`) share."""

from __future__ import annotations

import argparse
import math

UNBOUNDED_NOTE = ("There is no default budget: a program whose loops each stay under MAX_LOOP_INSTRUCTIONS "
                  "can run forever; bound a run with --max-seconds and/or --max-instructions.")


def positive_int(text: str) -> int:
    """An integer >= 1 (budgets)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0 (nan, inf, 0 and negative values are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value
