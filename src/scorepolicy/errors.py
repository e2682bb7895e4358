"""User-facing errors: one line that names the file or field and the fix."""

from __future__ import annotations


class ScorePolicyError(Exception):
    """An error caused by the user's input (data, checkpoint, observation, option).

    The CLI prints its message as a single line, without a traceback, and exits with status 2.
    The message should name the file or field at fault and say how to fix it.
    """
