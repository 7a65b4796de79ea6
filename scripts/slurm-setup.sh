#!/usr/bin/env bash
# Installs and starts a single-node Slurm cluster on this machine, for the
# Slurm backend's tests (CI's .ci/run calls it). Debian 12 packages, run as
# root. Idempotent: a second run restarts the daemons.
#
#   scripts/slurm-setup.sh                # slurmctld + slurmd + munge, no accounting
#   SLURM_ACCOUNTING=1 scripts/...        # also slurmdbd + mariadb, so `sacct` works
#   scripts/slurm-setup.sh restart-ctld   # restart slurmctld only (the tests use it)
#
# Loopback only: slurmctld and slurmd have no bind-address setting, so they
# run in a network namespace (`reagent-slurm`) whose only interface is lo;
# nothing outside this machine can reach them. The Slurm client commands
# (sbatch, squeue, sacct, scontrol, scancel, sinfo) reach them through shims
# in /opt/reagent-slurm/bin that enter the namespace; put that folder first
# on PATH (the tests do when REAGENT_SLURM_BIN names it). Jobs run inside
# the namespace; they reach the workspace's wake socket through the file
# system, which is shared.
#
# Facts this relies on (checked on Debian 12, slurm-wlm 22.05): root with
# SlurmUser=root, proctrack/linuxproc, task/none, select/cons_tres; munged
# started as user munge after creating /run/munge.
set -euo pipefail

ns=reagent-slurm
bin=/opt/reagent-slurm/bin
# Only the network namespace changes (nsenter keeps the mounts, which
# slurmd's cgroup set-up needs; `ip netns exec` would remount /sys).
in_ns() { nsenter --net="/run/netns/$ns" "$@"; }

if [ "${1:-}" = restart-ctld ]; then
  pkill -x slurmctld 2>/dev/null || true
  for _ in $(seq 50); do pgrep -x slurmctld >/dev/null || break; sleep 0.1; done
  in_ns slurmctld
  for _ in $(seq 100); do "$bin/squeue" -h >/dev/null 2>&1 && exit 0; sleep 0.1; done
  echo "slurm-setup: slurmctld did not come back" >&2
  exit 1
fi

if [ "$(id -u)" != 0 ]; then
  echo "slurm-setup: run as root (it installs Debian packages and starts daemons)" >&2
  exit 2
fi

packages="slurm-wlm slurmctld slurmd munge slurm-client"
if [ "${SLURM_ACCOUNTING:-0}" = 1 ]; then
  packages="$packages slurmdbd mariadb-server"
fi
missing=""
for p in $packages; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "slurm-setup: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # The packages' own postinst may try to start services; there is no
  # systemd here, so that fails harmlessly and we start them below.
  apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 || \
    apt-get install -y --no-install-recommends $missing
fi

host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ { print int($2 / 1024 * 0.8) }' /proc/meminfo)
conf=/etc/slurm/slurm.conf
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge

# munge: one key, daemon as user munge.
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key /run/munge
chmod 400 /etc/munge/munge.key
chown -R munge:munge /var/lib/munge /var/log/munge 2>/dev/null || true
# The namespace: loopback only. Slurm resolves addresses with
# getaddrinfo(AI_ADDRCONFIG), which finds nothing while only 127.0.0.1 is
# configured, so lo also gets a private address (it leads nowhere: lo is
# the namespace's only interface).
[ -e "/run/netns/$ns" ] || ip netns add "$ns"
in_ns ip link set lo up
in_ns ip addr show dev lo | grep -q 10.254.254.1 || in_ns ip addr add 10.254.254.1/32 dev lo
mkdir -p "$bin"
for c in sbatch squeue sacct scontrol scancel sinfo sacctmgr; do
  printf '#!/bin/sh\n# Slurm runs in the loopback-only network namespace %s (scripts/slurm-setup.sh).\nexec nsenter --net=/run/netns/%s /usr/bin/%s "$@"\n' "$ns" "$ns" "$c" > "$bin/$c"
  chmod 755 "$bin/$c"
done

pkill -x munged 2>/dev/null || true
sleep 0.2
su -s /bin/sh munge -c "/usr/sbin/munged --force" 

accounting="AccountingStorageType=accounting_storage/none"
if [ "${SLURM_ACCOUNTING:-0}" = 1 ]; then
  accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux"
fi

cat > "$conf" <<EOF
# Written by reagent's scripts/slurm-setup.sh: one node, loopback only.
ClusterName=reagent-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldAddr=127.0.0.1
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
$accounting
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

if [ "${SLURM_ACCOUNTING:-0}" = 1 ]; then
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if ! in_ns mysqladmin ping >/dev/null 2>&1; then
    (in_ns mysqld_safe --bind-address=127.0.0.1 >/dev/null 2>&1 &)
    for _ in $(seq 50); do in_ns mysqladmin ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  in_ns mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
  pkill -x slurmdbd 2>/dev/null || true
  sleep 0.3
  in_ns slurmdbd
  sleep 1
fi

pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 0.5
in_ns slurmctld
in_ns slurmd
if [ "${SLURM_ACCOUNTING:-0}" = 1 ]; then
  "$bin/sacctmgr" -i add cluster reagent-test >/dev/null 2>&1 || true
fi

# Wait until the node takes jobs.
for _ in $(seq 100); do
  state=$("$bin/sinfo" -h -N -o %t 2>/dev/null | head -1 || true)
  case "$state" in
    idle*|mix*|alloc*)
      echo "slurm-setup: node $host is $state (partition debug, $cpus CPUs), in network namespace $ns (loopback only)"
      echo "slurm-setup: Slurm commands: $bin (export REAGENT_SLURM_BIN=$bin; PATH=$bin:\$PATH)"
      exit 0 ;;
  esac
  sleep 0.2
done
echo "slurm-setup: the node did not come up; see /var/log/slurm/*.log" >&2
"$bin/sinfo" -N -l >&2 || true
exit 1
