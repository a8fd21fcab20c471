#!/bin/bash
# README's container recipe, tested for real: a dockerd (Debian's docker.io) started here,
# in a private PID, mount and network namespace (never the host's daemon, network or /run),
# an image made with `docker import` from this host's own files (sh, sleep, iptables-legacy
# with its libraries and extensions, xtlock), no registry. Containers run with
# `--network host`, so they write the firewall of this namespace, each with its own /run
# (so its own /run/xtables.lock), while a writer here appends rules too.
#   bare:   every writer runs iptables-legacy -w: iptables' lock is per container.
#   xtlock: every writer runs it through xtlock, the containers with this namespace's
#           /run/xtlock.lock bind-mounted (`-v /run/xtlock.lock:/run/xtlock.lock`).
# Usage (by tests/cli/containers.rs):
#   unshare -m -n -p -f --mount-proc bash containers.sh XTLOCK CONTAINERS LOOPS RULES BARE_RUNS
# CONTAINERS containers and this namespace each run LOOPS loops at once, each appending
# RULES rules. Bare runs repeat (at most BARE_RUNS) until one shows the race, then one
# xtlock run. Prints one line per run: mode=... commands=... failed=... eagain=...
# missing=... duplicated=... extra=... calls=... batched=..., then "done".
# "SKIPPED: reason" and exit 77 when dockerd cannot run here; exit 3 when the namespaces
# are not private.
set -u
xtlock=$1 containers=$2 loops=$3 rules=$4 bare_runs=$5
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../private-namespace.sh"
skip() { echo "SKIPPED: $*"; exit 77; }
die() { echo "containers.sh: $*" >&2; exit 1; }

# Fresh network namespace (only lo), private mount namespace, then a tmpfs on /run.
enter_private_namespace containers
if [ "$(readlink /proc/self/ns/pid)" = "${HOST_PIDNS:-}" ] || [ $$ -ne 1 ]; then
    echo "containers.sh: not PID 1 of a private PID namespace; refusing to start dockerd" >&2
    exit 3
fi

work=$(mktemp -d /tmp/xtlock-docker.XXXXXX)
# dockerd 20.10 writes its trust key to /etc/docker/key.json whatever --data-root says:
# give it a private, empty /etc/docker (a tmpfs over it, in this mount namespace only).
[ -d /etc/docker ] || skip "no /etc/docker to cover with a private tmpfs (is docker.io installed?)"
mount -t tmpfs xtlock-docker-etc /etc/docker
# The daemon's state and the images live on a tmpfs too: nothing outlives the test.
mkdir "$work/data" "$work/exec"
: > "$work/xtlock.conf" # the host writer reads no config file of this machine
export XTLOCK_CONFIG=$work/xtlock.conf
mount -t tmpfs xtlock-docker-data "$work/data"
cgroup_parent=xtlock-test-$(basename "$work" | tr -c 'a-zA-Z0-9\n' -)
export DOCKER_HOST=unix://$work/docker.sock DOCKER_CONFIG=$work/client

cleanup() {
    docker ps -aq 2>/dev/null | xargs -r docker rm -f > /dev/null 2>&1
    if [ -n "${dockerd_pid:-}" ]; then
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 100); do [ -e "/proc/$dockerd_pid" ] || break; sleep 0.1; done
    fi
    # The containers' cgroups (cgroupfs driver) are the one thing made outside this
    # namespace's private mounts; they are empty once the containers are gone.
    find /sys/fs/cgroup -depth -type d -path "*/$cgroup_parent*" -exec rmdir {} + 2>/dev/null
    # Anything left (containerd, shims) dies with PID 1, this script.
    # dockerd's own mounts (its netns file, overlays) and the tmpfs, innermost first.
    awk -v w="$work" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r -n 1 umount -l
    [ -n "${KEEP:-}" ] && cp -r "$work"/out.* "$KEEP"/; rm -rf "$work"
}
trap cleanup EXIT

# dockerd manages its own containerd (state under --exec-root, images under --data-root).
# --iptables=false and --bridge=none: the daemon itself writes no rule and makes no bridge;
# the only writers are the containers and this script.
dockerd --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/docker.pid" \
    -H "$DOCKER_HOST" --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --bridge=none --userland-proxy=false --cgroup-parent "/$cgroup_parent" \
    --exec-opt native.cgroupdriver=cgroupfs --log-level warn > "$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 300); do docker version > /dev/null 2>&1 && break; sleep 0.1; done
docker version > /dev/null 2>&1 || skip "dockerd did not start here: $(tail -n 3 "$work/dockerd.log" | tr '\n' ' ')"
echo "dockerd $(docker version -f '{{.Server.Version}}') storage=$(docker info -f '{{.Driver}}') cgroup=$(docker info -f '{{.CgroupVersion}}')" >&2

# The image: this host's own files, nothing downloaded.
root=$work/root
# The same layout as here (merged /usr or not), so links such as /bin/sh -> dash resolve.
mkdir -p "$root/usr"
for d in bin sbin lib lib64; do
    if [ -L "/$d" ]; then
        ln -s "$(readlink "/$d")" "$root/$d"
        mkdir -p "$root/$(readlink -f "/$d")"
    else
        mkdir -p "$root/$d"
    fi
done
copy() { # copy FILE...: each file, what its links point to, and the libraries it needs
    for f in "$@"; do
        mkdir -p "$root$(dirname "$f")"
        cp -a "$f" "$root$f"
        [ -L "$f" ] && copy "$(readlink -f "$f")"
        ldd "$f" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
            [ -e "$root$lib" ] || copy "$lib"
        done
    done
}
multi=$(readlink -f "$(command -v iptables-legacy)")
xtdir=$(dirname "$(readlink -f /lib/x86_64-linux-gnu/libxtables.so.12 2>/dev/null || ldd "$multi" | grep -o '/[^ ]*libxtables[^ ]*')")/xtables
copy /bin/sh "$(readlink -f /bin/sleep)" "$(readlink -f /bin/touch)" "$multi" "$xtdir"/*.so
for name in iptables-legacy iptables-legacy-restore iptables-legacy-save; do
    ln -s "$multi" "$root/usr/sbin/$name"
done
mkdir -p "$root/run" "$root/tmp" "$root/etc" "$root/usr/local/bin" "$root/usr/local/sbin" "$root/out"
cp "$xtlock" "$root/usr/local/bin/xtlock"
copy "$(readlink -f "$xtlock")" # its libraries, if it is not a static build
rm "$root$(readlink -f "$xtlock")"
# The shim: first in the containers' PATH in the xtlock runs (README, "Install").
ln -s ../bin/xtlock "$root/usr/local/sbin/iptables-legacy"
cat > "$root/writer" <<'SCRIPT'
#!/bin/sh
# writer ID LOOPS RULES [OUT]: wait for OUT/go, then LOOPS loops at once each append RULES
# rules (10.ID.LOOP.K), noting each failure in OUT/failed.ID; OUT/done.ID at the end.
id=$1 loops=$2 n=$3 out=${4:-/out}
while [ ! -e "$out/go" ]; do sleep 0.05; done
j=0
while [ $j -lt $loops ]; do
    k=0
    while [ $k -lt $n ]; do
        if ! o=$(iptables-legacy -w -A INPUT -s 10.$id.$j.$k -j DROP 2>&1); then
            echo "writer $id.$j rule $k: $o" >> "$out/failed.$id"
        fi
        k=$((k + 1))
    done &
    j=$((j + 1))
done
wait
touch "$out/done.$id"
SCRIPT
chmod 755 "$root/writer"
tar -C "$root" -c . | docker import - xtlock-writer:test > /dev/null || die "docker import failed"

iptables() { PATH=/usr/sbin:/sbin:/usr/bin:/bin iptables-legacy "$@"; }

race() { # race MODE: one run; prints its result line
    mode=$1
    iptables -F INPUT || die "cannot flush INPUT here"
    out=$work/out.$mode.$((run_no += 1))
    mkdir -p "$out" && chmod 777 "$out"
    lock=/run/xtlock.lock
    shim=
    if [ "$mode" != bare ]; then
        # The host's lock file must exist before a container binds it (docker would
        # make a directory there: see the end).
        rm -f "$lock" && : > "$lock" && chmod 600 "$lock"
        shim=/usr/local/sbin:
    fi
    env_args=(-e "PATH=${shim}/usr/sbin:/bin" -e XTLOCK_LOG_FILE=/out/xtlock.log
        -e XTLOCK_SYSLOG_SOCKET= -e XTLOCK_JOURNAL_SOCKET= -e XTLOCK_TIMEOUT=120 -e XTLOCK_VERBOSE=1)
    # XTLOCK_BATCH of the test's environment, if set, reaches the containers too.
    [ -n "${XTLOCK_BATCH:-}" ] && env_args+=(-e "XTLOCK_BATCH=$XTLOCK_BATCH")
    for c in $(seq "$containers"); do
        volumes=(-v "$out:/out")
        [ "$mode" = xtlock ] && volumes+=(-v "$lock:/run/xtlock.lock")
        docker run -d --name "w$c.$run_no" --label "xtlock-run=$run_no" --network host --cap-add NET_ADMIN --cap-add NET_RAW \
            "${volumes[@]}" "${env_args[@]}" xtlock-writer:test /writer "$c" "$loops" "$rules" > /dev/null \
            || die "docker run failed"
    done
    # The writer here, in this namespace (its own /run/xtables.lock, the host's xtlock.lock).
    mkdir -p "$work/shim"
    ln -sf "$xtlock" "$work/shim/iptables-legacy"
    (
        export XTLOCK_LOG_FILE=$out/xtlock.log XTLOCK_SYSLOG_SOCKET= XTLOCK_JOURNAL_SOCKET= XTLOCK_TIMEOUT=120 XTLOCK_VERBOSE=1
        [ "$mode" != bare ] && PATH=$work/shim:$PATH
        exec sh "$root/writer" 0 "$loops" "$rules" "$out"
    ) &
    host_writer=$!
    # All containers running (each waits for go) before the start.
    for _ in $(seq 300); do
        [ "$(docker ps -q --filter "label=xtlock-run=$run_no" | wc -l)" -eq "$containers" ] && break
        sleep 0.1
    done
    sleep 0.5
    touch "$out/go"
    wait "$host_writer"
    for c in $(seq "$containers"); do
        [ "$(docker wait "w$c.$run_no")" = 0 ] || die "container w$c.$run_no: $(docker logs "w$c.$run_no" 2>&1 | tail -n 3)"
    done
    docker ps -aq --filter "label=xtlock-run=$run_no" | xargs -r docker rm > /dev/null

    PATH=/usr/sbin:/sbin:/usr/bin:/bin iptables-legacy-save -t filter > "$out/saved" || die "iptables-legacy-save failed"
    missing=0 duplicated=0
    for id in $(seq 0 "$containers"); do
        [ -e "$out/done.$id" ] || die "writer $id did not finish"
        for j in $(seq 0 $((loops - 1))); do
            for k in $(seq 0 $((rules - 1))); do
                echo "-A INPUT -s 10.$id.$j.$k/32 -j DROP"
            done
        done
    done | sort > "$out/expected"
    grep '^-A INPUT ' "$out/saved" | sort > "$out/got"
    missing=$(comm -23 "$out/expected" <(sort -u "$out/got") | wc -l)
    duplicated=$(uniq -d "$out/got" | wc -l)
    extra=$(comm -13 "$out/expected" <(sort -u "$out/got") | wc -l)
    failed=$(cat "$out"/failed.* 2>/dev/null | wc -l)
    eagain=$(cat "$out"/failed.* 2>/dev/null | grep -c 'Resource temporarily unavailable')
    # A batch is one holder's restore of the commands queued behind it: the holder's
    # own command and the others', which log no `call` of their own.
    batches=$(grep -c 'event=batch ' "$out/xtlock.log" 2>/dev/null)
    batch_sizes=$(grep 'event=batch ' "$out/xtlock.log" 2>/dev/null | grep -o ' commands=[0-9]*' | cut -d= -f2 | sort -n)
    batched=$(echo "$batch_sizes" | awk '{ n += $1 } END { print n + 0 }')
    batch_max=$(echo "$batch_sizes" | tail -n 1)
    retries=$(grep -c 'event=retry ' "$out/xtlock.log" 2>/dev/null)
    # Verbose xtlock logs one `call` per command it ran (alone or in a batch): proof that
    # each writer went through it, and how long each waited for the shared lock.
    calls=$(grep -c 'event=call .* status=0 ' "$out/xtlock.log" 2>/dev/null)
    waits=$(grep -o 'event=call .* wait_ms=[0-9]*' "$out/xtlock.log" 2>/dev/null | grep -o 'wait_ms=[0-9]*' | cut -d= -f2 | sort -n)
    waited=$(echo "$waits" | awk '$1 > 0' | wc -l)
    wait_max=$(echo "$waits" | tail -n 1)
    echo "mode=$mode containers=$containers commands=$(((containers + 1) * loops * rules)) failed=$failed eagain=$eagain missing=$missing duplicated=$duplicated extra=$extra retries=${retries:-0} calls=${calls:-0} batches=${batches:-0} batched=$batched batch_max=${batch_max:-0} waited=$waited wait_max_ms=${wait_max:-0}"
    lost=$((failed + missing + duplicated + extra))
    if [ "$failed" -gt 0 ]; then
        cat "$out"/failed.* | head -n 3 | sed 's/^/  first failures: /' >&2
    fi
    if [ -s "$out/xtlock.log" ]; then
        grep -v 'event=batch \|event=retry \|event=call ' "$out/xtlock.log" | head -n 5 | sed 's/^/  xtlock log: /' >&2
    fi
}

run_no=0
# Bare until a run shows the race (or BARE_RUNS runs did not).
for _ in $(seq "$bare_runs"); do
    race bare
    [ "$lost" -gt 0 ] && break
done
race xtlock
# The recipe without its bind mount: xtlock in each container, each with its own lock.
race unbound

# The recipe's one trap: `-v FILE:...` with no FILE on the host makes a directory there,
# and every xtlock call on the host then fails (exit 4) instead of running unlocked.
docker run --rm --network host -v /run/absent.lock:/run/xtlock.lock xtlock-writer:test /bin/sh -c : \
    || die "docker run with an absent lock file failed"
[ -d /run/absent.lock ] && kind=directory || kind=$(stat -c %F /run/absent.lock 2>&1)
msg=$(PATH=$work/shim:$PATH XTLOCK_LOCK_FILE=/run/absent.lock iptables-legacy -w -A INPUT -s 192.0.2.1 -j DROP 2>&1)
status=$?
# --mount refuses an absent source instead.
docker run --rm --network host --mount type=bind,source=/run/absent2.lock,target=/run/xtlock.lock \
    xtlock-writer:test /bin/sh -c : > /dev/null 2>&1 && mount_opt=ran || mount_opt=refused
[ -e /run/absent2.lock ] && mount_opt="$mount_opt, made it"
echo "absent_lock_file: --mount $mount_opt; -v: docker made a $kind; a host call: exit $status lines=$(echo "$msg" | wc -l) rule=$(iptables -S INPUT | grep -c 192.0.2.1) $msg"
echo done
