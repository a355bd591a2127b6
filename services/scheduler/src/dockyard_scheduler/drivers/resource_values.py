"""The values of valohai.yaml's ``resources`` (``cpu`` in cores, ``memory`` in megabytes): a
number, or ``{min, max}``. Pure; what a driver does with them is its own."""

from __future__ import annotations

from typing import Any

__all__ = ["positive_number", "resource_bounds"]


def positive_number(value: Any) -> float | None:
    """A positive amount, or None (for booleans, zero, negatives and what is no number)."""
    if isinstance(value, bool):
        return None
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return None
    return amount if amount > 0 else None


def resource_bounds(value: Any) -> tuple[float | None, float | None, bool]:
    """(min, max, readable) of a ``resources`` entry (a number is its own max)."""
    if value is None:
        return None, None, True
    if isinstance(value, dict):
        low, high = value.get("min"), value.get("max")
        readable = (low is None or positive_number(low) is not None) and (
            high is None or positive_number(high) is not None
        )
        return positive_number(low), positive_number(high), readable
    return None, positive_number(value), positive_number(value) is not None
