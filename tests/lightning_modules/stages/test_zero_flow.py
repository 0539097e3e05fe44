"""ZeroFlow: the no-motion ablation of the flow stage."""

import pytest
import torch

from lightning_modules.stages.zero_flow import ZeroFlow


def test_zero_flow_has_no_parameters_and_returns_zeros_of_the_frame_size():
    flow = ZeroFlow()
    out = flow(torch.rand(2, 3, 10, 12), torch.rand(2, 3, 10, 12))
    assert out.shape == (2, 2, 10, 12) and torch.equal(out, torch.zeros_like(out))
    assert list(flow.parameters()) == []
    with pytest.raises(ValueError, match="differ in shape"):
        flow(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="ref must be a"):
        flow(torch.rand(3, 8, 8), torch.rand(3, 8, 8))
