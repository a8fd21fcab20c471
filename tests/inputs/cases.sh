#!/bin/bash
# Unusual callers against the real iptables (legacy and nft), in a private network and
# mount namespace (tests/private-namespace.sh refuses to run anywhere else).
# Usage (by tests/cli/real_inputs.rs): unshare -n -m bash cases.sh XTLOCK CASE
# Prints "case=CASE ok", or "case=CASE FAIL: why" and exits 1.
set -u
. "$(dirname "$0")/../private-namespace.sh"
xtlock=$1 case=$2
enter_private_namespace inputs
work=$(mktemp -d) && chmod 755 "$work"
export XTLOCK_LOCK_FILE=/run/xtlock.lock XTLOCK_SYSLOG_SOCKET= XTLOCK_JOURNAL_SOCKET= XTLOCK_LOG_FILE=$work/xtlock.log
rules='*filter
:f2b-sshd - [0:0]
-A f2b-sshd -j RETURN
COMMIT
'
fail() { echo "case=$case FAIL: $*"; [ -s "$work/xtlock.log" ] && cat "$work/xtlock.log" >&2; exit 1; }
has_chain() { "$1" -S f2b-sshd >/dev/null 2>&1; }
wait_for() { # wait_for FILE [PATTERN]: up to 30 s
    for _ in $(seq 300); do
        if [ -n "${2:-}" ]; then grep -q "$2" "$1" 2>/dev/null && return 0
        elif [ -e "$1" ]; then return 0; fi
        sleep 0.1
    done
    return 1
}

case $case in
procsub|devstdin|fifo)
    # The restore's input is a pipe where a file is expected: the program reads it.
    for backend in legacy nft; do
        restore=iptables-$backend-restore
        "iptables-$backend" -F; "iptables-$backend" -X
        case $case in
        procsub) "$xtlock" "$restore" <(printf '%s' "$rules") ;;
        devstdin) printf '%s' "$rules" | "$xtlock" "$restore" /dev/stdin ;;
        fifo) mkfifo "$work/rules.$backend"; printf '%s' "$rules" > "$work/rules.$backend" &
              "$xtlock" "$restore" "$work/rules.$backend" ;;
        esac
        status=$?
        [ $status -eq 0 ] || fail "$backend: status $status"
        has_chain "iptables-$backend" || fail "$backend: nothing was applied"
    done
    ;;
multi-lock-busy)
    # iptables' own lock is busy for the first attempt: `xtables-legacy-multi
    # iptables-restore -w 1` fails with exit 4, and is replayed with the same input once
    # that attempt has ended and the holder lets go.
    flock /run/xtables.lock sh -c "touch $work/held; while [ ! -e $work/go ]; do sleep 0.05; done" &
    wait_for "$work/held" || fail "holder never started"
    printf '%s' "$rules" | "$xtlock" xtables-legacy-multi iptables-restore -w 1 > "$work/out" 2>&1 &
    restore=$!
    # The first attempt is the first child run as iptables-restore (a full restore is a
    # flush, so an iptables-save runs before it): wait until it has ended.
    first=
    for _ in $(seq 600); do
        children=$(cat /proc/$restore/task/*/children 2>/dev/null)
        if [ -z "$first" ]; then
            for child in $children; do
                tr '\0' ' ' < /proc/$child/cmdline 2>/dev/null | grep -q 'iptables-restore' && first=$child
            done
        elif ! echo " $children " | grep -q " $first "; then break; fi
        sleep 0.05
    done
    touch "$work/go"
    wait $restore || fail "status $?: $(cat "$work/out")"
    has_chain iptables-legacy || fail "the replay applied nothing"
    grep -q 'event=retry.*reason="the xtables lock was busy"' "$work/xtlock.log" || fail "no retry was logged"
    ;;
mid-restore)
    # iptables' own test nft-only/0007-mid-restore-flush: a --noflush restore fed from a
    # coprocess; a save runs between the pieces (0.1: waited 30 s for the lock, exit 4).
    coproc "$xtlock" xtables-nft-multi iptables-restore --noflush
    printf '*filter\n:foo - [0:0]\nCOMMIT\n*filter\n:foo - [0:0]\n' >&"${COPROC[1]}"
    found=
    for _ in $(seq 100); do
        if XTLOCK_TIMEOUT=5 "$xtlock" xtables-nft-multi iptables-save > "$work/save" 2> "$work/save.err"; then
            grep -q ':foo' "$work/save" && { found=1; break; }
        else
            fail "the save failed while the restore waited for input: $(cat "$work/save.err")"
        fi
        sleep 0.1
    done
    [ -n "$found" ] || fail "the first COMMIT never landed"
    echo COMMIT >&"${COPROC[1]}"
    exec {COPROC[1]}>&-
    wait "$COPROC_PID" || fail "the restore failed: $?"
    ;;
unprivileged)
    # iptables' own test iptables/0008-unprivileged: help as nobody prints help, and
    # a list or a change gets iptables' own permission error. Same bytes through xtlock.
    mkdir "$work/shim" && chmod 755 "$work/shim"
    ln -s "$xtlock" "$work/shim/iptables"
    "$xtlock" true # root makes the lock file, 0600
    for multi in xtables-legacy-multi xtables-nft-multi; do
        while read -r args; do
            bare=$(runuser -u nobody -- $multi iptables $args 2>&1; echo "status=$?")
            prefixed=$(runuser -u nobody -- "$xtlock" $multi iptables $args 2>&1; echo "status=$?")
            [ "$prefixed" = "$bare" ] || fail "$multi iptables $args: prefixed differs: $prefixed"
            # By name, as a caller types it: the shim ahead of /usr/sbin/iptables.
            bare=$(runuser -u nobody -- iptables $args 2>&1; echo "status=$?")
            shimmed=$(runuser -u nobody -- env PATH="$work/shim:$PATH" iptables $args 2>&1; echo "status=$?")
            [ "$shimmed" = "$bare" ] || fail "iptables $args: through the shim: $shimmed"
        done <<'ARGS'
--help
-m limit --help
-p tcp --help
-j DNAT --help
-j TEE --help
-p tcp -j DNAT --help
-L
-w -L
-A FORWARD -p tcp --dport 123
-A FORWARD -j DNAT --to-destination 1.2.3.4
ARGS
    done
    ;;
locked-feeder)
    # Issue 15, item 1: a --noflush restore fed through a pipe by a call that holds the
    # lock while it writes more than a pipe holds. Either may come first; bare, both
    # end 0. (0.2 before the fix: the restore took the lock and waited for input while
    # the feeder waited for the lock, or the feeder blocked on the full pipe while the
    # restore waited for the lock: exit 4 and nothing applied.)
    { echo '*filter'; echo ':big - [0:0]'
      for i in $(seq 3000); do echo "-A big -s 10.$((i / 250)).$((i % 250)).1/32 -j DROP"; done
      echo COMMIT; } > "$work/big.rules"
    [ "$(stat -c %s "$work/big.rules")" -gt 65536 ] || fail "the input fits a pipe"
    export XTLOCK_TIMEOUT=10
    for backend in legacy nft; do
        restore=iptables-$backend-restore
        for order in restore-first feeder-first; do
            "iptables-$backend" -F; "iptables-$backend" -X
            if [ $order = restore-first ]; then
                { sleep 0.5; "$xtlock" sh -c "cat $work/big.rules"; } | "$xtlock" "$restore" --noflush
            else
                "$xtlock" sh -c "cat $work/big.rules" | { sleep 0.5; "$xtlock" "$restore" --noflush; }
            fi
            statuses="${PIPESTATUS[*]}"
            [ "$statuses" = "0 0" ] || fail "$backend $order: statuses $statuses"
            count=$("iptables-$backend" -S big | grep -c -- '^-A big')
            [ "$count" -eq 3000 ] || fail "$backend $order: $count of 3000 rules"
        done
    done
    ;;
transaction)
    # Issue 18: a save -> edit -> restore cycle (felix#320's race) beside a writer that
    # keeps adding rules. Bare, each full restore writes back the table as it was saved
    # and drops what the writer added in between. Run as one `xtlock sh -c '...'`, the
    # cycle holds the lock, its own calls join it, and the writer's calls through the
    # shims wait: nothing is lost.
    mkdir "$work/shim"
    for t in iptables-legacy iptables-legacy-save iptables-legacy-restore; do ln -s "$xtlock" "$work/shim/$t"; done
    cycle='for n in 1 2 3 4 5; do iptables-legacy-save > "$W/saved"; sleep 0.2
        sed "s/^COMMIT$/-A INPUT -s 192.0.2.$n\/32 -j ACCEPT\nCOMMIT/" "$W/saved" | iptables-legacy-restore || exit 1; done'
    for mode in bare xtlock; do
        iptables-legacy -F; rm -f "$work/added" "$work/stop"
        export W=$work
        if [ $mode = xtlock ]; then path="$work/shim:$PATH"; else path=$PATH; fi
        ( i=0; while [ ! -e "$work/stop" ] && [ $i -lt 2000 ]; do i=$((i + 1))
            PATH=$path iptables-legacy -w -A INPUT -s "10.7.$((i / 250)).$((i % 250))/32" -j DROP && echo "10.7.$((i / 250)).$((i % 250))/32" >> "$work/added"
          done ) &
        writer=$!
        sleep 0.2
        if [ $mode = xtlock ]; then PATH=$path "$xtlock" sh -c "$cycle"; else PATH=$path sh -c "$cycle"; fi \
            || fail "$mode: the cycle failed"
        touch "$work/stop"; wait $writer
        iptables-legacy-save -t filter > "$work/final"
        missing=0
        while read -r addr; do grep -q -- "-s $addr -j DROP" "$work/final" || missing=$((missing + 1)); done < "$work/added"
        edits=$(grep -c -- '-s 192.0.2.[1-5]/32 -j ACCEPT' "$work/final")
        [ "$edits" -eq 5 ] || fail "$mode: $edits of 5 edits kept"
        echo "mode=$mode added=$(wc -l < "$work/added") missing=$missing"
        eval "${mode}_missing=$missing"
    done
    [ "$bare_missing" -gt 0 ] || fail "bare lost nothing: the test cannot tell"
    [ "$xtlock_missing" -eq 0 ] || fail "through xtlock $xtlock_missing rules were lost"
    ;;
relay)
    # The pumped and relayed input of a --noflush restore that had to wait for the lock,
    # against bare with the same input: status, stdout, stderr and the tables compared.
    # Then each participant SIGKILLed: the feeder (the restore sees its input end, as
    # bare), the program (xtlock ends with its status, 137, as bare; no hang).
    first='*filter\n:r1 - [0:0]\n'
    rest='-A r1 -j ACCEPT\n-A nochain -j ACCEPT\nCOMMIT\n*filter\n:r2 - [0:0]\nCOMMIT\n'
    same() { # same LABEL BARE_STATUS XTLOCK_STATUS
        [ "$2" = "$3" ] || fail "$1: status bare $2, through xtlock $3"
        cmp -s "$work/bare.out" "$work/x.out" || fail "$1: stdout differs"
        cmp -s "$work/bare.err" "$work/x.err" || fail "$1: stderr differs: $(cat "$work/bare.err") / $(cat "$work/x.err")"
        cmp -s "$work/bare.tables" "$work/x.tables" || fail "$1: the tables differ"
    }
    tables() { "iptables-$backend-save" | grep -v '^#' > "$1"; "iptables-$backend" -F; "iptables-$backend" -X; }
    hold() { "$xtlock" sh -c "touch $work/held; sleep $1" & while [ ! -e "$work/held" ]; do sleep 0.01; done; rm -f "$work/held"; }
    for backend in legacy nft; do
        restore=iptables-$backend-restore
        "iptables-$backend" -F; "iptables-$backend" -X
        printf '%b' "$first$rest" | "$restore" --noflush > "$work/bare.out" 2> "$work/bare.err"; bare=$?
        tables "$work/bare.tables"
        # All of it read while waiting (pumped), then the rest as it comes (relayed).
        for pause in 0.3 1.5; do
            hold 1
            { printf '%b' "$first"; sleep $pause; printf '%b' "$rest"; } | "$xtlock" "$restore" --noflush > "$work/x.out" 2> "$work/x.err"; x=$?
            wait; tables "$work/x.tables"
            same "$backend pause $pause" $bare $x
        done
        # The feeder dies after the first piece: both see only that much.
        printf '%b' "$first" | "$restore" --noflush > "$work/bare.out" 2> "$work/bare.err"; bare=$?
        tables "$work/bare.tables"
        hold 1
        { printf '%b' "$first"; exec sleep 30; } | "$xtlock" "$restore" --noflush > "$work/x.out" 2> "$work/x.err" &
        sleep 0.5; pkill -KILL -f '^sleep 30$'
        wait $!; x=$?; wait; tables "$work/x.tables"
        same "$backend feeder killed" $bare $x
        # The program dies while input is relayed: xtlock ends with its status, at once.
        hold 0.5
        { printf '%b' "$first"; sleep 30; } | "$xtlock" "$restore" --noflush > /dev/null 2>&1 &
        xtl=$! # a pipeline's $! is its last command: xtlock
        program=
        for _ in $(seq 300); do
            program=$(cat /proc/$xtl/task/*/children 2>/dev/null | awk '{print $1}')
            [ -n "$program" ] && break; sleep 0.1
        done
        [ -n "$program" ] || fail "$backend: the program never started"
        kill -KILL "$program"
        for _ in $(seq 100); do [ -d /proc/$xtl ] || break; sleep 0.1; done
        [ -d /proc/$xtl ] && fail "$backend: xtlock still runs after its program died"
        # bash waits for the whole pipeline, and reports its last command's status.
        pkill -KILL -f '^sleep 30$'; wait $xtl; status=$?
        [ $status -eq 137 ] || fail "$backend: xtlock ended $status, not the program's 137"
        "iptables-$backend" -F; "iptables-$backend" -X
    done
    ;;
*) fail "unknown case" ;;
esac
echo "case=$case ok"
