"""Argument checks: one rule for every public function of rnnlab.

A public function checks its arguments before it computes anything, and a failed check says
which argument, what was expected and what was given, as ``"name: expected ..., got ..."``:

* a value of the wrong *type* (a list for a tensor, a float for an int, a float32 tensor where
  float64 is needed) raises :class:`TypeError`;
* a value of the right type but the wrong *value*, *shape* or *device* raises
  :class:`ValueError`.

``bool`` is not accepted where a number is expected (``True`` is an ``int`` to Python, rarely to
the caller). Each check returns the checked value, converted where that helps (``float``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

__all__ = ["check_type", "check_bool", "check_int", "check_number", "check_choice",
           "check_tensor", "check_like"]


def check_type(name: str, value, types: type | tuple[type, ...], expected: str):
    """``value`` must be an instance of ``types``; ``expected`` describes them in words."""
    if not isinstance(value, types):
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}")
    return value


def check_bool(name: str, value) -> bool:
    return check_type(name, value, bool, "a bool")


def check_int(name: str, value, minimum: int | None = None) -> int:
    """An ``int`` (not a ``bool``) that is at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        bound = "" if minimum is None else f" >= {minimum}"
        raise TypeError(f"{name}: expected an int{bound}, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_number(name: str, value, *, minimum: float | None = None,
                 maximum: float | None = None, positive: bool = False,
                 finite: bool = True) -> float:
    """A real number (``int`` or ``float``, not ``bool``, never NaN) within the given bounds.

    ``minimum``/``maximum`` are inclusive; ``positive`` asks for ``> 0``; ``finite=False``
    lets ``±inf`` through (a threshold of ``inf`` that never clips, say).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    parts = ["a finite number" if finite else "a number"]
    if positive:
        parts.append("> 0")
    if minimum is not None and maximum is not None:
        parts.append(f"in [{minimum}, {maximum}]")
    elif minimum is not None:
        parts.append(f">= {minimum}")
    elif maximum is not None:
        parts.append(f"<= {maximum}")
    ok = (not math.isnan(value) and (not finite or math.isfinite(value))
          and (not positive or value > 0) and (minimum is None or value >= minimum)
          and (maximum is None or value <= maximum))
    if not ok:
        raise ValueError(f"{name}: expected {' '.join(parts)}, got {value}")
    return float(value)


def check_choice(name: str, value, choices: Sequence):
    """One of ``choices`` (compared with ``==``)."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value


def check_tensor(name: str, value, dims: Sequence[int] | None = None, *,
                 floating: bool = False) -> Tensor:
    """A :class:`torch.Tensor` with one of ``dims`` dimensions, of a floating (or complex)
    dtype when ``floating``."""
    check_type(name, value, Tensor, "a torch.Tensor")
    if dims is not None and value.dim() not in dims:
        allowed = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name}: expected a {allowed} tensor, got shape {tuple(value.shape)}")
    if floating and not (value.is_floating_point() or value.is_complex()):
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
    return value


def check_like(name: str, value: Tensor, ref_name: str, ref: Tensor) -> Tensor:
    """``value`` has the dtype (else TypeError) and the device (else ValueError) of ``ref``."""
    if value.dtype != ref.dtype:
        raise TypeError(f"{name}: expected dtype {ref.dtype} (the dtype of {ref_name}), "
                        f"got {value.dtype}")
    if value.device != ref.device:
        raise ValueError(f"{name}: expected device {ref.device} (the device of {ref_name}), "
                         f"got {value.device}")
    return value
