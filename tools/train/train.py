"""Trains the bundled small model from scratch on generated data and exports it.

    /usr/bin/python3 tools/train/train.py --out assets/model   (tools/train.sh runs every step)

Seeded: the same seed, steps and thread count give the same model. Checkpoints go to tools/train/work/ so
a stopped run resumes with --resume. Progress (loss, teacher-forced exact match per task on held-out
samples) is printed as it trains.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gemma4  # noqa: E402
import layout  # noqa: E402
import speech  # noqa: E402
import tasks  # noqa: E402
import tokenizer_build  # noqa: E402

ROW_TOKENS = 384  # packed row length in training
BUDGET = 16  # image soft tokens per frame: a 640x480 frame becomes 144x192 pixels, 3x4 patches


def build_tokenizer():
    return tokenizer_build.SmallTokenizer(tasks.vocabulary_words())


def loss_and_stats(model, batch, aux=None):
    """Next-token cross entropy; with aux = (head, layer, weight) plus weight x the cross entropy of a
    linear head naming, from the hidden state after that layer of each image token whose patch holds a
    shape's centre, that shape. The head is not part of the model: it only steers training. Returns (loss,
    auxiliary loss or None)."""
    if aux is None:
        logits = layout.forward_batch(model, batch)
    else:
        logits, hidden = layout.forward_batch(model, batch, hidden_after=aux[1])
    labels = batch["labels"]
    loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
    if aux is None:
        return loss, None
    aux_loss = F.cross_entropy(aux[0](hidden).float(), batch["patch_labels"], ignore_index=-100)
    return loss + aux[2] * aux_loss, aux_loss


@torch.no_grad()
def exact_match(model, samples_by_task, pad_id):
    """Teacher-forced exact match: every answer token is the argmax. Equal to greedy decoding's exact match."""
    model.eval()
    out = {}
    for task, samples in samples_by_task.items():
        ok = 0
        for i in range(0, len(samples), 16):
            chunk = samples[i:i + 16]
            batch = layout.collate(chunk, pad_id)
            logits = layout.forward_batch(model, batch)
            pred = logits.argmax(-1)
            labels = batch["labels"]
            wrong = ((pred != labels) & (labels != -100)).any(dim=1)
            ok += int((~wrong).sum())
        out[task] = ok / len(samples)
    model.train()
    return out


def export(model, tok, cfg, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    model.save_safetensors(os.path.join(out_dir, "model.safetensors"), "BF16")
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                   "add_bos_token": True, "add_eos_token": False}, f, indent=2)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": tok.id("<bos>"), "pad_token_id": tok.id("<pad>"),
                   "eos_token_id": [tok.id("<eos>"), tok.id("<turn|>")],
                   "suppress_tokens": [tok.id("<image|>"), tok.id("<audio|>")], "do_sample": False}, f, indent=2)
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "Gemma4UnifiedImageProcessor", "patch_size": 16,
                   "pooling_kernel_size": 3, "max_soft_tokens": BUDGET, "do_resize": True, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": False, "image_mean": [0.0] * 3,
                   "image_std": [1.0] * 3, "do_convert_rgb": True}, f, indent=2)


class BatchStream(torch.utils.data.IterableDataset):
    """Endless packed training batches, generated in a DataLoader worker."""

    def __init__(self, seed, start_step, batch, work, mix, extra_scenes=0, render_scale=1):
        self.seed, self.start_step, self.batch, self.work, self.mix = seed, start_step, batch, work, mix
        self.extra_scenes, self.render_scale = extra_scenes, render_scale

    def __iter__(self):
        torch.set_num_threads(1)
        layout.DIRECT_RENDER_SCALE = self.render_scale
        tok = build_tokenizer()
        bank = speech.Bank(os.path.join(self.work, "bank_train.npz"))
        noise = dict(np.load(os.path.join(self.work, "noise_train.npz")))
        step = self.start_step
        while True:
            rng, nrng = random.Random(self.seed * 1000003 + step), np.random.default_rng([self.seed, step])
            samples = [layout.make_sample(tok, rng, nrng, bank, noise, BUDGET, mix=self.mix) for _ in range(self.batch)]
            # Typed scene questions are short (~50 tokens against ~150 for a spoken turn), so extra ones add
            # many shape, colour and place labels for little compute.
            samples += [layout.make_sample(tok, rng, nrng, bank, noise, BUDGET, turns=1, mix=[0, 1, 0])
                        for _ in range(self.extra_scenes)]
            yield layout.collate(samples, tok.id("<pad>"), ROW_TOKENS)
            step += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "assets", "model"))
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=0, help="stop after this much time (0 = all steps)")
    ap.add_argument("--stop-at", type=int, default=0,
                    help="stop (saving state and model) at this step, keeping the --steps schedule (0 = --steps)")
    ap.add_argument("--mix", default=",".join(map(str, layout.DEFAULT_MIX)),
                    help="shares of command, scene and combined turns, e.g. 0.6,0.1,0.3 for a speech-heavy phase")
    ap.add_argument("--extra-scenes", type=int, default=0,
                    help="typed scene questions added to each step's batch (one short turn each)")
    ap.add_argument("--render-scale", type=int, default=1,
                    help="frames not drawn at a camera size are drawn at this multiple of the patch grid (layout.py)")
    ap.add_argument("--aux-shape", type=float, default=0,
                    help="weight of the auxiliary per-patch shape loss (0 = off; loss_and_stats)")
    ap.add_argument("--aux-layer", type=int, default=3, help="layer whose output the auxiliary head reads")
    ap.add_argument("--bf16", type=int, default=1, help="bfloat16 matmuls (autocast); 0 = float32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    tok = build_tokenizer()
    cfg = gemma4.small_config(tokenizer_build.VOCAB_SIZE, tok.vocab)
    model = gemma4.Gemma4Unified(cfg)
    n_params = sum(t.numel() for _, t in model.named_tensors())
    print(f"model: {n_params / 1e6:.2f}M parameters, vocabulary {tok.n_learned} used of {tokenizer_build.VOCAB_SIZE}")

    bank = speech.Bank(os.path.join(args.work, "bank_train.npz"))
    noise = dict(np.load(os.path.join(args.work, "noise_train.npz")))
    # Held-out progress check: fixed samples from the training bank's distribution (not the eval set).
    vrng, vnrng = random.Random(99), np.random.default_rng(99)
    check = {}
    for kind in ["command", "scene", "combined"]:
        check[kind] = []
        for _ in range(48):
            s = layout.Sample()
            s.token(tok.id("<bos>"))
            layout.add_turn(s, tok, vrng, vnrng, bank, noise, BUDGET, kind)
            check[kind].append(s)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "pos_embedding" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    aux = None
    if args.aux_shape > 0:
        head = torch.nn.Linear(cfg["text_config"]["hidden_size"], len(tasks.SHAPES))
        aux = (head, args.aux_layer, args.aux_shape)
        aux_opt = torch.optim.AdamW(head.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    warmup = 200
    schedule = lambda step: min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps)))
    state_path = os.path.join(args.work, "train_state.pt")
    step = 0
    if args.resume and os.path.exists(state_path):
        st = torch.load(state_path)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        torch.set_rng_state(st["torch_rng"])
        if aux is not None and "aux_head" in st:
            aux[0].load_state_dict(st["aux_head"])
            aux_opt.load_state_dict(st["aux_opt"])
        print(f"resumed at step {step}")

    t0 = time.time()
    losses, aux_losses = [], []
    # Samples are generated and packed in a worker process (seeded from --seed and the step it resumes
    # at, so a run is reproducible) while the main process trains.
    batches = torch.utils.data.DataLoader(
        BatchStream(args.seed, step, args.batch, args.work, [float(x) for x in args.mix.split(",")],
                    args.extra_scenes, args.render_scale), batch_size=None, num_workers=1, prefetch_factor=4)
    last = min(args.steps, args.stop_at) if args.stop_at else args.steps
    for batch in batches:
        if step >= last:
            break
        for g in opt.param_groups + (aux_opt.param_groups if aux else []):
            g["lr"] = args.lr * schedule(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(args.bf16)):
            loss, aux_loss = loss_and_stats(model, batch, aux)
        opt.zero_grad(set_to_none=True)
        if aux:
            aux_opt.zero_grad(set_to_none=True)
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if aux:
            aux_opt.step()
        losses.append(loss.item())
        aux_losses.append(aux_loss.item() if aux else 0.0)
        step += 1
        if step % 25 == 0 or step <= 5:
            el = time.time() - t0
            shape = f" (shape head {np.mean(aux_losses[-25:]):.3f})" if aux else ""
            print(f"step {step} loss {np.mean(losses[-25:]):.4f}{shape} lr {opt.param_groups[0]['lr']:.2e} "
                  f"T {batch['ids'].shape[1]} {el / 60:.1f} min", flush=True)
        done = bool(args.minutes) and (time.time() - t0) / 60 >= args.minutes
        done = done or step == last
        if step % args.eval_every == 0 or step == args.steps or done:
            print(f"step {step} check exact match {exact_match(model, check, tok.id('<pad>'))}", flush=True)
            state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "torch_rng": torch.get_rng_state()}
            if aux:
                state.update(aux_head=aux[0].state_dict(), aux_opt=aux_opt.state_dict())
            torch.save(state, state_path)
            export(model, tok, cfg, args.out)
        if done:
            break
    print(f"trained {step} steps in {(time.time() - t0) / 60:.1f} min")
    export(model, tok, cfg, args.out)
    print(f"exported to {args.out}")


if __name__ == "__main__":
    main()
