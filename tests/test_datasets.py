"""sketchla.datasets: the shipped MiniLM extract, the safetensors reader, the WordPiece
tokenizer."""

import json
import struct

import numpy as np
import pytest

from sketchla import datasets


def test_extract_metadata_names_model_text_layers_heads():
    info = datasets.minilm_extract_info()
    assert info["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "pydoc_data.topics" in info["text"]
    assert info["n_tokens"] == 512 and info["head_dim"] == 32
    assert tuple(info["layers"]) == datasets.EXTRACT_LAYERS
    assert tuple(info["heads"]) == datasets.EXTRACT_HEADS


@pytest.mark.parametrize("layer", datasets.EXTRACT_LAYERS)
def test_loaded_heads_have_the_right_shape_and_are_finite(layer):
    for head in datasets.EXTRACT_HEADS:
        Q, K, V = datasets.load_minilm_qkv(layer, head)
        assert Q.shape == K.shape == V.shape == (512, 32)
        assert Q.dtype == np.float64
        assert all(np.isfinite(X).all() for X in (Q, K, V))
        # a real head is not degenerate: K has full column rank
        assert np.linalg.matrix_rank(K) == 32
    Q32, _, _ = datasets.load_minilm_qkv(layer, datasets.EXTRACT_HEADS[0], dtype=np.float32)
    assert Q32.dtype == np.float32


def test_layer0_projections_recompute_from_the_stored_layer_input():
    """Q = X W_q^T + b_q (and K, V) for layer 0, from the stored embedding output X and the
    stored weight slices: the extract holds the model's own projections of real text."""
    ex = datasets._extract()
    X = ex["x0"].astype(np.float64)
    dh = 32
    for t in ("q", "k", "v"):
        W, b = ex[f"w{t}0"].astype(np.float64), ex[f"b{t}0"].astype(np.float64)
        proj = X @ W.T + b  # (512, heads * 32)
        for i, head in enumerate(datasets.EXTRACT_HEADS):
            stored = datasets.load_minilm_qkv(0, head)["qkv".index(t)]
            np.testing.assert_allclose(
                proj[:, i * dh : (i + 1) * dh], stored, rtol=0, atol=1e-4 * np.abs(stored).max()
            )


def test_attention_of_a_shipped_head_is_a_proper_row_stochastic_matrix():
    Q, K, _ = datasets.load_minilm_qkv(2, 0)
    s = Q @ K.T / np.sqrt(32)
    P = np.exp(s - s.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    # layer 2 of BERT-like models attends to [CLS] heavily (an attention sink)
    assert P[:, 0].mean() > 10 / 512


def test_token_ids_start_with_cls_and_end_with_sep():
    ids = datasets._extract()["ids"]
    assert ids.shape == (512,)
    assert ids[0] == 101 and ids[-1] == 102  # BERT uncased vocabulary: [CLS], [SEP]


def test_loader_rejects_heads_that_are_not_shipped():
    with pytest.raises(ValueError, match="layer"):
        datasets.load_minilm_qkv(1, 0)
    with pytest.raises(ValueError, match="head"):
        datasets.load_minilm_qkv(0, 1)


def _write_safetensors(path, tensors):
    header, chunks, offset = {"__metadata__": {"format": "np"}}, [], 0
    for name, (dtype, arr, raw) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"".join(chunks))


def test_read_safetensors_round_trips_f32_i64_and_bf16(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    i = np.array([[1, -2, 3]], dtype=np.int64)
    bf = np.array([1.5, -2.0, 3.140625], dtype=np.float32)  # exactly representable in bf16
    bf_raw = (bf.view(np.uint32) >> 16).astype("<u2").tobytes()
    _write_safetensors(
        tmp_path / "t.safetensors",
        {
            "a": ("F32", a, a.astype("<f4").tobytes()),
            "i": ("I64", i, i.astype("<i8").tobytes()),
            "bf": ("BF16", bf, bf_raw),
        },
    )
    out = datasets.read_safetensors(tmp_path / "t.safetensors")
    assert set(out) == {"a", "i", "bf"}
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["i"], i)
    np.testing.assert_array_equal(out["bf"], bf)


def test_wordpiece_tokenizer_basic_rules():
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "the",
        "un",
        "##aff",
        "##able",
        ",",
        "cafe",
        "(",
        ")",
        "x",
    ]
    tok = datasets.WordPieceTokenizer(vocab)
    # lowercasing, accent stripping, punctuation split, greedy longest match with ##
    assert tok.tokenize("The unaffable, Café (x)") == [
        "the",
        "un",
        "##aff",
        "##able",
        ",",
        "cafe",
        "(",
        "x",
        ")",
    ]
    assert tok.tokenize("unknownword") == ["[UNK]"]
    ids = tok.encode("the x the", max_length=4)
    assert ids.tolist() == [2, 4, 12, 3]  # truncated to max_length - 2 pieces


def test_pydoc_text_is_english_prose():
    text = datasets.pydoc_text()
    assert "type hierarchy" in text.lower() and len(text) > 10_000
