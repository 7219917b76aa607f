"""Writes the parity cases for the shipped model: fixed inputs and the logits PyTorch computes for them, in
the case format of ../shared/reference/README.md, plus the ids the Python tokenizer gives for fixed texts.
tests/engine/small_model_test.cc checks that the C++ engine reproduces both.

    /usr/bin/python3 tools/train/parity.py --model assets/model --out tests/data/small-model
"""
import argparse
import json
import os
import random
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gemma4  # noqa: E402
import layout  # noqa: E402
import scenes  # noqa: E402
import speech  # noqa: E402
import tasks  # noqa: E402
import train  # noqa: E402

PROMPT_END = "<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"


def write_case(out, name, segments, model, tok):
    """segments: ("text", str) | ("image", uint8 HxWx3) | ("audio", float32 samples). Runs the model on the
    whole sequence and writes <name>.json with logits for every text position."""
    s = layout.Sample()
    seg_json, media = [], 0
    for kind, value in segments:
        if kind == "text":
            ids = tok.encode(value)
            seg_json.append({"tokens": ids})
            for i in ids:
                s.token(i)
        elif kind == "image":
            fname = f"{name}.{media}.rgb"
            value.tofile(os.path.join(out, fname))
            H, W, _ = value.shape
            seg_json.append({"image": fname, "width": W, "height": H, "max_soft_tokens": train.BUDGET})
            s.image(tok, *scenes.preprocess(value, train.BUDGET))
            media += 1
        else:
            fname = f"{name}.{media}.f32"
            value.astype("<f4").tofile(os.path.join(out, fname))
            seg_json.append({"audio": fname, "sample_rate": 16000, "n_samples": int(len(value))})
            n = -(-len(value) // layout.FRAME)
            frames = np.zeros((n, layout.FRAME), np.float32)
            frames.reshape(-1)[:len(value)] = value
            s.token(tok.id("<|audio>"))
            for f in frames:
                s.audio_frame(tok, f)
            s.token(tok.id("<audio|>"))
            media += 1
    batch = layout.collate([s], tok.id("<pad>"))
    with torch.no_grad():
        logits = layout.forward_batch(model, batch)[0]
    soft = {tok.id("<|image|>"), tok.id("<|audio|>")}
    rows = [t for t, i in enumerate(s.ids) if i not in soft]
    logits[rows].numpy().astype("<f4").tofile(os.path.join(out, f"{name}.logits.f32"))
    case = {"name": name, "segments": seg_json, "evaluated_tokens": s.ids, "logits": f"{name}.logits.f32",
            "logits_shape": [len(rows), logits.shape[-1]], "logit_positions": rows,
            "greedy_next": int(logits[-1].argmax())}
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(case, f)
    return case


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(HERE, "..", "..", "assets", "model"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "tests", "data", "small-model"))
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.out, exist_ok=True)
    tok = train.build_tokenizer()
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    model = gemma4.Gemma4Unified(cfg)
    model.load_safetensors(os.path.join(args.model, "model.safetensors"))
    model.eval()

    rng, nrng = random.Random(7), np.random.default_rng(7)
    th, tw = scenes.plan_resize(640, 480, train.BUDGET)
    scene = [tasks.Shape("red", "circle", (0, 0)), tasks.Shape("blue", "square", (1, 1))]
    image = scenes.render(scene, nrng, (tw, th))  # already at the budget's size: no resize on either side
    args_voice = dict(accent="en-us", variant="f3", speed=160, pitch=50, lowpass=7900, highpass=50, reverb=0)
    question = speech.render("what colour is the circle", **args_voice).astype(np.float32) / 32768.0
    command = speech.render("four seven", **args_voice).astype(np.float32) / 32768.0
    cut = lambda x: x[int(0.6 * 16000):len(x) - int(0.7 * 16000)]  # keep some silence around the words
    header = "<bos><|turn>user\n"
    write_case(args.out, "text", [("text", header + tasks.SCENE_QUESTION + PROMPT_END + "a red")], model, tok)
    write_case(args.out, "image", [("text", header), ("image", image), ("text", tasks.SCENE_QUESTION + PROMPT_END)],
               model, tok)
    write_case(args.out, "audio", [("text", header), ("audio", cut(command)), ("text", PROMPT_END)], model, tok)
    write_case(args.out, "mixed", [("text", header), ("image", image), ("audio", cut(question)[:20000]),
                                   ("image", image), ("audio", cut(question)[20000:]), ("text", PROMPT_END)],
               model, tok)
    texts = sorted({tasks.describe(tasks.random_scene(rng)) for _ in range(50)} | set(tasks.SCENE_QUESTIONS) |
                   {a for _, a in tasks.PHRASE_COMMANDS} | {"4 7 1", "there is no square", "Hello, wörld!"})
    with open(os.path.join(args.out, "tokens.json"), "w") as f:
        json.dump([{"text": t, "ids": tok.encode(t)} for t in texts], f, ensure_ascii=False, indent=0)
    print(f"wrote parity cases to {args.out}")


if __name__ == "__main__":
    main()
