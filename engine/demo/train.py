"""Train the demo's tiny CLIP on the toy caption corpus, deterministically, on the CPU.

    python -m engine.demo.train --out engine/demo/vlaudit-demo.pt

regenerates the default toy world in a temporary directory, trains open_clip's model
(``vlaudit-demo`` config) with open_clip's ``ClipLoss`` and writes the checkpoint (fp16, in
open_clip's ``{"state_dict": ...}`` layout) plus a training card (``.json`` beside it) with the
world and training configs, the loss curve, the time taken and the checkpoint's sha256. Same
torch version, same thread count, same result.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import math
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from engine import storage
from engine.demo import model as demo_model
from engine.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    seed: int = 0
    threads: int = 1  # fixed so the float reductions, hence the weights, repeat exactly

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise InputError(f"train config: {name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise InputError(f"train config: learning_rate must be positive, got {self.learning_rate}")


@dataclass
class TrainResult:
    model: object
    losses: list[float]  # mean contrastive loss per epoch
    initial_loss: float  # mean loss of the untrained model over the corpus
    seconds: float
    pairs: int


def load_corpus(shard_paths, preprocess, tokenize):
    """(images (n, 3, H, W), tokens (n, L)) of every sample in the img2dataset tars (given in
    order, e.g. World.shard_paths()), in key order."""
    import torch
    from PIL import Image

    shard_paths, images, texts = list(shard_paths), [], []
    for tar_path in shard_paths:
        members: dict[str, dict[str, bytes]] = {}
        with tarfile.open(tar_path) as tar:
            for info in tar:
                key, _, ext = info.name.partition(".")
                members.setdefault(key, {})[ext] = tar.extractfile(info).read()
        for key in sorted(members):
            sample = members[key]
            images.append(preprocess(Image.open(io.BytesIO(sample["jpg"])).convert("RGB")))
            texts.append(sample["txt"].decode("utf-8"))
    if not images:
        raise InputError(f"no samples found in the shards {[str(p) for p in shard_paths]}")
    return torch.stack(images), tokenize(texts)


def train(images, tokens, config: TrainConfig = TrainConfig(), *, progress: bool = True) -> TrainResult:
    """Train a fresh vlaudit-demo model on aligned (images, tokens) with open_clip's ClipLoss."""
    import torch
    from open_clip.loss import ClipLoss

    with _deterministic(config):
        model, _ = demo_model.create_model()
        optimizer = _optimizer(model, config)
        steps = math.ceil(len(images) / config.batch_size) * config.epochs
        schedule = _cosine_schedule(optimizer, config, steps)
        order_rng = torch.Generator().manual_seed(config.seed)
        start = time.perf_counter()
        initial = evaluate_loss(model, images, tokens, config.batch_size)
        losses = []
        for epoch in _epochs(config.epochs, progress):
            order = torch.randperm(len(images), generator=order_rng)
            losses.append(_run_epoch(model, ClipLoss(), optimizer, schedule, images, tokens,
                                     order.split(config.batch_size)))
            log.info("epoch %d: loss %.4f", epoch + 1, losses[-1])
        model.eval()
    return TrainResult(model, losses, initial, time.perf_counter() - start, len(images))


def _run_epoch(model, loss_fn, optimizer, schedule, images, tokens, batches) -> float:
    """One pass over ``batches`` (index tensors); returns the mean loss."""
    import torch

    model.train()
    total = 0.0
    for batch in batches:
        loss = loss_fn(*model(images[batch], tokens[batch]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # CLIP clamps the learned temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        total += loss.item() * len(batch)
    return total / len(images)


@contextlib.contextmanager
def _deterministic(config: TrainConfig):
    """Seeds, deterministic kernels and a fixed thread count, restored afterwards."""
    import torch

    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(strict)


def evaluate_loss(model, images, tokens, batch_size: int) -> float:
    """Mean ClipLoss over the corpus in fixed batches, without training."""
    import torch
    from open_clip.loss import ClipLoss

    loss_fn, total = ClipLoss(), 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = slice(start, start + batch_size)
            out = model(images[batch], tokens[batch])
            total += loss_fn(*out).item() * len(images[batch])
    model.train(was_training)
    return total / len(images)


def save_checkpoint(model, tokens, path: str | Path) -> Path:
    """fp16 state dict in open_clip's layout; token rows absent from ``tokens`` are zeroed."""
    import torch

    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    used = torch.zeros(state["token_embedding.weight"].shape[0], dtype=torch.bool)
    used[tokens.unique()] = True
    state["token_embedding.weight"][~used] = 0.0
    state = {name: t.half() if t.is_floating_point() else t for name, t in state.items()}
    buffer = io.BytesIO()  # saved from memory, the archive's inner name does not depend on the path
    torch.save({"name": demo_model.MODEL_NAME, "state_dict": state}, buffer)
    return storage.write_bytes(path, buffer.getvalue())


def _optimizer(model, config: TrainConfig):
    """AdamW; gains, biases and the temperature without weight decay (open_clip's recipe)."""
    import torch

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        plain = param.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if plain else decay).append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": config.weight_decay}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6)


def _cosine_schedule(optimizer, config: TrainConfig, total_steps: int):
    import torch

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _epochs(count: int, progress: bool):
    if not progress:
        return range(count)
    from tqdm import tqdm

    return tqdm(range(count), desc="training epochs", unit="epoch")


def training_card(result: TrainResult, world_config, config: TrainConfig, checkpoint: Path) -> dict:
    import open_clip
    import torch

    return {
        "model": demo_model.MODEL_NAME,
        "checkpoint": checkpoint.name,
        "sha256": storage.sha256_file(checkpoint),
        "bytes": checkpoint.stat().st_size,
        "command": "python -m engine.demo.train --out engine/demo/vlaudit-demo.pt",
        "world": dataclasses.asdict(world_config),
        "train": dataclasses.asdict(config),
        "pairs": result.pairs,
        "initial_loss": result.initial_loss,
        "epoch_losses": result.losses,
        "seconds": round(result.seconds, 1),
        "versions": {"torch": torch.__version__, "open_clip_torch": open_clip.__version__},
    }


def main(argv: list[str] | None = None) -> int:
    from engine.demo.spec import WorldConfig
    from engine.demo.world import generate_world

    parser = argparse.ArgumentParser(prog="python -m engine.demo.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=demo_model.CHECKPOINT, help="checkpoint path (.pt)")
    parser.add_argument("--world-dir", type=Path, help="where to write the toy world (default: a temp dir)")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = TrainConfig(epochs=args.epochs, threads=args.threads)
    world_config = WorldConfig()
    with tempfile.TemporaryDirectory(prefix="vlaudit-demo-world-") as scratch:
        world = generate_world(args.world_dir or Path(scratch) / "world", world_config)
        _, preprocess = demo_model.create_model()
        images, tokens = load_corpus(world.shard_paths(), preprocess, demo_model.tokenizer())
    result = train(images, tokens, config)
    checkpoint = save_checkpoint(result.model, tokens, args.out)
    card = training_card(result, world_config, config, checkpoint)
    storage.write_json(checkpoint.with_suffix(".json"), card)
    print(f"loss {result.initial_loss:.3f} -> {result.losses[-1]:.3f} in {result.seconds:.0f} s; "
          f"wrote {checkpoint} ({card['bytes'] / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
