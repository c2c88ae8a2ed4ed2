"""User errors: one line that names the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (options, files, addresses). Printed as one line, exit 2."""


# An error line quotes at most this much: a user's 10,000-character value is not echoed whole.
MAX_ERROR_CHARS = 600


def one_line(e: BaseException | str) -> str:
    """Fold an exception's message onto one line (YAML and HTTP errors span several), at most
    MAX_ERROR_CHARS long."""
    text = " ".join(str(e).split()) or type(e).__name__
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 25] + f" ... ({len(text)} characters)"
    return text


def short(text: str, limit: int = 120) -> str:
    """At most `limit` characters of a user's value, for error lines that must stay short."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
