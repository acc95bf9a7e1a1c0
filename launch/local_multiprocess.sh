#!/usr/bin/env bash
# Runs N cooperating processes on this machine with jax.distributed (CPU devices,
# gloo collectives): the same code path as a multi-host pod, for trying things out.
#
#   bash launch/local_multiprocess.sh 2 configs/resnet_digits.py:demo /tmp/multi [--config.x=y ...]
set -euo pipefail
num_processes=${1:?number of processes}
config=${2:?config file[:args]}
workdir=${3:?workdir}
shift 3
devices_per_process=${DEVICES_PER_PROCESS:-2}
port=${PORT:-$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
pids=()
for ((i = 0; i < num_processes; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=${devices_per_process}" JAX_PLATFORMS=cpu \
    python -m vision_jax.main --config="${config}" --workdir="${workdir}" \
      --config.distributed.coordinator_address="127.0.0.1:${port}" \
      --config.distributed.num_processes="${num_processes}" \
      --config.distributed.process_id="${i}" "$@" > "${workdir%/}.process${i}.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "${pid}" || status=$?; done
echo "logs: ${workdir%/}.process*.log"
exit "${status}"
