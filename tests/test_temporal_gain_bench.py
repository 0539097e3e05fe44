"""bench/temporal_gain.py: the means over several evaluated checkpoints; the frames the flow
stage runs on in --evaluate (--flow-input)."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from tests.conftest_config import tiny_network

BENCH = Path(__file__).resolve().parents[1] / "bench" / "temporal_gain.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("temporal_gain_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(config: str, flow: str, psnr: float, gain: float) -> dict:
    return {
        "config": config,
        "flow": flow,
        "steps": "-",
        "val_temporal_gain_db": math.nan,
        "clip": {"psnr": psnr, "gain": gain},
    }


def test_checkpoint_means_average_each_flow_separately():
    bench = load_bench()
    results = [
        row("a.ckpt", "DISFlow", 30.0, 0.5),
        row("a.ckpt", "zero", 29.0, -0.1),
        row("b.ckpt", "DISFlow", 31.0, 1.5),
        row("b.ckpt", "zero", 28.0, 0.3),
    ]
    means = bench.checkpoint_means(results)
    assert [(m["config"], m["flow"]) for m in means] == [
        ("mean of 2", "DISFlow"),
        ("mean of 2", "zero"),
    ]
    assert means[0]["clip"] == {"psnr": 30.5, "gain": 1.0}
    assert means[1]["clip"]["psnr"] == 28.5 and math.isclose(means[1]["clip"]["gain"], 0.1)


def test_one_checkpoint_gets_no_mean_row():
    bench = load_bench()
    assert bench.checkpoint_means([row("a.ckpt", "DISFlow", 30.0, 0.5)]) == []


def run_with_flow_input(flow_input: str):
    """temporal_gain of a tiny DIS-flow network on a 3-frame moving clip, with the flows the
    recurrent pass was given and the frames each flow call saw."""
    bench = load_bench()
    net = tiny_network("adaptive_q", ["model/flow=dis"]).eval()
    torch.manual_seed(0)
    base = torch.rand(3, 40, 52)
    frames = torch.stack([torch.roll(base, shifts=(0, 2 * t), dims=(1, 2)) for t in range(3)])
    seen, given = [], []
    net.flow.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].clone()))
    forward = net.forward

    def spy_forward(lq, sigma=None, flows=None, **kwargs):
        given.append(flows)
        return forward(lq, sigma, flows=flows, **kwargs)

    net.forward = spy_forward
    result = bench.temporal_gain(net, frames, "cpu", flow_input)
    return result, frames, seen, given


def test_clean_flow_input_gives_the_recurrent_pass_flow_of_the_clean_frames():
    result, frames, seen, given = run_with_flow_input("clean")
    recurrent_flows = [g for g in given if g is not None]
    assert len(recurrent_flows) == 1 and recurrent_flows[0].shape == (1, 3, 2, 40, 52)
    # one batched flow call on the clean frames 1..T-1 (their pairs towards t-1)
    assert any(torch.equal(s, frames[1:]) for s in seen)
    assert math.isfinite(result["gain"])


def test_restored_flow_input_runs_the_flow_on_the_frame_alone_outputs():
    result, frames, seen, given = run_with_flow_input("restored")
    assert sum(g is not None for g in given) == 1
    bench = load_bench()  # the bench's noisy clip, restored frame by frame
    noise = torch.Generator().manual_seed(0)
    lq = (frames + bench.SIGMA * torch.randn(frames.shape, generator=noise))[None]
    net = tiny_network("adaptive_q", ["model/flow=dis"]).eval()
    with torch.no_grad():
        alone = [net(lq[:, t : t + 1], torch.tensor([bench.SIGMA])).restored[0, 0] for t in (1, 2)]
    batched = [s for s in seen if s.shape[0] == 2]  # the one call on frames 1..T-1
    assert len(batched) == 1
    torch.testing.assert_close(batched[0], torch.stack(alone))
    assert math.isfinite(result["psnr"])


def test_unknown_flow_input_is_refused():
    bench = load_bench()
    with pytest.raises(ValueError, match="flow_input: expected one of"):
        bench.temporal_gain(tiny_network("no_codec"), torch.rand(2, 3, 32, 32), "cpu", "best")
