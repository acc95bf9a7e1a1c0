#!/usr/bin/env bash
# Multi-node GPU runs under SLURM: one process per node (driving all its GPUs)
# or one per GPU. srun starts the same command in every task; JAX reads the
# coordinator (first node of the step), process count and id from SLURM's
# variables (config.distributed.enabled=True).
#
#   bash launch/slurm_gpu.sh [--dry-run] CONFIG[:ARGS] WORKDIR [--config.KEY=VALUE ...]
#   NODES=4 bash launch/slurm_gpu.sh configs/pvt_coco.py:variant=small /shared/runs/pvt_s
#
# Run outside an allocation, it submits itself with sbatch; inside the job it
# runs srun. WORKDIR (and the data) must be on storage every node sees.
# Settings (environment): NODES (2), GPUS_PER_NODE (8), PER=node|gpu (node),
# PARTITION, ACCOUNT, TIME (24:00:00), PYTHON (python3), JAX_COORDINATOR_PORT
# (default: derived from the job id). --dry-run prints the commands, runs nothing.
set -euo pipefail
. "$(dirname "$0")/quote.sh"
dry_run=false
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=true; shift; fi
if [[ $# -lt 2 ]]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
nodes=${NODES:-2} gpus=${GPUS_PER_NODE:-8} per=${PER:-node}
case "${per}" in
  # One process sees all GPUs of its node (JAX would otherwise take only GPU $SLURM_LOCALID).
  node) tasks_per_node=1 devices=(--config.distributed.local_device_ids="$(seq -s, 0 $((gpus - 1)))") ;;
  # One process per GPU: JAX gives task $SLURM_LOCALID of each node GPU $SLURM_LOCALID.
  gpu) tasks_per_node=${gpus} devices=() ;;
  *) echo "PER must be 'node' or 'gpu', got '${per}'." >&2; exit 2 ;;
esac

job=(srun --kill-on-bad-exit=1 "--ntasks-per-node=${tasks_per_node}"
     "${PYTHON:-python3}" -m vision_jax.main "--config=${config}" "--workdir=${workdir}"
     --config.distributed.enabled=True "${devices[@]}" "$@")

if [[ -n "${SLURM_JOB_ID:-}" ]]; then  # Inside the allocation.
  if ${dry_run}; then quote_words "${job[@]}"; exit 0; fi
  exec "${job[@]}"
fi

submit=(sbatch --job-name=vision_jax "--nodes=${nodes}" "--ntasks-per-node=${tasks_per_node}"
        "--gpus-per-node=${gpus}" "--time=${TIME:-24:00:00}" "--output=${workdir%/}.slurm-%j.log")
[[ -n "${PARTITION:-}" ]] && submit+=("--partition=${PARTITION}")
[[ -n "${ACCOUNT:-}" ]] && submit+=("--account=${ACCOUNT}")
# --wrap runs this file from where it is (sbatch would run a copy without quote.sh).
submit+=("--wrap=$(quote_words bash "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" \
                   "${config}" "${workdir}" "$@")")
if ${dry_run}; then
  quote_words "${submit[@]}"
  echo "# then in the job, ${nodes} nodes x ${tasks_per_node} task(s):"
  quote_words "${job[@]}"
  exit 0
fi
mkdir -p "$(dirname "${workdir%/}")"
"${submit[@]}"
