"""Decode and preprocess images in DataLoader worker processes, so decoding hides behind the model.

Each item is one image reference (engine.faces.table). An image that cannot be read, is
truncated, or exceeds the pixel limit (a decompression-bomb guard) comes back as a failure with
its reason; it never stops the batch.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence

from engine.faces.table import read_image_bytes

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default warning limit (about 0.25 GB of RGB pixels)


class ImageRejected(ValueError):
    """An image we refuse to decode (the reason is the message)."""


def decode_image(reference: str, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Read one image reference into an RGB PIL image, checking its size before decoding."""
    from PIL import Image

    data = read_image_bytes(reference)
    if not data:
        raise ImageRejected("empty file")
    try:
        opened = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError as exc:
        raise ImageRejected("not an image in a format PIL can read") from exc
    with opened as image:  # header only; pixels are not decoded yet
        width, height = image.size
        if width * height > max_pixels:
            raise ImageRejected(f"decompression-bomb guard: {width}x{height} = {width * height:,} "
                                f"pixels exceeds the limit of {max_pixels:,}")
        return image.convert("RGB")  # decodes; a truncated file raises OSError here


def failure_reason(exc: Exception) -> str:
    """A stable, readable reason (no memory addresses, so reruns record the same text)."""
    message = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "<data>", str(exc)).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def default_workers() -> int:
    """Decode workers: leave one core to the model, use at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class ImageDataset:
    """Map-style dataset: position -> (position, tensor or None, failure reason)."""

    def __init__(self, references: Sequence[str], preprocess, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.references = list(references)
        self.preprocess = preprocess
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.references)

    def __getitem__(self, position: int):
        try:
            image = decode_image(self.references[position], self.max_pixels)
        except Exception as exc:  # any decoder error is a recorded failure, never a crash
            return position, None, failure_reason(exc)
        return position, self.preprocess(image), ""


def collate(items):
    """(positions of decoded images, stacked tensors or None, [(position, reason)])."""
    import torch

    good = [(position, tensor) for position, tensor, _ in items if tensor is not None]
    failed = [(position, reason) for position, tensor, reason in items if tensor is None]
    batch = torch.stack([tensor for _, tensor in good]) if good else None
    return [position for position, _ in good], batch, failed


def image_loader(references: Sequence[str], preprocess, *, batch_size: int, num_workers: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS, pin_memory: bool = False):
    """A DataLoader over ``references`` in their order, decoding in ``num_workers`` processes."""
    from torch.utils.data import DataLoader

    dataset = ImageDataset(references, preprocess, max_pixels)
    extra = {"prefetch_factor": 4, "worker_init_fn": _single_thread} if num_workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate, pin_memory=pin_memory, **extra)


def _single_thread(_worker_id: int) -> None:
    """Workers decode one image at a time; the model keeps the intra-op threads."""
    import torch

    torch.set_num_threads(1)
