#!/bin/bash
# xtlock's log through a real systemd-journald, without systemd as PID 1: in a private
# PID and mount namespace (journald then runs as a child of this script), with tmpfs on
# /run and /var/log, so the host's journal and /run are never touched.
# Usage (by tests/cli/journal.rs): unshare -m -p -f --mount-proc bash journal.sh XTLOCK CASE
# Prints "case=CASE ok" or "case=CASE FAIL: why".
set -u
xtlock=$1 case=$2
fail() { echo "case=$case FAIL: $*"; exit 1; }
[ "$(readlink /proc/self/ns/mnt)" != "${HOST_MNTNS:-}" ] || fail "not in a private mount namespace"
[ "$(readlink /proc/self/ns/pid)" != "${HOST_PIDNS:-}" ] || fail "not in a private PID namespace"
mount --make-rprivate /
mount -t tmpfs xtlock-journal /run
mount -t tmpfs xtlock-journal /var/log
mkdir -p /run/systemd/journal
/lib/systemd/systemd-journald > /dev/null 2>&1 &
for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
[ -S /run/systemd/journal/socket ] || fail "journald did not start"

work=$(mktemp -d)
mkdir "$work/real" "$work/shim"
# Stand-ins for iptables (what a real one cannot do on demand): EAGAIN once, then
# success; exit 1 for -C (absent) and for -N of a chain that exists.
cat > "$work/real/iptables" <<'SCRIPT'
#!/bin/sh
case "$*" in
*-C*) exit 1 ;;
*-N\ exists*) echo "iptables: Chain already exists." >&2; exit 1 ;;
*eagain-once*)
    if [ ! -e "$FAKE_STATE/eagain" ]; then
        touch "$FAKE_STATE/eagain"
        echo "iptables: Resource temporarily unavailable." >&2; exit 4
    fi ;;
*eagain-always*) echo "iptables: Resource temporarily unavailable." >&2; exit 4 ;;
esac
exit 0
SCRIPT
chmod 755 "$work/real/iptables"
ln -s "$xtlock" "$work/shim/iptables"
# xtlock by its own name (argv[0] decides), reachable by an unprivileged user too.
mkdir "$work/bin" && ln -s "$xtlock" "$work/bin/xtlock" && chmod 755 "$work"
xtlock=$work/bin/xtlock
export PATH="$work/shim:$work/real:$PATH" FAKE_STATE=$work XTLOCK_LOCK_FILE=/run/xtlock.lock
unset XTLOCK_SYSLOG_SOCKET XTLOCK_JOURNAL_SOCKET XTLOCK_LOG_FILE
field() { # field EVENT KEY: the value of KEY in xtlock's first EVENT entry
    journalctl -t xtlock -o json --no-pager -q "XTLOCK_EVENT=$1" | python3 -c "
import json, sys
for line in sys.stdin:
    v = json.loads(line).get('$2')
    print(bytes(v).decode() if isinstance(v, list) else v)
    break"
}
sync_journal() { journalctl --sync 2>/dev/null || sleep 1; }

case $case in
fields)
    # Each event arrives with its fields and priority.
    iptables -w -I INPUT -s 192.0.2.1 -j DROP eagain-once || fail "retry: status $?"
    iptables -w -I INPUT -s 192.0.2.2 -j DROP eagain-always 2>/dev/null; [ $? -eq 4 ] || fail "gave-up: status"
    iptables -N exists 2>/dev/null; [ $? -eq 1 ] || fail "failed: status"
    # Another caller (not an ancestor: that would be a nested call) holds the lock.
    flock /run/xtlock.lock sh -c "touch $work/held; sleep 30" &
    holder=$!
    for _ in $(seq 100); do [ -e "$work/held" ] && break; sleep 0.1; done
    XTLOCK_TIMEOUT=1 iptables -A INPUT -j DROP 2>/dev/null; [ $? -eq 4 ] || fail "lock-failed: status"
    kill $holder
    sync_journal
    [ "$(field retry PRIORITY )" = 4 ] || fail "retry: priority $(field retry PRIORITY)"
    [ "$(field retry XTLOCK_PROG )" = iptables ] || fail "retry: prog"
    [ "$(field retry XTLOCK_ARGS )" = "-w -I INPUT -s 192.0.2.1 -j DROP eagain-once" ] || fail "retry: args $(field retry XTLOCK_ARGS)"
    [ "$(field retry XTLOCK_STDERR )" = "iptables: Resource temporarily unavailable." ] || fail "retry: stderr"
    [ "$(field retry XTLOCK_ATTEMPT )" = "1/5" ] || fail "retry: attempt"
    [ "$(field retry SYSLOG_IDENTIFIER )" = xtlock ] || fail "retry: identifier"
    [ "$(field gave-up PRIORITY)" = 3 ] || fail "gave-up: priority"
    [ "$(field gave-up XTLOCK_WHY)" = "no attempts left" ] || fail "gave-up: why"
    [ "$(field failed PRIORITY)" = 6 ] || fail "failed: priority"
    [ "$(field failed XTLOCK_STATUS)" = 1 ] || fail "failed: status"
    [ "$(field lock-failed PRIORITY)" = 3 ] || fail "lock-failed: priority $(field lock-failed PRIORITY)"
    # The filter an admin types works.
    [ "$(journalctl -t xtlock --no-pager -q XTLOCK_EVENT=gave-up | wc -l)" = 1 ] || fail "XTLOCK_EVENT=gave-up filter"
    ;;
stats)
    # `xtlock stats` reads the journal's fields: the right counts, with --since too.
    iptables -w -I INPUT -s 192.0.2.1 -j DROP eagain-once || fail "retry: status $?"
    for _ in 1 2 3; do iptables -N exists 2>/dev/null; done
    iptables -w -I INPUT -s 192.0.2.2 -j DROP eagain-always 2>/dev/null
    sync_journal
    json=$("$xtlock" stats --json --since 1h) || fail "stats failed"
    echo "$json" | python3 -c "
import json, sys
s = json.load(sys.stdin)
k = s['by_kind']
assert s['source'] == 'journald', s
assert k.get('retry') == 5 and k.get('failed') == 3 and k.get('gave-up') == 1, k
assert s['retried_calls'] == 2 and s['rescued_calls'] == 1, s
" || fail "stats: $json"
    "$xtlock" stats | grep -q "refusals             3" || fail "stats table: $("$xtlock" stats)"
    ;;
healthy)
    # A docker-like start: probes that answer "absent", chains that exist already,
    # then rules added. Nothing at notice or above.
    for chain in DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-USER; do
        iptables -t filter -C FORWARD -j "$chain"
        iptables -N exists 2>/dev/null # the chain is there from the last start
        iptables -t filter -A FORWARD -j "$chain"
    done
    iptables --wait -t nat -C POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
    iptables --wait -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
    iptables --wait -L DOCKER
    sync_journal
    loud=$(journalctl -t xtlock -p notice --no-pager -q)
    [ -z "$loud" ] || fail "logged at notice or above: $loud"
    [ "$(journalctl -t xtlock --no-pager -q XTLOCK_EVENT=failed | wc -l)" = 3 ] || fail "refusals not logged at info"
    ;;
demo)
    # For README's Log section: what an admin sees (not a test).
    iptables -w -I INPUT -s 192.0.2.1 -j DROP eagain-once
    iptables -N exists
    iptables -w -I INPUT -s 192.0.2.2 -j DROP eagain-always
    sync_journal
    echo '$ journalctl -t xtlock'
    journalctl -t xtlock --no-pager -q -o short | sed 's/^[A-Z][a-z][a-z] [ 0-9]* [0-9:]* [^ ]* /... /'
    echo '$ journalctl -t xtlock XTLOCK_EVENT=gave-up -o verbose'
    journalctl -t xtlock --no-pager -q -o verbose XTLOCK_EVENT=gave-up | grep -E '^ +(PRIORITY|SYSLOG_IDENTIFIER|XTLOCK_)'
    echo '$ xtlock stats'
    "$xtlock" stats
    ;;
forged)
    # Other programs write entries under xtlock's name and fields: root's python (alive
    # until journald has read its /proc, so journald records its _EXE) and nobody's
    # logger. stats counts only xtlock's own: one refusal.
    iptables -N exists 2>/dev/null; [ $? -eq 1 ] || fail "failed: status"
    python3 -c "
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'MESSAGE=event=gave-up\nSYSLOG_IDENTIFIER=xtlock\nPRIORITY=3\nXTLOCK_EVENT=gave-up\nXTLOCK_CALLER=forged-by-python\n', '/run/systemd/journal/socket')
open('$work/sent', 'w').close()
while not os.path.exists('$work/synced'): os.sched_yield() or __import__('time').sleep(0.05)
" &
    forger=$!
    for _ in $(seq 100); do [ -e "$work/sent" ] && break; sleep 0.1; done
    printf 'MESSAGE=event=lock-failed\nSYSLOG_IDENTIFIER=xtlock\nXTLOCK_EVENT=lock-failed\nXTLOCK_CALLER=forged-by-nobody\n' |
        setpriv --reuid=nobody --regid=nogroup --clear-groups logger --journald || fail "logger as nobody"
    sync_journal
    touch "$work/synced"; wait $forger
    [ "$(journalctl -t xtlock -o json --no-pager -q | wc -l)" = 3 ] || fail "expected 3 entries under xtlock's name"
    [ "$(field gave-up _EXE)" != None ] || fail "the forger's _EXE was not recorded: the case proves nothing"
    json=$("$xtlock" stats --json) || fail "stats failed"
    echo "$json" | python3 -c "
import json, sys
s = json.load(sys.stdin)
assert s['by_kind'] == {'failed': 1}, s
assert s['events'] == 1 and s['ignored_entries'] == 2, s
assert all('forged-by' not in c['caller'] for c in s['slowest_callers']), s
" || fail "forged entries counted: $json"
    "$xtlock" stats | grep -q "gave up              0" || fail "stats table: $("$xtlock" stats)"
    ;;
control)
    # A caller whose command line holds a newline and ESC: the table stays one row per
    # line, with no raw control character.
    sh -c 'iptables -N exists 2>/dev/null; true' "$(printf 'evil\n\033[2Jcaller')"
    sync_journal
    table=$("$xtlock" stats) || fail "stats failed"
    if printf '%s' "$table" | grep -q "$(printf '\033')"; then fail "raw ESC in: $table"; fi
    printf '%s\n' "$table" | grep -qF 'evil\n\x1b[2Jcaller' || fail "caller not escaped: $table"
    [ "$(printf '%s\n' "$table" | grep -c evil)" = 1 ] || fail "caller row broken: $table"
    ;;
nobody)
    # A user who may not read the system journal is told so, not shown "0 events".
    iptables -N exists 2>/dev/null
    sync_journal
    "$xtlock" stats | grep -q "refusals             1" || fail "root: $("$xtlock" stats)"
    out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$xtlock" stats 2>&1); status=$?
    [ $status -eq 125 ] || fail "nobody: status $status: $out"
    case $out in
    "xtlock: cannot read the system journal: permission denied;"*) ;;
    *) fail "nobody: $out" ;;
    esac
    ;;
*) fail "unknown case" ;;
esac
echo "case=$case ok"
