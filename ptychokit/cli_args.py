"""What the command-line scripts share: a parser whose errors are one line (exit 2, no usage
block), and types for positive and non-negative numbers."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """The command line is wrong: the script prints it as one line and exits 2."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


def positive(kind):
    """An argparse type: a number of `kind` above zero (NaN refused too)."""
    return _number(kind, lambda value: value > 0, "must be positive")


def non_negative(kind):
    """An argparse type: a number of `kind`, zero or above (NaN refused too)."""
    return _number(kind, lambda value: value >= 0, "must be 0 or more")


def _number(kind, accept, rule: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{text!r} {rule}")
        return value
    return parse
