"""Training losses: Charbonnier distortion, census photometric loss, edge-aware flow smoothness,
end-point error of a flow against a known one.

All losses return a scalar float32 tensor (inputs are promoted to float32 first, so bf16/fp16
autocast outputs do not lose precision in the loss) and are differentiable in their inputs.
"""

import kornia
import torch
import torch.nn.functional as F

from lightning_modules.stages.warp import flow_warp, in_bounds_mask


def _check_same_shape(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name}: inputs must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _check_mask(name: str, mask: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Broadcast a (B, 1, H, W) or (B, C, H, W) mask against ``ref`` (B, C, H, W)."""
    if mask.dim() != 4 or mask.shape[0] != ref.shape[0] or mask.shape[-2:] != ref.shape[-2:]:
        raise ValueError(
            f"{name}: mask must be (B, 1 or C, H, W) = (B, *, {ref.shape[-2]}, "
            f"{ref.shape[-1]}) with B = {ref.shape[0]}, got {tuple(mask.shape)}"
        )
    if mask.shape[1] not in (1, ref.shape[1]):
        raise ValueError(
            f"{name}: mask must have 1 or {ref.shape[1]} channels, got {mask.shape[1]}"
        )
    return mask.to(ref.dtype).expand_as(ref)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None, name: str) -> torch.Tensor:
    if mask is None:
        return values.mean()
    weights = _check_mask(name, mask, values)
    # The clamp keeps an all-invalid mask from dividing by zero (the loss is then 0).
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def charbonnier(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1e-3,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Charbonnier loss ``mean(sqrt((pred - target)² + ε²))``, optionally over a mask.

    This is the restoration Charbonnier (a smooth L1 with offset ε at d = 0). It is NOT
    ``kornia.losses.charbonnier_loss``, which is Barron's ``sqrt(d² + 1) - 1`` without ε.
    ``mask`` (B, 1 or C, H, W) with values in [0, 1] weights the mean; 4-D inputs only then.
    """
    _check_same_shape("charbonnier", pred, target)
    if eps <= 0:
        raise ValueError(f"charbonnier: eps must be > 0, got {eps}")
    values = torch.sqrt((pred.float() - target.float()) ** 2 + eps * eps)
    return _masked_mean(values, mask, "charbonnier")


def _census_transform(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Soft ternary census: for every pixel, (neighbour - centre) / sqrt(0.81 + (…)²).

    Returns (B, patch_size², H, W) computed on the grey image scaled to [0, 255].
    """
    image = image.float()
    grey = kornia.color.rgb_to_grayscale(image) if image.shape[1] == 3 else image.mean(1, True)
    grey = grey * 255.0
    b, _, h, w = grey.shape
    neighbours = F.unfold(grey, patch_size, padding=patch_size // 2)
    neighbours = neighbours.view(b, patch_size * patch_size, h, w)
    diff = neighbours - grey
    return diff / torch.sqrt(0.81 + diff * diff)


def census_loss(
    img1: torch.Tensor,
    img2_warped: torch.Tensor,
    mask: torch.Tensor | None = None,
    patch_size: int = 7,
) -> torch.Tensor:
    """Ternary census loss between an image and a warped image (UnFlow-style).

    Each image is census-transformed (soft sign of neighbour minus centre in a
    ``patch_size``² window); the per-pixel soft Hamming distance is
    ``Σ_k d_k² / (0.1 + d_k²) / patch_size²`` with ``d`` the difference of the transforms,
    so it lies in [0, 1). The result is its mean over ``mask`` (B, 1, H, W), further restricted
    to pixels at least ``patch_size // 2`` away from the border (their windows are padded).
    The transform is invariant to additive brightness changes, which is why it suits
    self-supervised flow on real video.
    """
    _check_same_shape("census_loss", img1, img2_warped)
    if img1.dim() != 4:
        raise ValueError(f"census_loss: expected (B, C, H, W) images, got {tuple(img1.shape)}")
    if patch_size < 3 or patch_size % 2 == 0:
        raise ValueError(f"census_loss: patch_size must be odd and >= 3, got {patch_size}")
    t1 = _census_transform(img1, patch_size)
    t2 = _census_transform(img2_warped, patch_size)
    sq = (t1 - t2) ** 2
    hamming = (sq / (0.1 + sq)).mean(dim=1, keepdim=True)

    b, _, h, w = img1.shape
    pad = patch_size // 2
    if h <= 2 * pad or w <= 2 * pad:
        raise ValueError(
            f"census_loss: images of {h}x{w} are too small for patch_size "
            f"{patch_size} (need more than {2 * pad} pixels per side)"
        )
    interior = torch.zeros(b, 1, h, w, dtype=img1.dtype, device=img1.device)
    interior[:, :, pad : h - pad, pad : w - pad] = 1.0
    if mask is not None:
        interior = interior * _check_mask("census_loss", mask, interior)
    return _masked_mean(hamming, interior, "census_loss")


def edge_aware_smoothness(
    flow: torch.Tensor,
    image: torch.Tensor,
    alpha: float = 10.0,
) -> torch.Tensor:
    """First-order edge-aware smoothness ``mean(|∂flow| · exp(-α · mean_c |∂I|))``.

    ``flow`` (B, 2, H, W) in pixels, ``image`` (B, C, H, W) in [0, 1]; x and y terms are
    averaged. The image gradients (edge weights) come from kornia's Sobel
    ``spatial_gradient``. The flow gradients are hand-written forward differences: central or
    Sobel kernels have a blind spot, a one-pixel checkerboard has zero gradient under them, and
    that pattern is exactly the artefact a smoothness prior has to penalise.
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"edge_aware_smoothness: flow must be (B, 2, H, W), got {tuple(flow.shape)}"
        )
    if image.dim() != 4 or image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(
            f"edge_aware_smoothness: image must be (B, C, H, W) matching the flow "
            f"{tuple(flow.shape)}, got {tuple(image.shape)}"
        )
    if alpha < 0:
        raise ValueError(f"edge_aware_smoothness: alpha must be >= 0, got {alpha}")
    flow, image = flow.float(), image.float()
    image_grad = kornia.filters.spatial_gradient(image, mode="sobel").abs().mean(dim=1)
    weight_x = torch.exp(-alpha * image_grad[:, 0:1, :, :-1])
    weight_y = torch.exp(-alpha * image_grad[:, 1:2, :-1, :])
    flow_dx = (flow[:, :, :, 1:] - flow[:, :, :, :-1]).abs()
    flow_dy = (flow[:, :, 1:, :] - flow[:, :, :-1, :]).abs()
    return 0.5 * ((flow_dx * weight_x).mean() + (flow_dy * weight_y).mean())


def endpoint_error(
    flow: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    eps: float = 0.0,
) -> torch.Tensor:
    """Mean end-point error ``mean(sqrt(‖flow − target‖² + ε²))`` over ``valid`` pixels.

    ``flow``, ``target`` (B, 2, H, W) in pixels; ``valid`` (B, 1, H, W) weights in [0, 1]
    (an all-zero mask gives 0). ε > 0 makes it a robust, everywhere-differentiable loss (a
    Charbonnier on the vector error); ε = 0 is the plain EPE metric.
    """
    _check_same_shape("endpoint_error", flow, target)
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"endpoint_error: flows must be (B, 2, H, W), got {tuple(flow.shape)}")
    if eps < 0:
        raise ValueError(f"endpoint_error: eps must be >= 0, got {eps}")
    squared = ((flow.float() - target.float()) ** 2).sum(dim=1, keepdim=True)
    return _masked_mean(torch.sqrt(squared + eps * eps), valid, "endpoint_error")


def clean_warp_loss(flows: torch.Tensor, gt: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Alignment loss of a clip's backward flows against its clean frames: the mean over
    t = 1..T-1 of ``charbonnier(warp(gt_{t-1}, v_t), gt_t)`` on the pixels whose sample
    ``p + v_t(p)`` lies in the frame. ``flows`` (B, T, 2, H, W; v_0 unused), ``gt``
    (B, T, C, H, W). Only the flows get gradients (the frames are constants)."""
    if flows.dim() != 5 or flows.shape[2] != 2 or flows.shape[:2] != gt.shape[:2]:
        raise ValueError(
            f"clean_warp_loss: flows must be (B, T, 2, H, W) for gt {tuple(gt.shape)}, got "
            f"{tuple(flows.shape)}"
        )
    if gt.shape[1] < 2:
        return flows.new_zeros((), dtype=torch.float32)
    previous, current = gt[:, :-1].flatten(0, 1).detach(), gt[:, 1:].flatten(0, 1).detach()
    flow = flows[:, 1:].flatten(0, 1).float()
    warped = flow_warp(previous.float(), flow)
    return charbonnier(warped, current.float(), eps, mask=in_bounds_mask(flow.detach()))
