#!/usr/bin/env bash
# slurm_array.sh: an mrpipe batch as a SLURM job array, one shard per array task, then the summary.
#
#   scripts/slurm_array.sh --submit CONFIG.yaml N [SBATCH_OPTION ...]
#                                   submit N array tasks and a gather job after them; the options
#                                   (e.g. --partition=P --time=1:00:00 --cpus-per-task=4) go to both
#                                   sbatch calls and override the #SBATCH lines below; prints the
#                                   two job ids (array, gather), one per line
#   sbatch --array=0-$((N-1)) scripts/slurm_array.sh CONFIG.yaml N   (what --submit does)
#   scripts/slurm_array.sh --gather CONFIG.yaml      the summary over all scans (OUT/summary.*)
#
# Task i runs `mrpipe batch CONFIG --shard i/N`: inputs i, i+N, i+2N, ... (the shards cover every
# scan exactly once). Each task uses $SLURM_CPUS_PER_TASK threads. A scan that fails is recorded
# (OUT/ID.failed.txt) and the task still succeeds, so the gather always runs; the gather exits 3
# when scans failed or are missing. Resubmitting skips the complete scans. mrpipe is $MRPIPE, else
# `mrpipe` on the PATH. All tasks must see the same OUT directory (a shared file system).
#SBATCH --job-name=mrpipe
#SBATCH --cpus-per-task=2
#SBATCH --output=mrpipe-%A_%a.out
set -uo pipefail
mrpipe=${MRPIPE:-mrpipe}

if [ "${1:-}" = "--submit" ]; then
  config=${2:?usage: slurm_array.sh --submit CONFIG.yaml N [SBATCH_OPTION ...]}
  n=${3:?usage: slurm_array.sh --submit CONFIG.yaml N [SBATCH_OPTION ...]}
  shift 3
  jid=$(sbatch --parsable "$@" --array=0-$((n - 1)) --export=ALL "$0" "$config" "$n") || exit 1
  jid=${jid%%;*} # --parsable prints "id;cluster" on multi-cluster set-ups
  echo "$jid"
  gid=$(sbatch --parsable "$@" --dependency=afterany:"$jid" --export=ALL --job-name=mrpipe-gather \
    --output=mrpipe-gather-%j.out --wrap "'$mrpipe' batch '$config' --gather") || exit 1
  echo "${gid%%;*}"
  exit 0
fi
if [ "${1:-}" = "--gather" ]; then
  exec "$mrpipe" batch "$2" --gather
fi

config=${1:?usage: slurm_array.sh CONFIG.yaml N (under sbatch --array=0-N-1)}
n=${2:-${SLURM_ARRAY_TASK_COUNT:-1}}
i=${SLURM_ARRAY_TASK_ID:?not a SLURM array task (set SLURM_ARRAY_TASK_ID to run one by hand)}
"$mrpipe" batch "$config" --shard "$i/$n" --jobs 1 --threads "${SLURM_CPUS_PER_TASK:-1}" \
  --no-progress
rc=$?
[ $rc -eq 3 ] && rc=0 # failures are recorded for the gather
exit $rc
