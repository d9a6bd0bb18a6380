#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests and for trying the slurm launchers.
#
#   sudo bash scripts/slurm_local_cluster.sh start    # install (Debian) if missing, configure, start, wait for idle
#   sudo bash scripts/slurm_local_cluster.sh status   # sinfo + squeue
#   sudo bash scripts/slurm_local_cluster.sh stop     # cancel jobs, stop slurmd, slurmctld, munged
#
# Needs root and Debian/Ubuntu packages (slurmctld slurmd slurm-client munge). Runs without systemd:
# the daemons are started directly. Everything talks over loopback (NodeAddr/SlurmctldHost 127.0.0.1)
# and authenticates with a munge key that exists only on this host. `start` is idempotent.
set -euo pipefail

SLURM_CONF_DIR=/etc/slurm
SLURM_CONF=$SLURM_CONF_DIR/slurm.conf
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PIDFILE=/run/munge/munged.pid
SLURMCTLD_PIDFILE=/run/slurmctld.pid
SLURMD_PIDFILE=/run/slurmd.pid
LOG_DIR=/var/log/slurm
READY_TIMEOUT_S=${SLURM_READY_TIMEOUT_S:-60}
PACKAGES=(slurmctld slurmd slurm-client munge)
NODE=$(hostname -s)

say() { echo "[slurm_local_cluster] $*"; }
die() { echo "[slurm_local_cluster] error: $*" >&2; exit 1; }

pid_alive() {  # pid_alive PIDFILE -> true when the file names a running process
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "packages ${missing[*]} are missing and apt-get is not available; install SLURM and munge by hand."
    say "installing ${missing[*]} (apt-get)"
    # Keep the packages' init scripts from starting daemons before slurm.conf exists.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local status=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || status=$?
    ((own_policy)) && rm -f "$policy"
    ((status == 0)) || die "apt-get could not install ${missing[*]} (exit $status)."
}

start_munge() {
    if [[ ! -s $MUNGE_KEY ]]; then
        say "creating munge key $MUNGE_KEY"
        mkdir -p "$(dirname "$MUNGE_KEY")"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge /etc/munge "$MUNGE_KEY"
    chmod 700 /etc/munge
    chmod 400 "$MUNGE_KEY"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    if pid_alive "$MUNGE_PIDFILE"; then
        return 0
    fi
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PIDFILE"
    munge -n | unmunge >/dev/null || die "munged started but a munge round trip failed; see /var/log/munge/munged.log."
}

slurm_conf_text() {
    local cpus total_mb real_memory
    cpus=$(nproc)
    total_mb=$(free -m | awk '/^Mem:/ {print $2}')
    # A bit under the total, so slurmd never finds less memory than configured and drains the node.
    real_memory=$((total_mb * 95 / 100))
    cat <<EOF
# Written by prompt_bench scripts/slurm_local_cluster.sh: one node, this host, loopback only.
ClusterName=prompt-bench-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a memory request a job would otherwise take the whole node's memory and run alone.
DefMemPerCPU=$((real_memory / cpus))
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$SLURMCTLD_PIDFILE
SlurmdPidFile=$SLURMD_PIDFILE
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
MinJobAge=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_memory State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

write_slurm_conf() {  # -> exit 0 when slurm.conf changed
    local wanted
    wanted=$(slurm_conf_text)
    mkdir -p "$SLURM_CONF_DIR"
    if [[ -f $SLURM_CONF ]]; then
        [[ $(cat "$SLURM_CONF") == "$wanted" ]] && return 1
        local backup
        backup=$SLURM_CONF.bak.$(date +%Y%m%d-%H%M%S)
        cp -p "$SLURM_CONF" "$backup"
        say "backed up the existing slurm.conf to $backup"
    fi
    printf '%s\n' "$wanted" >"$SLURM_CONF"
    chmod 644 "$SLURM_CONF"
    say "wrote $SLURM_CONF"
    return 0
}

stop_daemon() {  # stop_daemon NAME PIDFILE
    local pid
    pid_alive "$2" || { rm -f "$2"; return 0; }
    pid=$(cat "$2")
    kill "$pid"
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$2"; return 0; }
        sleep 0.2
    done
    say "$1 (pid $pid) did not stop in 10 s; sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$2"
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1; }

wait_until_idle() {
    local deadline=$((SECONDS + READY_TIMEOUT_S)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state || true)
        case $state in
            idle | mixed | allocated) return 0 ;;
            down* | drain* | fail*)
                scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    die "node $NODE is '${state:-unreachable}' after ${READY_TIMEOUT_S}s; see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log."
}

start() {
    [[ $EUID -eq 0 ]] || die "start needs root (it installs packages and starts daemons); run it with sudo."
    local started_at=$SECONDS
    install_packages
    start_munge
    mkdir -p /var/spool/slurmctld /var/spool/slurmd "$LOG_DIR"
    if write_slurm_conf; then
        # A changed node description needs fresh daemons, not a reconfigure.
        stop_daemon slurmd "$SLURMD_PIDFILE"
        stop_daemon slurmctld "$SLURMCTLD_PIDFILE"
    fi
    pid_alive "$SLURMCTLD_PIDFILE" || /usr/sbin/slurmctld
    pid_alive "$SLURMD_PIDFILE" || /usr/sbin/slurmd
    wait_until_idle
    say "node $NODE is $(node_state) ($(nproc) CPUs, partition debug); ready in $((SECONDS - started_at))s"
    say "logs: $LOG_DIR/slurmctld.log $LOG_DIR/slurmd.log /var/log/munge/munged.log"
}

stop() {
    if command -v squeue >/dev/null && pid_alive "$SLURMCTLD_PIDFILE"; then
        local jobs=()
        mapfile -t jobs < <(squeue -h -o %i 2>/dev/null || true)
        if ((${#jobs[@]} > 0)); then
            say "cancelling jobs: ${jobs[*]}"
            scancel "${jobs[@]}" || true
            sleep 1
        fi
    fi
    stop_daemon slurmd "$SLURMD_PIDFILE"
    stop_daemon slurmctld "$SLURMCTLD_PIDFILE"
    stop_daemon munged "$MUNGE_PIDFILE"
    say "stopped"
}

status() {
    command -v sinfo >/dev/null || die "SLURM is not installed; run: $0 start"
    sinfo
    squeue
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
