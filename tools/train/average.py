"""Averages the weights of several exports of one training run into a new checkpoint folder.

    /usr/bin/python3 tools/train/average.py OUT EXPORT [EXPORT ...]

Exports a few hundred steps apart on one run at a constant-ish learning rate lie in one basin; their
mean is a smoother model than any one of them (the release after step 24500 is the mean of steps 25250,
25500 and 25750: over ten held-out sets it beat each of them). Each weight is averaged in float32 and
written as bf16, as train.py exports; the other files (config, tokenizer, generation and preprocessor
settings) are copied from the first export, and every export must have the same tensors and shapes.
"""
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gemma4  # noqa: E402
import tokenizer_build  # noqa: E402
from train import build_tokenizer  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: average.py OUT EXPORT [EXPORT ...]")
    out, exports = sys.argv[1], sys.argv[2:]
    tok = build_tokenizer()
    cfg = gemma4.small_config(tokenizer_build.VOCAB_SIZE, tok.vocab)
    total = None
    for path in exports:
        model = gemma4.Gemma4Unified(cfg)
        model.load_safetensors(os.path.join(path, "model.safetensors"))
        weights = {name: t.detach().float() for name, t in model.named_tensors()}
        if total is None:
            total = {name: w.clone() for name, w in weights.items()}
        else:
            for name, w in weights.items():
                total[name] += w
    mean = gemma4.Gemma4Unified(cfg)
    with torch.no_grad():
        for name, t in mean.named_tensors():
            t.copy_(total[name] / len(exports))
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(exports[0]):
        if f != "model.safetensors" and os.path.isfile(os.path.join(exports[0], f)):
            shutil.copy(os.path.join(exports[0], f), os.path.join(out, f))
    mean.save_safetensors(os.path.join(out, "model.safetensors"), "BF16")
    print(f"averaged {len(exports)} exports into {out}")


if __name__ == "__main__":
    main()
