"""The small model's world: what users say, what scenes show, and the exact answers expected.

Three tasks, all answered from raw input through the embedders:
  command   a spoken command or dictation (digits, colours, shapes, greetings) -> its canonical answer
  scene     a camera frame and the typed question "what do you see" -> a description of the shapes
  combined  a spoken question about the current frame -> the answer read off the scene

Everything here is pure Python and seeded by the caller's random.Random, so data generation, the eval set
and the tokenizer vocabulary all come from this one table of words.
"""

COLOURS = ["red", "green", "blue", "yellow", "orange", "purple"]
SHAPES = ["circle", "square", "triangle"]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}

# 3x3 cells, row-major: (row, col) -> phrase used in descriptions and "where" answers.
POSITION_PHRASES = {
    (0, 0): "at the top left", (0, 1): "at the top", (0, 2): "at the top right",
    (1, 0): "on the left", (1, 1): "in the middle", (1, 2): "on the right",
    (2, 0): "at the bottom left", (2, 1): "at the bottom", (2, 2): "at the bottom right",
}

# Spoken commands that do not depend on the camera: (what is said, the answer).
PHRASE_COMMANDS = [
    ("hello", "hello there"),
    ("stop", "stopping"),
    ("thank you", "you are welcome"),
    ("good morning", "good morning"),
    ("goodbye", "goodbye"),
    ("yes", "yes"),
    ("no", "no"),
]

SCENE_QUESTION = "what do you see"


class Shape:
    """One shape in a scene: colour, kind, 3x3 cell (row, col)."""

    def __init__(self, colour, kind, cell):
        self.colour, self.kind, self.cell = colour, kind, cell

    def phrase(self):
        article = "an" if self.colour[0] in "aeiou" else "a"
        return f"{article} {self.colour} {self.kind} {POSITION_PHRASES[self.cell]}"

    def to_json(self):
        return {"colour": self.colour, "shape": self.kind, "row": self.cell[0], "col": self.cell[1]}


def describe(shapes):
    """'a red circle at the top left, a blue square in the middle and a green triangle at the bottom'.
    Shapes are listed in raster order of their cells, so the description is unique for a scene."""
    parts = [s.phrase() for s in sorted(shapes, key=lambda s: s.cell)]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def parse_description(text):
    """Inverse of describe() for scoring attributes: list of (colour, kind, cell) or None if malformed."""
    text = text.strip()
    pieces = []
    for chunk in text.replace(" and a", ", a").split(", "):
        words = chunk.split(" ", 3)
        if len(words) != 4 or words[0] not in ("a", "an"):
            return None
        colour, kind, where = words[1], words[2], words[3]
        cell = next((c for c, p in POSITION_PHRASES.items() if p == where), None)
        if colour not in COLOURS or kind not in SHAPES or cell is None:
            return None
        pieces.append((colour, kind, cell))
    return pieces


def random_scene(rng, n=None):
    n = n or rng.choice([1, 1, 2, 2, 3])
    cells = rng.sample(sorted(POSITION_PHRASES), n)
    return [Shape(rng.choice(COLOURS), rng.choice(SHAPES), c) for c in cells]


def answer_question(question, shapes):
    """The answer to a scene question, or None if the question is ambiguous for this scene (the kind
    asked about appears more than once)."""
    words = question.split()
    if question == SCENE_QUESTION:
        return describe(shapes)
    if question == "how many shapes are there":
        return COUNT_WORDS[len(shapes)]
    kind = words[-1]
    matches = [s for s in shapes if s.kind == kind]
    if len(matches) > 1:
        return None
    if question.startswith("is there a "):
        return "yes" if matches else "no"
    if not matches:
        return f"there is no {kind}"
    if question.startswith("what colour is the "):
        return matches[0].colour
    if question.startswith("where is the "):
        return POSITION_PHRASES[matches[0].cell]
    raise ValueError(f"unknown question: {question}")


SCENE_QUESTIONS = ([SCENE_QUESTION, "how many shapes are there"] +
                   [f"what colour is the {k}" for k in SHAPES] +
                   [f"where is the {k}" for k in SHAPES] +
                   [f"is there a {k}" for k in SHAPES])


def random_command(rng):
    """(spoken text, answer) for the command task."""
    r = rng.random()
    if r < 0.45:
        digits = [rng.randrange(10) for _ in range(rng.choice([1, 2, 3]))]
        return " ".join(DIGITS[d] for d in digits), " ".join(str(d) for d in digits)
    if r < 0.6:
        c = rng.choice(COLOURS)
        return c, c
    if r < 0.7:
        s = rng.choice(SHAPES)
        return s, s
    return rng.choice(PHRASE_COMMANDS)


def random_combined(rng, shapes):
    """(spoken question, answer) about `shapes`; retries questions that are ambiguous for the scene."""
    while True:
        q = rng.choice(SCENE_QUESTIONS)
        a = answer_question(q, shapes)
        if a is not None:
            return q, a


def spoken_words():
    """Every word a speaker says (commands and scene questions), in a fixed order: the labels of the
    training-only speech head (train.py --aux-speech), where label 0 is CTC's blank and word i is i + 1."""
    texts = DIGITS + COLOURS + SHAPES + [p for p, _ in PHRASE_COMMANDS] + SCENE_QUESTIONS
    return sorted({w for t in texts for w in t.split()})


def vocabulary_words():
    """Every word that appears in prompts and answers (the tokenizer gives each its own token)."""
    words = set("user model system thought".split())
    texts = [describe([Shape(c, k, cell)]) for c in COLOURS for k in SHAPES for cell in POSITION_PHRASES]
    texts += SCENE_QUESTIONS + [a for _, a in PHRASE_COMMANDS] + [p for p, _ in PHRASE_COMMANDS]
    texts += DIGITS + [str(d) for d in range(10)] + list(COUNT_WORDS.values())
    texts += [f"there is no {k}" for k in SHAPES] + ["and", "an"]
    for t in texts:
        words.update(t.replace(",", " ").split())
    return sorted(words)
