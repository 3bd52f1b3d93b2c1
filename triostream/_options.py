"""Validation of the options every public call takes.

Options are explicit keyword parameters, checked at the call that takes
them: a bad value is a `TypeError` (wrong kind) or `ValueError` (out of
range) raised there and then, never later inside a helper task or an
exception group. `ConnectionOptions` carries the checked options of a
`Connection` from the public factories (`open_connection`, `connect_tcp`,
`serve_tcp`, ...) to the connections they create.

No trio import: the pure layers use these checks too.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

__all__ = ["ConnectionOptions", "check_positive", "check_timeout"]


def check_positive(name: str, value: int) -> int:
    """``value`` as an int >= 1. `TypeError` for a non-integer (``bool``
    included: ``max_buffer_size=True`` is a mistake, not 1), `ValueError`
    below 1."""
    return _check_int(name, value, 1)


def check_non_negative(name: str, value: int) -> int:
    """``value`` as an int >= 0 (errors as `check_positive`)."""
    return _check_int(name, value, 0)


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return value


def check_timeout(name: str, value: float | None, *, optional: bool = True) -> float | None:
    """``value`` as a finite number of seconds > 0, or None when ``optional``.

    `TypeError` for anything but an int or float (``bool`` and strings
    included), `ValueError` for zero, negative, NaN or infinite values: "no
    timeout" is spelled None, so an infinite bound cannot hide behind a
    number.
    """
    if value is None:
        if optional:
            return None
        raise TypeError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        allowed = "a finite number of seconds > 0" + (" (or None)" if optional else "")
        raise ValueError(f"{name} must be {allowed}, not {value}")
    return value


def check_bool(name: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


@dataclass(frozen=True)
class ConnectionOptions:
    """The options of a `Connection`, checked (see its docstring for their
    meaning). Construction validates: `TypeError` / `ValueError` at once."""

    max_buffer_size: int = 65536
    receive_size: int = 65536
    max_write_buffer_size: int = 1 << 20
    write_high_water: int = 65536
    write_low_water: int | None = None
    read_ahead: bool = True
    idle_timeout: float | None = None
    read_timeout: float | None = None
    write_timeout: float | None = None
    close_timeout: float = 10.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: the checked values replace the given ones
        set_(self, "max_buffer_size", check_positive("max_buffer_size", self.max_buffer_size))
        set_(self, "receive_size", check_positive("receive_size", self.receive_size))
        high = check_positive("write_high_water", self.write_high_water)
        top = check_positive("max_write_buffer_size", self.max_write_buffer_size)
        low = high // 4 if self.write_low_water is None else check_non_negative("write_low_water", self.write_low_water)
        if not low <= high <= top:
            raise ValueError(
                f"need write_low_water <= write_high_water <= max_write_buffer_size, not {low} <= {high} <= {top}"
            )
        set_(self, "write_high_water", high)
        set_(self, "max_write_buffer_size", top)
        set_(self, "write_low_water", low)
        set_(self, "read_ahead", check_bool("read_ahead", self.read_ahead))
        for name in ("idle_timeout", "read_timeout", "write_timeout"):
            set_(self, name, check_timeout(name, getattr(self, name)))
        set_(self, "close_timeout", check_timeout("close_timeout", self.close_timeout, optional=False))
