"""Gemma 4 `gemma4_unified` in PyTorch, for training the bundled small model: the same forward pass as the
C++ engine (architecture doc §3-5), written for batches of padded training sequences, plus the writer of a
released-layout checkpoint folder (config.json, model.safetensors with the released tensor names).

Shapes in comments: B batch, T sequence, D hidden, H query heads, K kv heads, hd head size.
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PATCH_VALUES = 48 * 48 * 3  # one 48x48 RGB patch, flattened HWC
AUDIO_SAMPLES = 640         # one 40 ms frame at 16 kHz


def small_config(vocab_size, tokens):
    """The bundled model: ~9M parameters, 6 layers (5 sliding + the last one full), hidden 256.

    hidden 256 = 4 heads x 64; full layers use 128-wide heads and one KV head with k_eq_v as in the 12B
    (12B: 16 x 256 sliding, 512 full). MLP 4 x D as in the 12B. The sliding window (512) covers a whole
    turn (~300 positions with three images), so only long sessions ever slide.
    """
    D, L = 256, 6
    layer_types = ["sliding_attention"] * (L - 1) + ["full_attention"]
    return {
        "architectures": ["Gemma4UnifiedForConditionalGeneration"], "model_type": "gemma4_unified",
        "dtype": "bfloat16",
        "boi_token_id": tokens["<|image>"], "eoi_token_id": tokens["<image|>"],
        "image_token_id": tokens["<|image|>"], "video_token_id": tokens["<|video|>"],
        "boa_token_id": tokens["<|audio>"], "eoa_token_index": tokens["<audio|>"],
        "audio_token_id": tokens["<|audio|>"],
        "initializer_range": 0.02, "tie_word_embeddings": True,
        "bos_token_id": tokens["<bos>"], "eos_token_id": tokens["<eos>"], "pad_token_id": tokens["<pad>"],
        "text_config": {
            "model_type": "gemma4_unified_text", "vocab_size": vocab_size, "hidden_size": D,
            "intermediate_size": 4 * D, "num_hidden_layers": L, "layer_types": layer_types,
            "num_attention_heads": 4, "num_key_value_heads": 2, "num_global_key_value_heads": 1,
            "head_dim": 64, "global_head_dim": 128, "attention_k_eq_v": True,
            "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
            "sliding_window": 512, "final_logit_softcapping": 30.0,
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                   "rope_theta": 1000000.0}},
            "use_bidirectional_attention": "vision", "num_kv_shared_layers": 0, "use_double_wide_mlp": False,
            "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": True,
            "pad_token_id": tokens["<pad>"], "bos_token_id": tokens["<bos>"], "eos_token_id": tokens["<eos>"],
            "use_cache": True, "initializer_range": 0.02, "enable_moe_block": False, "num_experts": None,
            "top_k_experts": None, "moe_intermediate_size": None, "hidden_size_per_layer_input": 0,
            "vocab_size_per_layer_input": 0},
        "vision_config": {"model_type": "gemma4_unified_vision", "patch_size": 16, "pooling_kernel_size": 3,
                          "mm_embed_dim": D, "mm_posemb_size": 1120, "output_proj_dims": D, "rms_norm_eps": 1e-6},
        "audio_config": {"model_type": "gemma4_unified_audio", "audio_embed_dim": AUDIO_SAMPLES,
                         "rms_norm_eps": 1e-6},
    }


def rms_norm(x, weight=None, eps=1e-6):
    x = x.float()  # in float32 even when matmuls run in bfloat16 (training autocast)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * weight if weight is not None else y


def gelu_tanh(x):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), torch's fused form of it."""
    return F.gelu(x, approximate="tanh")


def rope_tables(positions, head_dim, theta, rotary_fraction):
    """cos, sin (B, T, hd/2) for NeoX pairing (i with i + hd/2). Proportional RoPE: only the first
    int(fraction * hd // 2) pairs rotate and the exponent keeps the full head_dim (doc §3.5)."""
    half = head_dim // 2
    n_rot = int(rotary_fraction * head_dim // 2)
    i = torch.arange(half, dtype=torch.float64)
    freq = torch.where(i < n_rot, theta ** (-2 * i / head_dim), torch.zeros_like(i)).float()
    angle = positions.float()[..., None] * freq  # (B, T, hd/2)
    return torch.cos(angle), torch.sin(angle)


def apply_rope(x, cos, sin):
    """x (B, heads, T, hd)."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    c, s = cos[:, None], sin[:, None]
    return torch.cat([a * c - b * s, b * c + a * s], dim=-1)


class Layer(nn.Module):
    def __init__(self, cfg, full):
        super().__init__()
        t = cfg["text_config"]
        D, H = t["hidden_size"], t["num_attention_heads"]
        self.full = full
        self.hd = t["global_head_dim"] if full else t["head_dim"]
        self.kv = t["num_global_key_value_heads"] if full else t["num_key_value_heads"]
        self.H = H
        self.q_proj = nn.Linear(D, H * self.hd, bias=False)
        self.k_proj = nn.Linear(D, self.kv * self.hd, bias=False)
        self.v_proj = None if full else nn.Linear(D, self.kv * self.hd, bias=False)  # k_eq_v on full layers
        self.o_proj = nn.Linear(H * self.hd, D, bias=False)
        # q_norm . k_norm replace the 1/sqrt(hd) scaling; starting them at hd^-1/4 each gives unit-variance
        # scores at initialisation (the weights are learned from there).
        self.q_norm = nn.Parameter(torch.full((self.hd,), self.hd ** -0.25))
        self.k_norm = nn.Parameter(torch.full((self.hd,), self.hd ** -0.25))
        self.gate_proj = nn.Linear(D, t["intermediate_size"], bias=False)
        self.up_proj = nn.Linear(D, t["intermediate_size"], bias=False)
        self.down_proj = nn.Linear(t["intermediate_size"], D, bias=False)
        for n in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm"]:
            setattr(self, n, nn.Parameter(torch.ones(D)))
        self.layer_scalar = nn.Parameter(torch.ones(1))
        rp = t["rope_parameters"]["full_attention" if full else "sliding_attention"]
        self.theta = rp["rope_theta"]
        self.rotary_fraction = rp.get("partial_rotary_factor", 1.0) if rp["rope_type"] == "proportional" else 1.0

    def forward(self, h, mask, cos, sin):
        B, T, _ = h.shape
        x = rms_norm(h, self.input_layernorm)
        q = self.q_proj(x).view(B, T, self.H, self.hd).transpose(1, 2)      # (B, H, T, hd)
        k_raw = self.k_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)  # (B, K, T, hd)
        v_raw = k_raw if self.full else self.v_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        q = apply_rope(rms_norm(q, self.q_norm), cos, sin)
        k = apply_rope(rms_norm(k_raw, self.k_norm), cos, sin)
        v = rms_norm(v_raw)  # scale-free, no RoPE
        rep = self.H // self.kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = q @ k.transpose(-1, -2) + mask  # scaling 1.0; mask (B, 1, T, T) of 0 / -inf
        o = torch.softmax(scores, dim=-1) @ v  # float32 throughout
        a = self.o_proj(o.transpose(1, 2).reshape(B, T, self.H * self.hd))
        h = h + rms_norm(a, self.post_attention_layernorm)
        x = rms_norm(h, self.pre_feedforward_layernorm)
        m = self.down_proj(gelu_tanh(self.gate_proj(x)) * self.up_proj(x))
        h = h + rms_norm(m, self.post_feedforward_layernorm)
        return h * self.layer_scalar


class Gemma4Unified(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        t, v = cfg["text_config"], cfg["vision_config"]
        D, Dv = t["hidden_size"], v["mm_embed_dim"]
        self.D = D
        self.embed_tokens = nn.Parameter(torch.randn(t["vocab_size"], D) * 0.02)
        self.layers = nn.ModuleList(Layer(cfg, lt == "full_attention") for lt in t["layer_types"])
        self.norm = nn.Parameter(torch.ones(D))
        self.patch_ln1 = nn.LayerNorm(PATCH_VALUES)
        self.patch_dense = nn.Linear(PATCH_VALUES, Dv)
        self.patch_ln2 = nn.LayerNorm(Dv)
        self.pos_embedding = nn.Parameter(torch.randn(v["mm_posemb_size"], 2, Dv) * 0.02)  # [:,0] x, [:,1] y
        self.pos_norm = nn.LayerNorm(Dv)
        self.vision_projection = nn.Linear(v["output_proj_dims"], D, bias=False)
        self.audio_projection = nn.Linear(AUDIO_SAMPLES, D, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.window = t["sliding_window"]
        self.softcap = t["final_logit_softcapping"]

    def embed_patches(self, patches, xs, ys):
        """patches (N, 6912) in [0, 1], grid column xs and row ys (N,) -> (N, D)  (doc §4.2)."""
        x = self.patch_ln2(self.patch_dense(self.patch_ln1(patches)).float())
        x = self.pos_norm(x + self.pos_embedding[xs, 0] + self.pos_embedding[ys, 1])
        return self.vision_projection(rms_norm(x))

    def embed_audio(self, frames):
        """frames (N, 640) raw samples -> (N, D)  (doc §5)."""
        return self.audio_projection(rms_norm(frames))

    def masks(self, blocks, docs, positions):
        """(sliding, full) additive masks (B, 1, T, T). blocks (B, T): image block id or -1; docs (B, T):
        which packed sequence a token belongs to (tokens never see another sequence); positions (B, T)."""
        q, kv = positions[:, :, None], positions[:, None, :]
        same_doc = docs[:, :, None] == docs[:, None, :]
        causal = (kv <= q) & same_doc
        same_block = (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] >= 0)
        sliding = (causal | same_block) & (kv > q - self.window)
        zero, neg = torch.tensor(0.0), torch.tensor(float("-inf"))
        return torch.where(sliding, zero, neg)[:, None], torch.where(causal, zero, neg)[:, None]

    def forward(self, ids, mm_rows, mm_embeds, blocks, positions=None, docs=None, hidden_after=None):
        """ids (B, T); mm_rows: flat indices into B*T of soft-token positions, mm_embeds (len, D) their
        embeddings; blocks (B, T); positions and docs (B, T) for packed rows (default: one sequence per row
        starting at position 0). Returns soft-capped logits (B, T, V); with hidden_after = k, also the
        hidden states (B, T, D) after layer k (for a training-time auxiliary loss); with a tuple of layers, a
        tuple of those hidden states."""
        B, T = ids.shape
        h = (self.embed_tokens[ids] * math.sqrt(self.D)).view(B * T, self.D)
        h = h.index_copy(0, mm_rows, mm_embeds).view(B, T, self.D)
        if positions is None:
            positions = torch.arange(T)[None].expand(B, T)
            docs = torch.zeros(B, T, dtype=torch.long)
        sliding_mask, full_mask = self.masks(blocks, docs, positions)
        tables = {}
        wanted = hidden_after if isinstance(hidden_after, tuple) else (hidden_after,)
        hidden = [None] * len(wanted)
        for i, layer in enumerate(self.layers):
            key = (layer.hd, layer.theta, layer.rotary_fraction)
            if key not in tables:
                tables[key] = rope_tables(positions, *key)
            h = layer(h, full_mask if layer.full else sliding_mask, *tables[key])
            for j, k in enumerate(wanted):
                if i + 1 == k:
                    hidden[j] = h
        h = rms_norm(h, self.norm)
        logits = h @ self.embed_tokens.t()
        logits = self.softcap * torch.tanh(logits / self.softcap)
        if hidden_after is None:
            return logits
        return logits, (tuple(hidden) if isinstance(hidden_after, tuple) else hidden[0])

    # ------------------------------------------------------------------ released checkpoint layout
    def named_tensors(self):
        """(released name, tensor) for every weight: the one table both save and load use."""
        P = "model.language_model."
        out = [(P + "embed_tokens.weight", self.embed_tokens), (P + "norm.weight", self.norm)]
        for i, l in enumerate(self.layers):
            p = f"{P}layers.{i}."
            for n in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                      "post_feedforward_layernorm"]:
                out.append((p + n + ".weight", getattr(l, n)))
            out.append((p + "layer_scalar", l.layer_scalar))
            for n in ["gate_proj", "up_proj", "down_proj"]:
                out.append((p + f"mlp.{n}.weight", getattr(l, n).weight))
            for n in ["q_proj", "k_proj", "v_proj", "o_proj"]:
                if getattr(l, n) is not None:
                    out.append((p + f"self_attn.{n}.weight", getattr(l, n).weight))
            out.append((p + "self_attn.q_norm.weight", l.q_norm))
            out.append((p + "self_attn.k_norm.weight", l.k_norm))
        V = "model.vision_embedder."
        for n in ["patch_ln1", "patch_dense", "patch_ln2", "pos_norm"]:
            out.append((V + n + ".weight", getattr(self, n).weight))
            out.append((V + n + ".bias", getattr(self, n).bias))
        out.append((V + "pos_embedding", self.pos_embedding))
        out.append(("model.embed_vision.embedding_projection.weight", self.vision_projection.weight))
        out.append(("model.embed_audio.embedding_projection.weight", self.audio_projection.weight))
        return out

    def save_safetensors(self, path, dtype="BF16"):
        """Writes every tensor in bytewise-sorted name order (as the released file) in BF16 or F32."""
        tensors = sorted(self.named_tensors(), key=lambda kv: kv[0].encode())
        header, blobs, offset = {}, [], 0
        for name, t in tensors:
            a = t.detach().float().contiguous()
            if dtype == "BF16":
                bits = a.numpy().view(np.uint32)
                # round to nearest even, as torch's float -> bfloat16 conversion
                raw = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()
            else:
                raw = a.numpy().astype("<f4").tobytes()
            header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
            blobs.append(raw)
            offset += len(raw)
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(head)) + head)
            for b in blobs:
                f.write(b)

    def load_safetensors(self, path):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        with torch.no_grad():
            for name, t in self.named_tensors():
                h = header[name]
                b0, b1 = h["data_offsets"]
                if h["dtype"] == "BF16":
                    a = (np.frombuffer(data[b0:b1], "<u2").astype(np.uint32) << 16).view(np.float32)
                else:
                    a = np.frombuffer(data[b0:b1], "<f4")
                t.copy_(torch.from_numpy(a.copy()).view(t.shape))

    def round_to_bf16(self):
        """Rounds every weight to bfloat16 in place (what the shipped file holds)."""
        with torch.no_grad():
            for _, t in self.named_tensors():
                t.copy_(t.to(torch.bfloat16).float())
