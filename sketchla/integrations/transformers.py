"""sketchla's attention solvers as Hugging Face transformers attention implementations.

Importing this module registers three implementations with transformers'
``AttentionInterface`` (and, for each, ``sdpa``'s boolean mask builder with its
``AttentionMaskInterface``, so that padding reaches the solver):

==================  ============================================================
name                solver
==================  ============================================================
``sketchla_exact``  :func:`sketchla.exact_attention` (blockwise, exact)
``sketchla_hyper``  :func:`sketchla.hyper_attention` (its defaults)
``sketchla_lev``    :func:`sketchla.lev_attention` (``eps=0.05, local_window=128``)
==================  ============================================================

and :func:`register` adds more: ``solver="approx"`` runs :func:`sketchla.approx_attention`
with any key selectors and light estimator (``keys=Sinks(4) | Window(256), rest=Uniform(64)``),
and a callable with the solvers' signature runs as it is.

so that a model built with ``attn_implementation="sketchla_hyper"`` (``from_pretrained``,
``from_config``, or ``model.set_attn_implementation``) runs its attention through sketchla::

    import sketchla.integrations.transformers as skt

    skt.register("hyper_last4", solver="hyper", last=4, block_size=128, rng=0)
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="hyper_last4")

:func:`register` adds a named variant: solver settings (the keyword arguments of the solver)
are passed through, and ``layers=`` (a set of layer indices, negative ones counted from the
end) or ``last=L`` (the last L layers, the HyperAttention paper's experiment) chooses the
patched layers; the others run ``other`` (torch SDPA through transformers' ``"sdpa"``
function by default, or ``"exact"`` for sketchla's exact attention). Layers are told apart by
``module.layer_idx``.

How transformers' arguments map onto sketchla's
-----------------------------------------------
* ``query`` (batch, heads, q_len, head_dim), ``key``/``value`` (batch, kv_heads, kv_len, ...):
  passed as they are; grouped-query attention (kv_heads < heads) is handled by the solvers
  without repeating K/V. The output is returned as (batch, q_len, heads, head_dim), with
  ``None`` for the attention weights.
* ``attention_mask``: None means ``causal = module.is_causal`` (or the ``is_causal`` keyword)
  for q_len > 1. A 4-D boolean (True = attend) or additive float mask is read as a *key
  padding mask* (``~mask[..., -1, :]``, the row of the last query) plus, when the mask equals
  it combined with the bottom-right causal triangle, ``causal=True``. Any other mask (sliding
  windows, packed sequences, an additive bias) goes to ``exact_attention``'s ``attn_mask``;
  the approximate solvers raise a ValueError for it.
* ``scaling`` is sketchla's ``scale``. ``dropout`` must be 0 (call ``model.eval()``):
  sketchla is forward-only, and tensors that require grad are a TypeError (run the model
  under ``torch.no_grad()`` or ``torch.inference_mode()``). ``softcap``, attention sinks
  (``s_aux``) and a ``position_bias`` are not supported (ValueError).
* tensors must be on the CPU (the GPU path is not built yet).

torch and transformers are imported by this module only (``pip install "sketchla[llm]"``).
"""

from __future__ import annotations

import importlib
import inspect
import numbers
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ..attention import approx_attention, exact_attention, hyper_attention, lev_attention

__all__ = ["DEFAULT_SETTINGS", "NAMES", "SketchlaAttention", "register"]

#: the implementations registered on import: name -> solver
NAMES = {"sketchla_exact": "exact", "sketchla_hyper": "hyper", "sketchla_lev": "lev"}

#: settings a solver gets unless :func:`register` is given others
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "exact": {},
    "hyper": {},
    "lev": {"eps": 0.05, "local_window": 128},
    "approx": {},
}

_SOLVERS: dict[str, Callable[..., Any]] = {
    "exact": exact_attention,
    "hyper": hyper_attention,
    "lev": lev_attention,
    "approx": approx_attention,
}
#: arguments the integration sets from transformers' call
_RESERVED = {"Q", "K", "V", "causal", "scale", "attn_mask", "key_padding_mask", "return_lse"}
_UNSUPPORTED = ("softcap", "s_aux", "position_bias")
#: sketchla's warning for 4-D inputs that look like (batch, n, heads, d)
_LAYOUT_WARNING = r".*look like the \(batch, n, heads, d\) layout"


def _torch() -> Any:
    return importlib.import_module("torch")


def _transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'sketchla.integrations.transformers needs transformers: pip install "sketchla[llm]"'
        ) from exc


class SketchlaAttention:
    """A transformers attention function running a sketchla solver on the chosen layers.

    Called by transformers as ``fn(module, query, key, value, attention_mask, scaling=...,
    dropout=..., **kwargs)`` and returns ``(attn_output, None)`` with ``attn_output`` of shape
    (batch, q_len, heads, head_dim). Built by :func:`register`; see the module docstring.
    """

    def __init__(
        self,
        solver: str | Callable[..., Any],
        *,
        layers: Iterable[int] | None = None,
        last: int | None = None,
        other: str = "sdpa",
        **settings: Any,
    ) -> None:
        if not callable(solver) and solver not in _SOLVERS:
            raise ValueError(
                f"solver must be one of {sorted(_SOLVERS)} or a callable, got {solver!r}"
            )
        if layers is not None and last is not None:
            raise TypeError("pass layers= or last=, not both")
        if layers is not None:
            layers = frozenset(layers)
            if not all(isinstance(i, numbers.Integral) for i in layers):
                raise TypeError(f"layers must be layer indices (ints), got {sorted(layers)!r}")
        if last is not None and (not isinstance(last, numbers.Integral) or last < 1):
            raise ValueError(f"last must be an int >= 1, got {last!r}")
        if other not in ("sdpa", "exact"):
            raise ValueError(f"other must be 'sdpa' or 'exact', got {other!r}")
        if solver == "approx" and settings.get("keys") is None and settings.get("rest") is None:
            raise ValueError("solver='approx' needs keys= and/or rest= (see approx_attention)")
        params = inspect.signature(_solver_function(solver)).parameters
        open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key in settings:
            if key in _RESERVED:
                raise TypeError(f"{key}= is set from transformers' arguments, not a setting")
            if key not in params and not open_ended:
                raise TypeError(f"{key!r} is not an argument of the {_name(solver)} solver")
        self.solver = solver
        self.layers: frozenset[int] | None = layers
        self.last = last
        self.other = other
        defaults = DEFAULT_SETTINGS.get(solver, {}) if isinstance(solver, str) else {}
        self.settings = {**defaults, **settings}

    def __repr__(self) -> str:
        where = (
            f", layers={sorted(self.layers)}"
            if self.layers is not None
            else (f", last={self.last}" if self.last is not None else "")
        )
        extra = "".join(f", {k}={v!r}" for k, v in self.settings.items())
        solver = self.solver if isinstance(self.solver, str) else _name(self.solver)
        return f"SketchlaAttention({solver!r}{where}, other={self.other!r}{extra})"

    def patches(self, module: Any) -> bool:
        """Whether the layer of ``module`` (its ``layer_idx``) runs the sketchla solver."""
        if self.layers is None and self.last is None:
            return True
        idx = getattr(module, "layer_idx", None)
        if idx is None:
            raise ValueError(
                f"{type(module).__name__} has no layer_idx, so layers= / last= cannot choose "
                "its layer; register without them to patch every layer"
            )
        n = _num_layers(module)
        if self.last is not None:
            return idx >= n - self.last
        assert self.layers is not None
        return idx in {i % n if i < 0 else i for i in self.layers}

    def __call__(
        self,
        module: Any,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any,
        scaling: float | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> tuple[Any, None]:
        solver = self.solver if self.patches(module) else self.other
        if solver == "sdpa":
            sdpa = _transformers().AttentionInterface._global_mapping["sdpa"]
            return sdpa(
                module, query, key, value, attention_mask,
                scaling=scaling, dropout=dropout, **kwargs,
            )  # fmt: skip
        if dropout:
            raise ValueError(
                f"attention dropout {dropout} is not supported (sketchla is forward-only): "
                "call model.eval()"
            )
        for name in _UNSUPPORTED:
            if kwargs.get(name) is not None:
                raise ValueError(f"sketchla attention does not support {name}")
        is_causal = kwargs.get("is_causal")
        if is_causal is None:
            is_causal = getattr(module, "is_causal", True)
        n_q, n_k = query.shape[-2], key.shape[-2]
        causal, padding, mask = mask_arguments(attention_mask, n_q, n_k, bool(is_causal))
        if attention_mask is None and causal and 1 < n_q < n_k:
            # transformers gives no mask for the prefill of an empty static cache and relies
            # on SDPA's top-left is_causal: the keys after the queries are empty slots
            key, value = key[..., :n_q, :], value[..., :n_q, :]
        args: dict[str, Any] = {"causal": causal, "scale": scaling}
        if padding is not None:
            args["key_padding_mask"] = padding
        settings = self.settings if solver == self.solver else {}
        with warnings.catch_warnings():
            # the layout is known here: (batch, heads, n, d), even with more heads than tokens
            warnings.filterwarnings("ignore", message=_LAYOUT_WARNING, category=UserWarning)
            out = self._solve(solver, query, key, value, mask, args, settings, n_q)
        return out.transpose(1, 2).contiguous(), None

    @staticmethod
    def _solve(
        solver: str | Callable[..., Any],
        query: Any,
        key: Any,
        value: Any,
        mask: Any,
        args: dict[str, Any],
        settings: dict[str, Any],
        n_q: int,
    ) -> Any:
        if solver == "exact":
            out = _SOLVERS["exact"](query, key, value, attn_mask=mask, **args, **settings)
        else:
            if mask is not None:
                raise ValueError(
                    f"the {_name(solver)} solver takes causal and key-padding masks only; this "
                    "layer's attention mask is neither (sliding window, packed sequences or an "
                    "additive bias): use sketchla_exact, or register with layers= / last= "
                    "to leave this layer exact"
                )
            fn = _solver_function(solver)
            if "key_padding_mask" in args and not _takes_padding(fn):
                raise NotImplementedError(
                    f"the {_name(solver)} solver takes no key_padding_mask in this version, so "
                    "it cannot run a padded batch: use sketchla_exact or sketchla_lev, or "
                    "unpadded sequences"
                )
            if solver == "hyper" and args["causal"] and n_q != key.shape[-2]:
                settings = {**settings, "causal_scheme": "blocks"}  # halving needs n_q == n_k
            out = fn(query, key, value, **args, **settings)
        return out


def _name(solver: str | Callable[..., Any]) -> str:
    return solver if isinstance(solver, str) else getattr(solver, "__name__", repr(solver))


def _solver_function(solver: str | Callable[..., Any]) -> Callable[..., Any]:
    return solver if callable(solver) else _SOLVERS[solver]


def _takes_padding(solver: Callable[..., Any]) -> bool:
    params = inspect.signature(solver).parameters
    return "key_padding_mask" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _num_layers(module: Any) -> int:
    config = getattr(module, "config", None)
    n = getattr(config, "num_hidden_layers", None)
    if n is None and config is not None and hasattr(config, "get_text_config"):
        n = getattr(config.get_text_config(), "num_hidden_layers", None)
    if n is None:
        raise ValueError(
            f"cannot tell the number of layers of {type(module).__name__} (no "
            "config.num_hidden_layers): pass layers= with non-negative indices instead of last="
        )
    return int(n)


def mask_arguments(
    attention_mask: Any, n_q: int, n_k: int, is_causal: bool
) -> tuple[bool, Any, Any]:
    """``(causal, key_padding_mask, attn_mask)`` for sketchla from a transformers mask.

    ``attention_mask`` is None, a boolean mask (True = attend) or an additive float mask,
    broadcastable to (batch, heads, n_q, n_k). A mask that is a pure key mask, alone or with
    the bottom-right causal triangle, becomes ``key_padding_mask`` (True = padded key, shape
    (batch, heads or 1, n_k); None when no key is padded) and ``causal``; any other mask is
    returned as ``attn_mask`` (boolean, or the additive mask itself when it holds values
    other than 0 and "blocked"), for exact attention.
    """
    if attention_mask is None:
        return is_causal, None, None
    torch = _torch()
    mask = attention_mask
    if mask.dim() < 2:
        raise ValueError(f"attention_mask must have a query and a key axis, got {mask.shape}")
    if mask.dtype == torch.bool:
        allowed = mask
    else:
        blocked = mask <= torch.finfo(mask.dtype).min / 2  # -inf or transformers' dtype min
        if bool((mask.masked_fill(blocked, 0) != 0).any()):
            return False, None, mask  # a real additive bias
        allowed = ~blocked
    keys = allowed[..., -1:, :]  # the last query's row: every key it may attend
    j = torch.arange(n_k, device=mask.device)

    def causal_rows(r0: int, r1: int) -> Any:
        i = torch.arange(r0, r1, device=mask.device)[:, None] + (n_k - n_q)
        return keys & (j <= i)  # bottom-right aligned

    def key_rows(r0: int, r1: int) -> Any:
        return keys

    # where both readings fit (a single query), a causal module's stays causal: the solvers
    # then align query and key positions (local windows, the causal schemes)
    readings = [(True, causal_rows), (False, key_rows)]
    order = readings if is_causal else readings[::-1]
    fit = next((c for c, expected in order if _rows_equal(allowed, expected)), None)
    if fit is None:
        return False, None, allowed
    causal = fit
    padded = ~keys[..., 0, :]
    return causal, (padded if bool(padded.any()) else None), None


def _rows_equal(allowed: Any, expected: Callable[[int, int], Any], chunk: int = 512) -> bool:
    """``allowed`` equals ``expected(r0, r1)`` (broadcast) on every block of query rows; the
    temporaries stay O(chunk * n_k) per batch entry."""
    n_q = allowed.shape[-2]
    for r0 in range(0, n_q, chunk):
        r1 = min(r0 + chunk, n_q)
        rows = allowed[..., r0:r1, :]
        if not bool((rows == expected(r0, r1)).all()):
            return False
    return True


def register(
    name: str | None = None,
    solver: str | Callable[..., Any] | None = None,
    *,
    layers: Iterable[int] | None = None,
    last: int | None = None,
    other: str = "sdpa",
    **settings: Any,
) -> str | tuple[str, ...]:
    """Register a sketchla solver with transformers as the attention implementation ``name``.

    Parameters
    ----------
    name : str, optional
        The ``attn_implementation`` name. None registers the three defaults
        (``sketchla_exact``, ``sketchla_hyper``, ``sketchla_lev``, as on import) and returns
        their names.
    solver : {"exact", "hyper", "lev", "approx"} or callable, optional
        Default: the solver of a default name (``"sketchla_hyper"`` -> ``"hyper"``).
        ``"approx"`` is :func:`sketchla.approx_attention` (pass ``keys=`` / ``rest=``); a
        callable is called as ``solver(Q, K, V, causal=..., scale=..., [key_padding_mask=...,]
        **settings)`` with torch tensors (batch, heads, n, d) and returns (batch, heads, n_q,
        d_v).
    layers : iterable of int, optional
        Patch only these layers (``module.layer_idx``; negative indices count from the end).
    last : int >= 1, optional
        Patch only the last ``last`` layers. Neither: every layer.
    other : {"sdpa", "exact"}
        What the other layers run: transformers' SDPA function or sketchla's exact attention.
    **settings
        Keyword arguments of the solver (``block_size=``, ``sample_size=``, ``rng=``,
        ``eps=``, ``local_window=``, ``keys=``, ``rest=``, ...).

    Returns
    -------
    The registered name (or names).
    """
    transformers = _transformers()
    masking = importlib.import_module("transformers.masking_utils")
    if name is None:
        if solver is not None or layers is not None or last is not None or settings:
            raise TypeError("register() without a name registers the defaults; pass a name")
        return tuple(str(register(n)) for n in NAMES)
    if solver is None:
        if name not in NAMES:
            raise TypeError(f"solver= is needed for a new name ({name!r})")
        solver = NAMES[name]
    fn = SketchlaAttention(solver, layers=layers, last=last, other=other, **settings)
    transformers.AttentionInterface.register(name, fn)
    transformers.AttentionMaskInterface.register(name, masking.sdpa_mask)
    return name


register()
