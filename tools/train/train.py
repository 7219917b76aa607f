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

# PyTorch's OpenMP threads sleep when they wait instead of spinning: the data worker shares the two cores
# with them, and spinning threads held its core (half the trainer's time in libgomp's wait loop: 7 s
# per step of the shipped recipe against 2.6 s passive, same losses). Set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

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


def speech_ctc(head, audio_hidden, batch):
    """CTC loss of a linear head reading each spoken turn's audio-token hidden states (frames, D) as the
    words said (labels from layout.SPOKEN_WORDS, 0 = blank): per-frame supervision of what is heard, where
    the answer's loss reaches the audio only through attention."""
    starts, lengths = batch["speech_starts"], batch["speech_lengths"]
    if len(starts) == 0:
        return audio_hidden.sum() * 0
    steps = torch.arange(int(lengths.max()))
    index = torch.minimum(starts[:, None] + steps[None], (starts + lengths - 1)[:, None])  # (turns, frames)
    log_probs = F.log_softmax(head(audio_hidden).float(), -1)[index]                      # (turns, frames, C)
    return F.ctc_loss(log_probs.transpose(0, 1), batch["speech_words"], lengths, batch["speech_word_lengths"],
                      blank=0, zero_infinity=True)


def summary_loss(head, hidden, batch):
    """Cross entropy of a linear head reading, from the last prompt token of each turn with a frame, the
    scene's summary (layout.summary_labels: each kind's colour and cell, or absent): what the one-shape
    questions ("is there a circle", "what colour is the square") need gathered at the answer."""
    logits = head(hidden).float().view(-1, layout.SUMMARY_OUTPUTS, layout.SUMMARY_CLASSES)
    return F.cross_entropy(logits.reshape(-1, layout.SUMMARY_CLASSES), batch["summary_labels"].reshape(-1),
                           ignore_index=-100)


MEL_BANDS = 40  # a speech front end's usual band count for 16 kHz audio


def mel_filters(bands=MEL_BANDS, rate=16000, frame=layout.FRAME):
    """(frame // 2 + 1, bands) triangular filters on the mel scale (mel = 2595 log10(1 + f / 700)) from 0 Hz
    to the Nyquist frequency, each summing the power of the FFT bins under it."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)
    edges_hz = 700 * (10 ** (np.linspace(0, mel(rate / 2), bands + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(frame, 1 / rate)
    lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rise, fall = (bins - lo) / (mid - lo), (hi - bins) / (hi - mid)
    return torch.from_numpy(np.maximum(0, np.minimum(rise, fall)).T.astype(np.float32))


MEL = mel_filters()


def spectrum_loss(head, audio_hidden, batch):
    """Mean squared error of a linear head reading, from each audio token's hidden state, its frame's log-mel
    spectrum (Hann window, MEL_BANDS bands) as the embedder sees the frame (RMS-normalised), standardised per
    band over the batch. A raw frame's linear projection is a bank of filters whose outputs swing with the
    phase of the sound; band energies do not, and they are what speech recognisers start from. The loss asks
    the early layers for them."""
    frames = batch["audio"]
    if len(frames) == 0:
        return audio_hidden.sum() * 0
    frames = gemma4.rms_norm(frames)  # as embed_audio normalises it
    power = torch.fft.rfft(frames * torch.hann_window(frames.shape[-1]), dim=-1).abs().pow(2)
    log_mel = torch.log(power @ MEL + 1e-4)                                                # (frames, bands)
    target = (log_mel - log_mel.mean(0)) / (log_mel.std(0) + 1e-4)
    return F.mse_loss(head(audio_hidden).float(), target)


class AuxHead:
    """A training-only linear head (not part of the model: it only steers training). It reads the hidden
    states after `layer` at the rows batch[rows] and adds weight x loss(head, states, batch) to the loss.
    Its parameters and optimizer live in the training state under `key` and `opt_key` (the names the
    first runs used: "aux_head" / "aux_opt" for the shape head)."""

    def __init__(self, name, key, width, classes, layer, weight, rows, loss, lr):
        self.name, self.key, self.layer, self.weight, self.rows, self.loss = name, key, layer, weight, rows, loss
        self.opt_key = key.replace("head", "opt")
        self.head = torch.nn.Linear(width, classes)
        self.opt = torch.optim.AdamW(self.head.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-8)


def shape_loss(head, hidden, batch):
    """Names, from each image token whose patch holds a shape's centre, that shape."""
    return F.cross_entropy(head(hidden).float(), batch["patch_labels"], ignore_index=-100)


# The turns each head's probe is fitted on: spoken ones for the speech and spectrum heads, ones with a frame
# for the others.
PROBE_MIX = {"speech": [0.6, 0.0, 0.4], "spectrum": [0.6, 0.0, 0.4], "shape": [0.0, 0.5, 0.5],
             "summary": [0.0, 0.5, 0.5]}


def fit_probe(model, h, tok, bank, noise, seed, batches=40, epochs=20, think=False, restate=False):
    """Starts a training-only head as a linear probe of the model as it stands: its hidden states after the
    head's layer on `batches` batches (seeded apart from the training stream) are taken once, frozen, and the
    head alone is fitted to them. A random speech head's CTC loss is ~86 per word (its gradient would swamp
    the answers' ~0.45 in the first joint steps); a probe of the step 24500 model starts at ~3.2."""
    feats, metas = [], []
    model.eval()
    for i in range(batches):
        rng, nrng = random.Random(seed * 7919 + i), np.random.default_rng([seed, 7919, i])
        samples = [layout.make_sample(tok, rng, nrng, bank, noise, BUDGET, mix=PROBE_MIX[h.name], think=think,
                                     restate=restate)
                   for _ in range(16)]
        batch = layout.collate(samples, tok.id("<pad>"), ROW_TOKENS)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            _, hidden = layout.forward_batch(model, batch, {h.name: (h.layer, h.rows)})
        feats.append(hidden[h.name].float())
        metas.append(batch)
    model.train()
    opt = torch.optim.Adam(h.head.parameters(), lr=3e-3)
    for _ in range(epochs):
        for f, batch in zip(feats, metas):
            loss = h.loss(h.head, f, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return loss.item()


def loss_and_stats(model, batch, heads=(), answer_weight=1.0):
    """Next-token cross entropy (answer tokens weighted answer_weight, the mean still over all targets)
    plus each AuxHead's weighted loss. Returns (loss, {head name: its loss})."""
    if not heads:
        logits, hidden = layout.forward_batch(model, batch), {}
    else:
        logits, hidden = layout.forward_batch(model, batch, {h.name: (h.layer, h.rows) for h in heads})
    labels = batch["labels"]
    if answer_weight == 1.0:
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
    else:
        ce = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100, reduction="none")
        weight = 1.0 + (answer_weight - 1.0) * batch["answer_mask"].view(-1).float()
        loss = (ce * weight).sum() / (labels != -100).sum()
    aux_losses = {}
    for h in heads:
        aux_losses[h.name] = h.loss(h.head, hidden[h.name], batch)
        loss = loss + h.weight * aux_losses[h.name]
    return loss, aux_losses


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


def export(model, tok, cfg, out_dir, think=False):
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
                   "suppress_tokens": [tok.id("<image|>"), tok.id("<audio|>")], "do_sample": False,
                   # Conflux's session reads these two: a model trained with --think thinks (the thought
                   # describes the frame) and sees the camera's newest frame again at the end of each turn.
                   **({"enable_thinking": True, "image_at_turn_end": True} if think else {})}, f, indent=2)
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "Gemma4UnifiedImageProcessor", "patch_size": 16,
                   "pooling_kernel_size": 3, "max_soft_tokens": BUDGET, "do_resize": True, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": False, "image_mean": [0.0] * 3,
                   "image_std": [1.0] * 3, "do_convert_rgb": True}, f, indent=2)


class BatchStream(torch.utils.data.IterableDataset):
    """Endless packed training batches, generated in a DataLoader worker."""

    def __init__(self, seed, start_step, batch, work, mix, extra_scenes=0, render_scale=1, extra_describe=0.7,
                 spoken_describe=None, extra_gap=0, think=False, blind_lookups=0, restate=False, digit_bank=False,
                 speed_perturb=1.0):
        self.seed, self.start_step, self.batch, self.work, self.mix = seed, start_step, batch, work, mix
        self.banks = [os.path.join(work, "bank_train.npz")] + ([os.path.join(work, "bank_digits.npz")]
                                                               if digit_bank else [])
        self.think, self.blind_lookups, self.restate = think, blind_lookups, restate
        self.extra_scenes, self.render_scale, self.extra_describe = extra_scenes, render_scale, extra_describe
        self.spoken_describe, self.extra_gap = spoken_describe, extra_gap
        self.speed_perturb = speed_perturb

    def __iter__(self):
        torch.set_num_threads(1)
        layout.DIRECT_RENDER_SCALE = self.render_scale
        layout.SPEED_PERTURB = self.speed_perturb
        tok = build_tokenizer()
        bank = speech.Bank(*self.banks)
        noise = dict(np.load(os.path.join(self.work, "noise_train.npz")))
        step = self.start_step
        while True:
            rng, nrng = random.Random(self.seed * 1000003 + step), np.random.default_rng([self.seed, step])
            samples = [layout.make_sample(tok, rng, nrng, bank, noise, BUDGET, mix=self.mix,
                                          spoken_describe_share=self.spoken_describe, think=self.think,
                                          restate=self.restate)
                       for _ in range(self.batch)]
            # Typed scene questions are short (~50 tokens against ~150 for a spoken turn), so extra ones add
            # many shape, colour and place labels for little compute.
            samples += [layout.make_sample(tok, rng, nrng, bank, noise, BUDGET, turns=1, mix=[0, 1, 0],
                                           describe_share=self.extra_describe, audio_gap_max=self.extra_gap,
                                           think=self.think, restate=self.restate)
                        for _ in range(self.extra_scenes)]
            # Frameless thinking turns (a third spoken): the answer can only be read off the given thought.
            for k in range(self.blind_lookups):
                s = layout.start_sample(tok, True)
                layout.add_blind_lookup_turn(s, tok, rng, bank, noise, spoken=k % 3 == 0, restate=self.restate)
                samples.append(s)
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
    ap.add_argument("--init-from", default="",
                    help="start from this checkpoint folder's model.safetensors (e.g. assets/model, the shipped "
                         "export) at step --start-step, with a fresh optimizer and a new warm-up: fine-tuning "
                         "when the run's train_state.pt is gone")
    ap.add_argument("--start-step", type=int, default=0, help="the step --init-from starts at (its schedule's place)")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=0, help="stop after this much time (0 = all steps)")
    ap.add_argument("--stop-at", type=int, default=0,
                    help="stop (saving state and model) at this step, keeping the --steps schedule (0 = --steps)")
    ap.add_argument("--mix", default=",".join(map(str, layout.DEFAULT_MIX)),
                    help="shares of command, scene and combined turns, e.g. 0.6,0.1,0.3 for a speech-heavy phase")
    ap.add_argument("--extra-scenes", type=int, default=0,
                    help="typed scene questions added to each step's batch (one short turn each)")
    ap.add_argument("--extra-describe", type=float, default=0.7,
                    help="share of the extra scene questions that are 'what do you see' (the rest: any scene "
                         "question, e.g. 'is there a circle', which need one shape looked up)")
    ap.add_argument("--spoken-describe", type=float, default=None,
                    help="share of the spoken scene questions that are 'what do you see' (default: the bank's, "
                         "~1 in 9; at step 24500 the spoken one was 8%% right, teacher-forced, against 75%% typed)")
    ap.add_argument("--extra-gap", type=int, default=0,
                    help="the extra typed scene questions come after 0..N frames of quiet room audio (layout.add_turn)")
    ap.add_argument("--render-scale", type=int, default=1,
                    help="frames not drawn at a camera size are drawn at this multiple of the patch grid (layout.py)")
    ap.add_argument("--aux-shape", type=float, default=0,
                    help="weight of the auxiliary per-patch shape loss (0 = off; loss_and_stats)")
    ap.add_argument("--aux-layer", type=int, default=3, help="layer whose output the auxiliary shape head reads")
    ap.add_argument("--aux-speech", type=float, default=0,
                    help="weight of the auxiliary CTC loss naming the spoken words from the audio tokens (0 = off)")
    ap.add_argument("--aux-speech-layer", type=int, default=4, help="layer whose output the speech head reads")
    ap.add_argument("--aux-spectrum", type=float, default=0,
                    help="weight of the auxiliary loss giving each audio token's log-mel spectrum (0 = off; "
                         "spectrum_loss)")
    ap.add_argument("--aux-spectrum-layer", type=int, default=1, help="layer whose output the spectrum head reads")
    ap.add_argument("--digit-bank", action="store_true",
                    help="commands also draw from WORK/bank_digits.npz (speech.py --digits): every two- and "
                         "three-digit string spoken; the progress check keeps to bank_train.npz")
    ap.add_argument("--speed-perturb", type=float, default=1.0,
                    help="each spoken clip plays at a speed drawn log-uniformly in [1/x, x], which moves its pitch "
                         "and formants by the same ratio (speech.change_speed; 1 = off; the progress check "
                         "hears the clips as rendered)")
    ap.add_argument("--aux-summary", type=float, default=0,
                    help="weight of the auxiliary loss naming, at the last prompt token, each kind's colour and cell "
                         "(or absent) in the turn's frame (0 = off; summary_loss)")
    ap.add_argument("--aux-summary-layer", type=int, default=5, help="layer whose output the summary head reads")
    ap.add_argument("--bf16", type=int, default=1, help="bfloat16 matmuls (autocast); 0 = float32")
    ap.add_argument("--answer-weight", type=float, default=1.0,
                    help="weight of the answer's tokens in the loss against the thought's and others' 1")
    ap.add_argument("--blind-lookups", type=int, default=0,
                    help="N frameless thinking turns per batch whose answer is read off a given thought (--think)")
    ap.add_argument("--think", action="store_true",
                    help="thinking layout (layout.py): the thought describes the frame shown again at turn end")
    ap.add_argument("--restate-question", action="store_true",
                    help="with --think: a question about the frame ends its thought as text (layout.thought_text)")
    ap.add_argument("--keep-exports", action="store_true",
                    help="also keep each periodic export in its own folder, OUT-stepN, for choosing among them")
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
            s = layout.start_sample(tok, args.think)
            layout.add_turn(s, tok, vrng, vnrng, bank, noise, BUDGET, kind, think=args.think,
                            restate=args.restate_question)
            check[kind].append(s)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "pos_embedding" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    D = cfg["text_config"]["hidden_size"]
    heads = []  # the training-only heads; keys as earlier runs saved them, so their states resume
    if args.aux_shape > 0:
        heads.append(AuxHead("shape", "aux_head", D, len(tasks.SHAPES), args.aux_layer, args.aux_shape,
                             "patch_rows", shape_loss, args.lr))
    if args.aux_speech > 0:
        heads.append(AuxHead("speech", "speech_head", D, len(layout.SPOKEN_WORDS) + 1, args.aux_speech_layer,
                             args.aux_speech, "audio_rows", speech_ctc, args.lr))
    if args.aux_spectrum > 0:
        heads.append(AuxHead("spectrum", "spectrum_head", D, MEL_BANDS, args.aux_spectrum_layer, args.aux_spectrum,
                             "audio_rows", spectrum_loss, args.lr))
    if args.aux_summary > 0:
        heads.append(AuxHead("summary", "summary_head", D, layout.SUMMARY_OUTPUTS * layout.SUMMARY_CLASSES,
                             args.aux_summary_layer, args.aux_summary, "summary_rows", summary_loss, args.lr))
    warmup = 200
    warm_from = 0  # the step the warm-up counts from: 0, or where --init-from's fresh optimizer starts
    schedule = lambda step: min(1.0, (step - warm_from + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps)))
    state_path = os.path.join(args.work, "train_state.pt")
    step = 0
    if args.init_from and args.resume:
        sys.exit("train.py: --init-from starts a new optimizer; it does not go with --resume")
    restored = set()  # keys of the training-only heads whose saved state was loaded
    if args.init_from:
        # The export holds the weights only (bf16, the released layout); Adam's moments start at zero,
        # so the learning rate warms up again from the start step.
        model.load_safetensors(os.path.join(args.init_from, "model.safetensors"))
        step = warm_from = args.start_step
        print(f"initialised from {args.init_from} at step {step}")
    elif args.resume and os.path.exists(state_path):
        st = torch.load(state_path)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        torch.set_rng_state(st["torch_rng"])
        for h in heads:
            if h.key in st:
                h.head.load_state_dict(st[h.key])
                h.opt.load_state_dict(st[h.opt_key])
                restored.add(h.key)
        print(f"resumed at step {step}")
    # A trained model: a head without a saved state starts as a linear probe of it. Always the speech head
    # (a random CTC head swamps the answers) and the spectrum head (its first gradients then ask the layers
    # only for what a linear read of them misses, not to fit a random head); the others (cross entropy ~1.1
    # from random) only when starting from an export, since train.sh's phase 9 began its shape head at
    # random on resuming.
    if step > 0:
        for h in heads:
            if h.key not in restored and (h.name in ("speech", "spectrum") or args.init_from):
                fitted = fit_probe(model, h, tok, bank, noise, args.seed, think=args.think,
                                   restate=args.restate_question)
                print(f"{h.name} head fitted to the model at step {step}: loss {fitted:.3f}")

    t0 = time.time()
    losses, aux_losses = [], {h.name: [] for h in heads}
    # Samples are generated and packed in a worker process (seeded from --seed and the step it resumes
    # at, so a run is reproducible) while the main process trains.
    batches = torch.utils.data.DataLoader(
        BatchStream(args.seed, step, args.batch, args.work, [float(x) for x in args.mix.split(",")],
                    args.extra_scenes, args.render_scale, args.extra_describe, args.spoken_describe, args.extra_gap,
                    args.think, args.blind_lookups, args.restate_question, args.digit_bank,
                    args.speed_perturb),
        batch_size=None, num_workers=1, prefetch_factor=4)
    last = min(args.steps, args.stop_at) if args.stop_at else args.steps
    for batch in batches:
        if step >= last:
            break
        for g in opt.param_groups + [g for h in heads for g in h.opt.param_groups]:
            g["lr"] = args.lr * schedule(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(args.bf16)):
            loss, head_losses = loss_and_stats(model, batch, heads, args.answer_weight)
        opt.zero_grad(set_to_none=True)
        for h in heads:
            h.opt.zero_grad(set_to_none=True)
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        for h in heads:
            h.opt.step()
        losses.append(loss.item())
        for h in heads:
            aux_losses[h.name].append(head_losses[h.name].item())
        step += 1
        if step % 25 == 0 or step <= 5:
            el = time.time() - t0
            shown = "".join(f" ({h.name} head {np.mean(aux_losses[h.name][-25:]):.3f})" for h in heads)
            print(f"step {step} loss {np.mean(losses[-25:]):.4f}{shown} lr {opt.param_groups[0]['lr']:.2e} "
                  f"T {batch['ids'].shape[1]} {el / 60:.1f} min", flush=True)
        done = bool(args.minutes) and (time.time() - t0) / 60 >= args.minutes
        done = done or step == last
        if step % args.eval_every == 0 or step == args.steps or done:
            print(f"step {step} check exact match {exact_match(model, check, tok.id('<pad>'))}", flush=True)
            state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "torch_rng": torch.get_rng_state()}
            for h in heads:
                state[h.key] = h.head.state_dict()
                state[h.opt_key] = h.opt.state_dict()
            torch.save(state, state_path)
            export(model, tok, cfg, args.out, args.think)
            if args.keep_exports:
                export(model, tok, cfg, f"{os.path.normpath(args.out)}-step{step}", args.think)
        if done:
            break
    print(f"trained {step} steps in {(time.time() - t0) / 60:.1f} min")
    export(model, tok, cfg, args.out, args.think)
    print(f"exported to {args.out}")


if __name__ == "__main__":
    main()
