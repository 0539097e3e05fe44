"""A file of coded temporal features (``restore.py save_latents=PATH``) and its reader.

Layout (all integers little-endian):

    b"NCFLLAT1"
    u32 n, n bytes of JSON   {"version": 1, "model_hash": sha256 of the model's state dict,
                              "likelihood": ..., "latent_stride": ...}
    per frame:
    u32 n, n bytes of JSON   {"frame": index in the video, "y_shape", "z_shape", "y_range",
                              "z_range", "y_words", "z_words", "checksum"}
    y_words × u32, z_words × u32   the two range-coder streams (entropy_coding.py)

``read_latent_file(path, model)`` checks the magic, the version and the model hash (a file from
another model is refused) and returns the coded frames; ``decode_hyper_latents(codec, coded)``
gives ẑ from the file alone, ``decode_latents(codec, coded, context)`` gives ŷ, which also needs
the frame's context (the current frame's 1/4-scale U-Net features that the hyper-decoder sees
when ``context_channels > 0``): in this design the receiver is the restoration network itself,
which has the current frame. The hash covers the whole model (restoration encoder included),
because the context comes from it.
"""

from __future__ import annotations

import json
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from torch import nn

from lightning_modules.stages.entropy_coding import (
    CodedLatents,
    LatentRecorder,
    model_hash,
    require_constriction,
)

FILE_MAGIC = b"NCFLLAT1"
FILE_VERSION = 1


def _write_json(stream: BinaryIO, obj: dict[str, Any]) -> None:
    data = json.dumps(obj, sort_keys=True).encode()
    stream.write(struct.pack("<I", len(data)))
    stream.write(data)


def _read_json(stream: BinaryIO, path: Path) -> dict[str, Any] | None:
    size = stream.read(4)
    if not size:
        return None
    if len(size) < 4:
        raise ValueError(f"{path}: truncated latent file")
    data = stream.read(struct.unpack("<I", size)[0])
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: corrupt latent file header ({err})") from err


def _codec(model: nn.Module) -> nn.Module:
    codec = getattr(model, "codec", model)
    if codec is None or not hasattr(codec, "z_density"):
        raise ValueError(
            "save_latents: the model has no quantizing feature codec (model/codec=none or "
            "quantizer=none), so it has no latents to write"
        )
    return codec


def write_header(stream: BinaryIO, model: nn.Module) -> None:
    """The magic and the file header of ``model`` (a network with a ``codec``, or a codec)."""
    codec = _codec(model)
    stream.write(FILE_MAGIC)
    _write_json(
        stream,
        {
            "version": FILE_VERSION,
            "model_hash": model_hash(model),
            "likelihood": type(codec.conditional).__name__,
            "latent_stride": codec.latent_stride,
        },
    )


def write_frame(stream: BinaryIO, frame: int, coded: CodedLatents) -> None:
    """One frame's header and its two streams."""
    _write_json(stream, {"frame": int(frame), **coded.header()})
    stream.write(coded.y_words.astype("<u4").tobytes())
    stream.write(coded.z_words.astype("<u4").tobytes())


def read_latent_file(path: str | Path, model: nn.Module) -> list[tuple[int, CodedLatents]]:
    """(frame index, ``CodedLatents``) for every frame of ``path``; a ValueError if the file is
    not a latent file, has another version, or was written by another model (its hash)."""
    path = Path(path)
    expected = model_hash(model)
    frames = []
    with open(path, "rb") as stream:
        if stream.read(len(FILE_MAGIC)) != FILE_MAGIC:
            raise ValueError(f"{path}: not a latent file written by restore.py save_latents")
        header = _read_json(stream, path) or {}
        if header.get("version") != FILE_VERSION:
            raise ValueError(
                f"{path}: latent file version {header.get('version')}, expected {FILE_VERSION}"
            )
        if header.get("model_hash") != expected:
            raise ValueError(
                f"{path}: written by a different model (hash {header.get('model_hash')}); this "
                f"model's hash is {expected}. Decode it with the checkpoint that wrote it"
            )
        while (frame := _read_json(stream, path)) is not None:
            words = {}
            for key in ("y_words", "z_words"):
                data = stream.read(4 * frame[key])
                if len(data) != 4 * frame[key]:
                    raise ValueError(f"{path}: truncated latent file (frame {frame['frame']})")
                words[key] = np.frombuffer(data, dtype="<u4").astype(np.uint32)
            coded = CodedLatents(
                y_shape=tuple(frame["y_shape"]),
                z_shape=tuple(frame["z_shape"]),
                y_range=tuple(frame["y_range"]),
                z_range=tuple(frame["z_range"]),
                y_words=words["y_words"],
                z_words=words["z_words"],
                checksum=int(frame["checksum"]),
            )
            frames.append((int(frame["frame"]), coded))
    return frames


class LatentFileWriter:
    """Writes the coded latents of ``restore.py``'s windows, one entry per output frame.

    ``with writer.window(first, count, length): <run the net on the window>`` codes every codec
    call of the run (each decoded again and checked), keeps the forward pass's calls (the last
    ones: a bidirectional net codes its backward pass first, which is not written) and writes
    those of frames ``first .. first + count - 1`` of the window (the others only warm up the
    recurrence), numbered on from the previous window. A frame without a past (the first of a
    run from a fresh state) has no codec call and so no entry: its number is skipped."""

    def __init__(self, path: str | Path, model: nn.Module, overwrite: bool = False) -> None:
        require_constriction()
        self.path = Path(path)
        self.codec = _codec(model)
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"save_latents: '{self.path}' already exists (pass overwrite=true to replace it)"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stream = open(self.path, "wb")  # noqa: SIM115  closed by close()
        write_header(self.stream, model)
        self.frames = 0  # output frames seen
        self.entries = 0  # frames written (those with a past)
        self.bits = 0

    @contextmanager
    def window(self, first: int, count: int, length: int, past: bool = False):
        """Code the codec calls of one run of the net on ``length`` frames and write those of
        frames ``first .. first + count - 1``. ``past``: the run starts from a carried state
        (streaming); otherwise its first frame has no past, so the codec does not run for it
        and that frame gets no entry (nothing was sent)."""
        with LatentRecorder(self.codec, verify=True) as recorder:
            yield
        coded_frames = length if past else length - 1  # the forward pass's calls come last
        if len(recorder.calls) < coded_frames:
            raise RuntimeError(
                f"save_latents: the net made {len(recorder.calls)} codec calls for a window of "
                f"{length} frames (past={past}); expected at least {coded_frames}"
            )
        calls = recorder.calls[len(recorder.calls) - coded_frames :]
        for offset, call in enumerate(calls, start=length - coded_frames):
            if first <= offset < first + count:
                write_frame(self.stream, self.frames + offset - first, call.coded)
                self.entries += 1
                self.bits += call.coded.bits_y + call.coded.bits_z
        self.frames += count

    def close(self) -> None:
        self.stream.close()
