#!/usr/bin/env bash
# slurm_local.sh: scripts/slurm_array.sh under a real, single-node SLURM started here.
#   tests/slurm_local.sh MRPIPE_BIN SOURCE_DIR WORK_DIR
# Starts munged, slurmctld and slurmd on 127.0.0.1 with a minimal slurm.conf in WORK_DIR (free
# ports, state and spool in WORK_DIR, nothing under /etc or /var), makes a small batch (6 small
# fastMRI-layout scans and a broken file), submits it with `scripts/slurm_array.sh --submit CONFIG 3`
# (a 3-task array + the gather job), waits, and checks: every array task and the gather ran under
# SLURM, every scan was processed exactly once (one start and one done/FAILED line per scan in
# OUT/mrpipe.log, over the three shards), each good scan has its marker, and the gathered summary
# counts 6 ok and 1 failed. The daemons are stopped on exit (by their PIDs).
# Exit 0: passed; 1: failed; 77: skipped (slurm-wlm or munge not installed, or the daemons cannot
# start, bring the node up or run a trivial job here), with the reason on stderr.
set -uo pipefail
bin=${1:?usage: slurm_local.sh MRPIPE_BIN SOURCE_DIR WORK_DIR}
src=${2:?source dir}
work=${3:?work dir}
skip() { echo "slurm_local: SKIP: $*" >&2; exit 77; }
fail() { echo "slurm_local: FAIL: $*" >&2; exit 1; }

for c in munged slurmctld slurmd sbatch squeue sinfo scontrol; do
  command -v "$c" >/dev/null 2>&1 || skip "'$c' not found (Debian: apt-get install slurm-wlm munge; scripts/install-deps.sh --test)"
done

rm -rf "$work"
mkdir -p "$work/state" "$work/spool" || fail "cannot create $work"
chmod 755 "$work"
work=$(cd "$work" && pwd)
pids=()
user=$(id -un)
cleanup() {
  # jobs still queued or running (a failed run) are cancelled before the daemons stop
  [ -n "${SLURM_CONF:-}" ] && [ "${#pids[@]}" -gt 1 ] && timeout 5 scancel --user="$user" 2>/dev/null && sleep 1
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
}
trap cleanup EXIT
logtail() { for f in "$@"; do [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }; done >&2; }

# munge: a fresh key and socket of our own
key=$work/munge.key
if command -v mungekey >/dev/null 2>&1; then
  mungekey -c -b 1024 -k "$key" 2>/dev/null || skip "mungekey cannot create a key"
else
  dd if=/dev/urandom of="$key" bs=128 count=1 2>/dev/null
fi
chmod 600 "$key"
munged -F -f --key-file="$key" --socket="$work/munge.sock" --pid-file="$work/munged.pid" \
  --log-file="$work/munged.log" --seed-file="$work/munged.seed" 2>"$work/munged.err" &
pids+=($!)
for _ in $(seq 50); do [ -S "$work/munge.sock" ] && break; sleep 0.1; done
[ -S "$work/munge.sock" ] || { logtail "$work/munged.err" "$work/munged.log"; skip "munged did not start"; }

# two free TCP ports on 127.0.0.1
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=0
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 20000))
  if port_free "$p" && port_free $((p + 1)); then port=$p; break; fi
done
[ "$port" -gt 0 ] || skip "no free TCP port pair on 127.0.0.1"

host=$(hostname -s)
cpus=$(nproc)
export SLURM_CONF=$work/slurm.conf
touch "$work/plugstack.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=mrpipetest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge.sock
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
PlugStackConfig=$work/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=mrpipenode NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i -f "$SLURM_CONF" >"$work/slurmctld.err" 2>&1 &
pids+=($!)
sleep 1
slurmd -D -N mrpipenode -f "$SLURM_CONF" >"$work/slurmd.err" 2>&1 &
pids+=($!)
up=0
for _ in $(seq 60); do
  state=$(sinfo -h -n mrpipenode -o %T 2>/dev/null)
  case "$state" in idle*|mixed*|alloc*) up=1; break ;; esac
  sleep 0.5
done
if [ $up = 0 ]; then
  logtail "$work/slurmctld.err" "$work/slurmctld.log" "$work/slurmd.err" "$work/slurmd.log"
  skip "the SLURM node did not come up within 30 s (state '${state:-none}'; logs above)"
fi
echo "slurm_local: slurmctld and slurmd up on 127.0.0.1:$port ($(sinfo -V)), node state $state"

# can a trivial job run here (e.g. not as an unprivileged user whose slurmd cannot launch jobs)?
sbatch --quiet --output="$work/probe.out" --wrap 'echo probe-ok' >/dev/null 2>"$work/probe.err" ||
  { logtail "$work/probe.err" "$work/slurmctld.log"; skip "sbatch cannot submit a job here"; }
for _ in $(seq 60); do
  [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
  sleep 0.5
done
grep -q probe-ok "$work/probe.out" 2>/dev/null ||
  { logtail "$work/slurmd.log" "$work/slurmctld.log"; skip "a trivial job (sbatch --wrap 'echo probe-ok') did not run within 30 s"; }

# the batch: 6 small scans and a broken file, 3 shards
mkdir -p "$work/b/in"
for i in 0 1 2 3 4 5; do
  "$bin" -q simulate --input /usr/share/mricron/templates/ch2.nii.gz --output "$work/b/in/s$i.h5" \
    --coils 4 --slices $((60 + 5 * i)):$((62 + 5 * i)) --matrix 64,56 --seed "$i" ||
    fail "mrpipe simulate failed"
done
echo 'not HDF5' > "$work/b/in/broken.h5"
cat > "$work/b/batch.yaml" <<EOF
inputs: {glob: in/*.h5}
output: {dir: $work/b/out}
stages:
  zf_4x: {stage: recon, mask: equispaced, accel: 4}
  validate: {}
  write: {formats: [h5]}
EOF
cd "$work/b" || fail "cd $work/b"
export MRPIPE=$bin MRPIPE_FFTW_PLANNER=${MRPIPE_FFTW_PLANNER:-estimate}
ids=$("$src/scripts/slurm_array.sh" --submit "$work/b/batch.yaml" 3 --cpus-per-task=1) ||
  { logtail "$work/slurmctld.log"; fail "slurm_array.sh --submit failed: $ids"; }
array=$(echo "$ids" | head -n 1)
gather=$(echo "$ids" | tail -n 1)
[ -n "$array" ] && [ -n "$gather" ] && [ "$array" != "$gather" ] ||
  fail "expected two job ids from --submit (array, gather), got '$ids'"
echo "slurm_local: submitted array job $array (3 tasks) and gather job $gather"
done_=0
for _ in $(seq 600); do
  if [ -z "$(squeue -h -o %i 2>/dev/null)" ]; then done_=1; break; fi
  sleep 0.5
done
if [ $done_ = 0 ]; then
  squeue >&2
  logtail "$work/slurmctld.log" "$work/slurmd.log"
  fail "the jobs did not finish within 300 s"
fi

# every task and the gather ran under SLURM, and wrote their output files
for t in 0 1 2; do
  [ -f "mrpipe-${array}_$t.out" ] || fail "no output of array task $t (mrpipe-${array}_$t.out)"
done
[ -f "mrpipe-gather-$gather.out" ] || fail "no output of the gather job (mrpipe-gather-$gather.out)"
log=$work/b/out/mrpipe.log
for t in 0 1 2; do
  [ "$(grep -c -- "--shard $t/3 --jobs 1 --threads 1" "$log")" = 1 ] ||
    fail "shard $t/3 did not start exactly once (OUT/mrpipe.log)"
done
# every scan exactly once: one start and one outcome line in the log, over all shards
for id in s0 s1 s2 s3 s4 s5 broken; do
  n_start=$(grep -c "\] $id: start (" "$log")
  n_end=$(grep -c -E "Z $id: (done in|FAILED)" "$log")
  [ "$n_start" = 1 ] && [ "$n_end" = 1 ] ||
    fail "scan $id: $n_start start and $n_end done/FAILED lines in OUT/mrpipe.log (expected 1 and 1)"
done
for i in 0 1 2 3 4 5; do
  [ -f "out/s$i/mrpipe-done.yaml" ] && [ -f "out/s$i/zf_4x.h5" ] || fail "scan s$i incomplete"
done
[ -f out/broken.failed.txt ] || fail "no failure record for the broken file"
grep -q '"counts": {"total": 7, "ok": 6, "failed": 1, "missing": 0}' out/summary.json ||
  fail "the gathered summary: $(grep '"counts"' out/summary.json 2>/dev/null || echo 'no out/summary.json')"
[ "$(ls out/summary.shard-*-of-3.json | wc -l)" = 3 ] || fail "expected 3 shard summaries"
# the gathered summary carries each scan's stage times (from its marker)
/usr/bin/python3 - out/summary.json <<'PY' || fail "summary.json: stage times missing or inconsistent"
import json, sys
s = json.load(open(sys.argv[1]))
ok = [x for x in s["scans"] if x["status"] == "ok"]
assert len(ok) == 6, len(ok)
for x in ok:
    st = x["stage_seconds"]
    assert sorted(st) == ["validate", "write", "zf_4x"], st
    assert all(v > 0 for v in st.values()), st
    assert abs(sum(st.values()) - x["stage_seconds_total"]) < 1e-5, x
    assert x["stage_seconds_total"] <= x["seconds"], x
PY
echo "slurm_local: OK: 3 array tasks + gather under SLURM; 7 scans each processed once (6 ok, 1 failed); summary gathered"
exit 0
