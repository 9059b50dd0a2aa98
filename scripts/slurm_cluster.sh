#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for testing the toolkit's launcher=slurm path against real daemons.
#
#   scripts/slurm_cluster.sh start   # install Debian's slurm-wlm, slurmdbd, munge, mariadb (if missing), write the
#                                    # configs under $SLURM_CLUSTER_DIR, start munged, mariadbd, slurmdbd, slurmctld,
#                                    # slurmd directly (no service manager here), wait until sinfo shows the node idle
#   scripts/slurm_cluster.sh env     # the environment a client needs: eval "$(scripts/slurm_cluster.sh env)"
#   scripts/slurm_cluster.sh stop    # stop only the daemons this script started, by the pids it recorded
#
# Needs root (apt-get, runuser). Everything it writes stays in $SLURM_CLUSTER_DIR (default /tmp/diversity-slurm);
# the system's own /etc/slurm and /var/lib/mysql are not touched. Choices, each measured on a CI machine:
# SlurmctldHost=<host>(127.0.0.1) and NodeAddr=127.0.0.1 (the host name need not resolve); the node's CPU layout from
# `slurmd -C`; ProctrackType=proctrack/pgid (proctrack/linuxproc leaked a job's children); AuthInfo=cred_expire=10
# and sched_interval=1 (else a requeued job waits ~2 min); accounting through slurmdbd + mariadb, because submitit
# polls sacct: without it a shard killed before writing its result leaves the launcher waiting forever.
set -euo pipefail

DIR=${SLURM_CLUSTER_DIR:-/tmp/diversity-slurm}
CLUSTER=diversity
DB_PORT=${SLURM_CLUSTER_DB_PORT:-3407}
DBD_PORT=${SLURM_CLUSTER_DBD_PORT:-6919}
CTLD_PORT=${SLURM_CLUSTER_CTLD_PORT:-6917}
SLURMD_PORT=${SLURM_CLUSTER_SLURMD_PORT:-6918}
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server mariadb-client)

log() { echo "slurm_cluster: $*" >&2; }

install_packages() {
  local missing=()
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

write_configs() {
  mkdir -p "$DIR"/{state,spool,log,run,mysql}
  local host node
  host=$(hostname -s)
  # slurmd -C prints this machine's layout as a NodeName line (CPUs, sockets, cores, threads, RealMemory).
  node=$(slurmd -C | head -n 1)
  cat >"$DIR/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1,sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=30
KillWait=5
InactiveLimit=0
SlurmctldTimeout=10
SlurmdTimeout=10
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/slurmdbd.conf"
}

wait_for() {  # wait_for <seconds> <what> <command...>
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not come up in time; logs in $DIR/log"
  return 1
}

start_munge() {
  # The default socket (/run/munge/munge.socket.2): every SLURM client looks there. Nothing else runs munged here.
  if [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null >/dev/null 2>&1; then
    log "munged already running; using it"
    return 0
  fi
  mkdir -p /run/munge
  touch "$DIR/log/munged.log"
  chown munge:munge /run/munge "$DIR/log/munged.log"
  runuser -u munge -- /usr/sbin/munged --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/run/munged.seed" --force
  wait_for 10 munged test -S /run/munge/munge.socket.2
}

start_mariadb() {
  touch "$DIR/log/mariadbd.log"
  chown mysql:mysql "$DIR/mysql" "$DIR/log/mariadbd.log"
  chmod 777 "$DIR/run"  # munged and mariadbd write their pid files here as their own users
  if [ ! -d "$DIR/mysql/mysql" ]; then
    mariadb-install-db --user=mysql --datadir="$DIR/mysql" --auth-root-authentication-method=socket >/dev/null
  fi
  runuser -u mysql -- /usr/sbin/mariadbd --datadir="$DIR/mysql" --socket="$DIR/run/mysqld.sock" \
    --pid-file="$DIR/run/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
    --log-error="$DIR/log/mariadbd.log" --skip-log-bin --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
  wait_for 30 mariadbd test -s "$DIR/run/mariadbd.pid"
  wait_for 30 mariadbd mariadb --socket="$DIR/run/mysqld.sock" -e "select 1"
  mariadb --socket="$DIR/run/mysqld.sock" <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start() {
  if [ -s "$DIR/run/slurmctld.pid" ] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null; then
    log "already running ($DIR)"
    return 0
  fi
  local began=$SECONDS
  install_packages
  write_configs
  export SLURM_CONF=$DIR/slurm.conf
  start_munge
  start_mariadb
  /usr/sbin/slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
  wait_for 30 slurmdbd sacctmgr -i list cluster
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
  /usr/sbin/slurmctld -f "$DIR/slurm.conf"
  /usr/sbin/slurmd -f "$DIR/slurm.conf"
  wait_for 60 "the node (sinfo idle)" sh -c "sinfo -h -o %t | grep -qx idle"
  log "up in $((SECONDS - began)) s: $(sinfo -h -o '%P %D %t %c CPUs' | head -n 1); eval \"\$($0 env)\" for clients"
}

stop() {
  local name pid
  for name in slurmd slurmctld slurmdbd mariadbd munged; do
    pid=$(cat "$DIR/run/$name.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      log "stopped $name ($pid)"
    fi
    rm -f "$DIR/run/$name.pid"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$DIR/slurm.conf" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
