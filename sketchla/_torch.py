"""torch tensors in, torch tensors out: one decorator for every public function taking arrays.

``@accepts_torch("Q", "K", "V")`` on a function makes it accept torch tensors wherever it
accepts NumPy arrays:

* a CPU tensor is handed to the function as ``tensor.numpy()``, which shares its memory (no
  copy, any strides); float16 and bfloat16 tensors (bfloat16 has no NumPy dtype) are converted
  with ``.float()``, i.e. computed in float32 as the library's dtype policy says;
* the result (an ndarray, or a tuple / NamedTuple of them, such as ``AttentionResult`` or
  ``RowSums``, whose type is kept) comes back as torch tensors on the CPU; floating results are
  cast to the input's dtype (``torch.promote_types`` of the floating array arguments among the
  named ones: float16 in, float16 out), integer results (indices, hash codes) keep theirs.
  Non-array results (floats, dicts) are returned as they are;
* a CUDA (or other non-CPU) tensor is a TypeError that points to the GPU path, which is not
  built yet: nothing is moved between devices implicitly;
* a tensor that requires grad (with grad mode on) is a TypeError: sketchla is forward-only.

Every torch tensor among the arguments is converted (masks included); the named arguments are
the data that set the output dtype. torch stays optional: it is imported only when an argument
is a tensor (``type(x).__module__`` starts with ``"torch"``), never by importing sketchla.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

__all__ = ["accepts_torch", "from_numpy", "is_torch", "to_numpy"]

F = TypeVar("F", bound=Callable[..., Any])


def is_torch(x: Any) -> bool:
    """True for a torch tensor (or a tensor-like object of a ``torch.*`` module); does not
    import torch."""
    if str(getattr(type(x), "__module__", "")).split(".")[0] == "torch":
        return True
    torch = sys.modules.get("torch")  # a tensor subclass defined elsewhere
    return torch is not None and isinstance(x, torch.Tensor)


def _torch() -> Any:
    return importlib.import_module("torch")


def to_numpy(x: Any, name: str) -> np.ndarray:
    """The NumPy view of a CPU tensor ``x`` (float16/bfloat16: a float32 copy); TypeError for
    tensors sketchla cannot read (CUDA, requires grad, sparse, not a tensor)."""
    device = getattr(x, "device", None)
    device_type = getattr(device, "type", "cpu")
    if getattr(x, "is_cuda", False) or device_type == "cuda":
        raise TypeError(
            f"{name} is a CUDA tensor (device {device}); sketchla runs on the CPU in this "
            "version and never moves data between devices implicitly. The GPU path (torch CUDA "
            "and CuPy through the array API) is not built yet: pass "
            f"{name}.cpu() (the result then comes back as a CPU tensor)."
        )
    if device_type != "cpu":
        raise TypeError(
            f"{name} is a torch tensor on device {device}; sketchla takes CPU tensors only in "
            f"this version: pass {name}.cpu()"
        )
    torch = _torch()
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} is a {type(x).__name__}, not a torch.Tensor")
    if x.layout != torch.strided:
        raise TypeError(
            f"{name} is a torch tensor with layout {x.layout}; sketchla takes dense (strided) "
            f"tensors: pass {name}.to_dense()"
        )
    if x.requires_grad:
        if torch.is_grad_enabled():
            raise TypeError(
                f"{name} requires grad, but sketchla is forward-only (it computes in NumPy "
                f"and records no autograd graph): pass {name}.detach(), or call it under "
                "torch.no_grad() / torch.inference_mode()"
            )
        x = x.detach()  # grad mode off: torch itself would record nothing either
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # computed in float32 (bfloat16 has no NumPy dtype)
    return x.resolve_conj().resolve_neg().numpy()


def from_numpy(a: Any, dtype: Any = None) -> Any:
    """An ndarray (or a tuple / NamedTuple of them) as torch tensors; floating ones cast to
    ``dtype`` when given. Anything else is returned unchanged."""
    if isinstance(a, np.ndarray):
        torch = _torch()
        if not a.flags.writeable or any(s < 0 for s in a.strides) or not a.dtype.isnative:
            a = np.array(a)  # torch.from_numpy needs writeable, non-negative-stride memory
        t = torch.from_numpy(a)
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        return t
    if isinstance(a, tuple):
        items = [from_numpy(v, dtype) for v in a]
        if hasattr(a, "_fields"):  # NamedTuple: keep its type
            return type(a)(*items)
        return type(a)(items) if type(a) is not tuple else tuple(items)
    return a


def _result_dtype(values: list[Any]) -> Any:
    """``torch.promote_types`` over the floating dtypes of the named array arguments."""
    torch = _torch()
    out = None
    for v in values:
        if is_torch(v):
            dt = v.dtype if v.is_floating_point() else None
        elif isinstance(v, np.ndarray) and v.dtype.kind == "f":
            dt = {2: torch.float16, 4: torch.float32}.get(v.dtype.itemsize, torch.float64)
        else:
            dt = None
        if dt is not None:
            out = dt if out is None else torch.promote_types(out, dt)
    return out


def accepts_torch(*names: str) -> Callable[[F], F]:
    """Decorate a function whose array arguments ``names`` may be torch tensors (see the
    module docstring). Calls without a tensor argument go straight through."""

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        params = list(sig.parameters)
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(f"accepts_torch: {fn.__qualname__} has no parameter {missing}")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not any(is_torch(a) for a in args) and not any(is_torch(v) for v in kwargs.values()):
                return fn(*args, **kwargs)
            bound = sig.bind(*args, **kwargs)
            data = [bound.arguments[n] for n in names if n in bound.arguments]
            for key, value in bound.arguments.items():
                if is_torch(value):
                    bound.arguments[key] = to_numpy(value, key)
            dtype = _result_dtype(data)  # after the conversions, which reject bad tensors
            return from_numpy(fn(*bound.args, **bound.kwargs), dtype)

        return wrapper  # type: ignore[return-value]

    return decorate
