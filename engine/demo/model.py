"""The demo's tiny open_clip model: its registered config, its shipped checkpoint, and loading.

The config (``engine/model_configs/vlaudit-demo.json``) keeps open_clip's own tokenizer and its
49,408-token vocabulary, so the checkpoint loads through the ordinary path
(``--model vlaudit-demo --checkpoint FILE``) with no custom tokenizer. The checkpoint stays small
because the towers are narrow, the weights are stored in fp16, and token rows the toy corpus
never uses are stored as zeros.
"""

from __future__ import annotations

from pathlib import Path

MODEL_NAME = "vlaudit-demo"
CHECKPOINT = Path(__file__).resolve().parent / "vlaudit-demo.pt"
TRAINING_CARD = CHECKPOINT.with_suffix(".json")


def create_model(checkpoint: str | Path | None = None):
    """(model, preprocess) in eval mode: random weights, or the weights of ``checkpoint``."""
    import open_clip

    from engine.faces.models import register_model_configs

    register_model_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(
        MODEL_NAME, pretrained=str(checkpoint) if checkpoint else None)
    return model.eval(), preprocess


def tokenizer():
    import open_clip

    from engine.faces.models import register_model_configs

    register_model_configs()
    return open_clip.get_tokenizer(MODEL_NAME)
