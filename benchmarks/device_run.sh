#!/bin/bash
# One call on the GPU machine: the stages named on the command line, logs under $OUT.
# Before the call, copy ../shared/qwen3-1.7b (and ../shared/qwen3-family/Qwen3-8B.config.json for
# step8b) into .devshared/ of the checkout: untracked files travel with the working tree.
#   bash benchmarks/device_run.sh ckpt pytest check bench ...
# ckpt: full-size random Qwen3-1.7B checkpoint (bf16) from the real config in $SHARED;
# ckpt8: the same stored as Qwen's FP8 release stores it (128x128 blocks);
# pytest: the cuda-marked tests; check: check_fast_paths (300 tokens);
# check8: check_fast_paths' FP8 checks; moe: bench_moe (Qwen3-30B-A3B-shaped, with the peer;
# MOE_SHAPES: expert kernel blocks to try); prefill: profile_prefill (graph replay, kernels); bench: bench_engine with the peers; bench8: ours, bf16
# and --quantize fp8; benchckpt8: ours on the FP8 checkpoint; tune8: tune_fast_decode --fp8
# (TUNE_S: its time limit; TUNE_ARGS: more of its options); step8b: whole fast steps of a
# Qwen3-8B-shaped model (its config.json beside $SHARED, as Qwen3-8B.config.json); sampling:
# bench_sampling (the draw in the graph against between replays); profile: the fast step's
# kernels per token (tune_fast_decode --no-sweep). PYTEST_K: a -k filter for pytest.
set -o pipefail
export PYTHONUNBUFFERED=1 QWEN3TUI_COMMIT=${QWEN3TUI_COMMIT:-unknown}
OUT=${OUT:-/tmp/out}
SHARED=${SHARED:-.devshared/qwen3-1.7b}
CKPT=benchmarks/checkpoints/qwen3-1.7b-random
CKPT8=benchmarks/checkpoints/qwen3-1.7b-random-fp8
start=$(date +%s)
stamp() { echo "== $1 at +$(( $(date +%s) - start ))s"; }
# Seconds left of a 10-minute call, less a margin for the files to come back.
left() { echo $(( 580 - ($(date +%s) - start) )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee $OUT/gpu.txt
for stage in "$@"; do
  stamp "$stage"
  case $stage in
    ckpt|ckpt8) python3 -c "
import json, sys, torch
from qwen3tui.engine.random_checkpoint import write_random_checkpoint
fp8 = sys.argv[1] == 'ckpt8'
cfg = json.load(open('$SHARED/config.json'))
write_random_checkpoint('$CKPT8' if fp8 else '$CKPT', config=cfg, tokenizer_dir='$SHARED',
                        dtype=torch.bfloat16, shards=2, fp8_block=(128, 128) if fp8 else None)
" $stage 2>&1 | tail -5 ;;
    pytest) timeout 240 python3 -m pytest -q -m cuda tests/test_fast_decode.py tests/test_decode_attention.py tests/test_gemv_kernel.py \
              tests/test_fp8_kernels.py tests/test_moe_kernels.py tests/test_fast_prefill.py tests/test_graph_sampler.py \
              tests/test_kernel_build.py ${PYTEST_K:+-k "$PYTEST_K"} 2>&1 | tee $OUT/pytest.log | tail -25 ;;
    pytest8) timeout 120 python3 -m pytest -q -m cuda tests/test_fp8_kernels.py ${PYTEST_K:+-k "$PYTEST_K"} 2>&1 \
              | tee $OUT/pytest8.log | tail -25 ;;
    check) timeout 260 python3 benchmarks/check_fast_paths.py --checkpoint $CKPT --tokens 300 \
             2>&1 | tee $OUT/check.log ;;
    check8) timeout $(left) python3 benchmarks/check_fast_paths.py --checkpoint $CKPT --tokens 300 \
              --fp8 $CKPT8 --only-fp8 2>&1 | tee $OUT/check8.log ;;
    bench) timeout $(left) python3 benchmarks/bench_engine.py --device cuda --peer-static \
             --shared $SHARED --checkpoint $CKPT --out $OUT/bench.json 2>&1 | tee $OUT/bench.log ;;
    bench8) timeout 200 python3 benchmarks/bench_engine.py --device cuda --skip-peer \
              --quantize none,fp8 --shared $SHARED --checkpoint $CKPT --out $OUT/bench8.json \
              2>&1 | tee $OUT/bench8.log | grep -v "^\[bench\]" ;;
    benchckpt8) timeout 150 python3 benchmarks/bench_engine.py --device cuda --skip-peer \
              --shared $SHARED --checkpoint $CKPT8 --out $OUT/benchckpt8.json \
              2>&1 | tee $OUT/benchckpt8.log | grep -v "^\[bench\]" ;;
    tune8) timeout ${TUNE_S:-170} python3 benchmarks/tune_fast_decode.py --config $SHARED/config.json \
              --fp8 --sweep qkv,o,gate_up,down ${TUNE_ARGS} --out $OUT/tune8.json 2>&1 | tee $OUT/tune8.log ;;
    prefill) timeout 120 python3 benchmarks/profile_prefill.py --config $SHARED/config.json \
               2>&1 | tee $OUT/prefill.log ;;
    moe) timeout $(left) python3 benchmarks/bench_moe.py --device cuda --tokens 64 --repeats 2 \
           --check-tokens 16 --json $OUT/moe.json ${MOE_SHAPES:+--expert-shapes $MOE_SHAPES} \
           2>&1 | tee $OUT/moe.log ;;
    sampling) timeout 200 python3 benchmarks/bench_sampling.py --checkpoint $CKPT 2>&1 | tee $OUT/sampling.log ;;
    profile) timeout 150 python3 benchmarks/tune_fast_decode.py --no-sweep --config $SHARED/config.json \
               --out $OUT/profile.json 2>&1 | tee $OUT/profile.log ;;
    step8b) timeout 150 python3 benchmarks/tune_fast_decode.py --no-sweep \
              --config ${SHARED%/*}/Qwen3-8B.config.json --out $OUT/step8b.json 2>&1 | tee $OUT/step8b.log ;;
    *) echo "unknown stage $stage" ;;
  esac
done
stamp done
