"""A lookup-only training phase: the model learns to answer a question about one shape from a given thought.

    /usr/bin/python3 tools/train/lookups.py --init-from DIR --out DIR --steps 600 [--restate-question]

Every sample is one frameless thinking turn (layout.add_blind_lookup_turn, typed): the question, then the
scene's description given as the thought, and the answer, which alone is learned. Mixed into the full recipe
such turns stayed at ~60% teacher-forced; trained alone, the copy ("find the asked shape in the thought and
answer what stands with it") forms suddenly after some hundred steps (model card). Everything else is
forgotten meanwhile, so train.py's recipe runs after this phase (tools/train.sh, phase 13).

Progress is teacher-forced exact match on 192 held-out lookups, every 25 steps. Seeded: held-out samples
from --seed + 73, training samples from --seed.
"""
import argparse
import os
import random
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in train.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gemma4  # noqa: E402
import layout  # noqa: E402
import tokenizer_build  # noqa: E402
import train  # noqa: E402

BATCH = 48  # one lookup per row; a turn is ~60 tokens, so a step costs ~1.2 s on 2 cores
WARMUP = 20  # steps of linear warm-up from a fresh optimizer


def lookups(tok, rng, n, restate):
    out = []
    for _ in range(n):
        s = layout.start_sample(tok, think=True)
        layout.add_blind_lookup_turn(s, tok, rng, None, None, spoken=False, restate=restate)
        out.append(s)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init-from", required=True, help="an export (train.py's output folder) to start from")
    ap.add_argument("--out", required=True, help="where the model is exported at the end")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-3, help="constant after the warm-up")
    ap.add_argument("--restate-question", action="store_true",
                    help="the thought ends with the question (layout.thought_text)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    tok = train.build_tokenizer()
    cfg = gemma4.small_config(tokenizer_build.VOCAB_SIZE, tok.vocab)
    model = gemma4.Gemma4Unified(cfg)
    model.load_safetensors(os.path.join(args.init_from, "model.safetensors"))
    held_out = {"lookup": lookups(tok, random.Random(args.seed + 73), 192, args.restate_question)}
    pad = tok.id("<pad>")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rng = random.Random(args.seed)
    print(f"step 0 held-out lookups {train.exact_match(model, held_out, pad)['lookup']:.3f}", flush=True)
    t0, losses = time.time(), []
    for step in range(1, args.steps + 1):
        batch = layout.collate(lookups(tok, rng, BATCH, args.restate_question), pad)
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, step / WARMUP)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = train.loss_and_stats(model, batch)  # only the answer is a target in these turns
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 25 == 0:
            right = train.exact_match(model, held_out, pad)["lookup"]
            print(f"step {step} loss {np.mean(losses[-25:]):.4f} held-out lookups {right:.3f} "
                  f"{(time.time() - t0) / 60:.1f} min", flush=True)
    train.export(model, tok, cfg, args.out, think=True)
    print(f"exported {args.out}")


if __name__ == "__main__":
    main()
