#!/usr/bin/env bash
# GPU check of issue 19, ready to run on a lent NVIDIA machine in under 5 minutes; writes JSON.
#
#   scripts/gpu-check.sh [OUT_DIR]                      # default OUT_DIR: $OUT, else ./gpu-check-out
#   GPU_CHECK_DEVICE=cpu scripts/gpu-check.sh DIR       # CPU fallback, tiny sizes (tests/filters run it)
#
# Sections (each under its own timeout; a failure is recorded in the JSON and the next section runs):
#   ensf          torch EnSF, K=100, float32: one session N=100 and 1 / 100 / 1,000 / 10,000 batched
#                 sessions of N=20, d=12, for the closed form, auto, stepped and mixture paths, and the
#                 closed/stepped paths again with per-session counter streams   (ldensf.bench.filters)
#   onnx          onnxruntime on models/bundles/sw and kf with the CUDA provider (scripts/gpu_check_onnx.py)
#   train         `ldensf bench train --device cuda` on sw_paper and kf_paper (GPU_CHECK_TRAIN_CONFIGS)
#                 with 3-trajectory datasets (GPU_CHECK_TRAIN=0 skips it; off on the CPU fallback)
# Output: OUT_DIR/gpu-check.json (sections merged, with each one's status and seconds) and the
# sections' own JSON files; nvidia-smi's summary in OUT_DIR/nvidia-smi.txt.
#
# Needs: python with torch and the project's packages ($PYTHON, else .venv/bin/python, else python3).
# The lent machines' image has torch, numpy, scipy, typer, rich, onnx and onnxruntime (CPU build) but
# not pydantic, zarr or onnxruntime-gpu: carry them as wheels (docs/BENCHMARKS.md, "GPU check").
set -uo pipefail
cd "$(dirname "$0")/.."

device=${GPU_CHECK_DEVICE:-cuda}
out=${1:-${OUT:-gpu-check-out}}
mkdir -p "$out"
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ "$device" = cpu ]; then
  batches=${GPU_CHECK_BATCHES:-1,4}; quick=True; paths=closed,stepped
  rows=1,4; points=100; train=${GPU_CHECK_TRAIN:-0}; limit=120
else
  batches=${GPU_CHECK_BATCHES:-1,100,1000,10000}; quick=False; paths=closed,auto,stepped,mixture
  rows=1,100,1000,10000; points=10000; train=${GPU_CHECK_TRAIN:-1}; limit=150
fi
command -v nvidia-smi >/dev/null && nvidia-smi >"$out/nvidia-smi.txt" 2>&1

status_file="$out/sections.txt"
: >"$status_file"
section() {  # name timeout command...
  local name=$1 seconds=$2 start rc
  shift 2
  start=$(date +%s%N)
  echo "== $name" >&2
  timeout "$seconds" "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "$name $rc $((($(date +%s%N) - start) / 1000000))" >>"$status_file"
  tail -n 30 "$out/$name.log" >&2
}

section ensf "$limit" "$py" - "$device" "$batches" "$quick" "$paths" "$out" <<'EOF'
import json, sys
import torch
from ldensf.bench.filters import filter_figures
device, batches, quick, paths, out = sys.argv[1:6]
torch.set_num_threads(1)
sizes = [int(b) for b in batches.split(",")]
rows = filter_figures(device, sizes, quick == "True", "generator", paths.split(","))
rows += filter_figures(device, sizes, quick == "True", "counter", ["closed"])
# Stepped counter streams draw (K + 1) N d = 24,240 numbers a session through int64 temporaries:
# ~60 GB at 10,000 sessions, so they stop at 1,000.
rows += filter_figures(device, [b for b in sizes if b <= 1000], quick == "True", "counter", ["stepped"])
info = {"torch": torch.__version__, "device": device}
if device == "cuda":
    info["gpu"] = torch.cuda.get_device_name(0)
json.dump({**info, "rows": rows}, open(f"{out}/ensf.json", "w"), indent=1)
print(json.dumps(rows, indent=1))
EOF

section onnx 90 "$py" scripts/gpu_check_onnx.py --device "$device" --out "$out/onnx.json" --rows "$rows" \
  --points "$points" --repeats 20

if [ "$train" = 1 ]; then
  data=$(mktemp -d)
  configs=${GPU_CHECK_TRAIN_CONFIGS:-sw_paper kf_paper}
  train_all() {
    "$py" -m ldensf.cli data generate shallow-water --out "$data/sw.zarr" --n-traj 3 || return 1
    "$py" -m ldensf.cli data generate kolmogorov --out "$data/kf.zarr" --n-traj 3 || return 1
    local config
    for config in $configs; do
      "$py" -m ldensf.cli bench train --config "training/configs/$config.toml" --data "$data/${config%%_*}.zarr" \
        --steps 3 --device "$device" --json "$out/train_$config.json" || return 1
    done
  }
  export -f train_all
  export py data device out configs
  section train 150 bash -c train_all
fi

"$py" - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
result = {"sections": {}}
for line in (out / "sections.txt").read_text().splitlines():
    name, rc, ms = line.split()
    result["sections"][name] = {"exit": int(rc), "seconds": round(int(ms) / 1e3, 1)}
for path in sorted(out.glob("*.json")):
    if path.name != "gpu-check.json":
        result[path.stem] = json.loads(path.read_text())
(out / "gpu-check.json").write_text(json.dumps(result, indent=1))
print(f"wrote {out / 'gpu-check.json'}: " + ", ".join(f"{k} exit {v['exit']} in {v['seconds']} s" for k, v in result["sections"].items()))
EOF
