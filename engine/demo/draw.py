"""Draw one toy face: an outline (round or square) on a tinted background, eyes and a mouth.

Only the background hue carries ``tint`` and only the outline carries ``shape``; the face itself
is the same light grey for everyone. Size, position, eye spacing, mouth and pixel noise vary at
random so that no two faces are alike.
"""

from __future__ import annotations

import colorsys
import io

import numpy as np
from PIL import Image, ImageDraw

HUES = {"teal": 175.0, "amber": 40.0, "violet": 275.0}  # degrees
JPEG_QUALITY = 90


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
        pen.rounded_rectangle(box, radius=3 * scale, **face)
    _eyes(pen, rng, cx, cy - 0.25 * half_h, half_w, scale, eyes_closed)
    _mouth(pen, rng, cx, cy + 0.45 * half_h, half_w, scale)
    return _add_noise(image, rng)


def encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _background(rng: np.random.Generator, tint: str) -> tuple[int, int, int]:
    hue = (HUES[tint] + rng.uniform(-10, 10)) / 360.0
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.45, 0.65), rng.uniform(0.7, 0.9))
    return int(red * 255), int(green * 255), int(blue * 255)


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
