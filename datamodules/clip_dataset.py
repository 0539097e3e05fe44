"""Clips sampled from a list of ``Sequence``: the one Dataset every data config uses.

Indexing:
- training: one item per window start position, over all sequences (a sequence of n frames
  gives n − span + 1 items, span = (clip_len − 1)·min(temporal_strides) + 1), so every frame
  is equally likely to be seen and an epoch covers each sequence in proportion to its length.
  Each item then draws its stride, reversal, crop and flips, and the degradation;
- val/test: non-overlapping windows ``[0, L), [L, 2L), ...`` (a tail shorter than L is
  dropped), or the whole sequence when ``clip_len == -1``; given a list of degradations (e.g.
  one fixed-σ noise per test level), each (window, degradation) pair is one item. Centre crop
  of ``patch_size``, or the full frame when None.

Randomness (all of it through one ``torch.Generator`` per item):
- training, indexed by a key ``(index, item_seed)`` (what ``datamodules/clip_sampler.py:
  ClipSampler`` yields; ``item_seed`` is a function of (seed, epoch, slot)): seeded from
  (``seed``, index, item_seed) only, so a clip is the same whatever the process, worker count
  or resume, and every epoch sees new crops and noise;
- training, indexed by a plain int: seeded from (``seed``, index, one draw from torch's global
  RNG; PyTorch seeds it per DataLoader worker, ``seed_everything`` in the main process);
- val/test: seeded from (``seed``, "eval", sequence name, window start, ``repr`` of the
  degradation) only, so evaluation noise is identical across runs, dataset instances, worker
  counts and the order of the other sequences.

Items (see docs/ARCHITECTURE.md): ``{"lq" (T, 3, h, w), "gt" (T, 3, h, w; absent when the
sequence has no clean frames), "sigma" () float in [0, 1] units (0 without noise), "name" str,
"frame_idx" (T,) long}``. The dataset never builds a degradation: it applies the ones it gets.
Paired sequences (``Sequence.lq`` set) use their real degraded frames; the degradation is then
applied to those LQ frames only when ``degrade_paired=True``.

Flow with context (``flow_estimator``, e.g. the DIS flow stage): the item also gets ``"flow"``
(T, 2, h, w), ``flow[t] = estimator(lq_t, lq_{t-1})`` (backward flow, zero at t = 0) estimated on
the degraded frames of the crop window grown by ``flow_margin`` pixels on each side (within the
frame), then cropped and flipped with them (``apply_spatial_flow``). Flow estimated on a 96-pixel
training crop misses the context it needs, while evaluation runs the network on full frames.
Measured on the shared DAVIS frames at σ = 30, DIS warp error as a share of zero flow's (and
time per pair): crop alone 0.51 (8 ms), margin 32: 0.42 (13 ms), 64: 0.39 (21 ms), 128: 0.39
(46 ms), full frame 0.39 (84 ms). With it the degradation is applied to that grown window
before the crop (the same noise statistics; other random draws than without).
With ``clean_flow_prob`` p > 0 a training item takes that flow from its clean frames instead,
with probability p (a teacher's alignment, as exact as the estimator gets on real motion, so the
recurrence learns what well-aligned features are worth; issue 8); validation and test items keep
the degraded frames' flow, which is all that inference has.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

import torch
from torch.utils.data import Dataset

from datamodules.clip_transforms import (
    SpatialParams,
    apply_spatial,
    apply_spatial_flow,
    as_patch_size,
    centre_spatial_params,
    draw_spatial_params,
    draw_temporal_window,
    frame_window,
    pan_clip,
    window_span,
)
from datamodules.sequence import Sequence

log = logging.getLogger(__name__)

# Errors a frame source raises for a missing/corrupt frame (DatasetLayoutError is a ValueError).
READ_ERRORS = (OSError, ValueError, RuntimeError)
MAX_SUBSTITUTIONS = 16


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` that is the same in every process (unlike ``hash``)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass(frozen=True)
class ClipRef:
    """One item: sequence position, window start, and which of the degradations it gets."""

    sequence: int
    start: int
    degradation: int = 0


class ClipDataset(Dataset):
    """Clips of ``clip_len`` frames from ``sequences`` (see the module docstring).

    Args:
        sequences: the sequences to sample from.
        clip_len: frames per clip; -1 = the whole sequence (val/test only).
        train: random windows/crops/flips/reversal (True) or deterministic centred clips.
        patch_size: crop size (int or (h, w)); None keeps the full frame.
        degradation: ``deg(gt_clip, generator) -> (lq_clip, info)`` for sequences without LQ
            frames (``datamodules.degradations``); required when such sequences exist. For
            val/test, a list of them makes each (window, degradation) pair one item (e.g. one
            fixed-σ noise per test level).
        temporal_strides: training frame strides, one drawn per clip among those that fit.
        reverse_prob: training probability of reversing a clip's frame order.
        flip, vflip, transpose: training horizontal flip, vertical flip, H/W transposition
            (each with probability 1/2; transposition needs a square patch).
        static_prob: training probability that a clip is its first frame repeated, degraded
            afresh per frame (noise is i.i.d. per frame): a scene whose alignment is exact,
            where the recurrence can learn what averaging over time gains before it must also
            learn when the flow is wrong (issue 8). 0 draws nothing. Needs a degradation
            synthesized per frame: sequences with provided degraded frames are refused unless
            ``degrade_paired`` degrades them afresh.
        static_pan: a static clip pans by (dx, dy) pixels per frame, each drawn uniformly from
            the integers in [−static_pan, static_pan] (``clip_transforms.pan_clip``: a known,
            exact camera motion; the shift shrinks if the frame is too small for it). 0: still.
        seed: base seed of every item's generator.
        skip_bad: drop (and log) sequences shorter than a clip, and replace a clip whose frames
            fail to read with the next readable one (logged) instead of raising.
        degrade_paired: also apply the degradation to the real LQ frames of paired sequences.
        flow_estimator: ``estimator(ref, supp) -> flow`` on (N, 3, H, W) frame batches (a flow
            stage without trainable weights, e.g. ``DISFlow``); adds ``"flow"`` estimated with
            context (module docstring). None: no flow in the items.
        flow_margin: context in pixels around the crop for ``flow_estimator``; None: the whole
            frame.
        clean_flow_prob: training probability that ``flow_estimator`` sees the item's clean
            frames instead of its degraded ones (module docstring); val/test items always use
            the degraded ones. Drawn last (0: no draw), so it changes no other draw.
    """

    def __init__(
        self,
        sequences: list[Sequence],
        clip_len: int = 7,
        train: bool = True,
        patch_size: int | tuple[int, int] | None = 128,
        degradation=None,
        temporal_strides: tuple[int, ...] = (1,),
        reverse_prob: float = 0.5,
        flip: bool = True,
        seed: int = 0,
        skip_bad: bool = False,
        vflip: bool = False,
        transpose: bool = False,
        static_prob: float = 0.0,
        static_pan: int = 0,
        degrade_paired: bool = False,
        flow_estimator=None,
        flow_margin: int | None = 64,
        clean_flow_prob: float = 0.0,
    ) -> None:
        sequences = list(sequences)
        if not sequences or not all(isinstance(s, Sequence) for s in sequences):
            raise ValueError(
                f"ClipDataset: sequences must be a non-empty list of Sequence, "
                f"got {sequences!r:.200}"
            )
        if not isinstance(clip_len, int) or not (clip_len >= 1 or (clip_len == -1 and not train)):
            raise ValueError(
                f"ClipDataset: clip_len must be an int >= 1 (or -1 = whole sequence, val/test "
                f"only), got {clip_len!r} with train={train}"
            )
        strides = tuple(int(s) for s in temporal_strides)
        if not strides or min(strides) < 1:
            raise ValueError(
                f"ClipDataset: temporal_strides must be positive ints, got {temporal_strides!r}"
            )
        probabilities = (
            ("reverse_prob", reverse_prob),
            ("static_prob", static_prob),
            ("clean_flow_prob", clean_flow_prob),
        )
        for name, value in probabilities:
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"ClipDataset: {name} must be in [0, 1], got {value!r}")
        if train and float(static_prob) > 0 and not degrade_paired:
            paired = next((s.name for s in sequences if s.lq is not None), None)
            if paired is not None:
                raise ValueError(
                    f"ClipDataset: static_prob={static_prob} repeats one frame with its "
                    f"degradation drawn afresh per frame, but sequence {paired!r} has provided "
                    f"degraded frames, whose repeats would be identical (nothing to average); "
                    f"set static_prob=0 for paired data (or degrade_paired=true)"
                )
        degradations = list(degradation) if isinstance(degradation, (list, tuple)) else None
        if degradations is not None and (train or not degradations):
            raise ValueError(
                f"ClipDataset: a list of degradations (one item per window and degradation) is "
                f"for val/test (train=False) and must not be empty, got {degradation!r} with "
                f"train={train}"
            )
        self.patch_size = as_patch_size(patch_size, "ClipDataset patch_size")
        if (
            train
            and transpose
            and self.patch_size is not None
            and self.patch_size[0] != self.patch_size[1]
        ):
            raise ValueError(
                f"ClipDataset: transpose needs a square patch_size, got {patch_size!r}"
            )
        self.clip_len = clip_len
        self.train = train
        self.degradations = degradations if degradations is not None else [degradation]
        self.temporal_strides = strides
        self.reverse_prob = float(reverse_prob)
        self.static_prob = float(static_prob)
        if isinstance(static_pan, bool) or not isinstance(static_pan, int) or static_pan < 0:
            raise ValueError(f"ClipDataset: static_pan must be an int >= 0, got {static_pan!r}")
        self.static_pan = static_pan
        self.flip, self.vflip, self.transpose = bool(flip), bool(vflip), bool(transpose)
        self.seed = int(seed)
        self.skip_bad = bool(skip_bad)
        self.degrade_paired = bool(degrade_paired)
        if flow_estimator is not None and not callable(flow_estimator):
            raise TypeError(
                f"ClipDataset: flow_estimator must be callable (ref, supp) -> flow, got "
                f"{type(flow_estimator).__name__}"
            )
        self.flow_estimator = flow_estimator
        if flow_margin is not None and (
            isinstance(flow_margin, bool) or not isinstance(flow_margin, int) or flow_margin < 0
        ):
            raise ValueError(
                f"ClipDataset: flow_margin must be an int >= 0 or None, got {flow_margin!r}"
            )
        self.flow_margin = flow_margin
        if train and float(clean_flow_prob) > 0:
            if flow_estimator is None:
                raise ValueError(
                    f"ClipDataset: clean_flow_prob={clean_flow_prob} chooses the frames the "
                    f"loader's flow is estimated on, but there is no flow_estimator "
                    f"(data.flow_estimator=${{model.flow}} sets one)"
                )
            unpaired = next((s.name for s in sequences if s.gt is None), None)
            if unpaired is not None:
                raise ValueError(
                    f"ClipDataset: clean_flow_prob={clean_flow_prob} estimates training flow on "
                    f"clean frames, but sequence {unpaired!r} has none; set clean_flow_prob=0"
                )
        self.clean_flow_prob = float(clean_flow_prob)
        self.sequences = self._keep_long_enough(sequences)
        self._check_degradation_available()
        self.items = self._index_items()

    # ------------------------------------------------------------------ construction
    def _min_length(self) -> int:
        if self.clip_len == -1:
            return 1
        stride = min(self.temporal_strides) if self.train else 1
        return window_span(self.clip_len, stride)

    def _keep_long_enough(self, sequences: list[Sequence]) -> list[Sequence]:
        needed = self._min_length()
        kept = []
        for sequence in sequences:
            if len(sequence) >= needed:
                kept.append(sequence)
                continue
            message = (
                f"sequence {sequence.name!r} has {len(sequence)} frames, fewer than the "
                f"{needed} a clip of clip_len={self.clip_len} needs"
            )
            if not self.skip_bad:
                raise ValueError(f"ClipDataset: {message} (set skip_bad=True to skip it)")
            log.warning("ClipDataset: skipping %s", message)
        if not kept:
            raise ValueError(f"ClipDataset: no sequence has the {needed} frames a clip needs")
        return kept

    def _check_degradation_available(self) -> None:
        if len(self.degradations) > 1 and not self.degrade_paired:
            paired = [s.name for s in self.sequences if s.lq is not None]
            if paired:
                raise ValueError(
                    f"ClipDataset: several degradations are applied to clean frames, but "
                    f"sequence {paired[0]!r} has its own degraded frames (set "
                    f"degrade_paired=True to degrade them too)"
                )
        if all(d is not None for d in self.degradations):
            return
        clean_only = [s.name for s in self.sequences if s.lq is None]
        if clean_only:
            raise ValueError(
                f"ClipDataset: sequences without degraded frames (e.g. {clean_only[0]!r}) need a "
                f"degradation (a datamodules.degradations object, NoDegradation for lq = gt)"
            )

    def _index_items(self) -> list[ClipRef]:
        variants = range(len(self.degradations))
        items = []
        for position, sequence in enumerate(self.sequences):
            length = len(sequence)
            if self.train:
                starts = range(length - self._min_length() + 1)
            elif self.clip_len == -1:
                starts = range(1)
            else:
                starts = range(0, length - self.clip_len + 1, self.clip_len)
            items.extend(ClipRef(position, start, v) for start in starts for v in variants)
        return items

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        mode = "train" if self.train else "eval"
        return (
            f"ClipDataset({mode}, {len(self.sequences)} sequences, {len(self)} clips, "
            f"clip_len={self.clip_len}, patch_size={self.patch_size}, "
            f"degradations={self.degradations!r})"
        )

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Item ``key``: an index, or ``(index, item_seed)`` (training; module docstring)."""
        index, item_seed = key if isinstance(key, tuple) else (key, None)
        if not -len(self) <= index < len(self):
            raise IndexError(f"ClipDataset index {index} out of range for {len(self)} clips")
        index %= len(self)
        if not self.skip_bad:
            return self._load(index, item_seed)
        last_error = None
        for attempt in range(min(len(self), MAX_SUBSTITUTIONS)):
            candidate = (index + attempt) % len(self)
            try:
                return self._load(candidate, item_seed)
            except READ_ERRORS as error:
                last_error = error
                log.warning("ClipDataset: skipping unreadable clip %d: %s", candidate, error)
        raise RuntimeError(
            f"ClipDataset: {MAX_SUBSTITUTIONS} consecutive clips from {index} failed to read"
        ) from last_error

    def _generator(self, index: int, ref: ClipRef, item_seed: int | None) -> torch.Generator:
        if self.train and item_seed is not None:
            seed = derive_seed(self.seed, "train", index, int(item_seed))
        elif self.train:
            draw = int(torch.randint(2**62, ()).item())  # global RNG: worker-seeded by PyTorch
            seed = derive_seed(self.seed, "train", index, draw)
        else:
            name = self.sequences[ref.sequence].name
            degradation = repr(self.degradations[ref.degradation])
            seed = derive_seed(self.seed, "eval", name, ref.start, degradation)
        return torch.Generator().manual_seed(seed)

    def _frame_indices(self, ref: ClipRef, length: int, generator: torch.Generator) -> list[int]:
        if self.train:
            indices = draw_temporal_window(
                length,
                self.clip_len,
                ref.start,
                self.temporal_strides,
                self.reverse_prob,
                generator,
            )
            if self.static_prob > 0 and torch.rand((), generator=generator) < self.static_prob:
                indices = [indices[0]] * len(indices)
            return indices
        return frame_window(ref.start, length if self.clip_len == -1 else self.clip_len)

    def _read(self, sequence: Sequence, indices: list[int]) -> tuple[torch.Tensor | None, ...]:
        try:
            gt = sequence.gt.read(indices) if sequence.gt is not None else None
            lq = sequence.lq.read(indices) if sequence.lq is not None else None
        except READ_ERRORS as error:
            error.add_note(f"while reading frames {indices} of sequence {sequence.name!r}")
            raise
        if gt is not None and lq is not None and gt.shape != lq.shape:
            raise ValueError(
                f"sequence {sequence.name!r}: degraded frames {tuple(lq.shape)} and clean "
                f"frames {tuple(gt.shape)} differ in shape (frames {indices})"
            )
        return gt, lq

    def _load(self, index: int, item_seed: int | None = None) -> dict:
        ref = self.items[index]
        sequence = self.sequences[ref.sequence]
        generator = self._generator(index, ref, item_seed)
        indices = self._frame_indices(ref, len(sequence), generator)
        gt, lq = self._read(sequence, indices)
        if self.train and self.static_pan and len(set(indices)) == 1 < len(indices):
            gt, lq = self._pan(gt, lq, generator)
        frame_size = tuple((gt if gt is not None else lq).shape[-2:])
        where = f"sequence {sequence.name!r}"
        if self.train:
            params = draw_spatial_params(
                frame_size, self.patch_size, generator, self.flip, self.vflip, self.transpose, where
            )
        else:
            params = centre_spatial_params(frame_size, self.patch_size, where)
        flow = None
        if self.flow_estimator is not None:  # degrade and estimate with context, then crop
            gt, lq, params = self._context_window(gt, lq, params, frame_size)
            lq, sigma = self._degrade(ref, gt, lq, generator)
            flow = apply_spatial_flow(self._clip_flow(self._flow_frames(gt, lq, generator)), params)
        gt = apply_spatial(gt, params) if gt is not None else None
        lq = apply_spatial(lq, params) if lq is not None else None
        if self.flow_estimator is None:
            lq, sigma = self._degrade(ref, gt, lq, generator)

        item = {
            "lq": lq.float(),
            "sigma": torch.tensor(sigma, dtype=torch.float32),
            "name": sequence.name,
            "frame_idx": torch.tensor(indices, dtype=torch.long),
        }
        if gt is not None:
            item["gt"] = gt.float()
        if flow is not None:
            item["flow"] = flow
        return item

    def _pan(self, gt, lq, generator: torch.Generator):
        """A static clip's frames (one frame repeated) turned into a pan (``static_pan``), with
        the shift shrunk per axis so that the panned frames still hold the crop."""
        frames = gt if gt is not None else lq
        num_frames, (height, width) = frames.shape[0], frames.shape[-2:]
        patch_h, patch_w = self.patch_size or (1, 1)
        shift = []
        for size, patch in ((width, patch_w), (height, patch_h)):
            limit = min(self.static_pan, max(size - patch, 0) // max(num_frames - 1, 1))
            shift.append(int(torch.randint(-limit, limit + 1, (), generator=generator)))
        return tuple(pan_clip(x[0], num_frames, shift) if x is not None else None for x in (gt, lq))

    def _degrade(
        self, ref: ClipRef, gt: torch.Tensor | None, lq: torch.Tensor | None, generator
    ) -> tuple[torch.Tensor, float]:
        """(degraded frames, σ in [0, 1] units): the real LQ frames, or the degradation applied
        to the clean frames (to the LQ frames with ``degrade_paired``)."""
        degradation = self.degradations[ref.degradation]
        if lq is None or (self.degrade_paired and degradation is not None):
            lq, info = degradation(gt if lq is None else lq, generator)
            return lq, float(info.get("sigma", 0.0))
        return lq, 0.0

    def _context_window(self, gt, lq, params: SpatialParams, frame_size: tuple[int, int]):
        """(gt, lq, params) cut to the crop grown by ``flow_margin`` within the frame, with
        ``params`` moved to that window (the whole frame when ``flow_margin`` is None)."""
        if self.flow_margin is None:
            return gt, lq, params
        margin = self.flow_margin
        top, left = max(0, params.top - margin), max(0, params.left - margin)
        bottom = min(frame_size[0], params.top + params.height + margin)
        right = min(frame_size[1], params.left + params.width + margin)
        cut = [x[..., top:bottom, left:right] if x is not None else None for x in (gt, lq)]
        return (*cut, replace(params, top=params.top - top, left=params.left - left))

    def _flow_frames(self, gt, lq, generator: torch.Generator):
        """The frames the flow estimator sees: the clean ones with probability
        ``clean_flow_prob`` in training (the last draw of an item), else the degraded ones."""
        p = self.clean_flow_prob if self.train else 0.0
        return gt if p > 0 and torch.rand((), generator=generator) < p else lq

    @torch.no_grad()
    def _clip_flow(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, 2, H, W) backward flows of the clip's consecutive frames, zero at t = 0."""
        frames = frames.float()
        flows = frames.new_zeros(frames.shape[0], 2, *frames.shape[-2:])
        if frames.shape[0] > 1:
            flows[1:] = self.flow_estimator(frames[1:], frames[:-1]).float()
        return flows
