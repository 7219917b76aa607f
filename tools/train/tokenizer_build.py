"""A small Gemma-style BPE tokenizer for the bundled model, written as a Hugging Face tokenizer.json.

Same structure as Gemma's own file (so the engine loads it through the same code path): normalizer
Replace(" " -> "▁"), Split pre-tokenizer, BPE with byte fallback, the Gemma 4 control tokens as added
tokens, decoder Replace/ByteFallback/Fuse. The vocabulary is: control tokens, the 256 byte-fallback tokens,
single characters, then merges learned until every task word is one token (with and without the leading
"▁"), so any typed text still tokenizes (byte fallback) while task text is one token per word.
"""
import json
from collections import Counter

VOCAB_SIZE = 640  # rows of embed_tokens; ids past the learned ones are unused placeholders

# Control tokens at fixed ids (config.json refers to the multimodal ones).
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<|turn>", "<turn|>", "<|channel>", "<channel|>",
            "<|think|>", "<|image>", "<image|>", "<|audio>", "<audio|>", "<|image|>", "<|audio|>", "<|video|>"]
SPACE = "\u2581"
BASE_CHARS = [SPACE, "\n"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + \
             [str(d) for d in range(10)] + list(",.?!'-:") + [chr(c) for c in range(ord("A"), ord("Z") + 1)]


def learn_merges(words):
    """Plain BPE on the word list (each word weighted once) until every word is a single symbol."""
    seqs = {w: list(w) for w in words}
    merges = []
    while True:
        pairs = Counter()
        for s in seqs.values():
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += 1
        if not pairs:
            return merges
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))  # most frequent, ties by text
        merges.append((a, b))
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out


class SmallTokenizer:
    """Builds the vocabulary and encodes exactly as the HF BPE model (rank-ordered merges) would."""

    def __init__(self, words):
        forms = sorted(set(words) | {SPACE + w for w in words})
        self.merges = learn_merges(forms)
        self.vocab = {}
        for t in SPECIALS:
            self.vocab[t] = len(self.vocab)
        for b in range(256):
            self.vocab[f"<0x{b:02X}>"] = len(self.vocab)
        for c in BASE_CHARS:
            self.vocab.setdefault(c, len(self.vocab))
        for a, b in self.merges:
            self.vocab.setdefault(a + b, len(self.vocab))
        if len(self.vocab) > VOCAB_SIZE:
            raise ValueError(f"vocabulary has {len(self.vocab)} entries, more than {VOCAB_SIZE}")
        self.n_learned = len(self.vocab)
        for i in range(len(self.vocab), VOCAB_SIZE):
            self.vocab[f"<unused{i}>"] = i
        self.rank = {m: i for i, m in enumerate(self.merges)}
        self.id_to_piece = {i: p for p, i in self.vocab.items()}

    def id(self, piece):
        return self.vocab[piece]

    def _bpe(self, text):
        syms = list(text)
        while len(syms) > 1:
            best = min(range(len(syms) - 1), key=lambda i: self.rank.get((syms[i], syms[i + 1]), 1 << 30))
            if (syms[best], syms[best + 1]) not in self.rank:
                break
            syms[best:best + 2] = [syms[best] + syms[best + 1]]
        ids = []
        for s in syms:
            if s in self.vocab:
                ids.append(self.vocab[s])
            else:
                ids.extend(self.vocab[f"<0x{b:02X}>"] for b in s.encode("utf-8"))
        return ids

    def encode(self, text):
        """Control tokens are matched first (as HF added tokens); the rest goes through BPE."""
        ids, i, plain = [], 0, ""
        while i < len(text):
            hit = next((t for t in SPECIALS if text.startswith(t, i)), None)
            if hit:
                if plain:
                    ids += self._bpe(plain.replace(" ", SPACE))
                    plain = ""
                ids.append(self.vocab[hit])
                i += len(hit)
            else:
                plain += text[i]
                i += 1
        if plain:
            ids += self._bpe(plain.replace(" ", SPACE))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            p = self.id_to_piece[i]
            if p.startswith("<0x") and len(p) == 6:
                out.append(int(p[3:5], 16))
            else:
                out += p.replace(SPACE, " ").encode("utf-8")
        return out.decode("utf-8", errors="replace")

    def to_json(self):
        added = [{"id": self.vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for t in SPECIALS]
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
            "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                              "invert": False},
            "post_processor": None,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]},
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                      "vocab": self.vocab, "merges": [[a, b] for a, b in self.merges]},
        }

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=1)
