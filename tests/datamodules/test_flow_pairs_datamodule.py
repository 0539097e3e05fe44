"""FlowPairsDataModule: degraded synthetic pairs with held-out validation pairs."""

import pytest
import torch

from datamodules.flow_pairs_datamodule import FlowPairsDataModule


def test_loaders_give_degraded_pairs_with_exact_flow_and_held_out_validation():
    data = FlowPairsDataModule(
        size=48,
        train_length=4,
        val_length=2,
        degradations={"noise": {"sigma_range": [30, 30]}},
        clean_prob=0.0,
        batch_size=2,
        val_batch_size=2,
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["lq"].shape == batch["gt"].shape == (2, 2, 3, 48, 48)
    assert batch["flow"].shape == (2, 2, 48, 48) and batch["valid"].shape == (2, 1, 48, 48)
    assert batch["sigma"].tolist() == pytest.approx([30 / 255] * 2)  # config scale -> [0, 1]
    noise = (batch["lq"] - batch["gt"]).std().item()
    assert noise == pytest.approx(30 / 255, rel=0.2)
    val = next(iter(data.val_dataloader()))
    assert not torch.equal(val["gt"], batch["gt"])  # another seed, other pairs
    with pytest.raises(ValueError, match="seed and val_seed must differ"):
        FlowPairsDataModule(seed=3, val_seed=3)
