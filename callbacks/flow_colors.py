"""Middlebury (Baker et al. 2011) colour coding of optical flow, written by hand.

kornia and torchmetrics have no flow visualisation, and torchvision's ``flow_to_image`` cannot be
used here (torchvision breaks the CPU torch build this project pins).

Hue encodes direction on a 55-colour wheel (red → yellow → green → cyan → blue → magenta),
saturation encodes magnitude relative to ``max_flow``: zero flow is white. Following the
Middlebury convention ``angle = atan2(-v, -u)``, a vector pointing right (+x) is red, down (+y)
orange-yellow, left (-x) cyan-blue and up (-y) blue-violet.
Vectors longer than ``max_flow`` are drawn darker (× 0.75).
"""

import math

import torch

# Number of hues between the six primary/secondary colours, as in the Middlebury code.
_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def make_color_wheel() -> torch.Tensor:
    """The (55, 3) Middlebury colour wheel, RGB in [0, 1], starting at red."""
    ramps = {
        # (start colour, end colour) of each segment
        "RY": ((1, 0, 0), (1, 1, 0)),
        "YG": ((1, 1, 0), (0, 1, 0)),
        "GC": ((0, 1, 0), (0, 1, 1)),
        "CB": ((0, 1, 1), (0, 0, 1)),
        "BM": ((0, 0, 1), (1, 0, 1)),
        "MR": ((1, 0, 1), (1, 0, 0)),
    }
    colours = []
    for name, count in _SEGMENTS:
        start, end = (torch.tensor(c, dtype=torch.float32) for c in ramps[name])
        steps = torch.arange(count, dtype=torch.float32).unsqueeze(1) / count
        colours.append(start + (end - start) * steps)
    return torch.cat(colours)


def flow_to_color(flow: torch.Tensor, max_flow: float | None = None) -> torch.Tensor:
    """(2, H, W) or (B, 2, H, W) flow in pixels -> (3, H, W) / (B, 3, H, W) RGB in [0, 1].

    ``max_flow``: magnitude drawn at full saturation; None uses the largest finite magnitude of
    the input (per call). Non-finite vectors are drawn as zero flow (white).
    """
    squeeze = flow.dim() == 3
    if squeeze:
        flow = flow.unsqueeze(0)
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"flow_to_color: flow must be (2, H, W) or (B, 2, H, W), got {tuple(flow.shape)}"
        )
    if max_flow is not None and max_flow <= 0:
        raise ValueError(f"flow_to_color: max_flow must be > 0 or None, got {max_flow}")
    flow = torch.nan_to_num(flow.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
    u, v = flow[:, 0], flow[:, 1]
    magnitude = torch.sqrt(u * u + v * v)
    scale = float(magnitude.max()) if max_flow is None else float(max_flow)
    radius = magnitude / scale if scale > 0 else torch.zeros_like(magnitude)

    wheel = make_color_wheel().to(flow.device)
    num_colours = wheel.shape[0]
    angle = torch.atan2(-v, -u) / math.pi  # in [-1, 1]; -1 (and +1) is +x, i.e. red
    position = (angle + 1) / 2 * (num_colours - 1)
    k0 = position.floor().long().clamp(0, num_colours - 1)
    k1 = (k0 + 1) % num_colours
    frac = (position - k0.float()).unsqueeze(-1)
    colour = (1 - frac) * wheel[k0] + frac * wheel[k1]  # (B, H, W, 3)

    r = radius.unsqueeze(-1)
    inside = r <= 1
    colour = torch.where(inside, 1 - r * (1 - colour), colour * 0.75)
    colour = colour.movedim(-1, 1).clamp(0, 1)
    return colour.squeeze(0) if squeeze else colour
