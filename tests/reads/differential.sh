#!/bin/bash
# Runs argvs that xtlock classifies as reads with the real iptables-legacy and
# iptables-nft, on a fixture ruleset (then iptables-nft again on an empty one), and
# says after each whether any table changed.
# Usage (by tests/cli/read_differential.rs): unshare -n -m bash differential.sh ARGVS OUT
# ARGVS: one record "N\0WORD1\0...WORDN\0" per argv. OUT gets one record per argv and backend:
# "INDEX\0RUN\0STATUS\0same|changed\0STDERR\0" (RUN: legacy, nft, nft-empty).
set -u
. "$(dirname "$0")/../private-namespace.sh"
enter_private_namespace read-differential
argvs=$1 out=$2
export LC_ALL=C
unset XTABLES_LOCKFILE POSIXLY_CORRECT

# A few chains and rules in every table, with counters that are not zero (so that a
# -Z shows), an empty unreferenced chain (so that a -X shows), and the rules the
# generated -C and -D name.
fixture='*filter
:INPUT DROP [11:1100]
:FORWARD DROP [12:1200]
:OUTPUT ACCEPT [13:1300]
:f2b-sshd - [0:0]
:empty - [0:0]
[1:60] -A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd
[2:120] -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
[3:180] -A INPUT -p tcp -m tcp --dport 80 -m comment --comment web -j ACCEPT
[4:240] -A INPUT -p tcp -m tcp --dport 22 -m recent --set --name ssh --mask 255.255.255.255 --rsource
[5:300] -A INPUT -p udp -m udp --sport 53 -j LOG --log-prefix "dns: "
[6:360] -A INPUT -m set --match-set f2b-sshd src -j DROP
[7:420] -A f2b-sshd -s 192.0.2.1/32 -j REJECT --reject-with icmp-port-unreachable
[8:480] -A f2b-sshd -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [21:2100]
:INPUT ACCEPT [22:2200]
:OUTPUT ACCEPT [23:2300]
:POSTROUTING ACCEPT [24:2400]
:DOCKER - [0:0]
[9:540] -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
[10:600] -A POSTROUTING -s 172.17.0.0/16 ! -o lo -j MASQUERADE
COMMIT
*mangle
:PREROUTING ACCEPT [31:3100]
:INPUT ACCEPT [32:3200]
:FORWARD ACCEPT [33:3300]
:OUTPUT ACCEPT [34:3400]
:POSTROUTING ACCEPT [35:3500]
[11:660] -A PREROUTING -p tcp -m tcp --dport 22 -j MARK --set-xmark 0x1/0xffffffff
COMMIT
*raw
:PREROUTING ACCEPT [41:4100]
:OUTPUT ACCEPT [42:4200]
[12:720] -A PREROUTING -p udp -m udp --dport 53 -j CT --notrack
COMMIT
*security
:INPUT ACCEPT [51:5100]
:FORWARD ACCEPT [52:5200]
:OUTPUT ACCEPT [53:5300]
COMMIT
'
ipset create f2b-sshd hash:ip || exit 3
load() { printf '%s' "$fixture" | "iptables-$1-restore" -c || { echo "loading the fixture into $1 failed" >&2; exit 3; }; }
# Every table, with counters; the dates in the comment lines are the only lines that
# change by themselves.
tables() { "iptables-$1-save" -c 2>&1 | grep -v '^#'; }
declare -A before
for b in legacy nft; do
    load "$b"
    before[$b]=$(tables "$b")
    [ -n "${before[$b]}" ] || { echo "$b: no tables after loading the fixture" >&2; exit 3; }
done
# The state a run starts from again after a change.
reset() {
    case $1 in
    nft-empty) nft flush ruleset ;;
    *) load "$1" ;;
    esac
}

err=/run/stderr
# run_all RUN...: every argv, with each RUN after the other: legacy or nft on the
# fixture, or nft-empty: iptables-nft on an empty ruleset, where a read that made a
# table or a built-in chain would show (iptables-nft makes them on demand, nft.c
# nft_xt_builtin_init, which its list code calls too).
run_all() {
    local index=0 n k word args run status verdict stderr
    while IFS= read -r -d '' n; do
        args=()
        for ((k = 0; k < n; k++)); do
            IFS= read -r -d '' word
            args+=("$word")
        done
        for run in "$@"; do
            timeout 10 "iptables-${run%-empty}" "${args[@]}" < /dev/null > /dev/null 2> "$err"
            status=$?
            if [ "$(tables "${run%-empty}")" == "${before[$run]}" ]; then
                verdict=same
            else
                verdict=changed
                reset "$run" # the next argv starts from the same state again
            fi
            IFS= read -r -d '' stderr < "$err"
            printf '%s\0%s\0%s\0%s\0%s\0' "$index" "$run" "$status" "$verdict" "$stderr" >> "$out"
        done
        index=$((index + 1))
    done < "$argvs"
    echo "done $* argvs=$index"
}
run_all legacy nft
nft flush ruleset
before[nft-empty]=$(tables nft)
run_all nft-empty
