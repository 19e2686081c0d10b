#!/usr/bin/env bash
# GPU acceptance check: one command, under 8 minutes on one GPU, a Markdown report in OUT_DIR.
#
#   bash scripts/gpu_check.sh OUT_DIR [--wheels DIR] [--only REGEX] [--dry-run]
#
# 1. dependencies: the project's pure-Python ones (hydra-core, omegaconf, the speech extras, tqdm, pytest…) are
#    installed from the wheels in DIR (default: $PIP_FIND_LINKS, then ./wheels) with pip --no-index, never from
#    the network; what is still missing is listed in the report and the steps that need it are skipped. torch is
#    used as found (the project is put on PYTHONPATH, not pip-installed, so that pip never touches torch).
#    Prepare DIR where there is an index, for the GPU machine's Python (docs/gpu_report.md lists what one
#    needed): pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d DIR \
#    hydra-core omegaconf soundfile unidecode inflect; antlr4-python3-runtime (hydra's) is a source archive
#    only: pip wheel --no-deps -w DIR antlr4-python3-runtime==4.9.3.
# 2. the CUDA-only tests; 3. the Triton kernels against the plain-torch path over the ResNet50, Transformer-XL
#    and Tacotron2 shapes, every Triton step under torch.cuda.set_sync_debug_mode("error")
#    (scripts/gpu_kernel_check.py); 4. scripts/bench_optim.py --device cuda for both models, and --iteration
#    (bf16 ResNet50, batch 256, RAMDA against SGD), and scripts/profile_step.py (where a step's time goes);
#    5. 30 steps of train.py on each task's fixture on CUDA in the task's preset precision.
# --only REGEX runs the steps whose names match (an extended regular expression), e.g. --only 'fixtures|train'
# (the train steps read what the fixtures step writes).
# --dry-run prints the steps (and the dependency check) without running anything or writing OUT_DIR.
set -uo pipefail

usage="usage: bash scripts/gpu_check.sh OUT_DIR [--wheels DIR] [--only REGEX] [--dry-run]"
out="" wheels="${PIP_FIND_LINKS:-}" dry=0 only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --wheels)
            [ $# -ge 2 ] || { echo "error: --wheels needs a directory; $usage" >&2; exit 2; }
            wheels="$2"; shift ;;
        --only)
            [ $# -ge 2 ] || { echo "error: --only needs a regular expression; $usage" >&2; exit 2; }
            only="$2"; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
        -*) echo "error: unknown option $1; $usage" >&2; exit 2 ;;
        *)
            [ -z "$out" ] || { echo "error: one OUT_DIR expected, got '$out' and '$1'; $usage" >&2; exit 2; }
            out="$1" ;;
    esac
    shift
done
[ -n "$out" ] || { echo "error: OUT_DIR missing; $usage" >&2; exit 2; }
if [ "$dry" = 0 ] && [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "error: $out exists and is not empty; give a new directory (nothing is overwritten)" >&2
    exit 2
fi
[ -n "$wheels" ] || wheels="wheels"

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled
py="${PYTHON:-$(command -v python || command -v python3)}"

# Python module -> distribution, for the project's pure-Python dependencies (and the tests').
deps="hydra:hydra-core omegaconf:omegaconf antlr4:antlr4-python3-runtime tqdm:tqdm yaml:PyYAML pytest:pytest
pytest_timeout:pytest-timeout sklearn:scikit-learn numba:numba triton:triton torchvision:torchvision
torchaudio:torchaudio soundfile:soundfile unidecode:unidecode inflect:inflect"
missing_deps() {
    # One interpreter, no imports: find_spec only looks the modules up.
    "$py" -c 'import importlib.util as u, sys
print(" ".join(d for m, d in (a.split(":") for a in sys.argv[1:]) if u.find_spec(m) is None))' $deps
}

# The steps: name|timeout (s)|command. The limits add up to 480 s; on one H200 on 2026-11-30 the steps before the
# train.py ones took 32, 64 (50 kernel rows; now 60), 14, 14, 43 and 12 s (docs/gpu_report.md).
fx="$out/fixtures"
# 30 steps on the fixtures (72 images, 12 clips, a 557-word vocabulary): batches and adaptive-softmax cutoffs that
# fit them, no learning-rate milestones (the presets' lie beyond step 30); the model and precision are the preset's.
train="$py train.py optimizer=ramda trainer.device=cuda trainer.progress=none trainer.max_steps=30 'trainer.milestones=[]'"
steps=(
    "CUDA-only tests|45|$py -m pytest -q -rs -p no:cacheprovider tests/test_optim.py tests/test_env.py -k 'across_devices or never_synchronises or cuda_without or rng_round_trip'"
    "Triton kernels against the plain-torch path (sync debug mode error)|90|$py scripts/gpu_kernel_check.py"
    "bench_optim --device cuda --model resnet50|40|$py scripts/bench_optim.py --device cuda --model resnet50 --steps 9"
    "bench_optim --device cuda --model txl|40|$py scripts/bench_optim.py --device cuda --model txl --steps 7"
    "bench_optim --iteration: bf16 ResNet50, batch 256, RAMDA against SGD|60|$py scripts/bench_optim.py --device cuda --model resnet50 --iteration --batch 256 --amp bf16 --channels-last --only RAMDA --steps 9"
    "profile_step --device cuda --model resnet50: host time, kernel time and launches per step|45|$py scripts/profile_step.py --device cuda --model resnet50"
    "fixtures|25|for t in imagenet wikitext103 ljspeech; do $py scripts/make_fixtures.py \$t $fx || exit 1; done"
    "train.py task=imagenet, 30 steps|45|$train task=imagenet task.data.root=$fx/imagenet task.batch_size=8 task.init_cache=$out/init hydra.run.dir=$out/runs/imagenet"
    "train.py task=wikitext103, 30 steps|45|$train task=wikitext103 task.data.root=$fx/wikitext-103 task.data.cache_dir=$out/cache 'task.cutoffs=[100,200,400]' hydra.run.dir=$out/runs/wikitext103"
    "train.py task=ljspeech, 30 steps|45|$train task=ljspeech task.data.root=$fx/LJSpeech-1.1 task.data.filelists=$fx/filelists task.batch_size=4 hydra.run.dir=$out/runs/ljspeech"
)
if [ -n "$only" ]; then
    kept=()
    for s in "${steps[@]}"; do [[ "${s%%|*}" =~ $only ]] && kept+=("$s"); done
    if [ ${#kept[@]} = 0 ]; then
        names="$(for s in "${steps[@]}"; do printf "'%s' " "${s%%|*}"; done)"
        echo "error: --only '$only' matches no step; the steps: $names" >&2
        exit 2
    fi
    steps=("${kept[@]}")
fi
# What each step needs besides torch (train.py: hydra and omegaconf; the speech task: its extras).
needs() {
    case "$1" in
        CUDA*) echo "pytest pytest-timeout triton" ;;
        Triton*) echo "triton torchvision torchaudio" ;;
        bench*|profile*) echo "torchvision numba" ;;
        "train.py task=ljspeech"*) echo "hydra-core omegaconf antlr4-python3-runtime torchaudio soundfile unidecode inflect" ;;
        train*) echo "hydra-core omegaconf antlr4-python3-runtime" ;;
        *) echo "" ;;
    esac
}

if [ "$dry" = 1 ]; then
    echo "dry run: would write $out/report.md"
    echo "dependencies: pip install --no-index --find-links $wheels (only what is missing): $(missing_deps)"
    for s in "${steps[@]}"; do
        IFS='|' read -r name limit cmd <<<"$s"
        echo "step: $name (at most ${limit}s): $cmd"
    done
    echo "shapes of the kernel check: $py scripts/gpu_kernel_check.py --list"
    exit 0
fi

"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "error: no CUDA device visible to torch; this script checks the GPU path (see --dry-run)" >&2; exit 2; }
mkdir -p "$out"
report="$out/report.md"
start_all=$(date +%s)
{
    echo "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
    echo "torch $("$py" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'),"\
         "triton $("$py" -c 'import triton; print(triton.__version__)' 2>/dev/null || echo missing),"\
         "commit $(git describe --always --dirty 2>/dev/null || echo unknown)"
    echo
} >"$report"

need_install="$(missing_deps)"
if [ -n "$need_install" ] && [ -d "$wheels" ]; then
    # shellcheck disable=SC2086
    "$py" -m pip install --no-index --find-links "$wheels" $need_install >"$out/pip.log" 2>&1 || true
fi
still="$(missing_deps)"
{
    echo "## Dependencies"
    echo
    echo "Missing before: ${need_install:-none}. Wheels from: $wheels. Still missing: ${still:-none}."
    echo
} >>"$report"

failed=0
for s in "${steps[@]}"; do
    IFS='|' read -r name limit cmd <<<"$s"
    lacking=""
    for d in $(needs "$name"); do
        case " $still " in *" $d "*) lacking="$lacking $d" ;; esac
    done
    echo "## $name" >>"$report"
    echo >>"$report"
    if [ -n "$lacking" ]; then
        echo "SKIPPED: missing$lacking" | tee -a "$report"
        echo >>"$report"
        failed=1
        continue
    fi
    echo "== $name"
    t0=$(date +%s)
    timeout "$limit" bash -c "$cmd" >"$out/step.log" 2>&1
    rc=$?
    dt=$(( $(date +%s) - t0 ))
    [ $rc = 0 ] || failed=1
    status="ok"; [ $rc = 0 ] || status="FAILED (exit $rc$([ $rc = 124 ] && echo ', time limit'))"
    {
        echo "\`$cmd\` — $status, ${dt}s"
        echo
        if [[ "$name" == bench* || "$name" == Triton* || "$name" == profile* ]]; then
            grep -E '^\||^[a-z0-9]+,? |rows|^  [ 0-9.]+ ms|^Kernels|^[A-Za-z ]+:$' "$out/step.log" || true
            [ $rc = 0 ] || { echo; echo '```'; tail -n 30 "$out/step.log"; echo '```'; }
        else
            echo '```'
            tail -n 15 "$out/step.log"
            echo '```'
        fi
        echo
    } >>"$report"
    cat "$out/step.log" >>"$out/all.log"
done
rm -f "$out/step.log"
echo "Total: $(( $(date +%s) - start_all ))s." >>"$report"
echo "report: $report"
exit $failed
