"""open_clip models: load by name + pretrained tag or checkpoint, encode images and prompts.

``Encoder.load(ModelSpec("ViT-B-32", pretrained="laion2b_s34b_b79k"))`` picks the device (CUDA
when present, else CPU; fp16/bf16 autocast on GPU only). Both encoders return L2-normalised
float32 rows in input order. Text batches are cut to their longest real prompt (exact for
CLIP's causal text tower, see engine.faces.text_tower); images are decoded in worker processes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import numpy as np

from engine.errors import InputError
from engine.faces.images import DEFAULT_MAX_PIXELS, default_workers, image_loader
from engine.faces.models import ModelSpec, autocast_dtype, load_model

__all__ = ["Encoder", "ModelSpec"]

log = logging.getLogger(__name__)


class Encoder:
    """A loaded open_clip model on the best device (CUDA when present, else CPU)."""

    spec: ModelSpec
    device: str

    def __init__(self, spec: ModelSpec, loaded):
        from engine.faces.text_tower import causal_text_tower

        self.spec = spec
        self.device = loaded.device
        self.model = loaded.model
        self.preprocess = loaded.preprocess
        self.tokenizer = loaded.tokenizer
        self.text_tower = causal_text_tower(self.model)
        if self.text_tower is None:
            log.info("model %s: text tower not causal; prompts use the full padded length", spec.name)

    @classmethod
    def load(cls, spec: ModelSpec, device: str = "auto") -> "Encoder":
        return cls(spec, load_model(spec, device))

    @property
    def dim(self) -> int:
        import open_clip

        return int(open_clip.get_model_config(self.spec.name)["embed_dim"])

    def describe(self) -> dict:
        """The model's manifest entry (ModelSpec.describe()) plus device and precision."""
        dtype = autocast_dtype(self.device)
        return {**self.spec.describe(), "device": self.device, "dim": self.dim,
                "precision": str(dtype).removeprefix("torch.") if dtype else "float32"}

    def preprocessing(self) -> dict:
        """What the image transform does, for the manifest."""
        config = dict(getattr(self.model.visual, "preprocess_cfg", {}) or {})
        return {**{k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
                "transform": repr(self.preprocess)}

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """(n, d) float32, L2-normalised; padded positions past the longest prompt are skipped."""
        texts = _check_texts(texts)
        tokens = self.tokenizer(texts)
        # Similar lengths share a batch, so each batch is cut as short as it can be.
        lengths = (tokens != 0).sum(dim=1).numpy()
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = self._encode_token_batch(tokens[rows])
        return out

    def encode_texts_plain(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """The reference path: open_clip's ``encode_text`` on full 77-position batches."""
        texts = _check_texts(texts)
        tokens = self.tokenizer(texts)
        parts = [self._run(lambda t: self.model.encode_text(t), tokens[i:i + batch_size])
                 for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts)

    def encode_image_refs(self, references: Sequence[str], batch_size: int = 64,
                          num_workers: int | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                          progress: bool = False) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Embed image references (see faces.table); returns (vectors of the readable ones,
        [(position, reason) for unreadable ones])."""
        workers = default_workers() if num_workers is None else num_workers
        loader = image_loader(references, self.preprocess, batch_size=batch_size, num_workers=workers,
                              max_pixels=max_pixels, pin_memory=self.device.startswith("cuda"))
        parts, failures = [], []
        with _progress(len(references), progress) as bar:
            for positions, batch, failed in loader:
                failures.extend(failed)
                if batch is not None:
                    parts.append(self.encode_image_tensors(batch))
                bar.update(len(positions) + len(failed))
        vectors = np.concatenate(parts) if parts else np.empty((0, self.dim), dtype=np.float32)
        return vectors, failures

    def encode_image_tensors(self, batch) -> np.ndarray:
        """Features of already preprocessed images (b, 3, H, W): L2-normalised float32."""
        return self._run(lambda t: self.model.encode_image(t), batch)

    def _encode_token_batch(self, tokens) -> np.ndarray:
        if self.text_tower is None:
            return self._run(lambda t: self.model.encode_text(t), tokens)
        return self._run(self.text_tower.encode, tokens)

    def _run(self, forward, batch) -> np.ndarray:
        import torch

        dtype = autocast_dtype(self.device)
        autocast = (torch.autocast("cuda", dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            features = forward(batch.to(self.device, non_blocking=True))
        features = torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu().numpy().astype(np.float32, copy=False)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InputError("texts must be a list of strings, not one string")
    texts = list(texts)
    if not texts:
        raise InputError("no texts to encode")
    bad = [t for t in texts if not isinstance(t, str) or not t.strip()]
    if bad:
        raise InputError(f"texts must be non-empty strings; got {bad[:3]!r}")
    return texts


@contextlib.contextmanager
def _progress(total: int, enabled: bool):
    if not enabled:
        yield _NoBar()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc="embedding", unit="img", leave=False) as bar:
        yield bar


class _NoBar:
    def update(self, _n: int) -> None:
        pass
