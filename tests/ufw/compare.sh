#!/bin/sh
# The real ufw, bare and with xtlock diverted in (`xtlock install --divert`), in a
# private network and mount namespace (the caller runs us under `unshare -n -m`).
# ufw runs /usr/sbin/iptables by its full path, so a PATH shim never sees it.
#
#   compare.sh MODE XTLOCK OUTDIR      MODE: bare | divert
#
# Writes OUTDIR/MODE.out: each ufw command's output and status, then the rules
# (iptables-save and ip6tables-save, comments and counters stripped). In divert mode
# xtlock logs every call (verbose) to OUTDIR/xtlock.log.
set -eu
mode=$1
xtlock=$2
outdir=$3

. "$(dirname "$0")/../private-namespace.sh"
enter_private_namespace compare.sh
work=/run/ufw-compare
mkdir -p $work

# Private, writable copies of everything ufw and dpkg-divert write to.
private_copy() {
    cp -a "$1" "$work/$2"
    mount --bind "$work/$2" "$1"
}
private_copy /etc/ufw etc-ufw
private_copy /lib/ufw lib-ufw
private_copy /etc/default default
# No sysctl changes, even inside the namespace.
: > /etc/ufw/sysctl.conf.empty
sed -i 's#^IPT_SYSCTL=.*#IPT_SYSCTL=/etc/ufw/sysctl.conf.empty#' /etc/default/ufw
if [ "$mode" = divert ]; then
    private_copy /usr/sbin sbin
    mkdir -p $work/dpkg
    : > $work/dpkg/diversions
    mount --bind $work/dpkg /var/lib/dpkg
    XTLOCK_SYSLOG_SOCKET= "$xtlock" install --divert > $work/divert.out
    export XTLOCK_VERBOSE=1 XTLOCK_LOG_FILE=$outdir/xtlock.log
fi
export XTLOCK_SYSLOG_SOCKET= XTLOCK_LOCK_FILE=/run/xtlock.lock

out=$outdir/$mode.out
: > $out
step() {
    echo "\$ ufw $*" >> $out
    status=0
    ufw "$@" >> $out 2>&1 || status=$?
    echo "[status $status]" >> $out
}
step --force enable
step allow 22/tcp
step deny 8080
step limit ssh
step allow from 192.0.2.0/24 to any port 443 proto tcp
step delete deny 8080
step status verbose
step --force reload
step status numbered
echo "--- rules" >> $out
{ iptables-save; ip6tables-save; } | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]/[0:0]/' >> $out
step --force disable
echo "--- after disable" >> $out
{ iptables-save; ip6tables-save; } | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]/[0:0]/' >> $out
echo "mode=$mode lines=$(wc -l < $out)"
