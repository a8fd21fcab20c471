#!/bin/sh
# The race xtlock exists for, in a private network namespace (nothing of the host's
# firewall is touched): N fail2ban-style workers start at once, each creating its jail
# chain, its INPUT jump and some bans. Each worker has its own XTABLES_LOCKFILE, as
# writers in containers or with another build's lock path do, so iptables' own lock
# does not serialise them. Run bare, then through xtlock, and count what went wrong.
#
#   examples/race.sh [--xtlock PATH] [--backend legacy|nft] [--workers N] [--bans N] [--mode MODE] [--probes N]
#
# MODE: both (default: bare, then xtlock), bare, xtlock, flock (each call wrapped in
# flock(1) on one file), or shared (bare, but all workers share iptables' own lock).
#
# --probes N: N readers meanwhile probe with `-w -C` (as dockerd and fail2ban do) in a
# loop until the writers are done; the line then ends with their latency p50/p99.
# Prints one line per run: mode=... backend=... commands=... failed=... missing=... duplicated=...
# Needs root, unshare(1) and iptables. Exit status: 0 if the xtlock run lost nothing.
set -eu

xtlock=${XTLOCK:-}
backend=legacy
workers=64
bans=4
probes=0
mode=both
while [ $# -gt 0 ]; do
    case $1 in
        --xtlock) xtlock=$2; shift 2 ;;
        --backend) backend=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --bans) bans=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --probes) probes=$2; shift 2 ;;
        --inner) inner=$2; shift 2 ;;
        *) echo "race.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
program=iptables-$backend

if [ -z "${inner:-}" ]; then
    if [ -z "$xtlock" ]; then
        here=$(cd "$(dirname "$0")/.." && pwd)
        cargo build --release --quiet --manifest-path "$here/Cargo.toml"
        xtlock=$here/target/release/xtlock
    fi
    [ -x "$xtlock" ] || { echo "race.sh: no xtlock binary (cargo build first, or --xtlock PATH)" >&2; exit 2; }
    # The shim is a symlink made elsewhere: a relative target would dangle, and the
    # "xtlock" run would silently be a bare one.
    xtlock=$(realpath "$xtlock")
    command -v "$program" >/dev/null || { echo "race.sh: $program not installed" >&2; exit 2; }
    [ "$mode" = both ] && modes="bare xtlock" || modes=$mode
    status=0
    for m in $modes; do
        # A fresh network namespace and a private /run for every run.
        XTLOCK_RACE_HOST_NETNS=$(readlink /proc/self/ns/net) XTLOCK_RACE_HOST_MNTNS=$(readlink /proc/self/ns/mnt) XTLOCK=$xtlock \
            unshare -n -m "$0" --inner "$m" --backend "$backend" --workers "$workers" --bans "$bans" --probes "$probes" || status=1
    done
    exit $status
fi

# Inside the namespace.
# Refuse to touch a rule unless this is a new network namespace holding only lo.
if [ "$(readlink /proc/self/ns/net)" = "${XTLOCK_RACE_HOST_NETNS:-}" ] || [ "$(ip -o link show | wc -l)" -ne 1 ]; then
    echo "race.sh: not in a fresh network namespace; refusing to touch any rule" >&2
    exit 3
fi
# A private /run, so iptables' lock files are private too (needs our own mount namespace).
if [ "$(readlink /proc/self/ns/mnt)" = "${XTLOCK_RACE_HOST_MNTNS:-}" ]; then
    echo "race.sh: not in a private mount namespace; refusing to mount /run" >&2
    exit 3
fi
mount --make-rprivate / 2>/dev/null || true
mount -t tmpfs xtlock-race /run

work=/run/race
mkdir -p $work/shim
wrap=
if [ "$inner" = flock ]; then
    wrap="flock $work/flock.lock"
fi
if [ "$inner" = xtlock ]; then
    ln -s "$XTLOCK" $work/shim/$program
    [ -x $work/shim/$program ] || { echo "race.sh: the shim $work/shim/$program -> $XTLOCK does not run" >&2; exit 2; }
    export XTLOCK_LOCK_FILE=/run/xtlock.lock XTLOCK_SYSLOG_SOCKET= XTLOCK_LOG_FILE=$work/xtlock.log
fi
PATH=$work/shim:$PATH
export PATH

worker() {
    i=$1
    # Each worker its own iptables lock: the unprotected case.
    if [ "$inner" != shared ]; then
        XTABLES_LOCKFILE=/run/xtables.$i.lock
        export XTABLES_LOCKFILE
    fi
    chain=f2b-jail$i
    run() {
        if ! out=$($wrap "$program" -w "$@" 2>&1); then
            echo "worker $i: $program $*: $out" >> $work/failed
        fi
    }
    flock -s $work/barrier true # wait for the start
    run -N $chain
    run -A $chain -j RETURN
    run -I INPUT -p tcp -m multiport --dports 22 -j $chain
    b=1
    while [ $b -le $bans ]; do
        run -I $chain 1 -s 198.51.$((i % 250)).$b -j REJECT --reject-with icmp-port-unreachable
        b=$((b + 1))
    done
}

prober() {
    if [ "$inner" != shared ]; then
        XTABLES_LOCKFILE=/run/xtables.probe$1.lock
        export XTABLES_LOCKFILE
    fi
    flock -s $work/barrier true
    while [ ! -e $work/done ]; do
        s=$(date +%s%N)
        $wrap "$program" -w -C INPUT -p tcp --dport 22 -j ACCEPT 2>/dev/null || true
        echo $(( ($(date +%s%N) - s) / 1000 )) >> $work/probes.$1
        sleep 0.02 # probes come and go, as dockerd's and fail2ban's do
    done
}

: > $work/failed
exec 9> $work/barrier
flock -x 9
i=1
while [ $i -le $workers ]; do
    worker $i &
    writer_pids="${writer_pids:-} $!"
    i=$((i + 1))
done
p=1
while [ $p -le $probes ]; do
    prober $p &
    p=$((p + 1))
done
sleep 0.5
start=$(date +%s%N)
flock -u 9 # release them together
for pid in $writer_pids; do
    wait "$pid" || true
done
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
touch $work/done
wait

# Every chain, jump and ban must be there exactly once.
saved=$work/saved
PATH=${PATH#*:} "$program-save" -t filter > $saved
missing=0
duplicated=0
count() { grep -cxF -- "$1" $saved || true; }
check() {
    n=$(count "$1")
    if [ "$n" -eq 0 ]; then missing=$((missing + 1)); elif [ "$n" -gt 1 ]; then duplicated=$((duplicated + 1)); fi
}
i=1
while [ $i -le $workers ]; do
    chain=f2b-jail$i
    check ":$chain - [0:0]"
    check "-A $chain -j RETURN"
    check "-A INPUT -p tcp -m multiport --dports 22 -j $chain"
    b=1
    while [ $b -le $bans ]; do
        check "-A $chain -s 198.51.$((i % 250)).$b/32 -j REJECT --reject-with icmp-port-unreachable"
        b=$((b + 1))
    done
    i=$((i + 1))
done
failed=$(wc -l < $work/failed)
commands=$((workers * (3 + bans)))
probe_stats=
if [ "$probes" -gt 0 ]; then
    sort -n $work/probes.* > $work/probes
    n=$(wc -l < $work/probes)
    pct() { sed -n "$(( (n * $1 + 99) / 100 ))p" $work/probes; }
    probe_stats=" probes=$n probe_p50_us=$(pct 50) probe_p99_us=$(pct 99)"
fi
echo "mode=$inner backend=$backend workers=$workers commands=$commands failed=$failed missing=$missing duplicated=$duplicated wall_ms=$elapsed_ms$probe_stats"
if [ "$failed" -gt 0 ]; then
    echo "first failures:" >&2
    head -3 $work/failed >&2
    if [ "$inner" = xtlock ]; then
        echo "xtlock's log of them:" >&2
        grep -v -e 'event=retry' -e 'event=batch ' -e 'event=slow-wait' $work/xtlock.log | head -5 >&2 || true
    fi
fi
if [ "$inner" = xtlock ] && [ -s $work/xtlock.log ]; then
    echo "xtlock retried $(grep -c 'event=retry' $work/xtlock.log || true) attempts; gave up on $(grep -c 'event=gave-up' $work/xtlock.log || true)" >&2
fi
[ "$failed" -eq 0 ] && [ "$missing" -eq 0 ] && [ "$duplicated" -eq 0 ]
