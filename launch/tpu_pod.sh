#!/usr/bin/env bash
# Cloud TPU VM pod slices: create one, put this checkout on every worker, run an
# experiment on all workers at once, delete it. JAX finds the other hosts from
# the TPU environment (config.distributed.enabled=True, no addresses needed);
# the workdir (Orbax checkpoints, metrics) must be a gs:// bucket every host
# reaches, and so must config.data.data_dir for TFDS datasets.
#
#   bash launch/tpu_pod.sh [--dry-run] create NAME ZONE [ACCELERATOR [VERSION]]
#   bash launch/tpu_pod.sh [--dry-run] setup  NAME ZONE
#   bash launch/tpu_pod.sh [--dry-run] run    NAME ZONE CONFIG[:ARGS] gs://BUCKET/WORKDIR [--config.KEY=VALUE ...]
#   bash launch/tpu_pod.sh [--dry-run] ssh    NAME ZONE [WORKER]
#   bash launch/tpu_pod.sh [--dry-run] delete NAME ZONE
#
# ACCELERATOR defaults to v4-32 and VERSION to tpu-ubuntu2204-base; PROJECT
# (gcloud project) is optional. --dry-run prints the gcloud commands, runs nothing.
set -euo pipefail
. "$(dirname "$0")/quote.sh"
dry_run=false
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=true; shift; fi
usage() { sed -n '2,15p' "$0" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
action=$1 name=$2 zone=$3
shift 3
remote_dir=vision_jax
gcloud=(gcloud compute tpus tpu-vm)
where=("--zone=${zone}")
[[ -n "${PROJECT:-}" ]] && where+=("--project=${PROJECT}")

run() {  # Prints or runs one command.
  if ${dry_run}; then quote_words "$@"; else "$@"; fi
}

case "${action}" in
  create)
    run "${gcloud[@]}" create "${name}" "${where[@]}" "--accelerator-type=${1:-v4-32}" \
      "--version=${2:-tpu-ubuntu2204-base}"
    ;;
  setup)
    archive=/tmp/vision_jax_src.tar.gz
    run git -C "$(cd "$(dirname "$0")/.." && pwd)" archive --format=tar.gz -o "${archive}" HEAD
    run "${gcloud[@]}" scp "${archive}" "${name}:vision_jax_src.tar.gz" "${where[@]}" --worker=all
    run "${gcloud[@]}" ssh "${name}" "${where[@]}" --worker=all --command="mkdir -p ${remote_dir} && \
tar -xzf vision_jax_src.tar.gz -C ${remote_dir} && cd ${remote_dir} && python3 -m pip install -q -e '.[tpu]'"
    ;;
  run)
    [[ $# -ge 2 ]] || usage
    config=$1 workdir=$2
    shift 2
    if [[ "${workdir}" != gs://* ]]; then
      echo "WORKDIR must be a gs:// path every host reaches, got '${workdir}'." >&2
      exit 2
    fi
    train=$(quote_words python3 -m vision_jax.main "--config=${config}" "--workdir=${workdir}" \
      --config.distributed.enabled=True "$@")
    run "${gcloud[@]}" ssh "${name}" "${where[@]}" --worker=all --command="cd ${remote_dir} && ${train}"
    ;;
  ssh)
    run "${gcloud[@]}" ssh "${name}" "${where[@]}" "--worker=${1:-0}"
    ;;
  delete)
    run "${gcloud[@]}" delete "${name}" "${where[@]}" --quiet
    ;;
  *)
    echo "Unknown action '${action}': create, setup, run, ssh or delete." >&2
    exit 2
    ;;
esac
