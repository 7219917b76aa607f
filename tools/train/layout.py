"""Training sequences laid out exactly as the streaming session lays out a live turn (engine/session):

  <bos>
  <|turn>user\n
    [<|image> patches <image|>]              the camera frame held when the turn opens
    <|audio> frames ... <audio|>              speech: VAD pre-roll, the words, the hangover's silence
    [<|image> patches <image|>]               a frame sampled every 1/fps s closes the audio segment;
    <|audio> frames ... <audio|>              the next audio frame reopens one
    [typed text]
  <turn|>\n<|turn>model\n<|channel>thought\n<channel|>ANSWER<turn|>\n

Loss is on the answer tokens and the <turn|> that ends them. Earlier turns (with their answers) may
precede the last one, as in a running session.

With think=True (the session's thinking mode, --thinking on --image-at-turn-end on): the sequence opens with the
system turn <|turn>system\n<|think|>\n<turn|>\n; a turn that showed the camera gets one more frame just
before it closes (the session's image at turn end); and the generation prompt is <|turn>model\n, after
which the model writes its thought and then the answer:
  <|channel>thought\n{description of the frame, or nothing without one}<channel|>ANSWER<turn|>\n
The loss covers the thought too. Earlier turns keep their thoughts, as they stay in a session's KV cache.

With restate=True as well, the thought of a turn that asks about the frame (any question but "what do you
see") ends by writing the question out (thought_text): "a red circle at the top left, what colour is the
circle". The model has to turn the spoken question into text there, and the answer is then one lookup from
text to text, the one that a typed question needs (the model card gives the measurements).
"""

import numpy as np
import torch

import scenes
import speech
import tasks

FRAME = 640
FRAMES_PER_SECOND = 25  # 16000 / 640
# Largest speed change of a spoken clip (speech.change_speed), drawn log-uniformly in [1/x, x]; 1 = none.
# train.py --speed-perturb sets it in its data worker; the progress check hears the clips as rendered.
SPEED_PERTURB = 1.0


class Sample:
    """One sequence: token ids with placeholders, the raw audio frames and image patches that fill them,
    image block ids, and the loss targets (per position: 0 = not learned, 1 = learn the next token,
    ANSWER = learn it as part of the answer, which train.py --answer-weight can weigh up)."""

    def __init__(self):
        self.ids, self.targets, self.blocks = [], [], []
        self.audio, self.audio_pos = [], []        # (640,) float32 frames and their positions
        self.patches, self.patch_pos = [], []      # (N, 6912) tensors and their first position
        self.patch_xy = []
        self.patch_labels = []  # per image: (N,) long, the shape whose centre is in each patch, or None
        self.utterances = []    # per spoken turn: (index of its first frame in self.audio, frames, word labels)
        self.summaries = []     # per turn with a frame: (position of the last prompt token, summary_labels())
        self.n_blocks = 0

    def text(self, tok, s, learn=False):
        for i in tok.encode(s):
            self.ids.append(i)
            self.targets.append(learn)
            self.blocks.append(-1)

    def token(self, tok_id, learn=False):
        self.ids.append(tok_id)
        self.targets.append(learn)
        self.blocks.append(-1)

    def image(self, tok, patches, xs, ys, labels=None):
        self.token(tok.id("<|image>"))
        self.patch_pos.append(len(self.ids))
        self.patches.append(patches)
        self.patch_xy.append((xs, ys))
        self.patch_labels.append(labels)
        for _ in range(patches.shape[0]):
            self.ids.append(tok.id("<|image|>"))
            self.targets.append(False)
            self.blocks.append(self.n_blocks)
        self.n_blocks += 1
        self.token(tok.id("<image|>"))

    def audio_frame(self, tok, frame):
        self.audio_pos.append(len(self.ids))
        self.audio.append(frame)
        self.token(tok.id("<|audio|>"))


def speech_frames(bank, clip_index, noise, rng):
    """The frames a live session would append for one utterance: a few frames before the words (VAD
    pre-roll and onset), the words, then the hangover's trailing silence. Float32 (n, 640)."""
    clean = bank.clip(clip_index)
    if SPEED_PERTURB > 1:
        clean = speech.change_speed(clean, SPEED_PERTURB ** rng.uniform(-1, 1))
    loud = np.flatnonzero(np.abs(clean) > 0.03 * np.abs(clean).max())
    first, last = int(loud[0]), int(loud[-1])
    start = max(0, first - rng.randint(2 * FRAME, 9 * FRAME))
    end = min(len(clean), last + rng.randint(8 * FRAME, 25 * FRAME))
    snr = None if rng.random() < 0.2 else rng.uniform(5, 30)
    x = speech.mix_noise(clean[start:end], noise, rng, snr)
    n = -(-len(x) // FRAME)
    out = np.zeros((n, FRAME), np.float32)
    out.reshape(-1)[:len(x)] = x
    return out


# Frames not drawn at a camera size are drawn at this multiple of the patch grid's size (1: the grid itself,
# 2: twice as wide and high, then resized as the engine does). At 1 the shapes' edges are jagged and the
# blur and sensor noise act at full strength on a 10-20 pixel shape, where a camera frame has them shrunk by
# the engine's antialiased resize; 2 is closer to the camera at a quarter of a 640x480 frame's pixels.
DIRECT_RENDER_SCALE = 1


def patch_labels(centres, xs, ys):
    """(N,) long: for each patch of the grid (xs, ys), the index in tasks.SHAPES of the shape whose centre
    lies in it, else -100 (not scored). Used only by the auxiliary shape loss (train.py --aux-shape)."""
    gx, gy = int(xs.max()) + 1, int(ys.max()) + 1
    labels = torch.full((gx * gy,), -100, dtype=torch.long)
    for fx, fy, kind in centres:
        labels[min(int(fy * gy), gy - 1) * gx + min(int(fx * gx), gx - 1)] = tasks.SHAPES.index(kind)
    return labels


def camera_frames(shapes, nrng, count, budget):
    """`count` frames of one scene as the camera sees it over a turn (fresh sensor noise each), each as
    (patches, xs, ys, patch labels)."""
    centres = []
    if nrng.random() < 0.3:
        img = scenes.render(shapes, nrng, centres=centres)  # camera size, then the engine's resize
    else:  # rendered at (a multiple of) a size the resize rule maps to itself: cheaper, same patch grid
        w, h = scenes.FRAME_SIZES[nrng.integers(len(scenes.FRAME_SIZES))]
        th, tw = scenes.plan_resize(w, h, budget)
        img = scenes.render(shapes, nrng, (tw * DIRECT_RENDER_SCALE, th * DIRECT_RENDER_SCALE), centres=centres)
    out = []
    for _ in range(count):
        noisy = np.clip(img.astype(np.float32) + nrng.normal(0, 2.0, img.shape).astype(np.float32), 0, 255)
        p, xs, ys = scenes.preprocess(noisy.astype(np.uint8), budget)
        out.append((p, xs, ys, patch_labels(centres, xs, ys)))
    return out


ANSWER = 2  # a Sample target that belongs to the answer (after the thought)
SPOKEN_WORDS = tasks.spoken_words()  # labels of the auxiliary speech head (0 = CTC blank)
TASKS = ["command", "scene", "combined"]
DEFAULT_MIX = [0.35, 0.25, 0.4]  # task shares of training turns, in TASKS order


def quiet_audio(s, tok, noise, rng, frames):
    """An audio segment of `frames` frames of room noise at a low level (RMS 0.0005-0.005): filler that
    puts audio tokens between a frame and a typed question, as a spoken question puts its words there."""
    track = noise[rng.choice(speech.NOISE_KINDS)]
    start = rng.randrange(len(track) - frames * FRAME)
    x = track[start:start + frames * FRAME]
    x = (x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * rng.uniform(0.0005, 0.005)).astype(np.float32)
    s.token(tok.id("<|audio>"))
    for f in x.reshape(frames, FRAME):
        s.audio_frame(tok, f)
    s.token(tok.id("<audio|>"))


def thought_text(shapes, question, restate):
    """The thought of a thinking turn that saw the frame: its description, and with restate, for a scene
    question other than "what do you see", ", " and the question as text."""
    text = tasks.describe(shapes)
    if restate and question in tasks.SCENE_QUESTIONS and question != tasks.SCENE_QUESTION:
        text += ", " + question
    return text


def add_turn(s, tok, rng, nrng, bank, noise, budget, kind=None, mix=DEFAULT_MIX, describe_share=0.7,
             spoken_describe_share=None, audio_gap_max=0, think=False, restate=False):
    """Appends one complete user turn and its answer; returns (task, answer). A typed scene question is
    "what do you see" with probability describe_share, else any scene question (that one included). A
    spoken (combined) question is a random scene question of the bank, or, with spoken_describe_share
    set, "what do you see" with that probability (the bank holds it in ~1 of 9 scene questions). With
    audio_gap_max, a typed scene question comes after 0..audio_gap_max frames of quiet_audio: at step 24500
    10 such frames took the typed description from 71% to 0% (teacher-forced), which is why the spoken one,
    whose words stand there, fails. With think, see the module's docstring: why it helps is in the model
    card (the thought describes the frame right after it, and the answer is read off that text); with restate
    too, the thought ends with the question (thought_text)."""
    kind = kind or rng.choices(TASKS, mix)[0]
    shapes = tasks.random_scene(rng)
    if kind == "command":
        while True:
            i = rng.randrange(len(bank.texts))
            if bank.texts[i] not in tasks.SCENE_QUESTIONS:
                break
        spoken = bank.texts[i]
        answer = command_answer(spoken)
        camera = rng.random() < 0.5
    elif kind == "combined":
        if spoken_describe_share is not None and rng.random() < spoken_describe_share:
            i = rng.choice(bank.by_text[tasks.SCENE_QUESTION])
        else:
            while True:
                i = rng.randrange(len(bank.texts))
                if bank.texts[i] in tasks.SCENE_QUESTIONS:
                    if tasks.answer_question(bank.texts[i], shapes) is not None:
                        break
                    shapes = tasks.random_scene(rng)
        answer = tasks.answer_question(bank.texts[i], shapes)
        camera = True
    else:
        typed = tasks.SCENE_QUESTION if rng.random() < describe_share else rng.choice(tasks.SCENE_QUESTIONS)
        while (answer := tasks.answer_question(typed, shapes)) is None:
            shapes = tasks.random_scene(rng)
        camera = True

    s.token(tok.id("<|turn>"))
    s.text(tok, "user\n")
    end_view = None
    if kind == "scene":
        views = camera_frames(shapes, nrng, 2 if think else 1, budget)
        s.image(tok, *views[0])
        end_view = views[1] if think else None
        gap = rng.randint(0, audio_gap_max) if audio_gap_max else 0
        if gap:
            quiet_audio(s, tok, noise, rng, gap)
        s.text(tok, typed)
    else:
        frames = speech_frames(bank, i, noise, rng)
        s.utterances.append((len(s.audio), len(frames), [SPOKEN_WORDS.index(w) + 1 for w in bank.texts[i].split()]))
        image_at = set()
        if camera:
            k = rng.randrange(FRAMES_PER_SECOND)
            while k < len(frames):
                image_at.add(k)
                k += FRAMES_PER_SECOND
        views = camera_frames(shapes, nrng, 1 + len(image_at) + int(think), budget) if camera else []
        if camera and think:
            end_view = views.pop(0)
        if camera:
            s.image(tok, *views.pop())
        segment_open = False
        for j, f in enumerate(frames):
            if j in image_at:  # the sampled frame is consumed before audio ending after its time
                if segment_open:
                    s.token(tok.id("<audio|>"))
                    segment_open = False
                s.image(tok, *views.pop())
            if not segment_open:
                s.token(tok.id("<|audio>"))
                segment_open = True
            s.audio_frame(tok, f)
        if segment_open:
            s.token(tok.id("<audio|>"))
    if end_view is not None:  # the session's image at turn end
        s.image(tok, *end_view)
    s.text(tok, "<turn|>\n<|turn>model\n" if think else "<turn|>\n<|turn>model\n<|channel>thought\n<channel|>")
    if camera:
        s.summaries.append((len(s.ids) - 1, summary_labels(shapes)))
    if think:
        s.targets[-1] = True  # the last prompt token predicts the thought's opening
        question = typed if kind == "scene" else bank.texts[i] if kind == "combined" else None
        thought = thought_text(shapes, question, restate) if camera else ""
        s.text(tok, "<|channel>thought\n" + thought + "<channel|>", learn=True)
    add_answer(s, tok, answer)
    return kind, answer


def add_answer(s, tok, answer):
    """The answer after the prompt (or after the thought) and the end of the model turn: the token before
    it predicts the answer's first token, and every answer token the next."""
    s.targets[-1] = ANSWER
    s.text(tok, answer, learn=ANSWER)
    s.token(tok.id("<turn|>"))
    s.text(tok, "\n")


def add_blind_lookup_turn(s, tok, rng, bank, noise, spoken, restate=False):
    """A training-only thinking turn without a frame: a scene question (spoken from the bank, or typed),
    then the model turn with the scene's description given as the thought (not learned) and the answer read
    off it (learned, as an answer). With no image to look at, the answer can only come from the thought's
    text: it teaches the lookup that a thinking turn with a frame needs (train.py --blind-lookups, lookups.py).
    With restate, the thought ends with the question as add_turn's does."""
    shapes = tasks.random_scene(rng)
    while True:
        i = rng.choice(bank.scene_question_indices) if spoken else None
        question = bank.texts[i] if spoken else rng.choice(tasks.SCENE_QUESTIONS)
        if (answer := tasks.answer_question(question, shapes)) is not None:
            break
        shapes = tasks.random_scene(rng)
    s.token(tok.id("<|turn>"))
    s.text(tok, "user\n")
    if spoken:
        s.token(tok.id("<|audio>"))
        for f in speech_frames(bank, i, noise, rng):
            s.audio_frame(tok, f)
        s.token(tok.id("<audio|>"))
    else:
        s.text(tok, question)
    thought = thought_text(shapes, question, restate)
    s.text(tok, "<turn|>\n<|turn>model\n<|channel>thought\n" + thought + "<channel|>")
    add_answer(s, tok, answer)


SUMMARY_OUTPUTS = 2 * len(tasks.SHAPES)  # per kind: its colour, then per kind: its cell
SUMMARY_CLASSES = 1 + len(tasks.POSITION_PHRASES)  # 0 = the kind is absent; colours use 1..6, cells 1..9


def summary_labels(shapes):
    """(6,) long: for each kind, 0 if absent, else 1 + its colour's index; then for each kind, 0 if absent,
    else 1 + its cell (raster order); -100 (not scored) for a kind shown twice or more, which no question
    asks about. The targets of the training-only scene-summary head (train.py --aux-summary)."""
    cells = sorted(tasks.POSITION_PHRASES)
    colour, cell = [], []
    for kind in tasks.SHAPES:
        found = [x for x in shapes if x.kind == kind]
        colour.append(-100 if len(found) > 1 else 1 + tasks.COLOURS.index(found[0].colour) if found else 0)
        cell.append(-100 if len(found) > 1 else 1 + cells.index(found[0].cell) if found else 0)
    return colour + cell


def command_answer(spoken):
    if all(w in tasks.DIGITS for w in spoken.split()):
        return " ".join(str(tasks.DIGITS.index(w)) for w in spoken.split())
    for said, answer in tasks.PHRASE_COMMANDS:
        if said == spoken:
            return answer
    return spoken  # a colour or shape word is transcribed


THINKING_SYSTEM_TURN = "<|turn>system\n<|think|>\n<turn|>\n"  # engine/chat_template: chat_system_turn("", true)


def start_sample(tok, think=False):
    s = Sample()
    s.token(tok.id("<bos>"))
    if think:
        s.text(tok, THINKING_SYSTEM_TURN)
    return s


def make_sample(tok, rng, nrng, bank, noise, budget, turns=None, mix=DEFAULT_MIX, describe_share=0.7,
                spoken_describe_share=None, audio_gap_max=0, think=False, restate=False):
    s = start_sample(tok, think)
    turns = turns or (2 if rng.random() < 0.2 else 1)
    for _ in range(turns):
        add_turn(s, tok, rng, nrng, bank, noise, budget, mix=mix, describe_share=describe_share,
                 spoken_describe_share=spoken_describe_share, audio_gap_max=audio_gap_max, think=think,
                 restate=restate)
    return s


def collate(samples, pad_id, row_tokens=None):
    """Packs Samples into rows of at most row_tokens (default: the longest sample), each sample keeping its
    own positions from 0 and seeing only itself, so no compute goes to padding. Labels: ids[t+1] where the
    sample learns position t, else -100."""
    row_tokens = max(row_tokens or 0, max(len(s.ids) for s in samples))
    rows = []  # greedy first fit, longest first
    for s in sorted(samples, key=lambda s: -len(s.ids)):
        for r in rows:
            if sum(len(x.ids) for x in r) + len(s.ids) <= row_tokens:
                r.append(s)
                break
        else:
            rows.append([s])
    B, T = len(rows), max(sum(len(x.ids) for x in r) for r in rows)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    answer_mask = torch.zeros((B, T), dtype=torch.bool)  # labels that belong to an answer
    blocks = torch.full((B, T), -1, dtype=torch.long)
    positions = torch.zeros((B, T), dtype=torch.long)
    docs = torch.full((B, T), -1, dtype=torch.long)
    audio_rows, audio, patch_rows, patches, xs, ys, plabels = [], [], [], [], [], [], []
    speech_starts, speech_lengths, speech_words, speech_word_lengths = [], [], [], []
    summary_rows, summary = [], []
    block_base, doc = 0, 0
    for b, row in enumerate(rows):
        at = 0
        for s in row:
            n = len(s.ids)
            ids[b, at:at + n] = torch.tensor(s.ids)
            for t in range(n - 1):
                if s.targets[t]:
                    labels[b, at + t] = s.ids[t + 1]
                    answer_mask[b, at + t] = s.targets[t] == ANSWER
            bl = torch.tensor(s.blocks)
            blocks[b, at:at + n] = torch.where(bl >= 0, bl + block_base, bl)
            positions[b, at:at + n] = torch.arange(n)
            docs[b, at:at + n] = doc
            block_base += s.n_blocks
            doc += 1
            audio_rows += [b * T + at + p for p in s.audio_pos]
            for first, count, words in s.utterances:
                speech_starts.append(len(audio) + first)
                speech_lengths.append(count)
                speech_words += words
                speech_word_lengths.append(len(words))
            audio += s.audio
            for pos, scene_summary in s.summaries:
                summary_rows.append(b * T + at + pos)
                summary.append(scene_summary)
            for pos, p, (x, y), lab in zip(s.patch_pos, s.patches, s.patch_xy, s.patch_labels):
                patch_rows += list(range(b * T + at + pos, b * T + at + pos + p.shape[0]))
                patches.append(p)
                plabels.append(lab if lab is not None else torch.full((p.shape[0],), -100, dtype=torch.long))
                xs.append(x)
                ys.append(y)
            at += n
    return {"ids": ids, "labels": labels, "answer_mask": answer_mask, "blocks": blocks, "positions": positions, "docs": docs,
            "audio_rows": torch.tensor(audio_rows, dtype=torch.long),
            "audio": torch.from_numpy(np.stack(audio)) if audio else torch.zeros(0, FRAME),
            "patch_rows": torch.tensor(patch_rows, dtype=torch.long),
            "patches": torch.cat(patches) if patches else torch.zeros(0, 6912),
            "xs": torch.cat(xs) if xs else torch.zeros(0, dtype=torch.long),
            "ys": torch.cat(ys) if ys else torch.zeros(0, dtype=torch.long),
            "patch_labels": torch.cat(plabels) if plabels else torch.zeros(0, dtype=torch.long),
            # spoken turns: their first frame and frame count in the order of "audio", and their word labels
            "speech_starts": torch.tensor(speech_starts, dtype=torch.long),
            "speech_lengths": torch.tensor(speech_lengths, dtype=torch.long),
            "speech_words": torch.tensor(speech_words, dtype=torch.long),
            "speech_word_lengths": torch.tensor(speech_word_lengths, dtype=torch.long),
            # turns with a frame: the last prompt token's flat row and the scene's summary_labels()
            "summary_rows": torch.tensor(summary_rows, dtype=torch.long),
            "summary_labels": torch.tensor(summary, dtype=torch.long).view(-1, SUMMARY_OUTPUTS)}


def forward_batch(model, batch, taps=None):
    """Logits (B, T, V); with taps = {name: (layer, rows)} also {name: hidden states after that layer at
    the flat rows batch[rows] (e.g. "patch_rows": image tokens in the order of batch["patches"])}, for the
    training-only heads."""
    emb_a = model.embed_audio(batch["audio"])
    emb_v = model.embed_patches(batch["patches"], batch["xs"], batch["ys"])
    rows = torch.cat([batch["audio_rows"], batch["patch_rows"]])
    args = (batch["ids"], rows, torch.cat([emb_a, emb_v]), batch["blocks"], batch["positions"], batch["docs"])
    if not taps:
        return model(*args)
    names = list(taps)
    logits, hidden = model(*args, hidden_after=tuple(taps[n][0] for n in names))
    return logits, {n: h.reshape(-1, h.shape[-1])[batch[taps[n][1]]] for n, h in zip(names, hidden)}
