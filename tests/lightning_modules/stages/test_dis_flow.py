"""DISFlow: OpenCV's DIS as a no-training flow stage, in the network's backward convention."""

import pickle

import pytest

from datamodules.sample import load_photo
from lightning_modules.stages.dis_flow import DISFlow
from lightning_modules.stages.warp import flow_warp

pytest.importorskip("cv2")


def _shifted_pair(shift=(-6, 4), size=192):
    """x_t(p) = x_{t-1}(p + shift): the backward flow of the pair is ``shift``."""
    photo = load_photo("astronaut")
    top, left = 120, 140
    previous = photo[:, top : top + size, left : left + size]
    current = photo[
        :, top + shift[1] : top + shift[1] + size, left + shift[0] : left + shift[0] + size
    ]
    return current[None], previous[None]


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_a_known_translation_is_recovered_in_the_backward_convention(scale):
    current, previous = _shifted_pair()
    flow = DISFlow(scale=scale)(current, previous)
    assert flow.shape == (1, 2, 192, 192)
    inner = flow[0, :, 24:-24, 24:-24].flatten(1).median(dim=1).values
    assert inner.tolist() == pytest.approx([-6.0, 4.0], abs=0.3)
    warped = flow_warp(previous, flow)[..., 24:-24, 24:-24]
    zero = (current - previous)[..., 24:-24, 24:-24].abs().mean()
    assert (warped - current[..., 24:-24, 24:-24]).abs().mean() < 0.25 * zero


def test_it_pickles_runs_without_gradients_and_checks_its_inputs():
    flow = pickle.loads(pickle.dumps(DISFlow()))  # ddp_spawn pickles the model
    current, previous = _shifted_pair()
    out = flow(current.requires_grad_(), previous)
    assert not out.requires_grad and list(flow.parameters()) == []
    with pytest.raises(ValueError, match="differ in shape"):
        flow(current, previous[..., :-1])
    with pytest.raises(ValueError, match="scale must be in"):
        DISFlow(scale=0)
    with pytest.raises(ValueError, match="preset must be one of"):
        DISFlow(preset="slow")
    with pytest.raises(ValueError, match=r"zero_margin must be in \(0, 1\], got 1.5"):
        DISFlow(zero_margin=1.5)


def test_the_flow_does_not_depend_on_frames_seen_before():
    """OpenCV's DIS rewrites its pyramid settings on a small frame and keeps them: a cached
    estimator gave a different flow for the same pair after one 24-pixel call."""
    torch = pytest.importorskip("torch")
    current, previous = _shifted_pair(shift=(-3, 2), size=192)
    noise = torch.Generator().manual_seed(0)
    current = current + 0.1 * torch.randn(current.shape, generator=noise)
    previous = previous + 0.1 * torch.randn(previous.shape, generator=noise)
    fresh = DISFlow(scale=0.25, zero_check=False)(current, previous)
    used = DISFlow(scale=0.25, zero_check=False)
    used(current[..., :96, :96], previous[..., :96, :96])  # 24 pixels at scale 0.25
    assert torch.equal(used(current, previous), fresh)


def test_zero_check_stops_dis_inventing_motion_on_a_noisy_near_static_clip(shared_data):
    """The shared tennis clip barely moves (0.8 px mean); at σ = 30 DIS alone warps worse than no
    motion at all. With the zero-motion check the warp error (on the clean frames) drops."""
    torch = pytest.importorskip("torch")
    from datamodules.datasets.folder import scan_folder

    frames = scan_folder(gt_root=shared_data / "tennis_videnn" / "original")[0].gt.read([0, 1, 2])
    noise = torch.Generator().manual_seed(0)
    noisy = frames + 30 / 255 * torch.randn(frames.shape, generator=noise)

    def warp_error(flow):
        return (flow_warp(frames[:-1], flow) - frames[1:]).abs().mean().item()

    raw = warp_error(DISFlow(scale=0.25, zero_check=False)(noisy[1:], noisy[:-1]))
    any_better = warp_error(DISFlow(scale=0.25, zero_margin=1.0)(noisy[1:], noisy[:-1]))
    checked = warp_error(DISFlow(scale=0.25)(noisy[1:], noisy[:-1]))  # margin 0.9
    still = (frames[1:] - frames[:-1]).abs().mean().item()
    assert raw > 1.5 * still  # the failure being fixed
    assert any_better < 0.7 * raw
    assert checked < 0.9 * still  # with the margin, better than no motion at all


def test_zero_check_keeps_a_real_translation():
    flow = DISFlow(scale=0.5, zero_check=True)(*_shifted_pair())
    inner = flow[0, :, 24:-24, 24:-24].flatten(1).median(dim=1).values
    assert inner.tolist() == pytest.approx([-6.0, 4.0], abs=0.3)


@pytest.mark.parametrize("size", [(8, 10), (3, 40)])
def test_frames_smaller_than_the_check_kernels_run(size):
    """A strip of video only a few pixels high (smaller than the zero check's 25-tap blur) gets a
    finite flow of its own size instead of a padding error."""
    current, previous = _shifted_pair(size=64)
    current, previous = current[..., : size[0], : size[1]], previous[..., : size[0], : size[1]]
    flow = DISFlow()(current, previous)
    assert flow.shape == (1, 2, *size) and flow.isfinite().all()


def test_a_batch_of_pairs_gives_the_flows_of_its_pairs_one_by_one():
    """Several pairs run in a thread pool with OpenCV's own threads off; one pair runs on
    OpenCV's threads. The flows are the same: each pair's flow depends on that pair alone."""
    torch = pytest.importorskip("torch")
    pairs = [_shifted_pair(shift=s, size=96) for s in ((-3, 2), (0, 0), (5, -1))]
    noise = torch.Generator().manual_seed(3)
    current = torch.cat([c for c, _ in pairs]) + 0.1 * torch.randn(3, 3, 96, 96, generator=noise)
    previous = torch.cat([p for _, p in pairs]) + 0.1 * torch.randn(3, 3, 96, 96, generator=noise)
    flow = DISFlow(scale=0.5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batched = flow(current, previous)
        torch.set_num_threads(1)
        serial = flow(current, previous)
    finally:
        torch.set_num_threads(threads)
    one_by_one = torch.cat([flow(current[i : i + 1], previous[i : i + 1]) for i in range(3)])
    assert torch.equal(batched, serial) and torch.equal(batched, one_by_one)
    assert batched[0].abs().mean() > 1.0  # real motion, not an all-zero answer
