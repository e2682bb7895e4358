"""User-facing errors: one line that names the file or field and the fix."""

from __future__ import annotations


class ScorePolicyError(Exception):
    """An error caused by the user's input (data, checkpoint, observation, option).

    The CLI prints its message as a single line, without a traceback, and exits with status 2.
    The message should name the file or field at fault and say how to fix it.
    """


def check_field(
    flag: str,
    value: float | None,
    *,
    at_least: float | None = None,
    above: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> None:
    """A one-line ScorePolicyError naming `flag` unless `value` lies in the given range (None passes)."""
    if value is None:
        return
    low = f"≥ {at_least:g}" if at_least is not None else f"> {above:g}" if above is not None else ""
    high = f"< {below:g}" if below is not None else f"≤ {at_most:g}" if at_most is not None else ""
    bad = (
        value != value  # NaN
        or (at_least is not None and value < at_least)
        or (above is not None and value <= above)
        or (below is not None and value >= below)
        or (at_most is not None and value > at_most)
    )
    if bad:
        rule = " and ".join(part for part in (low, high) if part)
        raise ScorePolicyError(f"{flag}: must be {rule}, got {value!r}")
