#!/bin/sh
# End-to-end with the real fail2ban, in a private network and mount namespace (the
# caller runs us under `unshare -n -m`; we check that before touching anything).
#
#   e2e.sh MODE XTLOCK      MODE: bare | local | shim
#
# 20 jails (iptables-multiport, legacy backend, started at once), two other writers
# inserting and deleting rules in a loop, then 3 bans in every jail at once. Every
# iptables call gets its own XTABLES_LOCKFILE, so iptables' own lock serialises nothing.
#   bare:  nothing else: the race is on.
#   local: action.d/iptables.local routes fail2ban through `xtlock iptables-legacy`.
#   shim:  `xtlock install --dir` puts shims first in fail2ban's PATH.
# Prints: mode=... jails=20 missing=N duplicated=N errors=N leftover=N writer_failures=N
set -eu
mode=$1
xtlock=$2
jails=20

. "$(dirname "$0")/../private-namespace.sh"
enter_private_namespace e2e.sh

base=/run/f2b
conf=$base/conf
mkdir -p $base/logs $base/shim $conf
cp -r /etc/fail2ban/action.d /etc/fail2ban/filter.d /etc/fail2ban/fail2ban.conf /etc/fail2ban/jail.conf /etc/fail2ban/paths-*.conf $conf/
export XTLOCK_SYSLOG_SOCKET= XTLOCK_LOG_FILE=$base/xtlock.log XTLOCK_LOCK_FILE=/run/xtlock.lock

cat > $conf/fail2ban.local <<EOC
[Definition]
loglevel = INFO
logtarget = $base/fail2ban.log
socket = $base/f2b.sock
pidfile = $base/f2b.pid
dbfile = :memory:
EOC
cat > $conf/filter.d/xtlock-test.conf <<'EOC'
[Definition]
failregex = ^fail from <HOST>$
datepattern = {NONE}
EOC
{
    printf '[DEFAULT]\nbanaction = iptables-multiport\nbackend = polling\n'
    printf 'maxretry = 1\nfindtime = 3600\nbantime = 3600\nfilter = xtlock-test\n\n'
    i=1
    while [ $i -le $jails ]; do
        : > $base/logs/jail$i.log
        printf '[jail%s]\nenabled = true\nport = %s\nlogpath = %s\n\n' $i $((2200 + i)) $base/logs/jail$i.log
        i=$((i + 1))
    done
} > $conf/jail.local

# Each action shell its own iptables lock file ($$ is that shell's pid).
own_lock='XTABLES_LOCKFILE=/run/xt.$$.lock'
case $mode in
    bare | shim) prefix= ;;
    local) prefix="$xtlock " ;;
    *) echo "e2e.sh: unknown mode $mode" >&2; exit 2 ;;
esac
# actionstart_on_demand is an action option: every jail makes its chain at start, at once.
printf '[Definition]\nactionstart_on_demand = false\n\n[Init]\niptables = %s %siptables-legacy <lockingopt>\n\n[Init?family=inet6]\niptables = %s %sip6tables-legacy <lockingopt>\n' \
    "$own_lock" "$prefix" "$own_lock" "$prefix" > $conf/action.d/iptables.local
if [ "$mode" = shim ]; then
    PATH=$base/shim:$PATH
    export PATH
    "$xtlock" install --dir $base/shim > /dev/null
fi
writer_cmd=iptables-legacy
[ "$mode" = local ] && writer_cmd="$xtlock iptables-legacy"

# Two other writers, racing fail2ban until told to stop.
: > $base/writer-failures
writer() {
    XTABLES_LOCKFILE=/run/xtw.$1.lock
    export XTABLES_LOCKFILE
    while [ ! -e $base/stop ]; do
        $writer_cmd -w -I INPUT -s 203.0.113.$1 -j DROP 2>> $base/writer-failures || echo "writer $1 insert" >> $base/writer-failures
        $writer_cmd -w -D INPUT -s 203.0.113.$1 -j DROP 2>> $base/writer-failures || echo "writer $1 delete" >> $base/writer-failures
    done
}
writer 1 &
writer 2 &

client() { fail2ban-client -c $conf -s $base/f2b.sock "$@"; }
fail2ban-server -c $conf -s $base/f2b.sock -p $base/f2b.pid -b > $base/server.out 2>&1
waited=0
until client ping > /dev/null 2>&1; do
    sleep 0.2
    waited=$((waited + 1))
    [ $waited -lt 150 ] || { echo "e2e.sh: fail2ban did not start" >&2; cat $base/server.out >&2; touch $base/stop; exit 4; }
done

save() { PATH=${PATH#$base/shim:} iptables-legacy-save -t filter; }
# Wait (bounded) for a count of lines matching a pattern.
# Bare runs lose rules for good, so they wait 30 s; through xtlock every rule must come,
# however loaded the machine (CI runs several of these at once), so up to 150 s.
patience=150
[ "$mode" = bare ] || patience=750
wait_for() {
    n=0
    while [ "$(save | grep -c -- "$1" || true)" -lt "$2" ] && [ $n -lt $patience ]; do
        sleep 0.2
        n=$((n + 1))
    done
}
wait_for '^:f2b-jail' $jails
# 3 bans in every jail at once.
i=1
while [ $i -le $jails ]; do
    printf 'fail from 192.0.2.1\nfail from 192.0.2.2\nfail from 192.0.2.3\n' >> $base/logs/jail$i.log
    i=$((i + 1))
done
wait_for '^-A f2b-jail.* -s 192.0.2.*REJECT' $((jails * 3))
sleep 1 # let stragglers land (or fail)

saved=$base/saved
save > $saved
missing=0
duplicated=0
check() {
    n=$(grep -cxF -- "$1" $saved || true)
    if [ "$n" -eq 0 ]; then missing=$((missing + 1)); elif [ "$n" -gt 1 ]; then duplicated=$((duplicated + 1)); fi
}
i=1
while [ $i -le $jails ]; do
    check ":f2b-jail$i - [0:0]"
    check "-A f2b-jail$i -j RETURN"
    check "-A INPUT -p tcp -m multiport --dports $((2200 + i)) -j f2b-jail$i"
    for b in 1 2 3; do
        check "-A f2b-jail$i -s 192.0.2.$b/32 -j REJECT --reject-with icmp-port-unreachable"
    done
    i=$((i + 1))
done

touch $base/stop
wait
client stop > /dev/null 2>&1 || true
n=0
while [ -e $base/f2b.pid ] && kill -0 "$(cat $base/f2b.pid 2>/dev/null || echo 0)" 2>/dev/null && [ $n -lt 150 ]; do
    sleep 0.2
    n=$((n + 1))
done
leftover=$(save | grep -c 'f2b-' || true)
errors=$(grep -c ' ERROR ' $base/fail2ban.log || true)
writer_failures=$(grep -c . $base/writer-failures || true)
echo "mode=$mode jails=$jails missing=$missing duplicated=$duplicated errors=$errors leftover=$leftover writer_failures=$writer_failures"
if [ "$errors" -gt 0 ]; then
    grep ' ERROR ' $base/fail2ban.log | head -3 >&2
fi
# What xtlock logged, by severity and by event (for the README and the notes).
if [ -s $base/xtlock.log ]; then
    printf 'xtlock_log:'
    for sev in info notice warning error; do printf ' %s=%s' $sev "$(grep -c "]: $sev: " $base/xtlock.log || true)"; done
    echo
    sed -n 's/.*]: [a-z]*: event=\([a-z-]*\).*/\1/p' $base/xtlock.log | sort | uniq -c | sed 's/^/xtlock_events: /'
fi
