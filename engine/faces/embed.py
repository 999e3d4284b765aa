"""open_clip models: load by name + pretrained tag or checkpoint, encode images and prompts.

CONTRACT (stub written before the implementation; the signatures are what other stages use).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelSpec:
    """Which model to use. Exactly one of ``pretrained`` (an open_clip tag, or "none" for random
    weights) and ``checkpoint`` (a local file) is given."""

    name: str
    pretrained: str | None = None
    checkpoint: str | None = None

    def describe(self) -> dict:
        """What a manifest records: name, pretrained tag, checkpoint path and sha256."""
        raise NotImplementedError

    @classmethod
    def from_manifest(cls, manifest_model: dict) -> "ModelSpec":
        raise NotImplementedError


class Encoder:
    """A loaded open_clip model on the best device (CUDA when present, else CPU)."""

    spec: ModelSpec
    device: str

    @classmethod
    def load(cls, spec: ModelSpec, device: str = "auto") -> "Encoder":
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """(n, d) float32, L2-normalised; padded positions past the longest prompt are skipped."""
        raise NotImplementedError

    def encode_image_refs(self, references: Sequence[str], batch_size: int = 64,
                          num_workers: int | None = None) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Embed image references (see faces.table); returns (vectors of the readable ones,
        [(position, reason) for unreadable ones])."""
        raise NotImplementedError
