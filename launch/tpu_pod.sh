#!/usr/bin/env bash
# Runs one experiment on every host of a Cloud TPU pod slice. JAX detects the
# pod itself (jax.distributed needs no addresses there); the workdir must be
# shared storage all hosts reach (e.g. a gs:// bucket), and data_dir too.
#
#   bash launch/tpu_pod.sh TPU_NAME ZONE configs/resnet_imagenet.py:variant=r50 gs://bucket/r50 \
#       --config.data.data_dir=gs://bucket/tensorflow_datasets
set -euo pipefail
tpu=${1:?TPU name}
zone=${2:?zone}
config=${3:?config file[:args]}
workdir=${4:?shared workdir}
shift 4
repo=${REPO_DIR:-vision_jax}
gcloud compute tpus tpu-vm ssh "${tpu}" --zone="${zone}" --worker=all --command "
  cd ${repo} && python3 -m pip install -q -e . 'jax[tpu]' &&
  python3 -m vision_jax.main --config=${config} --workdir=${workdir} \
    --config.distributed.enabled=True $*"
