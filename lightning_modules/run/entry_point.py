"""What ``train.py``, ``eval.py`` and ``restore.py`` share around their Hydra ``main``.

1. **One line per expected error.** ``reported_errors()`` wraps the ``__main__`` block and
   ``job(...)`` the body of the ``@hydra.main`` function. An *expected* error (``is_expected``:
   bad config, bad data, bad checkpoint, unusable input or output) is printed as one line
   ``error: <what, where, what is expected>`` on stderr and the process exits with status 1.
   Anything else is a bug and keeps its full traceback. ``HYDRA_FULL_ERROR=1`` shows the
   traceback of expected errors too.

   Hydra prints composition errors (an unknown key, a value of the wrong type) itself, over
   several lines, and offers no hook to change that; its one documented switch,
   ``HYDRA_FULL_ERROR=1``, makes it re-raise them instead. ``reported_errors`` sets that switch
   for the duration (marked by ``ONE_LINE_ERRORS`` so that child processes, e.g. DDP ranks that
   re-run the script, still know it was not the user's) and formats what comes out.

2. **No run folder from a failed start.** Hydra creates ``logs/<task>/runs/<time>/`` before
   ``main`` runs. ``job(started)`` removes it again when the job fails before ``started()``
   (for training: before its first step) -- unless it holds a checkpoint, existed before this
   run with files of its own, or was named by the user (``hydra.run.dir=...``). Sweeps keep
   their job folders (the log says why a job failed).

3. **Atomic outputs** (the entry points' files, and checkpoints) are ``atomic_files.py``'s job.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytorch_lightning as pl
from hydra.errors import CompactHydraException
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf.errors import OmegaConfBaseException

from datamodules.frame_sources import DatasetLayoutError
from lightning_modules.run.config_schema import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
ONE_LINE_ERRORS = "NCFL_ONE_LINE_ERRORS"  # "1": HYDRA_FULL_ERROR was set by reported_errors()
EXIT_STATUS = 1


class InputError(ValueError):
    """An entry point's own input (a path, σ, an option) or output cannot be used."""


# Expected wherever they are raised: the project's own error types, Hydra/OmegaConf config
# errors and Lightning's "you configured it wrong".
EXPECTED_TYPES = (
    ConfigError,
    DatasetLayoutError,
    InputError,
    CompactHydraException,
    OmegaConfBaseException,
    MisconfigurationException,
)
# Expected when raised by the project's own code (a deliberate, worded check such as
# ``raise ValueError("ckpt_path: ...")``) or by the config libraries while reading the command
# line (Hydra raises a bare ValueError for ``logger=null``); from other libraries they are bugs.
PROJECT_TYPES = (ValueError, LookupError, OSError)
CONFIG_LIBRARIES = {"hydra", "omegaconf"}


# Warnings raised inside libraries about their own internals: nothing in a config changes them.
LIBRARY_NOISE = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning 2.6 on torch 2.13
    # hydra-submitit-launcher registers schemas named like its config files (Hydra 1.1 notice)
    r"(?s).*is validated against ConfigStore schema with the same name",
)


# ----------------------------------------------------------------------------- classifying
def _worker_original(error: BaseException) -> tuple[str, str, str] | None:
    """(message, file and source line of the raising frame) of an error re-raised from a
    DataLoader worker (message ``Caught X in DataLoader worker process N. Original Traceback``)."""
    text = str(error.args[0]) if error.args else ""
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1].strip()
    prefix, _, message = last.partition(": ")
    if message and re.fullmatch(r"[\w.]+", prefix):  # "module.Type: message"
        last = message
    frames = re.findall(r'File "([^"]+)", line \d+, in [^\n]*\n([^\n]*)', text)
    filename, source = frames[-1] if frames else ("", "")
    return last, filename, source


def _checks_input(filename: str) -> bool:
    """True for a file of this project or of the config libraries (where input is checked)."""
    path = Path(filename).resolve()
    if "site-packages" in path.parts:
        package = path.parts[path.parts.index("site-packages") + 1 :][:1]
        return bool(set(package) & CONFIG_LIBRARIES)
    return path.is_relative_to(REPO_ROOT)


def _raising_site(error: BaseException) -> tuple[str, str]:
    """(file, source line) where ``error`` was raised (the innermost Python frame)."""
    worker = _worker_original(error)
    if worker is not None:
        return worker[1], worker[2]
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "", ""
    filename = tb.tb_frame.f_code.co_filename
    return filename, linecache.getline(filename, tb.tb_lineno)


def is_expected(error: BaseException) -> bool:
    """True for errors about the user's input, which get one line instead of a traceback:
    ``EXPECTED_TYPES`` anywhere, an ``OSError`` naming a file (permission, disk full, ...), and
    ``PROJECT_TYPES`` raised by a ``raise`` statement of this project's code or of Hydra/OmegaConf
    (not, say, numpy's broadcasting error surfacing in a line of ours: that is a bug)."""
    if isinstance(error, EXPECTED_TYPES):
        return True
    if isinstance(error, OSError) and error.filename is not None:
        return True
    if not isinstance(error, PROJECT_TYPES):
        return False
    filename, source = _raising_site(error)
    return _checks_input(filename) and source.strip().startswith("raise")


# ----------------------------------------------------------------------------- formatting
def _flatten(text: str) -> str:
    """A multi-line message on one line: tab-indented items join their heading with commas,
    other lines join with '; ', Hydra's 'Config search path' listing is dropped."""
    parts: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Config search path"):
            break
        if not line:
            continue
        if raw.startswith("\t") and parts:
            separator = " " if parts[-1].endswith(":") else ", "
            parts[-1] = f"{parts[-1]}{separator}{line}"
        else:
            parts.append(line)
    text = ""
    for part in parts:  # "; " between parts, a space after a part that ends a sentence
        text += ("" if not text else " " if text.endswith((".", ":")) else "; ") + part
    return text


def _omegaconf(error: OmegaConfBaseException) -> str:
    lines = str(error).strip().splitlines()
    first = lines[0].strip() if lines else type(error).__name__
    key = getattr(error, "full_key", None)
    return f"{key}: {first}" if key and not first.startswith(f"{key}:") else first


def describe(error: BaseException) -> str:
    """The error as one line, naming what is wrong, where, and what is expected."""
    worker = _worker_original(error)
    if worker is not None:
        return _flatten(worker[0])
    if isinstance(error, OmegaConfBaseException):
        return _omegaconf(error)
    if isinstance(error, CompactHydraException):
        text = _flatten(str(error))
        cause = error.__cause__
        if isinstance(cause, OmegaConfBaseException):
            return f"{_omegaconf(cause)} ({text})"
        return text
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.strerror}: '{error.filename}'"
    if isinstance(error, KeyError) and error.args:
        return _flatten(str(error.args[0]))
    return _flatten(str(error)) or type(error).__name__


def error_line(error: BaseException, limit: int = 600) -> str:
    """``error: <description>``, the single line an expected error prints; a description
    longer than ``limit`` characters (a library's list of every mismatch) is cut."""
    text = describe(error)
    if len(text) > limit:
        text = (
            f"{text[:limit]} ... ({len(text) - limit} more characters; HYDRA_FULL_ERROR=1 "
            "shows the whole error)"
        )
    return f"error: {text}"


def full_tracebacks_wanted() -> bool:
    """True when the user set ``HYDRA_FULL_ERROR=1`` (not ``reported_errors`` on their behalf)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and os.environ.get(ONE_LINE_ERRORS) != "1"


def _exit_with_line(error: BaseException) -> None:
    sys.stderr.write(error_line(error) + "\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_STATUS) from error


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Wrap an entry point's ``__main__`` block: expected errors (from composing the config or
    from the job) exit with one ``error:`` line, others keep their traceback (module docstring).
    Library warnings a user cannot act on (``LIBRARY_NOISE``) are silenced."""
    for message in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=message)
    if full_tracebacks_wanted():
        yield
        return
    saved = {name: os.environ.get(name) for name in ("HYDRA_FULL_ERROR", ONE_LINE_ERRORS)}
    os.environ["HYDRA_FULL_ERROR"] = os.environ[ONE_LINE_ERRORS] = "1"
    try:
        yield
    except Exception as error:
        if not is_expected(error):
            raise
        _exit_with_line(error)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ----------------------------------------------------------------------------- run folder
class StepCounter(pl.Callback):
    """Counts the training steps taken in this process (all trainers and phases): a run that
    fails before its first step leaves no run folder (``job(started=StepCounter.started)``)."""

    steps = 0  # class attribute on purpose: shared by every trainer of the process

    def on_train_batch_end(self, *args, **kwargs) -> None:
        StepCounter.steps += 1

    @staticmethod
    def started() -> bool:
        return StepCounter.steps > 0


def _hydra_run_folder() -> tuple[Path, set[str], bool] | None:
    """(run folder, names of what Hydra writes in it, named by the user) of the current single
    Hydra run; None outside Hydra, in a multirun, or on a rank other than zero."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or pl.utilities.rank_zero_only.rank != 0:
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.RUN:
        return None
    named = any(o.lstrip("+").startswith("hydra.run.dir=") for o in hydra_cfg.overrides.hydra)
    log_file = OmegaConf.select(hydra_cfg, "job_logging.handlers.file.filename")
    hydra_files = {hydra_cfg.output_subdir or ".hydra", Path(str(log_file)).name}
    return Path(hydra_cfg.runtime.output_dir), hydra_files, named


def _own_files(folder: Path, hydra_files: set[str]) -> list[Path]:
    """Entries of ``folder`` that Hydra did not write."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name not in hydra_files]


def _remove_run_folder(folder: Path) -> None:
    if any(folder.rglob("*.ckpt")):  # never delete a checkpoint
        return
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def job(started: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Wrap the body of a ``@hydra.main`` function.

    On an exception before ``started()`` is true, the run folder Hydra created is removed (see
    the module docstring for the folders that are always kept). An expected error then exits
    with one ``error:`` line (raised as ``SystemExit``, so Hydra adds no "Error executing job"
    line); others propagate with their traceback.
    """
    run = _hydra_run_folder()
    keep = run is None or run[2] or bool(_own_files(run[0], run[1]))
    try:
        yield
    except Exception as error:
        if not keep and not started():
            _remove_run_folder(run[0])
        if is_expected(error) and not full_tracebacks_wanted():
            _exit_with_line(error)
        raise
