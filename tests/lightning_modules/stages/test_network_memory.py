"""Inference memory of the full network must not grow with the clip length.

Memory is measured exactly, not by timing or RSS: a ``TorchDispatchMode`` sees every tensor an
operator creates and tracks the bytes of the storages that are still alive (a weakref finalizer
on each storage subtracts it when it is freed), so the peak is deterministic.
"""

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tests.conftest_config import tiny_network

H, W = 32, 48


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storages created inside the mode and alive at the same time.

    A storage is counted the first time an operator output uses it; pre-existing tensors whose
    views appear (the input clip) are excluded with :meth:`exclude`.
    """

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen = weakref.WeakSet()

    def exclude(self, *tensors):
        """Do not count these (pre-existing) tensors, e.g. the input clip, when a view appears."""
        for t in tensors:
            self._seen.add(t.untyped_storage())

    def _release(self, nbytes):
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                storage = leaf.untyped_storage()
                if storage not in self._seen:
                    self._seen.add(storage)
                    nbytes = storage.nbytes()
                    self.live += nbytes
                    weakref.finalize(storage, self._release, nbytes)
        self.peak = max(self.peak, self.live)
        return out


def peak_bytes(net, num_frames, grad=False):
    torch.manual_seed(0)
    lq = torch.rand(1, num_frames, 3, H, W)
    noise = torch.full((1,), 0.1)
    with torch.set_grad_enabled(grad), LiveTensorBytes() as meter:
        meter.exclude(lq, noise)
        out = net(lq, noise)
        del out
    return meter.peak


def test_inference_memory_does_not_grow_with_clip_length():
    torch.manual_seed(0)
    net = tiny_network(
        "adaptive_q", ["model.codec.latent_channels=8", "model.restoration.num_blocks=[1,1,1]"]
    ).eval()
    output_frame = 3 * H * W * 4  # bytes of one restored float32 frame
    short, long = peak_bytes(net, 5), peak_bytes(net, 20)
    # Only the 15 extra output frames may add memory (small slack for allocator-free noise).
    assert long <= short + 15 * output_frame + 0.02 * short, (short, long)
    # The meter itself detects growth: with autograd on, the graph holds every frame.
    grad_per_frame = (peak_bytes(net, 5, grad=True) - peak_bytes(net, 2, grad=True)) / 3
    assert grad_per_frame > 10 * output_frame
