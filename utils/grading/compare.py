"""Compare a learner's output with the expected one and say how they differ.

`difference(got, expected)` returns None when they match, else one short,
specific sentence (wrong type, shape, dtype, device, NaNs, or the values
around the largest gap). A result on another device than the reference's (which
is where the inputs were) fails: the function chose a device itself.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def difference(got: Any, expected: Any, *, atol: float, rtol: float, path: str = "output",
               check_dtype: bool = True) -> str | None:
    """None if `got` matches `expected` within tolerance, else what differs."""
    if isinstance(expected, Tensor):
        return _tensor_difference(got, expected, atol=atol, rtol=rtol, path=path, check_dtype=check_dtype)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"{path}: expected a {type(expected).__name__} of {len(expected)} items, got {_kind(got)}"
        if len(got) != len(expected):
            return f"{path}: expected {len(expected)} items, got {len(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            if (diff := difference(g, e, atol=atol, rtol=rtol, path=f"{path}[{i}]", check_dtype=check_dtype)):
                return diff
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{path}: expected a dict with keys {sorted(expected)}, got {_kind(got)}"
        if set(got) != set(expected):
            return f"{path}: expected keys {sorted(expected)}, got {sorted(got)}"
        for key in expected:
            if (diff := difference(got[key], expected[key], atol=atol, rtol=rtol, path=f"{path}[{key!r}]",
                                   check_dtype=check_dtype)):
                return diff
        return None
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return None if got == expected else f"{path}: expected {expected!r}, got {_short(got)}"
    if isinstance(expected, (int, float)):
        number = _as_number(got)
        if number is None:
            return f"{path}: expected a number, got {_kind(got)}"
        if isinstance(expected, int) and not isinstance(expected, bool) and isinstance(number, int):
            return None if number == expected else f"{path}: expected {expected}, got {number}"
        if math.isnan(number) and not math.isnan(expected):
            return f"{path}: expected {expected:.6g}, got nan"
        if not math.isclose(number, expected, rel_tol=rtol, abs_tol=atol):
            return f"{path}: expected {expected:.6g}, got {number:.6g}"
        return None
    return None if got == expected else f"{path}: expected {_short(expected)}, got {_short(got)}"


def _tensor_difference(got: Any, expected: Tensor, *, atol: float, rtol: float, path: str,
                       check_dtype: bool) -> str | None:
    shape = tuple(expected.shape)
    if not isinstance(got, Tensor):
        return f"{path}: expected a torch.Tensor of shape {shape}, got {_kind(got)}"
    got = plain(got)
    if tuple(got.shape) != shape:
        return f"{path}: expected shape {shape}, got shape {tuple(got.shape)}"
    if check_dtype and got.dtype != expected.dtype:
        return f"{path}: expected dtype {_dtype(expected)}, got {_dtype(got)}"
    if got.device.type != expected.device.type:
        return (f"{path}: expected a tensor on {expected.device.type} (where the inputs are), got one on "
                f"{got.device}: return results on the inputs' device")
    g = got.detach().to("cpu")
    e = expected.detach().to("cpu")
    if g.is_floating_point() or e.is_floating_point():
        g, e = g.double(), e.double()
        bad_g, bad_e = ~torch.isfinite(g), ~torch.isfinite(e)
        if (bad_g & ~bad_e).any():
            where = _index(torch.nonzero(bad_g & ~bad_e)[0])
            count = int((bad_g & ~bad_e).sum())
            return f"{path}: {count} NaN/inf value(s) where finite values were expected, first at {path}{where}"
        close = torch.isclose(g, e, atol=atol, rtol=rtol, equal_nan=True)
    else:
        close = g == e
    if bool(close.all()):
        return None
    wrong = ~close
    count, total = int(wrong.sum()), wrong.numel()
    message = f"{path}: {count} of {total} values differ"
    if g.is_floating_point():
        gap = (g - e).abs().masked_fill(~wrong, 0).nan_to_num(nan=0.0, posinf=0.0)
        shown = torch.stack(torch.unravel_index(gap.flatten().argmax(), gap.shape)) if gap.ndim else gap.new_zeros(0)
        where = f" at {path}{_index(shown)}" if gap.ndim else ""
        message += (f" (largest gap {float(gap.max()):.3g}{where}; "
                    f"tolerance atol={atol:g}, rtol={rtol:g})")
    else:
        shown = torch.nonzero(wrong)[0] if wrong.ndim else wrong.new_zeros(0)
    return message + "\n" + _side_by_side(g, e, shown, path)


def plain(t: Tensor) -> Tensor:
    """The same data as a plain torch.Tensor: a subclass's own comparisons are never trusted."""
    if type(t) is Tensor:
        return t
    with torch._C.DisableTorchFunctionSubclass():
        return Tensor.as_subclass(Tensor.detach(t), Tensor)


def _side_by_side(got: Tensor, expected: Tensor, first: Tensor, path: str) -> str:
    """The row (last axis) around the value shown (the largest gap), expected over got."""
    if got.ndim == 0:
        return f"  expected {_fmt(expected)}\n  got      {_fmt(got)}"
    row = tuple(int(i) for i in first[:-1])
    col = int(first[-1])
    lo = max(0, min(col - 2, got.shape[-1] - 6))
    hi = min(got.shape[-1], lo + 6)
    label = f"{path}[{', '.join([*map(str, row), f'{lo}:{hi}'])}]"
    return (f"  expected {label} = {_fmt(expected[row][lo:hi])}\n"
            f"  got      {label} = {_fmt(got[row][lo:hi])}")


def _fmt(t: Tensor) -> str:
    values = t.flatten().tolist() if t.ndim else [t.item()]
    text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values)
    return f"[{text}]" if t.ndim else text


def _index(idx: Tensor) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _dtype(t: Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _as_number(x: Any) -> float | int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return x
    if isinstance(x, Tensor) and x.numel() == 1:
        return x.item()
    try:
        import numpy as np
        if isinstance(x, np.generic) and x.size == 1:
            return x.item()
    except ImportError:  # pragma: no cover
        pass
    return None


def _kind(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    if x is None:
        return "None (did the function forget to `return`?)"
    return f"a {type(x).__name__} ({_short(x)})"


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


# -- naming a mistake no grader foresaw --------------------------------------------------------------


def generic_diagnosis(got: Any, expected: Any, *, atol: float = 1e-5, rtol: float = 1e-4) -> tuple[str, str] | None:
    """(name, hint) when a wrong output differs from the expected one in a way learners often
    introduce (a container or type mixed up, an axis added or lost, a sign, a constant factor or
    offset, swapped axes, a shift by one), else None."""
    if isinstance(expected, (tuple, list)) and isinstance(got, (tuple, list)) and len(got) == len(expected):
        for g, e in zip(got, expected):
            if difference(g, e, atol=atol, rtol=rtol) is not None:
                return generic_diagnosis(g, e, atol=atol, rtol=rtol)
        return None
    if isinstance(expected, dict) and isinstance(got, dict) and set(got) != set(expected):
        return ("different keys", "Your dict's keys are not the expected ones (both are shown above): use exactly "
                "the keys the docstring names. If you keyed by `hook.name`, note that hooks get the bridge's "
                "canonical names (e.g. `blocks.0.attn.o.hook_in`): key by the names you were given instead.")
    if isinstance(expected, Tensor) and not isinstance(got, Tensor) and isinstance(got, (int, float)):
        return ("number, not tensor", "Return the tensor itself: a Python number (from .item() or float()) "
                "loses its shape, dtype and device.")
    if isinstance(expected, (int, float)) and not isinstance(expected, bool) and isinstance(got, Tensor):
        return ("tensor, not number", "Return a Python number: call .item() on a one-element tensor.")
    if not (isinstance(got, Tensor) and isinstance(expected, Tensor)):
        return None
    g, e = plain(got).detach().cpu(), expected.detach().cpu()
    if g.shape != e.shape:
        return _shape_diagnosis(tuple(g.shape), tuple(e.shape))
    if g.dtype != e.dtype and g.is_floating_point() and e.is_floating_point():
        return ("another float dtype", f"Your output is {_dtype(g)} where {_dtype(e)} is expected. Later cells "
                f"combine it with {_dtype(e)} tensors, and a matrix product of two float dtypes fails ('expected m1 "
                f"and m2 to have the same dtype'): convert at the end with .to(torch.{_dtype(e)}). torch.tensor of "
                "Python floats, numpy and .double() make float64.")
    if g.dtype != e.dtype and g.is_floating_point() != e.is_floating_point():
        return ("integer vs float dtype", f"Your output is {_dtype(g)} where {_dtype(e)} is expected: "
                + ("token ids and counts stay integers (use //, .long(), or integer-valued functions)."
                   if not e.is_floating_point() else "convert with .float() (a division or mean needs floats)."))
    if expected.numel() < 2 or not (g.is_floating_point() and e.is_floating_point()):
        return None
    g, e = g.double(), e.double()
    if not (torch.isfinite(g).all() and torch.isfinite(e).all()) or float(e.abs().max()) == 0:
        return None
    scale = float(e.abs().max())

    def near(a: Tensor, b: Tensor) -> bool:
        return bool(torch.allclose(a, b, atol=1e-4 * scale, rtol=1e-3))

    if near(g, -e):
        return ("sign flipped", "Your output is the expected one with the opposite sign: check the order of a "
                "subtraction, or a missing minus.")
    factor = float((g * e).sum() / (e * e).sum())
    if abs(factor - 1) > 1e-3 and abs(factor) > 1e-6 and near(g, factor * e):
        return ("off by a constant factor", f"Your output is the expected one times {factor:.4g}: a missing or extra "
                "scale (a division by sqrt(d) or by a count, a sum where a mean is meant, a temperature, a "
                "normalisation)?")
    offset = float((g - e).mean())
    if abs(offset) > 1e-4 * scale and near(g, e + offset):
        return ("off by a constant", f"Your output is the expected one plus {offset:.4g} everywhere: a missing or "
                "extra bias, or a mean subtracted (or not) where it should not (or should) be?")
    if e.ndim >= 2 and e.shape[-1] == e.shape[-2] and near(g, e.transpose(-1, -2)):
        return ("last two axes swapped", "Your output is the expected one transposed in its last two axes: "
                "check which axis is which (e.g. query vs key, rows vs columns).")
    if e.shape[-1] > 2:
        for shift in (1, -1):
            a, b = (g[..., shift:], e[..., :-shift]) if shift > 0 else (g[..., :shift], e[..., -shift:])
            if near(a, b) and not near(g, e):
                return ("shifted by one position", "Your values are right but shifted by one place along the "
                        "last axis: an off-by-one in an index, a slice or a mask's diagonal?")
    return None


def locate_difference(got: Any, expected: Any, *, atol: float, rtol: float) -> str | None:
    """Where a wrong tensor differs, when that is informative: only some indices of one axis
    (one head, the last position, the first batch row...). None if it differs everywhere."""
    if not (isinstance(got, Tensor) and isinstance(expected, Tensor)) or got.shape != expected.shape or got.ndim == 0:
        return None
    g, e = plain(got).detach().cpu(), expected.detach().cpu()
    if g.is_floating_point() or e.is_floating_point():
        wrong = ~torch.isclose(g.double(), e.double(), atol=atol, rtol=rtol, equal_nan=True)
    else:
        wrong = g != e
    if not bool(wrong.any()):
        return None
    for axis in range(wrong.ndim):
        size = wrong.shape[axis]
        bad = wrong.transpose(0, axis).reshape(size, -1).any(dim=1).nonzero().flatten().tolist()
        if size > 1 and len(bad) <= size // 2:
            where = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
            return (f"Only index {where} of axis {axis} (of {size}) differ{'s' if len(bad) == 1 else ''}; "
                    f"the rest is right. What is special about {'it' if len(bad) == 1 else 'them'}: the first or "
                    "last position, a masked entry, one head or batch row?")
    return None


def _shape_diagnosis(got: tuple[int, ...], expected: tuple[int, ...]) -> tuple[str, str] | None:
    if len(got) > 1 and sorted(got) == sorted(expected):
        return ("axes in another order", f"Your output has the expected axes in another order ({got} instead of "
                f"{expected}): check the output side of your einsum or rearrange pattern, or a transpose.")
    if len(got) == len(expected) + 1 and any(got[:i] + got[i + 1:] == expected for i in range(len(got))):
        return ("an extra axis", f"Your output has one axis more than expected ({got} instead of {expected}): a "
                "sum or mean over it is missing, or two tensors of shapes [n] and [n, 1] broadcast into [n, n] "
                "(fancy indexing with two index tensors does the same: pair them with torch.arange).")
    if len(got) + 1 == len(expected) and any(expected[:i] + expected[i + 1:] == got for i in range(len(expected))):
        return ("an axis missing", f"Your output has one axis fewer than expected ({got} instead of {expected}): "
                "you reduced (or indexed away) an axis that should be kept; keepdim=True or a per-item result?")
    if len(got) == len(expected):
        axes = [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]
        if len(axes) == 1:
            i = axes[0]
            return ("wrong size on one axis", f"Axis {i} of your output has size {got[i]}, expected {expected[i]}: "
                    "check the slice, the range or the off-by-one that builds that axis.")
    return None
