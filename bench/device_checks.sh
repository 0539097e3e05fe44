#!/usr/bin/env bash
# The GPU checks of issues 8 and 9 as one prepared run on a lent device machine (an H200 has
# torch, Lightning, torchmetrics, OpenCV and scikit-image, not hydra/omegaconf/kornia/av), within
# one 10-minute command of a session's 15 device-minutes. Here, once per checkout:
#
#   make device-kit        # wheels the machine lacks -> .whl/, the shared frames -> .device_data/
#
# then the device tool's run with carry [".whl", ".device_data"], timeout_s 590 and the command
#
#   bash bench/device_checks.sh speed      # then, as a second call: bash bench/device_checks.sh gain
#
# Sections (each prints its table to stdout and writes it under $OUT, so it comes back):
#   speed: bench/train_speed.py (fp32, bf16, compile; adaptive_q and no_codec, batch 8, clips of
#          7 at 128², the issue's setting) and bench/infer_speed.py (854x480 and 256x256, fp32
#          and bf16), bench/flow_stage_speed.py (the DIS stage on the host's cores, ~20 s),
#          about 4 minutes;
#   gain:  bench/temporal_gain.py with --minutes ${GAIN_MINUTES:-2} per configuration
#          (adaptive_q_flow, no_codec_flow, no_codec_zero; batch 8, 128² patches), about
#          3 x (GAIN_MINUTES + 1) minutes.
# Each section fits one 10-minute command, both together do not: on the device run them as two
# calls, `speed` then `gain` (~13 minutes of a 15-minute lease with the machine's start). Without
# an argument both run, one after the other (the CPU dry run below).
# Dry run on a CPU first (minutes; small sizes, few steps):
#   PYTHON=.venv/bin/python DEVICE=cpu MODES=fp32 STEPS=2 GAIN_MINUTES=0.3 INFER_ARGS="--sizes 64x96
#     --frames 3 --repeats 1 --no-scaling" bash bench/device_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
section="${1:-all}"
OUT="${OUT:-/tmp/device_checks}"
mkdir -p "$OUT"
py="${PYTHON:-python3}"  # the device image's python3 holds torch; here: PYTHON=.venv/bin/python
if ! "$py" -c "import hydra, kornia, av" 2>/dev/null; then  # the image lacks them: carried wheels
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
export NCFL_SHARED_DATA="${NCFL_SHARED_DATA:-$PWD/.device_data}"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

device="${DEVICE:-cuda}"
davis="data=davis data.root=$NCFL_SHARED_DATA/davis2017_480p data.train_sequences.split=null"
davis="$davis data.val_sequences=null data.batch_size=8 data.patch_size=128 data.clip_len=7"
status=0
if [ "$section" = all ] || [ "$section" = speed ]; then
  for preset in adaptive_q no_codec; do
    # shellcheck disable=SC2086  # $davis and MODES are lists
    "$py" bench/train_speed.py --device "$device" --modes ${MODES:-fp32 bf16 compile} \
      --steps "${STEPS:-40}" \
      --overrides model="$preset" $davis --out "$OUT/train_speed.md" || status=1
  done
  # the DIS flow stage per training step on this host's CPU cores: per frame against pooled
  "$py" bench/flow_stage_speed.py --repeats 5 | tee "$OUT/flow_stage_speed.md" || status=1
  # shellcheck disable=SC2086  # INFER_ARGS is a list of arguments
  "$py" bench/infer_speed.py --device "$device" --presets adaptive_q --precision 32 bf16 \
    ${INFER_ARGS:---frames 20 --repeats 3} | tee "$OUT/infer_speed.md" || status=1
fi
if [ "$section" = all ] || [ "$section" = gain ]; then
  "$py" bench/temporal_gain.py --device "$device" --minutes "${GAIN_MINUTES:-2}" --batch-size 8 \
    --patch-size 128 --configs adaptive_q_flow no_codec_flow no_codec_zero \
    --out "$OUT/temporal_gain.md" || status=1
fi
exit "$status"
