"""Draw one toy face: an outline (round or square) on a tinted background, eyes and a mouth.

Only the background colour carries ``tint`` and only the outline carries ``shape``; the face
itself is the same light grey for everyone. The groups are drawn symmetrically so that none is
easier to tell apart than another: the three tints are the cyclic permutations of one
(low, high, high) RGB colour with the same jitter, and the square outline is scaled to the round
one's area. Size, position, eyes, mouth and pixel noise vary at random so no two faces are alike.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

# Which RGB channel holds the low level: cyan (low red), magenta (low green), yellow (low blue).
LOW_CHANNEL = {"cyan": 0, "magenta": 1, "yellow": 2}
JPEG_QUALITY = 95
SQUARE_SCALE = math.sqrt(math.pi) / 2  # a square of half-side a*0.886 has the ellipse's area


def draw_face(rng: np.random.Generator, *, tint: str, shape: str, eyes_closed: bool,
              size: int = 64) -> Image.Image:
    """One RGB face of ``size`` x ``size`` pixels; every random choice comes from ``rng``."""
    scale = size / 64.0
    image = Image.new("RGB", (size, size), _background(rng, tint))
    pen = ImageDraw.Draw(image)
    cx = size / 2 + rng.uniform(-3, 3) * scale
    cy = size / 2 + rng.uniform(-3, 3) * scale
    half_w = rng.uniform(17, 21) * scale
    half_h = rng.uniform(20, 24) * scale
    box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    grey = int(rng.integers(205, 230))
    face = dict(fill=(grey, grey, grey), outline=(40, 40, 40), width=max(1, round(2 * scale)))
    if shape == "round":
        pen.ellipse(box, **face)
    else:
        w, h = half_w * SQUARE_SCALE, half_h * SQUARE_SCALE
        pen.rounded_rectangle((cx - w, cy - h, cx + w, cy + h), radius=3 * scale, **face)
    _eyes(pen, rng, cx, cy - 0.25 * half_h, half_w, scale, eyes_closed)
    _mouth(pen, rng, cx, cy + 0.45 * half_h, half_w, scale)
    return _add_noise(image, rng)


def encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)  # no chroma subsampling
    return buffer.getvalue()


def _background(rng: np.random.Generator, tint: str) -> tuple[int, int, int]:
    low, high_a, high_b = rng.uniform(60, 110), rng.uniform(175, 225), rng.uniform(175, 225)
    levels = [high_a, high_b]
    levels.insert(LOW_CHANNEL[tint], low)
    return tuple(int(level) for level in levels)


def _eyes(pen, rng, cx, y, half_w, scale, closed: bool) -> None:
    spread = rng.uniform(0.35, 0.45) * half_w
    radius = rng.uniform(2.5, 3.5) * scale
    for x in (cx - spread, cx + spread):
        if closed:
            pen.line((x - radius * 1.4, y, x + radius * 1.4, y), fill=(30, 30, 30), width=max(1, round(2 * scale)))
        else:
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(30, 30, 30))


def _mouth(pen, rng, cx, y, half_w, scale) -> None:
    width = rng.uniform(0.35, 0.5) * half_w
    box = (cx - width, y - 3 * scale, cx + width, y + 3 * scale)
    style = int(rng.integers(3))
    if style == 0:
        pen.arc(box, 20, 160, fill=(60, 30, 30), width=max(1, round(2 * scale)))
    elif style == 1:
        pen.arc(box, 200, 340, fill=(60, 30, 30), width=max(1, round(2 * scale)))
    else:
        pen.line((box[0], y, box[2], y), fill=(60, 30, 30), width=max(1, round(2 * scale)))


def _add_noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.normal(0.0, 6.0, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
