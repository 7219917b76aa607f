"""Spoken task utterances rendered with espeak-ng (many accents, voice variants, speeds and pitches) and
processed with sox (band limits, reverberation, silence padding), plus sox-synthesised background noise.

The training bank and the held-out set use disjoint voice variants, so evaluation hears voices the model
never heard. Audio is 16 kHz mono int16 throughout.
"""
import os
import random
import subprocess
from multiprocessing import Pool

import numpy as np

import tasks

RATE = 16000
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc"]
# Voice variants heard only in the held-out set (evaluation) and never in training.
HELD_OUT_VARIANTS = ["f3", "m5", "klatt4", "belinda", "Andy", "iven3", "norbert", "michel", "linda", "john"]
# Variants left out entirely: whispers carry no voicing, so the VAD and the task are not meant for them.
EXCLUDED_VARIANTS = {"whisper", "whisperf"}
PAD_BEFORE_S, PAD_AFTER_S = 0.8, 1.2  # silence around each utterance; training cuts what it needs
NOISE_KINDS = ["whitenoise", "pinknoise", "brownnoise"]


def variants():
    root = "/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v"
    return sorted(v for v in os.listdir(root) if v not in EXCLUDED_VARIANTS)


def train_variants():
    return [v for v in variants() if v not in HELD_OUT_VARIANTS]


def render(text, accent, variant, speed, pitch, lowpass, highpass, reverb):
    """One utterance: int16 samples at 16 kHz with PAD_BEFORE_S / PAD_AFTER_S of silence around it."""
    wav = subprocess.run(["espeak-ng", "-v", f"{accent}+{variant}", "-s", str(speed), "-p", str(pitch),
                          "--stdout", text], check=True, capture_output=True).stdout
    # -R: repeatable (sox otherwise seeds its dither randomly, and renders would differ run to run)
    effects = ["highpass", str(highpass), "lowpass", str(lowpass)]
    if reverb > 0:
        effects += ["reverb", str(reverb)]
    effects += ["norm", "-3", "pad", str(PAD_BEFORE_S), str(PAD_AFTER_S)]
    raw = subprocess.run(["sox", "-R", "-t", "wav", "-", "-t", "raw", "-r", str(RATE), "-e", "signed", "-b", "16",
                          "-c", "1", "-"] + effects, input=wav, check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<i2").copy()


def random_render_args(rng, variant_pool):
    return dict(accent=rng.choice(ACCENTS), variant=rng.choice(variant_pool), speed=rng.randint(120, 210),
                pitch=rng.randint(20, 80), lowpass=rng.choice([3400, 5000, 7000, 7900]),
                highpass=rng.choice([50, 100, 200, 300]), reverb=rng.choice([0, 0, 20, 40, 60]))


def random_utterance(rng):
    """(task, spoken text): commands and scene questions in the proportions training uses."""
    if rng.random() < 0.55:
        return "command", tasks.random_command(rng)[0]
    return "combined", rng.choice(tasks.SCENE_QUESTIONS)


def _job(args):
    text, kw = args
    return render(text, **kw)


def build_bank(path, n, seed, variant_pool, texts=None):
    """Renders n utterances into an .npz bank: samples (concatenated int16), offsets, texts, voices."""
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        text = texts[i] if texts else random_utterance(rng)[1]
        jobs.append((text, random_render_args(rng, variant_pool)))
    with Pool(os.cpu_count()) as pool:
        clips = pool.map(_job, jobs, chunksize=16)
    offsets = np.cumsum([0] + [len(c) for c in clips])
    np.savez(path, samples=np.concatenate(clips), offsets=offsets, texts=np.array([j[0] for j in jobs]),
             voices=np.array([f"{j[1]['accent']}+{j[1]['variant']}" for j in jobs]))


def digit_string_texts(per_two, per_three):
    """Every two-digit string per_two times and every three-digit string per_three times, in a fixed
    order: spoken digit strings for a bank that hears all of them (the random bank of 12000 clips holds
    1042 three-digit clips covering 648 of the 1000 strings, and about 10 clips per two-digit string)."""
    texts = []
    for length, times in ((2, per_two), (3, per_three)):
        for n in range(10 ** length):
            spoken = " ".join(tasks.DIGITS[int(c)] for c in str(n).zfill(length))
            texts += [spoken] * times
    return texts


class Bank:
    """Spoken clips from one or more .npz banks, indexed as one list (the first file's clips first)."""

    def __init__(self, *paths):
        parts = [np.load(p) for p in paths]
        self.samples = np.concatenate([d["samples"] for d in parts])
        lengths = np.concatenate([np.diff(d["offsets"]) for d in parts])
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.texts = [t for d in parts for t in d["texts"]]
        self.voices = [v for d in parts for v in d["voices"]]
        self.by_text = {}
        for i, t in enumerate(self.texts):
            self.by_text.setdefault(t, []).append(i)
        scene = set(tasks.SCENE_QUESTIONS)
        self.scene_question_indices = [i for i, t in enumerate(self.texts) if t in scene]

    def clip(self, i):
        return self.samples[self.offsets[i]:self.offsets[i + 1]]


def change_speed(clip_i16, factor):
    """The clip played `factor` times faster, as a tape would: duration / factor, and pitch and every formant
    x factor. A voice with a shorter vocal tract has its formants higher by about that ratio, so this makes
    voices the bank's variants do not have (speed perturbation, Ko et al. 2015; vocal tract length
    perturbation, Jaitly and Hinton 2013). Linear interpolation without an anti-alias filter: a speed-up
    folds back what lies above 8 kHz / factor (6.96 kHz at 1.15), which only the clips low-passed at 7 or
    7.9 kHz have, and little of it."""
    n = int(len(clip_i16) / factor)
    x = np.interp(np.arange(n) * factor, np.arange(len(clip_i16)), clip_i16.astype(np.float32))
    return np.round(x).astype(np.int16)


def make_noise(path, seconds, seed):
    """Long noise tracks synthesised by sox (one per kind), stored as float32 in an .npz."""
    tracks = {}
    for k, kind in enumerate(NOISE_KINDS):
        raw = subprocess.run(["sox", "-R", "-n", "-t", "raw", "-r", str(RATE), "-e", "floating-point", "-b", "32",
                              "-c", "1", "-", "synth", str(seconds), kind, "vol", "0.5"],
                             check=True, capture_output=True).stdout
        x = np.frombuffer(raw, dtype="<f4").copy()
        # sox -R makes synth repeatable; a per-seed rotation gives the held-out set different noise.
        tracks[kind] = np.roll(x, (seed * 7919 + k * 104729) % len(x))
    np.savez(path, **tracks)


def mix_noise(clean_i16, noise_tracks, rng, snr_db):
    """Float32 in [-1, 1]: the clip at a random level plus a random noise segment at snr_db (None = clean)."""
    x = clean_i16.astype(np.float32) / 32768.0 * rng.uniform(0.2, 1.0)
    if snr_db is None:
        return x
    track = noise_tracks[rng.choice(NOISE_KINDS)]
    start = rng.randrange(len(track) - len(x))
    n = track[start:start + len(x)]
    speech_power = np.mean(x[np.abs(x) > 0.02 * np.abs(x).max()] ** 2) + 1e-12
    n = n * np.sqrt(speech_power / (np.mean(n ** 2) + 1e-12) / 10 ** (snr_db / 10))
    return np.clip(x + n, -1, 1).astype(np.float32)


if __name__ == "__main__":
    # python3 speech.py WORK_DIR [N]: the training bank and its noise
    # python3 speech.py WORK_DIR --digits PER_TWO PER_THREE: the digit-string bank (train.py --digit-bank)
    import sys
    import time
    work = sys.argv[1]
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    if len(sys.argv) > 2 and sys.argv[2] == "--digits":
        texts = digit_string_texts(int(sys.argv[3]), int(sys.argv[4]))
        build_bank(os.path.join(work, "bank_digits.npz"), len(texts), 2, train_variants(), texts)
        print(f"rendered {len(texts)} digit strings in {time.time() - t0:.0f} s")
        sys.exit(0)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 12000
    make_noise(os.path.join(work, "noise_train.npz"), 300, 0)
    build_bank(os.path.join(work, "bank_train.npz"), n, 1, train_variants())
    print(f"rendered {n} utterances in {time.time() - t0:.0f} s")
