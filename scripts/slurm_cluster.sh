#!/usr/bin/env bash
# A single-node Slurm cluster on 127.0.0.1 from Debian's slurm-wlm and munge: slurmctld and
# slurmd on this machine, one partition holding its CPUs. For the distributed-sweep test and
# for trying hydra/launcher=submitit_slurm without a real cluster.
#   bash scripts/slurm_cluster.sh start     (installs the packages when missing; needs root)
#   bash scripts/slurm_cluster.sh stop
set -euo pipefail
ACTION=${1:-start}
ETC=/etc/slurm
SPOOL=/var/spool/mlbench-slurm

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
}

if [ "$ACTION" = stop ]; then stop; exit 0; fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null; }
fi
stop
sleep 1

# munge: the authentication slurm uses between its daemons and clients
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 400 /etc/munge/munge.key
runuser -u munge -- munged --force

mkdir -p "$ETC" "$SPOOL/ctld" "$SPOOL/d" /var/log/slurm
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat > "$ETC/slurm.conf" <<CONF
ClusterName=mlbench
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$SPOOL/slurmctld.pid
SlurmdPidFile=$SPOOL/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -i
slurmd -N localhost
for _ in $(seq 1 60); do
  state=$(sinfo -h -o %T 2>/dev/null || true)
  case "$state" in idle*|mix*|alloc*) echo "slurm: node localhost $state, $CPUS CPUs"; exit 0;; esac
  sleep 1
done
echo "slurm did not come up; see /var/log/slurm/" >&2
tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
