"""Known answers for per-frame PSNR/SSIM, studio-range Y and the clip averaging."""

import pytest
import torch

from lightning_modules.tasks.metrics import (
    ClipQualityMetrics,
    frame_psnr,
    frame_psnr_ssim,
    prepare_frames,
    rgb_to_y_bt601,
)


def test_y_bt601_known_values():
    white = torch.ones(1, 3, 2, 2)
    black = torch.zeros(1, 3, 2, 2)
    assert torch.allclose(rgb_to_y_bt601(white), torch.full((1, 1, 2, 2), 235 / 255))
    assert torch.allclose(rgb_to_y_bt601(black), torch.full((1, 1, 2, 2), 16 / 255))
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert rgb_to_y_bt601(red).item() == pytest.approx((16 + 65.481) / 255)
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_y_bt601(torch.zeros(1, 4, 2, 2))


def test_psnr_known_answer_per_frame():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 3, 16, 16) * 0.5
    offsets = torch.tensor([0.1, 0.01, 0.001]).view(1, 3, 1, 1, 1)
    restored = target + offsets  # MSE = offset² -> PSNR = -10 log10(offset²)
    psnr, ssim = frame_psnr_ssim(restored, target)
    assert psnr.shape == (2, 3) and ssim.shape == (2, 3)
    assert torch.allclose(psnr, torch.tensor([20.0, 40.0, 60.0]).expand(2, 3), atol=1e-3)
    assert (ssim <= 1).all() and ssim[:, 0].max() < ssim[:, 2].min()
    same_psnr, same_ssim = frame_psnr_ssim(target, target)
    assert torch.isinf(same_psnr).all()
    assert torch.allclose(same_ssim, torch.ones(2, 3))


def test_values_are_clamped_before_measuring():
    target = torch.full((1, 1, 3, 12, 12), 0.9)
    restored = torch.full((1, 1, 3, 12, 12), 1.7)  # clamped to 1.0 -> MSE 0.01
    psnr, _ = frame_psnr_ssim(restored, target)
    assert psnr.item() == pytest.approx(20.0, abs=1e-4)


def test_y_space_psnr_known_answer():
    target = torch.full((1, 1, 3, 12, 12), 0.5)
    restored = target + 0.1  # ΔY = 0.1 · (65.481 + 128.553 + 24.966) / 255 = 0.1 · 219/255
    psnr, _ = frame_psnr_ssim(restored, target, metric_space="y")
    expected = -10 * torch.log10(torch.tensor((0.1 * 219 / 255) ** 2))
    assert psnr.item() == pytest.approx(expected.item(), abs=1e-3)


def test_crop_border_drops_the_border():
    target = torch.rand(1, 2, 3, 16, 16)
    restored = target.clone()
    restored[..., :2, :] = 1 - restored[..., :2, :]  # errors only in the top two rows
    cropped, _ = frame_psnr_ssim(restored, target, crop_border=2)
    full, _ = frame_psnr_ssim(restored, target)
    assert torch.isinf(cropped).all() and torch.isfinite(full).all()
    assert prepare_frames(target, crop_border=2).shape == (2, 3, 12, 12)
    with pytest.raises(ValueError, match="crop_border"):
        prepare_frames(target, crop_border=8)
    with pytest.raises(ValueError, match="metric_space"):
        prepare_frames(target, metric_space="yuv")


def test_clip_metrics_average_per_frame_then_per_clip():
    target = torch.full((2, 2, 3, 12, 12), 0.5)
    restored = target.clone()
    restored[0, 0] += 0.1  # clip 0: frames at 20 dB and 40 dB -> 30 dB
    restored[0, 1] += 0.01
    restored[1] += 0.001  # clip 1: 60 dB
    metrics = ClipQualityMetrics()
    psnr, _ = metrics.update(restored, target)
    assert torch.allclose(psnr, torch.tensor([[20.0, 40.0], [60.0, 60.0]]), atol=1e-3)
    assert metrics.psnr.compute().item() == pytest.approx(45.0, abs=1e-3)
    metrics.reset()
    metrics.update(target + 0.1, target)
    assert metrics.psnr.compute().item() == pytest.approx(20.0, abs=1e-3)


def test_edge_frames_are_left_out_of_the_clip_score():
    target = torch.full((1, 5, 3, 12, 12), 0.5)
    errors = torch.tensor([0.1, 0.01, 0.001, 0.01, 0.1])  # 20, 40, 60, 40, 20 dB
    restored = target + errors.view(1, 5, 1, 1, 1)
    metrics = ClipQualityMetrics(edge_frames=1)
    psnr, _ = metrics.update(restored, target)
    assert psnr.shape == (1, 5)  # every frame is still measured
    assert metrics.psnr.compute().item() == pytest.approx((40 + 60 + 40) / 3, abs=1e-3)
    assert metrics.scored_frames(5) == slice(1, 4)
    with pytest.raises(ValueError, match="edge_frames=3 leaves no frame of a 5-frame clip"):
        ClipQualityMetrics(edge_frames=3).update(restored, target)
    with pytest.raises(ValueError, match="edge_frames must be >= 0"):
        ClipQualityMetrics(edge_frames=-1)


def test_frame_metrics_reject_mismatched_clips():
    with pytest.raises(ValueError, match="same shape"):
        frame_psnr_ssim(torch.zeros(1, 2, 3, 12, 12), torch.zeros(1, 3, 3, 12, 12))
    with pytest.raises(ValueError, match="clips"):
        frame_psnr_ssim(torch.zeros(2, 3, 12, 12), torch.zeros(2, 3, 12, 12))
    with pytest.raises(ValueError, match="metric_space"):
        ClipQualityMetrics(metric_space="lab")


def test_frame_psnr_is_the_psnr_of_frame_psnr_ssim():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 3, 24, 24)
    restored = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    psnr, _ = frame_psnr_ssim(restored, target, "y", crop_border=2)
    assert torch.equal(frame_psnr(restored, target, "y", crop_border=2), psnr)
    with pytest.raises(ValueError, match="must have the same shape"):
        frame_psnr(restored, target[:, :2])
