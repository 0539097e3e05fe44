"""entropy_coding.py: exact round trip of ŷ/ẑ, actual bits against the estimate, bad input."""

import sys

import pytest
import torch

from lightning_modules.stages import entropy_coding as ec
from lightning_modules.stages.codec import FeatureCodec

pytest.importorskip("constriction")

CHANNELS = (4, 8, 16)
SIZE = 128


def _codec(seed: int = 0, **kwargs) -> FeatureCodec:
    torch.manual_seed(seed)
    args = dict(channels=CHANNELS, latent_channels=16, hyper_channels=8, context_channels=16)
    return FeatureCodec(**{**args, **kwargs}).eval()


def _inputs(seed: int = 1, scale: float = 1.0, batch: int = 2):
    """Random features of unit scale: on the random codec y/q − μ then has a spread close to
    the predicted σ (~0.7), so the model fits and y carries > 1 bit per element."""
    gen = torch.Generator().manual_seed(seed)
    feats = [
        scale * torch.randn(batch, c, SIZE // 2**s, SIZE // 2**s, generator=gen)
        for s, c in enumerate(CHANNELS)
    ]
    context = torch.randn(batch, 16, SIZE // 4, SIZE // 4, generator=gen)
    return feats, context


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"likelihood": "laplace"}, {"quantizer": "channel"}, {"quantizer": "fixed"}],
    ids=["adaptive-gaussian", "laplace", "channel", "fixed"],
)
def test_decoding_reproduces_the_codecs_y_hat_and_z_hat_exactly(kwargs):
    codec = _codec(**kwargs)
    feats, context = _inputs()
    coded, y_hat = ec.encode_latents(codec, feats, context)
    with torch.no_grad():
        y, _ = codec.analyse(feats, context)
        z_hat, _ = codec.z_density(codec.hyper_encoder(y))
        purified = codec(feats, context).features
    assert torch.equal(ec.decode_hyper_latents(codec, coded), z_hat)
    decoded = ec.decode_latents(codec, coded, context)
    assert torch.equal(decoded, y_hat)
    with torch.no_grad():  # ... and it is the ŷ the codec's forward decodes from
        again = codec.decoder(decoded)[2][..., : SIZE // 4, : SIZE // 4]
    assert torch.equal(again, purified[2])
    assert (decoded != 0).float().mean() > 0.3  # y carries real information


def test_an_all_zero_latent_costs_what_the_model_says():
    codec = _codec()
    head = codec.hyper_decoder.head[-1]  # output chunks (q, μ, σ), 16 channels each
    with torch.no_grad():  # y = 0 and μ = 0: every symbol is 0 (the collapsed-rate case)
        codec.encoder.fuse_quarter.weight.zero_()
        codec.encoder.fuse_quarter.bias.zero_()
        head.weight[16:32].zero_()
        head.bias[16:32].zero_()
    feats, context = _inputs()
    coded, y_hat = ec.encode_latents(codec, feats, context)
    assert torch.equal(ec.decode_latents(codec, coded, context), y_hat)
    # the range comes from the model's σ (tails to 1e-9), not from the all-zero data, so the
    # coder gains nothing from it: actual bits follow the estimate
    low, high = coded.y_range
    assert low < 0 < high and low == -high
    with torch.no_grad():
        estimate = float(codec(feats, context).bits_y)
    assert coded.bits_y / estimate == pytest.approx(1.0, abs=0.01)


def test_actual_bits_are_within_a_few_percent_of_the_estimate():
    codec = _codec()
    feats, context = _inputs()
    with torch.no_grad():
        out = codec(feats, context)
    coded, _ = ec.encode_latents(codec, feats, context)
    y_elements = 2 * 16 * (SIZE // 4) ** 2
    assert out.bits_y > 1.0 * y_elements  # well above zero: > 1 bit per element
    assert coded.bits_y / float(out.bits_y) == pytest.approx(1.0, abs=0.01)
    # z: 1024 symbols, so the 64 bits of range header and flush are ~1 % of it
    assert out.bits_z > 1000
    assert coded.bits_z / float(out.bits_z) == pytest.approx(1.0, abs=0.02)


def test_recorder_codes_every_call_and_keeps_the_output():
    codec = _codec()
    feats, context = _inputs(batch=1)
    with torch.no_grad():
        plain = codec(feats, context)
        with ec.LatentRecorder(codec) as recorder:
            recorded = codec(feats, context)
            codec(feats, None)  # no context: the decoder must use zeros too
    assert torch.equal(plain.features[0], recorded.features[0])
    assert len(recorder.calls) == 2
    totals = recorder.totals()
    assert totals["estimate_y"] == pytest.approx(float(plain.bits_y) + recorder.calls[1].estimate_y)
    assert totals["actual_y"] / totals["estimate_y"] == pytest.approx(1.0, abs=0.02)
    codec(feats, context)  # detached: nothing more is recorded
    assert len(recorder.calls) == 2


def test_a_different_context_fails_the_checksum():
    codec = _codec()
    feats, context = _inputs()
    coded, _ = ec.encode_latents(codec, feats, context)
    with pytest.raises(ValueError, match="fail the encoder's checksum"):
        ec.decode_latents(codec, coded, context + 1.0)


def test_out_of_range_and_non_finite_latents_are_rejected(monkeypatch):
    codec = _codec()
    feats, context = _inputs()
    with torch.no_grad():  # GDN normalizes its input: blow up the latent itself
        codec.encoder.fuse_quarter.weight.mul_(1e6)
    with pytest.raises(ValueError, match=r"symbols lie outside the coder's range ±32767"):
        ec.encode_latents(codec, feats, context)
    codec = _codec()
    monkeypatch.setattr(ec, "MAX_SYMBOL", 3)
    feats, context = _inputs()
    with pytest.raises(ValueError, match=r"of 1024 z symbols lie outside the coder's range ±3"):
        ec.encode_latents(codec, feats, context)
    monkeypatch.undo()
    feats[0][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        ec.encode_latents(codec, feats, context)


def test_codec_without_quantizer_or_in_training_mode_is_refused():
    feats, context = _inputs()
    with pytest.raises(ValueError, match="nothing to code"):
        ec.encode_latents(_codec(quantizer="none"), feats, context)
    with pytest.raises(ValueError, match=r"training mode .* call \.eval\(\)"):
        ec.encode_latents(_codec().train(), feats, context)


def test_missing_constriction_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "constriction", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'ncfl-video\[coding\]'"):
        ec.LatentRecorder(_codec())
    feats, context = _inputs()
    with pytest.raises(ImportError, match="optional package 'constriction'"):
        ec.encode_latents(_codec(), feats, context)


def test_scale_grid_rounds_in_log2_within_half_a_step():
    sigma = torch.tensor([0.05, 0.11, 0.5, 1.0, 7.3, 1e6])
    grid = ec.grid_scales(sigma)
    assert grid[0] == pytest.approx(ec.SCALE_BOUND) and grid[1] == pytest.approx(ec.SCALE_BOUND)
    half_step = 2 ** (0.5 / ec.SCALE_STEPS_PER_OCTAVE)
    for s, g in zip(sigma[1:5].tolist(), grid[1:5]):
        assert 1 / half_step <= g / s <= half_step
    assert grid[-1] == pytest.approx(ec.SCALE_GRID[-1])


def test_model_hash_changes_with_any_parameter():
    codec = _codec()
    before = ec.model_hash(codec)
    assert ec.model_hash(_codec()) == before  # same seed, same weights
    with torch.no_grad():
        codec.hyper_decoder.head[-1].bias[0] += 1e-6
    assert ec.model_hash(codec) != before


def test_symbols_decode_exactly_under_another_thread_count():
    """A float32 hyper-decoder run with 2 and 1 threads moved 3 of these 262k σ's across a grid
    boundary and the stream did not decode; the coder's float64 copy keeps them equal."""
    torch.manual_seed(0)
    codec = FeatureCodec(
        channels=(16, 32, 64), latent_channels=64, hyper_channels=64, context_channels=64
    ).eval()
    gen = torch.Generator().manual_seed(3)
    feats = [
        torch.randn(1, c, 256 // 2**s, 256 // 2**s, generator=gen)
        for s, c in enumerate((16, 32, 64))
    ]
    context = torch.randn(1, 64, 64, 64, generator=gen)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        coded, y_hat = ec.encode_latents(codec, feats, context)
        torch.set_num_threads(1)
        decoded = ec.decode_latents(codec, coded, context)  # the checksum holds
    finally:
        torch.set_num_threads(threads)
    assert (decoded - y_hat).abs().max() <= 1e-5 * y_hat.abs().max()  # μ, q: float32 rounding
