#!/usr/bin/env bash
# N cooperating processes on this machine over 127.0.0.1 (CPU devices, gloo
# collectives): the multi-host code path of a pod, on one machine, for testing.
#
#   bash launch/local_multiprocess.sh [--dry-run] N CONFIG[:ARGS] WORKDIR [--config.KEY=VALUE ...]
#   bash launch/local_multiprocess.sh 2 configs/resnet/digits.py:demo /tmp/multi
#
# Each process gets DEVICES_PER_PROCESS (default 2) fake CPU devices and logs to
# WORKDIR.process<I>.log; the coordinator listens on PORT (default: a free one).
# --dry-run prints the commands and runs nothing.
set -euo pipefail
. "$(dirname "$0")/quote.sh"
dry_run=false
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=true; shift; fi
if [[ $# -lt 3 ]]; then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
num_processes=$1 config=$2 workdir=${3%/}
shift 3
if ! [[ "${num_processes}" =~ ^[1-9][0-9]*$ ]]; then
  echo "N must be a positive integer, got '${num_processes}'." >&2
  exit 2
fi
python=${PYTHON:-python3}
devices_per_process=${DEVICES_PER_PROCESS:-2}
port=${PORT:-$("${python}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

command_for() {  # The command of process $1 (then its extra flags), shell-quoted.
  local id=$1
  shift
  quote_words env "XLA_FLAGS=--xla_force_host_platform_device_count=${devices_per_process}" \
    JAX_PLATFORMS=cpu "${python}" -m vision_jax.main "--config=${config}" "--workdir=${workdir}" \
    "--config.distributed.coordinator_address=127.0.0.1:${port}" \
    "--config.distributed.num_processes=${num_processes}" \
    "--config.distributed.process_id=${id}" "$@"
}

pids=()
for ((i = 0; i < num_processes; i++)); do
  cmd=$(command_for "${i}" "$@")
  if ${dry_run}; then
    echo "${cmd} > ${workdir}.process${i}.log 2>&1 &"
  else
    eval "${cmd}" > "${workdir}.process${i}.log" 2>&1 &
    pids+=($!)
  fi
done
${dry_run} && exit 0
trap 'kill "${pids[@]}" 2> /dev/null' INT TERM
status=0
for pid in "${pids[@]}"; do wait "${pid}" || status=$?; done
echo "logs: ${workdir}.process*.log (exit status ${status})"
exit "${status}"
