"""Speed options that must not stop a run where the machine lacks them: bf16, torch.compile and
the channels-last memory layout.

- ``checked_precision(precision, accelerator)``: the Trainer precision to use. ``bf16-mixed`` /
  ``bf16-true`` on a CUDA GPU without bfloat16 (before Ampere) would fail at the first autocast;
  it becomes ``32-true`` with one warning. CPUs run bf16 autocast in any case.
- ``compile_network(task, enabled, accelerator)``: with ``compile=true``, ``task.net`` is compiled
  in place (``nn.Module.compile``: the state-dict keys, hence the checkpoints, are unchanged);
  a flow stage without parameters (DIS, zero flow) stays eager. Meant for GPUs: on a CPU the
  first steps spend minutes compiling the recurrent network.
  A tiny function is compiled first on the target device; if that fails (no C++ compiler, no
  Triton, an unsupported platform) the run goes on in eager mode with one warning. Should the
  real network later fail to compile, dynamo falls back to eager for that frame
  (``suppress_errors``) instead of stopping the fit.

- ``set_channels_last(net, enabled)``: the network's weights (and so every conv output: oneDNN and
  cuDNN follow the weight's layout) in NHWC ``torch.channels_last`` layout. On a CPU this is what
  oneDNN convolutions want: small-channel convs run 1.5-7x faster than in NCHW, where each call
  reorders its input and output (``bench/infer_speed.py --layouts``). Values are unchanged up to
  float rounding; state dicts and checkpoints load into either layout.

The rate terms stay in float32 under any autocast: the entropy models promote their inputs and
disable autocast around the likelihoods (``lightning_modules/stages/entropy_models.py``).
"""

from __future__ import annotations

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn


def _uses_cuda(accelerator: str | None) -> bool:
    return str(accelerator) in ("gpu", "cuda", "auto", "None") and torch.cuda.is_available()


def checked_precision(precision: str | int | None, accelerator: str | None) -> str | int | None:
    """``precision``, or ``"32-true"`` (one warning) for bf16 on a GPU that lacks bfloat16."""
    if not str(precision).startswith("bf16"):
        return precision
    if _uses_cuda(accelerator) and not torch.cuda.is_bf16_supported():
        rank_zero_warn(
            f"trainer.precision={precision}: this GPU ({torch.cuda.get_device_name()}) has no "
            "bfloat16 support; training in 32-true instead (or set trainer.precision=16-mixed)",
            category=UserWarning,
        )
        return "32-true"
    return precision


def compile_problem(device: str) -> str | None:
    """None when torch.compile works on ``device`` (a tiny function compiled and run), else
    the reason in one line."""
    try:
        probe = torch.compile(lambda x: torch.nn.functional.relu(x) * 2 + 1, dynamic=False)
        result = probe(torch.arange(-2.0, 2.0, device=device))
        if not torch.equal(result.cpu(), torch.tensor([1.0, 1.0, 1.0, 3.0])):
            return "the compiled probe returned wrong values"
    except Exception as error:  # any backend failure means: run eagerly (see module docstring)
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"{type(error).__name__}: {first[:200]}"
    return None


def compile_network(task: nn.Module, enabled: bool, accelerator: str | None = "auto") -> bool:
    """Compile ``task.net`` in place when ``enabled`` and torch.compile works here; returns
    whether it did (False, with one warning, when it cannot)."""
    if not enabled:
        return False
    net = getattr(task, "net", None) or getattr(task, "flow", None)
    if not isinstance(net, nn.Module):
        rank_zero_warn(
            f"compile=true: {type(task).__name__} has no net to compile; running eagerly",
            category=UserWarning,
        )
        return False
    device = "cuda" if _uses_cuda(accelerator) else "cpu"
    problem = compile_problem(device)
    if problem is not None:
        rank_zero_warn(
            f"compile=true: torch.compile does not work on this machine ({problem}); training "
            "runs without it",
            category=UserWarning,
        )
        return False
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True  # a frame that fails to compile runs eagerly
    flow = getattr(net, "flow", None)
    if isinstance(flow, nn.Module) and not any(True for _ in flow.parameters()):
        # a fixed estimator (DIS runs OpenCV on the CPU): nothing to compile, and tracing into
        # it only breaks the graph with a warning. An instance attribute leaves the weights and
        # the state-dict keys as they are.
        flow.forward = torch.compiler.disable(flow.forward)
    net.compile()
    return True


def set_channels_last(net: nn.Module, enabled: bool) -> nn.Module:
    """``net`` with its 4-D weights in channels-last layout when ``enabled`` (in place)."""
    if enabled:
        net.to(memory_format=torch.channels_last)
    return net
