"""Which open_clip model, with which weights, on which device: resolve and load it.

A model is named as open_clip names it (``ViT-B-32``) plus exactly one source of weights: a
pretrained tag (downloaded and cached the usual open_clip way), a local checkpoint file, or
``none`` for random weights (seeded, so a random-weight index can be queried again).
The configs in ``engine/model_configs/`` are registered with open_clip when a model is first
loaded. Weights that are neither cached nor reachable raise MissingWeightsError, not a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from engine import storage
from engine.errors import InputError, MissingWeightsError

log = logging.getLogger(__name__)

RANDOM_WEIGHTS = "none"
RANDOM_SEED = 0
MODEL_CONFIG_DIR = Path(__file__).resolve().parents[1] / "model_configs"
RANDOM_WARNING = "RANDOM WEIGHTS: embeddings carry no learned meaning; use for tests only"


@dataclass(frozen=True)
class ModelSpec:
    """Which model to use. Exactly one of ``pretrained`` (an open_clip tag, or "none" for random
    weights) and ``checkpoint`` (a local file) is given."""

    name: str
    pretrained: str | None = None
    checkpoint: str | None = None

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise InputError("a model name is required, e.g. --model ViT-B-32")
        if (self.pretrained is None) == (self.checkpoint is None):
            raise InputError(f"model {self.name}: give exactly one of --pretrained TAG "
                             "(or --pretrained none for random weights) and --checkpoint FILE")
        if self.pretrained is not None and self.pretrained.lower() == RANDOM_WEIGHTS:
            object.__setattr__(self, "pretrained", RANDOM_WEIGHTS)

    @property
    def random_weights(self) -> bool:
        return self.pretrained == RANDOM_WEIGHTS

    def describe(self) -> dict:
        """What a manifest records: name, pretrained tag, checkpoint path and sha256."""
        described = {"name": self.name, "pretrained": self.pretrained, "checkpoint": self.checkpoint,
                     "checkpoint_sha256": None, "random_weights": self.random_weights}
        if self.checkpoint is not None:
            described["checkpoint_sha256"] = checkpoint_sha256(self.checkpoint)
        if self.random_weights:
            described["random_seed"] = RANDOM_SEED
            described["warning"] = RANDOM_WARNING
        return described

    @classmethod
    def from_manifest(cls, manifest_model: dict) -> "ModelSpec":
        return cls(name=manifest_model["name"], pretrained=manifest_model.get("pretrained"),
                   checkpoint=manifest_model.get("checkpoint"))


def weights_identity(described: dict) -> str:
    """A string naming the weights of a ``ModelSpec.describe()`` dict, independent of file paths."""
    if described.get("random_weights"):
        return f"random weights (seed {described.get('random_seed', RANDOM_SEED)})"
    if described.get("checkpoint_sha256"):
        return f"checkpoint sha256 {described['checkpoint_sha256']}"
    return f"pretrained tag {described.get('pretrained')!r}"


def checkpoint_sha256(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"checkpoint file {path} does not exist")
    stat = file.stat()
    return _sha256_cached(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return storage.sha256_file(path)


# --- devices ------------------------------------------------------------------------------------

def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}; choose auto, cpu, cuda or cuda:N")
    return device


def autocast_dtype(device: str):
    """Mixed precision on GPU only: bf16 where supported, else fp16; None (fp32) on CPU."""
    import torch

    if not device.startswith("cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# --- loading ------------------------------------------------------------------------------------

@dataclass
class LoadedModel:
    model: object  # the open_clip model, in eval mode on its device
    preprocess: object  # the open_clip validation transform (PIL image -> tensor)
    tokenizer: object
    device: str


def load_model(spec: ModelSpec, device: str = "auto") -> LoadedModel:
    """Load ``spec`` with open_clip; raise InputError / MissingWeightsError with a clear message."""
    import open_clip
    import torch

    device = resolve_device(device)
    pretrained = resolve_weights(spec)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)  # random weights are reproducible
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.name, pretrained=pretrained, device=device)
    except Exception as exc:  # a checkpoint of another model, or not a checkpoint at all
        if spec.checkpoint is not None:
            first = str(exc).strip().splitlines()[0][:300]
            raise InputError(f"checkpoint {spec.checkpoint} does not fit model {spec.name}: {first}") from exc
        raise
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.name)
    if spec.random_weights:
        log.warning("model %s has %s", spec.name, RANDOM_WARNING)
    return LoadedModel(model=model, preprocess=preprocess, tokenizer=tokenizer, device=device)


@functools.cache
def register_model_configs() -> None:
    """Make the configs in engine/model_configs (e.g. vlaudit-tiny) known to open_clip."""
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)


def _check_known_model(name: str) -> None:
    import open_clip

    if ":" in name:
        raise InputError(f"model {name!r}: hub and local-dir model names are not supported yet; give an "
                         "open_clip architecture name with --pretrained TAG or --checkpoint FILE")
    known = open_clip.list_models()
    if name not in known:
        close = [m for m in known if name.lower().replace("/", "-") in m.lower()][:10]
        hint = f"; similar: {close}" if close else "; see open_clip.list_models()"
        raise InputError(f"unknown open_clip model {name!r}{hint}")


def resolve_weights(spec: ModelSpec) -> str | None:
    """What to pass as open_clip's ``pretrained``; downloads (or finds cached) tag weights, so a
    missing file is reported before any model is built or any data read."""
    register_model_configs()
    _check_known_model(spec.name)
    if spec.random_weights:
        return None
    if spec.checkpoint is not None:
        checkpoint_sha256(spec.checkpoint)  # exists?
        return spec.checkpoint
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(spec.name)
        raise InputError(f"model {spec.name} has no pretrained tag {spec.pretrained!r}; known tags: "
                         f"{tags or 'none'} (or give --checkpoint FILE, or --pretrained none)")
    try:
        open_clip.download_pretrained(cfg)
    except Exception as exc:  # offline, hub unreachable, proxy refused: all mean "not here"
        raise MissingWeightsError(_missing_weights_message(spec, exc)) from exc
    return spec.pretrained


def _missing_weights_message(spec: ModelSpec, exc: Exception) -> str:
    offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") else ""
    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return (f"weights for {spec.name} --pretrained {spec.pretrained} are not in the local cache and "
            f"could not be downloaded{offline}: {reason}. Either fetch them once where the model hub "
            f"is reachable (they are cached under HF_HOME / ~/.cache and found from then on), or pass "
            f"a local weights file with --checkpoint FILE")
