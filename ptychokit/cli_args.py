"""What the command-line scripts share: a parser whose errors are one line (exit 2, no usage
block), and a type for positive numbers."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """The command line is wrong: the script prints it as one line and exits 2."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


def positive(kind):
    """An argparse type: a number of `kind` above zero (NaN refused too)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value
    return parse
