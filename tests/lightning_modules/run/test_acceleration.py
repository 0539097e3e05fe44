"""bf16 autocast keeps the rate terms in float32; compile=true falls back with one warning;
channels_last changes the layout, not the results."""

import copy
import os
import subprocess
import sys

import pytest
import torch

from lightning_modules.run.acceleration import (
    checked_precision,
    compile_network,
    compile_problem,
    set_channels_last,
)
from lightning_modules.stages.entropy_models import FactorizedDensity, GaussianConditional, bits
from lightning_modules.tasks.restoration_task import RestorationTask
from tests.conftest import REPO_ROOT
from tests.conftest_config import tiny_network

BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


def test_entropy_models_ignore_bf16_autocast():
    """Same float32 inputs: the likelihoods inside a bf16 autocast are the float32 ones, exactly
    (the factorized density's per-channel matrix products would otherwise run in bf16)."""
    torch.manual_seed(0)
    density = FactorizedDensity(4)
    z = torch.randn(2, 4, 6, 6) * 3
    r, sigma = torch.randn(2, 4, 6, 6) * 4, torch.rand(2, 4, 6, 6) * 3
    reference = (density.likelihood(z), GaussianConditional().likelihood(r, sigma))
    with torch.autocast(**BF16):
        mixed = (density.likelihood(z), GaussianConditional().likelihood(r, sigma))
    for expected, got in zip(reference, mixed):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("preset", ["adaptive_q", "channel_q"])
def test_network_bits_under_bf16_autocast_match_float32(preset):
    """The whole network in bf16 autocast (convolutions in bf16): the rate is still a float32
    tensor and within 0.1 % of the float32 rate (measured 6e-5 for adaptive_q)."""
    torch.manual_seed(0)
    net = tiny_network(preset).eval()
    lq, sigma = torch.rand(2, 3, 3, 32, 32), torch.full((2,), 0.1)
    with torch.no_grad():
        reference = net(lq, sigma)
        with torch.autocast(**BF16):
            mixed = net(lq, sigma)
    assert mixed.restored.dtype == torch.bfloat16 or mixed.restored.dtype == torch.float32
    for key in ("bits_y", "bits_z", "bpp"):
        expected, got = getattr(reference, key), getattr(mixed, key)
        assert got.dtype == torch.float32, key
        assert float(got) == pytest.approx(float(expected), rel=1e-3), key
    assert float(reference.bits_y) > 100  # a real rate, not a trivially equal zero


def test_bf16_precision_is_kept_on_cpu_and_other_precisions_pass_through():
    assert checked_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert checked_precision("32-true", "gpu") == "32-true"
    assert checked_precision(None, "auto") is None


def test_bf16_on_a_gpu_without_it_falls_back_to_float32_with_one_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    with pytest.warns(UserWarning, match="no bfloat16 support.*32-true") as record:
        assert checked_precision("bf16-mixed", "gpu") == "32-true"
    assert len(record) == 1
    assert checked_precision("bf16-mixed", "cpu") == "bf16-mixed"  # the CPU is not the GPU


def _task() -> RestorationTask:
    return RestorationTask(tiny_network("no_codec"), optimizer=torch.optim.Adam)


def test_compile_false_leaves_the_network_alone():
    task = _task()
    assert compile_network(task, enabled=False, accelerator="cpu") is False
    assert task.net._compiled_call_impl is None


def test_compile_without_a_working_compiler_runs_eagerly_with_one_warning():
    """A machine without a C++ compiler (CXX points nowhere; a subprocess, as inductor caches
    what it finds): compile_network says no, warns once, and leaves the network as it was."""
    script = (
        "import torch\n"
        "from lightning_modules.run.acceleration import compile_network\n"
        "from lightning_modules.tasks.restoration_task import RestorationTask\n"
        "from tests.conftest_config import tiny_network\n"
        "task = RestorationTask(tiny_network('no_codec'), optimizer=torch.optim.Adam)\n"
        "keys = list(task.state_dict())\n"
        "assert compile_network(task, enabled=True, accelerator='cpu') is False\n"
        "assert task.net._compiled_call_impl is None and list(task.state_dict()) == keys\n"
    )
    env = {**os.environ, "CXX": "/nonexistent/c++", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    warned = [line for line in result.stderr.splitlines() if "compile=true:" in line]
    assert len(warned) == 1 and "C++ compiler" in warned[0], result.stderr[-3000:]


@pytest.mark.slow
def test_compile_where_it_works_keeps_checkpoint_keys():
    """On a machine with a compiler: compiled in place, same state-dict keys (checkpoints load
    either way), the parameter-free DIS flow stage left eager."""
    problem = compile_problem("cpu")
    if problem is not None:
        pytest.skip(f"torch.compile does not work on this machine: {problem}")
    task = _task()
    keys = list(task.state_dict())
    assert compile_network(task, enabled=True, accelerator="cpu") is True
    assert task.net._compiled_call_impl is not None
    assert list(task.state_dict()) == keys
    assert getattr(task.net.flow.forward, "__wrapped__", None) is not None  # compiler.disable
    torch._dynamo.reset()


def test_bits_helper_is_float32_for_float32_likelihoods():
    assert bits(torch.full((3,), 0.5)).dtype == torch.float32


@pytest.mark.parametrize("preset", ["adaptive_q", "no_codec"])
def test_channels_last_gives_the_same_frames_and_checkpoints_load_either_way(preset):
    """set_channels_last puts every conv weight in NHWC; the frames and rates equal the NCHW
    network's up to float rounding, and its state dict loads into an NCHW network unchanged."""
    torch.manual_seed(0)
    overrides = []
    reference = tiny_network(preset, overrides).eval()
    fast = copy.deepcopy(reference)
    assert set_channels_last(fast, True) is fast
    convs = [m for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    lq, sigma = torch.rand(1, 3, 3, 40, 56), torch.full((1,), 0.1)
    with torch.no_grad():
        expected, got = reference(lq, sigma), fast(lq, sigma)
    torch.testing.assert_close(got.restored, expected.restored, rtol=1e-4, atol=1e-4)
    assert float(got.bpp) == pytest.approx(float(expected.bpp), rel=1e-3)
    plain = tiny_network(preset, overrides)
    plain.load_state_dict(fast.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), reference.parameters()))
    untouched = tiny_network(preset, overrides)
    set_channels_last(untouched, False)
    assert all(
        m.weight.is_contiguous() for m in untouched.modules() if isinstance(m, torch.nn.Conv2d)
    )
