"""User errors: one line that names the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (options, files, addresses). Printed as one line, exit 2."""


def one_line(e: BaseException) -> str:
    """Fold an exception's message onto one line (YAML and HTTP errors span several)."""
    return " ".join(str(e).split()) or type(e).__name__
