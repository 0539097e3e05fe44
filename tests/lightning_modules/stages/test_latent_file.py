"""latent_file.py: the coded-latents file of restore.py save_latents, read back and decoded."""

import sys

import pytest
import torch

from lightning_modules.stages import entropy_coding as ec
from lightning_modules.stages.latent_file import LatentFileWriter, read_latent_file
from tests.conftest_config import tiny_network

pytest.importorskip("constriction")

FRAMES = 4


def _net(seed: int = 0):
    torch.manual_seed(seed)
    return tiny_network("adaptive_q").eval()


def _run(net, clip):
    with torch.no_grad():
        return net(clip, noise_level=torch.tensor([0.1]))


def _contexts(net, clip) -> list[torch.Tensor]:
    """The context the codec got at every call (what a decoder must have for ŷ)."""
    seen = []
    handle = net.codec.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    try:
        _run(net, clip)
    finally:
        handle.remove()
    return seen


def test_written_frames_decode_back_with_the_same_model(tmp_path):
    net = _net()
    clip = torch.rand(1, FRAMES, 3, 36, 52, generator=torch.Generator().manual_seed(0))
    writer = LatentFileWriter(tmp_path / "latents.bin", net)
    with writer.window(first=1, count=2, length=FRAMES):  # frames 1, 2 of the window
        _run(net, clip)
    with writer.window(first=0, count=1, length=FRAMES):  # frame 0: no past, nothing sent
        _run(net, clip)
    writer.close()
    frames = read_latent_file(tmp_path / "latents.bin", net)
    assert [index for index, _ in frames] == [0, 1]  # output frame 2 has no entry
    assert (writer.frames, writer.entries) == (3, 2)
    size = (tmp_path / "latents.bin").stat().st_size * 8
    assert writer.bits < size  # the payload is part of the file; headers come on top
    contexts = _contexts(net, clip)
    assert len(contexts) == FRAMES - 1  # the codec runs for frames 1 .. T-1 only
    for (_, coded), call in zip(frames, (0, 1)):  # window frames 1, 2 = codec calls 0, 1
        # padded to 48x64 (total stride 16), latent stride 4
        assert coded.y_shape == (1, 16, 12, 16) and coded.z_shape == (1, 16, 3, 4)
        z_hat = ec.decode_hyper_latents(net.codec, coded)
        assert z_hat.shape == coded.z_shape
        y_hat = ec.decode_latents(net.codec, coded, contexts[call])  # checksum passes
        assert torch.isfinite(y_hat).all()


def test_streaming_writes_every_frame_but_the_first(tmp_path):
    net = _net()
    clip = torch.rand(1, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    writer = LatentFileWriter(tmp_path / "latents.bin", net)
    state = None
    for t in range(3):
        with writer.window(0, 1, 1, past=t > 0), torch.no_grad():
            _, state = net.step(clip[:, t], torch.tensor([0.1]), state, with_rate=True)
    writer.close()
    frames = read_latent_file(tmp_path / "latents.bin", net)
    assert [index for index, _ in frames] == [1, 2]
    assert (writer.frames, writer.entries) == (3, 2)


def test_a_window_with_too_few_codec_calls_is_an_error(tmp_path):
    writer = LatentFileWriter(tmp_path / "latents.bin", _net())
    too_few = pytest.raises(RuntimeError, match="0 codec calls for a window of 1 frames")
    with too_few, writer.window(0, 1, 1, past=True):
        pass  # a frame with a past must have been coded
    writer.close()


def test_a_file_from_another_model_is_refused_by_its_hash(tmp_path):
    net = _net()
    clip = torch.rand(1, 2, 3, 32, 32)
    writer = LatentFileWriter(tmp_path / "latents.bin", net)
    with writer.window(first=0, count=2, length=2):
        _run(net, clip)
    writer.close()
    with pytest.raises(ValueError, match="written by a different model"):
        read_latent_file(tmp_path / "latents.bin", _net(seed=1))
    (tmp_path / "junk.bin").write_bytes(b"not latents")
    with pytest.raises(ValueError, match="not a latent file"):
        read_latent_file(tmp_path / "junk.bin", net)
    truncated = (tmp_path / "latents.bin").read_bytes()[:-5]
    (tmp_path / "cut.bin").write_bytes(truncated)
    with pytest.raises(ValueError, match="truncated latent file"):
        read_latent_file(tmp_path / "cut.bin", net)


def test_existing_file_needs_overwrite_and_a_codec_is_required(tmp_path):
    net = _net()
    (tmp_path / "latents.bin").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="save_latents: .* already exists"):
        LatentFileWriter(tmp_path / "latents.bin", net)
    LatentFileWriter(tmp_path / "latents.bin", net, overwrite=True).close()
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="no quantizing feature codec"):
        LatentFileWriter(tmp_path / "none.bin", tiny_network("no_codec"))


def test_missing_constriction_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "constriction", None)
    with pytest.raises(ImportError, match=r"pip install 'ncfl-video\[coding\]'"):
        LatentFileWriter(tmp_path / "latents.bin", _net())
