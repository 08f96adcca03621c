#!/usr/bin/env bash
# Bring up a one-node SLURM cluster for the tests: munge, slurmctld and slurmd from Debian's
# packages, two fake GPUs (symbolic links to /dev/null), all state under one folder.
# Idempotent: installs only what is missing, reuses daemons that already answer.
#   usage: start_slurm.sh [STATE_DIR]     (default /tmp/runner-slurm)
# Prints `SLURM_CONF=<path>` on success. Exit 3: the packages cannot be installed (not root, no
# apt-get, registry unreachable); exit 4: the daemons did not come up (see STATE_DIR/*.log).
set -uo pipefail
STATE=${1:-/tmp/runner-slurm}
CONF=$STATE/slurm.conf
export SLURM_CONF=$CONF

need_install() {
    for tool in slurmctld slurmd sbatch munged; do
        command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || return 0
    done
    return 1
}

if need_install; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "start_slurm: SLURM is not installed and cannot be (needs root and apt-get)" >&2; exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q slurmctld slurmd slurm-client munge >"$STATE.apt.log" 2>&1; then
        apt-get update -q >>"$STATE.apt.log" 2>&1
        apt-get install -y -q slurmctld slurmd slurm-client munge >>"$STATE.apt.log" 2>&1 || {
            echo "start_slurm: apt-get install of slurmctld slurmd slurm-client munge failed (see $STATE.apt.log)" >&2
            exit 3; }
    fi
fi
if [ "$(id -u)" != 0 ]; then
    echo "start_slurm: the daemons must be started as root" >&2; exit 3
fi

# Already up (an earlier test session on this machine)? Then reuse it.
if [ -f "$CONF" ] && timeout 10 scontrol ping 2>/dev/null | grep -q UP \
        && timeout 10 sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "SLURM_CONF=$CONF"; exit 0
fi

# munge: the key and folders, then munged as the munge user.
mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force || { echo "start_slurm: munged did not start" >&2; exit 4; }
fi

mkdir -p "$STATE/ctld" "$STATE/d" "$STATE/gpu"
ln -sf /dev/null "$STATE/gpu/fake0"
ln -sf /dev/null "$STATE/gpu/fake1"
CPUS=$(( $(nproc) > 4 ? $(nproc) : 4 ))
cat > "$CONF" <<CONF
ClusterName=runnertest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.txt
GresTypes=gpu
MinJobAge=300
KillWait=5
SchedulerParameters=sched_interval=1
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=4000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$STATE/gres.conf" <<CONF
AutoDetect=off
NodeName=localhost Name=gpu File=$STATE/gpu/fake0
NodeName=localhost Name=gpu File=$STATE/gpu/fake1
CONF

# Stop daemons of an earlier configuration (by their pid files), then start fresh ones.
for name in slurmd slurmctld; do
    pid=$(cat "$STATE/$name.pid" 2>/dev/null)
    # Only the daemon the pid file names: a stale file may point at a reused pid.
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then kill "$pid"; fi
done
sleep 0.5
/usr/sbin/slurmctld -f "$CONF" -i || { echo "start_slurm: slurmctld did not start (see $STATE/slurmctld.log)" >&2; exit 4; }
/usr/sbin/slurmd -f "$CONF" -N localhost || { echo "start_slurm: slurmd did not start (see $STATE/slurmd.log)" >&2; exit 4; }
for _ in $(seq 1 60); do
    if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "SLURM_CONF=$CONF"; exit 0
    fi
    sleep 0.5
done
echo "start_slurm: the node did not become idle: $(sinfo -h -N -o '%T %E' 2>&1) (see $STATE/*.log)" >&2
exit 4
