"""Camera-like frames of coloured shapes, rendered procedurally, and the model's image preprocessing.

A frame is a random low-saturation background (tint, gradient, blotchy texture), one to three shapes in
distinct cells of a 3x3 grid (random size and jitter inside the cell), then global lighting, blur and sensor
noise. preprocess() is the engine's path (architecture doc §4.1): HF size rule for the budget, bicubic
antialiased resize on uint8, rescale to [0, 1], 48x48 patches in raster order flattened HWC.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import tasks

PATCH = 48
# Nominal sRGB of each colour; every frame jitters it.
COLOUR_RGB = {
    "red": (215, 35, 35), "green": (40, 165, 60), "blue": (35, 75, 215),
    "yellow": (235, 210, 35), "orange": (245, 135, 25), "purple": (135, 50, 185),
}
FRAME_SIZES = [(640, 480)] * 4 + [(480, 480), (800, 600), (1280, 720), (320, 240)]


def _blur(img, sigma):
    """Approximately Gaussian blur: two box passes whose combined variance is sigma^2."""
    width = int(round(math.sqrt(12 * sigma * sigma / 2 + 1)))
    if width < 2:
        return img
    width |= 1  # odd, so the blur stays centred
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]  # (1, 3, H, W)
    for _ in range(2):
        t = F.avg_pool2d(F.pad(t, (width // 2,) * 4, mode="replicate"), width, stride=1)
    return t[0].permute(1, 2, 0).numpy()


def render(shapes, rng, size=None, max_noise=10.0, centres=None):
    """uint8 (H, W, 3) frame showing `shapes` (tasks.Shape list); rng is a numpy Generator; sensor noise
    has a random standard deviation up to max_noise. If `centres` is a list, each shape's centre is appended
    to it as (x / W, y / H, kind): fractions of the frame, which the aspect-keeping resize preserves."""
    W, H = size or FRAME_SIZES[rng.integers(len(FRAME_SIZES))]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    # Background: grey level with a small tint, a linear gradient and a blotchy low-frequency texture.
    base = (rng.uniform(35, 215) + rng.uniform(-14, 14, size=3)).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(angle) * xx / W + np.sin(angle) * yy / H)[..., None] * np.float32(rng.uniform(-50, 50))
    # Mostly grey blotches with a little colour, so the background never looks like a shape colour.
    grid = rng.normal(0, 1, size=(rng.integers(3, 9), rng.integers(3, 9), 1))
    grid = (grid + 0.35 * rng.normal(0, 1, size=grid.shape[:2] + (3,))).astype(np.float32)
    blotch = F.interpolate(torch.from_numpy(grid).permute(2, 0, 1)[None], size=(H, W), mode="bilinear",
                           align_corners=False)[0].permute(1, 2, 0).numpy() * np.float32(rng.uniform(0, 16))
    img = np.broadcast_to(base, (H, W, 3)) + ramp + blotch
    cw, ch = W / 3.0, H / 3.0
    for s in shapes:
        row, col = s.cell
        cx = (col + 0.5 + rng.uniform(-0.14, 0.14)) * cw
        cy = (row + 0.5 + rng.uniform(-0.14, 0.14)) * ch
        r = min(cw, ch) * rng.uniform(0.2, 0.4)
        if centres is not None:
            centres.append((cx / W, cy / H, s.kind))
        colour = (np.array(COLOUR_RGB[s.colour]) + rng.uniform(-18, 18, size=3)).astype(np.float32)
        rot = rng.uniform(-0.25, 0.25)  # radians
        dx, dy = xx - cx, yy - cy
        u = dx * math.cos(rot) + dy * math.sin(rot)
        v = -dx * math.sin(rot) + dy * math.cos(rot)
        if s.kind == "circle":
            inside = u * u + v * v <= r * r
        elif s.kind == "square":
            inside = (np.abs(u) <= 0.85 * r) & (np.abs(v) <= 0.85 * r)
        else:  # triangle pointing up: apex (0, -r), base corners (+-0.95 r, 0.75 r)
            inside = (v <= 0.75 * r) & (v >= -r + 1.84 * np.abs(u))
        img = np.where(inside[..., None], colour, img)
    img = img * np.float32(rng.uniform(0.7, 1.15)) + np.float32(rng.uniform(-15, 15))  # lighting
    img = _blur(img.astype(np.float32), rng.uniform(0, 2.2) if rng.random() < 0.7 else 0.0)
    noise = torch.randn(img.shape, generator=torch.Generator().manual_seed(int(rng.integers(1 << 62))))
    img = img + noise.numpy() * np.float32(rng.uniform(0, max_noise))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def plan_resize(width, height, budget):
    """HF's aspect-preserving size rule (doc §4.1): (th, tw) in pixels, multiples of 48."""
    factor = math.sqrt(budget * PATCH * PATCH / (height * width))
    th = int(math.floor(factor * height / PATCH)) * PATCH
    tw = int(math.floor(factor * width / PATCH)) * PATCH
    if th == 0 and tw == 0:
        raise ValueError("image too small")
    if th == 0:
        th, tw = PATCH, min((width // height) * PATCH, budget * PATCH)
    elif tw == 0:
        tw, th = PATCH, min((height // width) * PATCH, budget * PATCH)
    return th, tw


def preprocess(img, budget):
    """uint8 (H, W, 3) -> patches (N, 6912) float32 in [0, 1] (HWC per patch), xs (N,), ys (N,)."""
    H, W, _ = img.shape
    th, tw = plan_resize(W, H, budget)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    if (th, tw) != (H, W):
        t = F.interpolate(t, size=(th, tw), mode="bicubic", antialias=True, align_corners=False)
        t = t.round().clamp(0, 255)
    t = t[0] / 255.0  # (3, th, tw)
    gy, gx = th // PATCH, tw // PATCH
    p = t.view(3, gy, PATCH, gx, PATCH).permute(1, 3, 2, 4, 0).reshape(gy * gx, PATCH * PATCH * 3)
    ys, xs = torch.meshgrid(torch.arange(gy), torch.arange(gx), indexing="ij")
    return p.contiguous(), xs.reshape(-1), ys.reshape(-1)


if __name__ == "__main__":  # writes a contact sheet of random frames for a look
    import random
    import sys
    import zlib
    import struct
    rng, prng = np.random.default_rng(1), random.Random(1)
    tiles = [render(tasks.random_scene(prng), rng, (320, 240)) for _ in range(12)]
    sheet = np.concatenate([np.concatenate(tiles[i * 4:(i + 1) * 4], 1) for i in range(3)], 0)
    H, W, _ = sheet.shape
    raw = b"".join(b"\0" + sheet[y].tobytes() for y in range(H))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/scenes.png", "wb").write(png)
