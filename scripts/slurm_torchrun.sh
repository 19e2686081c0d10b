#!/bin/bash
# Data-parallel training on SLURM, one node or many: one torchrun per node (started by srun), each starting one
# process per GPU; the processes meet at a c10d rendezvous on the job's first node. Pass train.py's overrides:
#
#   sbatch --nodes=2 --gpus-per-node=8 --cpus-per-task=64 scripts/slurm_torchrun.sh task=imagenet optimizer=ramda seed=1
#
# Processes per node: $NPROC_PER_NODE, else SLURM's GPU count on the node, else 1 (CPU nodes: set NPROC_PER_NODE).
# The run directory is results/runs/slurm/<job id> unless hydra.run.dir is given. SLURM sends SIGUSR1 120 s
# before the time limit; torchrun passes it to its processes (--signals-to-handle; SIGUSR1 is not among its
# defaults) and gives them 100 s; they stop at the same step, rank 0 writes checkpoint.pt, they exit; the job
# then requeues itself (same job id, same run directory) and resumes from the checkpoint, at most
# $RAMDA_MAX_REQUEUES (20) times.
#SBATCH --job-name=ramda-ddp
#SBATCH --ntasks-per-node=1
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%j.out
set -euo pipefail

nproc=${NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}
master=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
port=${MASTER_PORT:-29500}
args=("$@")
run_dir=""
for arg in "$@"; do
    case "$arg" in hydra.run.dir=*) run_dir=${arg#hydra.run.dir=} ;; esac
done
if [ -z "$run_dir" ]; then
    run_dir=results/runs/slurm/$SLURM_JOB_ID
    args+=("hydra.run.dir=$run_dir")
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( ${SLURM_CPUS_PER_TASK:-$nproc} / nproc > 0 ? ${SLURM_CPUS_PER_TASK:-$nproc} / nproc : 1 ))}

status=0
srun --kill-on-bad-exit=1 torchrun \
    --nnodes="$SLURM_JOB_NUM_NODES" \
    --nproc_per_node="$nproc" \
    --rdzv_id="$SLURM_JOB_ID" \
    --rdzv_backend=c10d \
    --rdzv_endpoint="$master:$port" \
    --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \
    --shutdown-timeout=100 \
    train.py "${args[@]}" || status=$?

if [ "$status" -ne 0 ] && grep -qs '"status": "running"' "$run_dir/summary.json" \
    && [ "${SLURM_RESTART_COUNT:-0}" -lt "${RAMDA_MAX_REQUEUES:-20}" ]; then
    echo "stopped before the end (exit $status): requeueing job $SLURM_JOB_ID to resume $run_dir" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
