"""Writes session recordings (docs/recording-format.md) of spoken questions and shown scenes:

  eval set   one recording per item, with expected.json beside it; voices from the held-out variants and
             scenes from a seed training never uses, so `conflux eval` measures generalisation
  demo       one recording of several questions about changing scenes (assets/demo, played by `conflux`
             when there is no microphone or camera)

    /usr/bin/python3 tools/train/make_recordings.py eval --out tests/data/eval-set --per-task 12
    /usr/bin/python3 tools/train/make_recordings.py demo --out assets/demo
"""
import argparse
import json
import os
import random
import shutil
import struct
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scenes  # noqa: E402
import speech  # noqa: E402
import tasks  # noqa: E402
import train  # noqa: E402

RATE, FRAME = 16000, 640
CAMERA_SIZE = (256, 192)  # small camera frames keep the set small; the engine resizes them to 192x144
CAMERA_INTERVAL_MS = 1000  # one frame a second: what the session samples at its default rate
EVAL_SEED = 20261128      # scenes and noise: a stream training never draws from


def write_png(path, img):
    H, W, _ = img.shape
    # PNG filter 1 (Sub: each byte minus the one a pixel to its left) makes smooth backgrounds compress.
    flat = img.reshape(H, W * 3).astype(np.int16)
    sub = flat.copy()
    sub[:, 3:] -= flat[:, :-3]
    raw = b"".join(b"\1" + (sub[y] & 0xFF).astype(np.uint8).tobytes() for y in range(H))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def session_settings(max_answer_tokens):
    """The settings object a live session of the bundled model records (session_settings_json's layout)."""
    tok = train.build_tokenizer()
    return {
        "model": {"dir": "assets/model", "model_type": "gemma4_unified", "weight_dtype": "BF16"},
        "runtime": {"image_attention": "hf", "max_chunk": 512, "max_context": 8192},
        "session": {
            "audio_queue_seconds": 30.0, "barge_in": True, "commentary_interval_s": 0.0, "context_budget": 0,
            "encoder_baseline": False, "image_budget": train.BUDGET, "max_answer_tokens": max_answer_tokens,
            "sampling": {"seed": 0, "stop_tokens": [tok.id("<eos>"), tok.id("<turn|>")],
                         "suppress_tokens": [tok.id("<image|>"), tok.id("<audio|>")], "temperature": 0.0,
                         "top_k": 0, "top_p": 1.0},
            "system_prompt": "",
            "vad": {"enabled": True, "hangover_ms": 600, "likelihood": 1, "min_speech_ms": 120, "preroll_ms": 200, "min_snr_db": 10.0},
            "video_fps": 1.0, "video_queue_frames": 4, "video_queue_waits": True},
    }


class Writer:
    """Builds one recording: an audio track, camera frames at times, typed texts at times."""

    def __init__(self):
        self.audio = np.zeros(0, np.float32)
        self.frames = []  # (t_ms, image)
        self.texts = []   # (t_ms, text)

    def add_audio(self, x):
        self.audio = np.concatenate([self.audio, x.astype(np.float32)])

    def show(self, t0_ms, t1_ms, shapes, nrng):
        # Mild sensor noise: PNG cannot compress noise, and the set lives in the repository.
        base = scenes.render(shapes, nrng, CAMERA_SIZE, max_noise=1.5)
        t = t0_ms
        while t < t1_ms:
            self.frames.append((t, base))
            t += CAMERA_INTERVAL_MS

    def save(self, out, settings):
        if os.path.exists(out):
            shutil.rmtree(out)
        os.makedirs(os.path.join(out, "frames"))
        n = len(self.audio) // FRAME * FRAME
        self.audio[:n].astype("<f4").tofile(os.path.join(out, "audio.f32"))
        events = [(t, 1, "video", img) for t, img in self.frames] + [(t, 2, "text", s) for t, s in self.texts]
        events.sort(key=lambda e: (e[0], e[1]))
        lines, sample, k = [], 0, 0

        def audio_until(end):  # audio lines up to sample `end`, at most one second each
            nonlocal sample
            while sample < end:
                m = min(end - sample, RATE)
                lines.append({"kind": "audio", "sample": sample, "n": m, "t_ms": sample * 1000.0 / RATE})
                sample += m

        for t, _, kind, value in events:
            # an audio frame goes first when it ends by the item's time (the session's ordering rule)
            audio_until(min(n, int(t * RATE / 1000.0) // FRAME * FRAME))
            if kind == "video":
                k += 1
                name = f"frames/{k:06d}.png"
                write_png(os.path.join(out, name), value)
                lines.append({"kind": "video", "file": name, "width": value.shape[1], "height": value.shape[0],
                              "t_ms": float(t)})
            else:
                lines.append({"kind": "text", "text": value, "t_ms": float(t)})
        audio_until(n)
        with open(os.path.join(out, "timeline.jsonl"), "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        with open(os.path.join(out, "session.json"), "w") as f:
            json.dump({"format": "conflux-recording", "version": 1,
                       "origin": {"steady_ns": 0, "utc": "2026-11-28T00:00:00Z"},
                       "audio": {"file": "audio.f32", "sample_rate": RATE, "channels": 1,
                                 "sample_format": "float32le", "frame_samples": FRAME},
                       "settings": settings}, f, indent=1)


def speech_track(text, rng, noise, snr_db, voice=None, lead_s=0.5, tail_s=1.2):
    """Float32 audio: lead_s of room, the words, tail_s of room, with one continuous noise track at snr_db
    (a steady room, as a microphone hears it; the VAD ends the turn ~0.4 s after the words)."""
    kw = voice or speech.random_render_args(rng, speech.HELD_OUT_VARIANTS)
    clean = speech.render(text, **kw).astype(np.float32) / 32768.0 * rng.uniform(0.3, 1.0)
    clean = clean[int(speech.PAD_BEFORE_S * RATE):len(clean) - int(speech.PAD_AFTER_S * RATE)]
    x = np.concatenate([np.zeros(int(lead_s * RATE), np.float32), clean, np.zeros(int(tail_s * RATE), np.float32)])
    track = noise[rng.choice(speech.NOISE_KINDS)]
    start = rng.randrange(len(track) - len(x))
    n = track[start:start + len(x)]
    power = np.mean(clean[np.abs(clean) > 0.02 * np.abs(clean).max()] ** 2)
    x = x + n * np.sqrt(power / np.mean(n ** 2) / 10 ** (snr_db / 10))
    return np.clip(x, -1, 1).astype(np.float32), f"{kw['accent']}+{kw['variant']}"


def background(seconds, noise, rng, level=0.002):
    track = noise[rng.choice(speech.NOISE_KINDS)]
    start = rng.randrange(len(track) - int(seconds * RATE))
    x = track[start:start + int(seconds * RATE)]
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * level).astype(np.float32)


def eval_item(task, rng, nrng, noise):
    """One recording of the eval set and its expected answer."""
    w = Writer()
    shapes = tasks.random_scene(rng)
    expected = {"task": task}
    if task == "scene":
        w.add_audio(background(1.6, noise, rng))
        w.texts.append((rng.uniform(400, 900), tasks.SCENE_QUESTION))
        expected.update(question=tasks.SCENE_QUESTION, answer=tasks.describe(shapes))
    elif task == "lookup":  # a combined task's question typed: what is seen, apart from what is heard
        question = rng.choice(tasks.SCENE_QUESTIONS[1:])
        while tasks.answer_question(question, shapes) is None:  # asks about a kind shown twice
            question = rng.choice(tasks.SCENE_QUESTIONS[1:])
        w.add_audio(background(1.6, noise, rng))
        w.texts.append((rng.uniform(400, 900), question))
        expected.update(question=question, answer=tasks.answer_question(question, shapes))
    else:
        if task == "command":
            spoken, answer = tasks.random_command(rng)
        else:
            spoken, answer = tasks.random_combined(rng, shapes)
        x, voice = speech_track(spoken, rng, noise, rng.choice([40, 30, 25]), lead_s=rng.uniform(0.4, 0.7))
        w.add_audio(x)
        expected.update(question=spoken, answer=answer, voice=voice)
    if task != "command" or rng.random() < 0.5:  # commands are also given with the camera on
        w.show(0, len(w.audio) * 1000.0 / RATE, shapes, nrng)
        expected["scene"] = [s.to_json() | {"position": tasks.POSITION_PHRASES[s.cell]}
                             for s in sorted(shapes, key=lambda s: s.cell)]
    return w, expected


EVAL_TASKS = ["command", "scene", "combined"]  # "lookup" (typed one-shape questions) on request


def make_eval(out, per_task, seed, task_names=EVAL_TASKS):
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    noise_path = os.path.join(HERE, "work", f"noise_eval_{seed}.npz")
    if not os.path.exists(noise_path):
        os.makedirs(os.path.dirname(noise_path), exist_ok=True)
        speech.make_noise(noise_path, 60, seed)
    noise = dict(np.load(noise_path))
    os.makedirs(out, exist_ok=True)
    settings = session_settings(48)
    i = 0
    for task in task_names:
        for _ in range(per_task):
            w, expected = eval_item(task, rng, nrng, noise)
            item = os.path.join(out, f"{i:04d}-{task}")
            w.save(item, settings)
            with open(os.path.join(item, "expected.json"), "w") as f:
                json.dump(expected, f, indent=1)
            i += 1
    print(f"wrote {i} recordings to {out}")


def make_demo(out, seed):
    """Four turns over ~30 s: what do you see, a colour question, a count, a spoken command."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    noise = dict(np.load(os.path.join(HERE, "work", "noise_train.npz")))
    w = Writer()
    script = [
        ([tasks.Shape("red", "circle", (0, 0)), tasks.Shape("blue", "square", (1, 1))], "what do you see"),
        ([tasks.Shape("yellow", "triangle", (2, 2)), tasks.Shape("green", "circle", (0, 1))], "what colour is the triangle"),
        ([tasks.Shape("purple", "square", (0, 2)), tasks.Shape("orange", "circle", (2, 0)),
          tasks.Shape("green", "triangle", (1, 1))], "how many shapes are there"),
        ([tasks.Shape("orange", "circle", (1, 2))], "where is the circle"),
    ]
    voice = dict(accent="en-us", variant="f3", speed=150, pitch=55, lowpass=7900, highpass=50, reverb=0)
    for shapes, question in script:
        t0 = len(w.audio) * 1000.0 / RATE
        x, _ = speech_track(question, rng, noise, 35, voice=voice, lead_s=1.0, tail_s=3.5)  # the tail: time to answer
        w.add_audio(x)
        w.show(t0, len(w.audio) * 1000.0 / RATE, shapes, nrng)
    w.save(out, session_settings(48))
    print(f"wrote the demo recording to {out} ({len(w.audio) / RATE:.1f} s, {len(w.frames)} frames)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["eval", "demo"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-task", type=int, default=12)
    ap.add_argument("--seed", type=int, default=EVAL_SEED)
    ap.add_argument("--tasks", default=",".join(EVAL_TASKS),
                    help="eval tasks in order; 'lookup' adds the combined questions typed, to tell seeing from "
                         "hearing (listed last, it leaves the other items as they were)")
    args = ap.parse_args()
    if args.what == "eval":
        make_eval(args.out, args.per_task, args.seed, args.tasks.split(","))
    else:
        make_demo(args.out, args.seed)


if __name__ == "__main__":
    main()
