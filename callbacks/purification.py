"""Does the codec purify? The paper's Fig. 1c claim as a number and a picture.

For a degraded clip and its clean version, with the network's 1/4-scale temporal features
(``maps["aligned"]``: c̄_t, before the codec; ``maps["purified"]``: ĉ_t, after it) of the
degraded run, and the aligned features c_t^gt of the same network run on the clean clip (σ = 0):

    ratio = Σ_t ‖ĉ_t − c_t^gt‖ / Σ_t ‖c̄_t − c_t^gt‖        over frames t >= 2 (frame 1 has no past)

below 1 when the codec brings the temporal features closer to clean-video features (1 exactly
without a codec). Nothing ties the codec's output to its input's feature space (the loss only
asks the restored frame to be right), so ``ratio`` also moves when the codec merely rescales or
re-maps its features. ``relative_ratio`` compares each feature set with its own clean version,
relative to that version's size (ĉ_t^gt: the codec's output on the clean clip):

    relative_ratio = (Σ_t ‖ĉ_t − ĉ_t^gt‖ / Σ_t ‖ĉ_t^gt‖) / (Σ_t ‖c̄_t − c_t^gt‖ / Σ_t ‖c_t^gt‖)

below 1 when the degradation's footprint is relatively smaller after the codec than before;
unchanged by any rescaling of the codec's output. ``tsne_image`` draws the three feature sets
(sampled positions, the same ones in each set) after a 2-D t-SNE (scikit-learn) as a scatter
image.

``Purification`` logs ``val/purification_ratio`` and ``val/purification_relative_ratio`` on the
first validation batch every ``every_n_epochs`` epochs and, with ``tsne_points > 0``, the t-SNE
image of the last of them (``val/purification/tsne``) when training ends (t-SNE takes seconds);
``eval.py purification=true`` writes the ratios and the picture for the first test clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image, ImageDraw

from callbacks.image_logging import log_images
from lightning_modules.tasks.network_inputs import flow_inputs, network_inputs

# Feature set -> RGB colour of its points.
COLOURS = {"before codec": (230, 85, 13), "after codec": (49, 130, 189), "clean": (49, 163, 84)}


@dataclass
class PurificationResult:
    """``ratio``, ``relative_ratio`` (see module docstring) and (T-1, N, h, w) features of frames
    2..T (``clean``: c^gt, ``clean_after``: ĉ^gt)."""

    ratio: float
    relative_ratio: float
    before: torch.Tensor
    after: torch.Tensor
    clean: torch.Tensor
    clean_after: torch.Tensor


@torch.no_grad()
def purification(net: torch.nn.Module, batch: dict[str, Any]) -> PurificationResult | None:
    """The ratio on the first clip of ``batch``; None without ``gt`` or with a single frame."""
    batch = {k: v[:1] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}
    gt = batch.get("gt")
    lq, noise_level = network_inputs(batch, net)
    if gt is None or lq.shape[1] < 2:
        return None
    degraded = net(lq, noise_level, return_maps=True, **flow_inputs(batch, net)).maps[1:]
    clean_level = None if noise_level is None else torch.zeros_like(noise_level)
    clean = net(gt.to(lq), clean_level, return_maps=True).maps[1:]
    before = torch.cat([m["aligned"] for m in degraded]).float()
    after = torch.cat([m["purified"] for m in degraded]).float()
    target = torch.cat([m["aligned"] for m in clean]).float()
    target_after = torch.cat([m["purified"] for m in clean]).float()
    ratio = _distance(after, target) / max(_distance(before, target), 1e-12)
    relative_after = _distance(after, target_after) / max(_size(target_after), 1e-12)
    relative_before = _distance(before, target) / max(_size(target), 1e-12)
    relative_ratio = relative_after / max(relative_before, 1e-12)
    return PurificationResult(
        ratio, relative_ratio, before.cpu(), after.cpu(), target.cpu(), target_after.cpu()
    )


def _distance(features: torch.Tensor, target: torch.Tensor) -> float:
    """Σ_t ‖features_t − target_t‖ over frames (dimension 0)."""
    return float((features - target).flatten(1).norm(dim=1).sum())


def _size(features: torch.Tensor) -> float:
    """Σ_t ‖features_t‖ over frames (dimension 0)."""
    return float(features.flatten(1).norm(dim=1).sum())


def tsne_image(result: PurificationResult, points: int = 5000, size: int = 512, seed: int = 0):
    """(size, size, 3) uint8 scatter of a 2-D t-SNE of the three feature sets: ``points`` in
    all, the same sampled positions (frame, y, x) from each set."""
    from sklearn.manifold import TSNE  # local import: only needed for the picture

    sets = {"before codec": result.before, "after codec": result.after, "clean": result.clean}
    vectors = {k: v.permute(0, 2, 3, 1).reshape(-1, v.shape[1]) for k, v in sets.items()}
    count = min(points // len(sets), len(next(iter(vectors.values()))))
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(next(iter(vectors.values()))), generator=generator)[:count]
    stacked = torch.cat([v[chosen] for v in vectors.values()]).numpy()
    embedded = TSNE(n_components=2, init="pca", random_state=seed, perplexity=30.0).fit_transform(
        stacked
    )
    low, high = embedded.min(0), embedded.max(0)
    xy = (embedded - low) / np.maximum(high - low, 1e-9) * (size - 41) + 20
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for index, (name, colour) in enumerate(COLOURS.items()):
        for x, y in xy[index * count : (index + 1) * count]:
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=colour)
        draw.rectangle((8, 8 + 14 * index, 16, 16 + 14 * index), fill=colour)
        draw.text((20, 6 + 14 * index), name, fill=(0, 0, 0))
    draw.text((8, size - 16), f"distance ratio after/before codec: {result.ratio:.3f}", fill=0)
    return np.asarray(image)


class Purification(pl.Callback):
    """Log ``val/purification_ratio`` every ``every_n_epochs`` epochs, a t-SNE image at the end."""

    def __init__(self, every_n_epochs: int = 1, tsne_points: int = 0) -> None:
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"Purification: every_n_epochs must be >= 1, got {every_n_epochs!r}")
        if not isinstance(tsne_points, int) or tsne_points < 0:
            raise ValueError(f"Purification: tsne_points must be >= 0, got {tsne_points!r}")
        self.every_n_epochs = every_n_epochs
        self.tsne_points = tsne_points
        self.last: PurificationResult | None = None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        net = getattr(pl_module, "net", None)
        due = not trainer.sanity_checking and trainer.current_epoch % self.every_n_epochs == 0
        if net is None or batch_idx != 0 or dataloader_idx != 0 or not due:
            return
        result = purification(net, batch)
        if result is None:
            return
        pl_module.log("val/purification_ratio", result.ratio, batch_size=1, sync_dist=True)
        pl_module.log(
            "val/purification_relative_ratio", result.relative_ratio, batch_size=1, sync_dist=True
        )
        self.last = result

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.tsne_points > 0 and self.last is not None and trainer.is_global_zero:
            image = tsne_image(self.last, self.tsne_points)
            log_images(trainer, "val/purification", {"tsne": image}, step=trainer.global_step)
