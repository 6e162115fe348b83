#!/usr/bin/env bash
# GPU benchmark of the detector: fp32 and fp16 on the CUDA and TensorRT execution providers,
# batch 1, 2, 4. Meant for ONE run on a lent GPU box (~10 min budget) that has this repo tree
# copied but possibly no network.
#
#   CPU side, once, before going to the GPU box (builds the model dir to carry, ~45 MB):
#       ops/bench/gpu_bench.sh --prepare            # -> .models/yolov4-tiny/{fp32,fp16,int8}.onnx + bench_frames.npy
#   GPU box:
#       ops/bench/gpu_bench.sh                      # results on stdout + $OUT/gpu_bench_*.json (or ./gpu_bench_*.json)
#
# Environment: MODEL_DIR (default .models), PYTHON (force an interpreter), OUT (result dir),
# CUDA_TIMEOUT / TRT_TIMEOUT (seconds per provider x variant attempt, default 90 / 200),
# ITERS (timed runs per batch size, default 50), TOTAL_TIMEOUT (whole script, default 540),
# PROVIDERS (default "cuda tensorrt"; "cpu" to exercise it here), VARIANTS (default "fp32 fp16").
# Needs only python3 + numpy + onnxruntime-gpu on the GPU box (model_zoo/bench.py imports nothing else).
set -uo pipefail
cd "$(dirname "$0")/../.."
MODEL_DIR="${MODEL_DIR:-.models}"
OUT="${OUT:-.}"
CUDA_TIMEOUT="${CUDA_TIMEOUT:-90}"
TRT_TIMEOUT="${TRT_TIMEOUT:-200}"
ITERS="${ITERS:-50}"
TOTAL_TIMEOUT="${TOTAL_TIMEOUT:-540}"
PROVIDERS="${PROVIDERS:-cuda tensorrt}"   # PROVIDERS=cpu exercises the script on a CPU-only machine
VARIANTS="${VARIANTS:-fp32 fp16}"
NAME=yolov4-tiny

if [[ "${1:-}" == "--prepare" ]]; then
    PY="${PYTHON:-.venv/bin/python}"
    set -e
    export EDGESIGHT_MODEL_DIR="$MODEL_DIR"
    "$PY" -m model_zoo.cli import "$NAME"
    "$PY" -m model_zoo.cli compress "$NAME" --variants int8,fp16
    "$PY" - "$MODEL_DIR/$NAME" <<'PYEOF'
import sys, numpy as np
from pathlib import Path
from model_zoo.bench import prepare_frames, FRAMES_FILE
f = prepare_frames((640, 640), n=4)
np.save(Path(sys.argv[1]) / FRAMES_FILE, f)
print("frames", f.shape, "->", Path(sys.argv[1]) / FRAMES_FILE)
PYEOF
    du -sh "$MODEL_DIR"
    exit 0
fi

echo "== $(date -u +%FT%TZ) gpu_bench on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi not found"

probe='import onnxruntime as o, numpy; print(",".join(o.get_available_providers()))'
pick_python() {
    local cands=() c best=""
    [[ -n "${PYTHON:-}" ]] && cands+=("$PYTHON")
    cands+=(python3 python /opt/conda/bin/python /usr/bin/python3 .venv/bin/python)
    for c in "${cands[@]}"; do
        command -v "$c" >/dev/null 2>&1 || continue
        local prov
        prov=$(timeout 60 "$c" -c "$probe" 2>/dev/null) || continue
        if [[ "$prov" == *CUDAExecutionProvider* ]]; then echo "$c"; return 0; fi
        [[ -z "$best" ]] && best="$c"
    done
    [[ -n "$best" ]] && { echo "$best"; return 0; }
    return 1
}

PY=$(pick_python)
if [[ -z "$PY" ]] || [[ "$(timeout 60 "$PY" -c "$probe" 2>/dev/null)" != *CUDAExecutionProvider* ]]; then
    echo "no python with onnxruntime-gpu found; trying pip (fails fast without network)"
    base=$(command -v python3 || true)
    if [[ -n "$base" ]]; then
        timeout 180 "$base" -m pip install --quiet --disable-pip-version-check --retries 0 --timeout 15 \
            --target .gpu_pylib "onnxruntime-gpu" numpy 2>&1 | tail -3
        export PYTHONPATH="$PWD/.gpu_pylib${PYTHONPATH:+:$PYTHONPATH}"
        PY="$base"
    fi
fi
if [[ -z "$PY" ]]; then echo "FATAL: no python with onnxruntime found"; exit 2; fi
echo "python: $PY ($("$PY" -V 2>&1)); providers: $(timeout 60 "$PY" -c "$probe" 2>&1 | tail -1)"

for f in "$NAME.fp32.onnx" "$NAME.fp16.onnx" bench_frames.npy; do
    [[ -f "$MODEL_DIR/$NAME/$f" ]] || { echo "FATAL: $MODEL_DIR/$NAME/$f missing (run ops/bench/gpu_bench.sh --prepare on the CPU side and carry $MODEL_DIR)"; exit 2; }
done

mkdir -p "$OUT"
deadline=$((SECONDS + TOTAL_TIMEOUT))
run() {   # provider, per-attempt timeout
    local left=$((deadline - SECONDS))
    (( left < 30 )) && { echo "skip $1: out of time"; return; }
    timeout "$left" "$PY" model_zoo/bench.py gpu --model-dir "$MODEL_DIR" --name "$NAME" --providers "$1" \
        --variants $VARIANTS --batches 1 2 4 --iters "$ITERS" --timeout "$2" --json "$OUT/gpu_bench_$1.json" \
        || echo "bench for $1 ended with status $?"
}
for p in $PROVIDERS; do
    # TensorRT engine builds are cached in $MODEL_DIR/$NAME/trt_cache (a second run is fast)
    if [[ "$p" == tensorrt ]]; then run "$p" "$TRT_TIMEOUT"; else run "$p" "$CUDA_TIMEOUT"; fi
done
echo "== done in ${SECONDS}s; JSON: $(for p in $PROVIDERS; do printf '%s ' "$OUT/gpu_bench_$p.json"; done)"
