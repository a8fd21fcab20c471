#!/bin/bash
# The package's whole life in a disposable root: a private mount, network and PID
# namespace, overlayfs with lowerdir=/ and a tmpfs upper, /proc /sys /dev bound in, fresh
# /run and /tmp, chroot. Nothing of the host changes (the caller checks that too).
# Usage (by tests/cli/package.rs):
#   unshare -m -n -p -f --mount-proc bash lifecycle.sh XTLOCK_DEB IPTABLES_DEB
# Prints one "step=... ok" line per step, or "FAIL: why" and exits 1.
set -u
deb=$1 iptables_deb=$2
fail() { echo "FAIL: $*"; exit 1; }
[ "$(readlink /proc/self/ns/mnt)" != "${HOST_MNTNS:-}" ] || fail "not in a private mount namespace"
[ "$(readlink /proc/self/ns/net)" != "${HOST_NETNS:-}" ] || fail "not in a private network namespace"
[ "$(ip -o link show | wc -l)" -eq 1 ] || fail "the network namespace is not fresh"
mount --make-rprivate /

t=$(mktemp -d)
mount -t tmpfs xtlock-package "$t"
mkdir "$t/upper" "$t/work" "$t/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$t/root" || fail "overlayfs"
r=$t/root
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs run "$r/run"
mount -t tmpfs tmp "$r/tmp"
# Prove the root is disposable before touching anything in it.
touch "$r/etc/xtlock-lifecycle-probe" "$r/usr/sbin/xtlock-lifecycle-probe"
[ ! -e /etc/xtlock-lifecycle-probe ] && [ ! -e /usr/sbin/xtlock-lifecycle-probe ] || fail "a file made inside is visible outside"
rm "$r/etc/xtlock-lifecycle-probe" "$r/usr/sbin/xtlock-lifecycle-probe"
echo "step=disposable-root ok"
cp "$deb" "$r/tmp/xtlock.deb"
cp "$iptables_deb" "$r/tmp/iptables.deb"

in_root() {
    chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive XTLOCK_LOG_FILE=/tmp/xtlock.log XTLOCK_SYSLOG_SOCKET= \
        XTLOCK_JOURNAL_SOCKET= XTLOCK_LOCK_FILE=/run/xtlock.lock sh -c "$1"
}
step() { # step NAME COMMAND: run COMMAND in the root, quietly; its output on failure
    out=$(in_root "$2" 2>&1) || fail "$1: $out"
    echo "step=$1 ok"
}
# /usr/sbin as it is: each entry's link target or checksum; and the diversions.
snapshot() {
    in_root 'cd /usr/sbin && for f in *; do if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"; else echo "$f $(sha256sum < "$f")"; fi; done; dpkg-divert --list "*" | sort'
}
# Every firewall tool in /usr/sbin answers, nothing of xtlock's is left dangling.
tools_work() {
    in_root '
        for t in /usr/sbin/iptables /usr/sbin/ip6tables /usr/sbin/iptables-legacy /usr/sbin/iptables-nft /usr/sbin/ip6tables-legacy /usr/sbin/ip6tables-nft; do
            $t -L -n >/dev/null || { echo "$t -L failed"; exit 1; }
        done
        for t in /usr/sbin/ip*tables*-save /usr/sbin/iptables-save; do
            $t >/dev/null || { echo "$t failed"; exit 1; }
        done
        for t in /usr/sbin/iptables-restore /usr/sbin/iptables-legacy-restore /usr/sbin/iptables-nft-restore; do
            printf "*filter\nCOMMIT\n" | $t || { echo "$t failed"; exit 1; }
        done
        # What other packages the host has installed: diverted too, so checked too.
        for t in /usr/sbin/ipset /usr/sbin/ebtables-legacy /usr/sbin/arptables-legacy; do
            [ ! -e $t ] || $t --version >/dev/null || { echo "$t --version failed"; exit 1; }
        done
        [ ! -e /usr/sbin/ipset ] || ipset list -n >/dev/null || { echo "ipset list failed"; exit 1; }'
}
clean() { # nothing of xtlock's left after a removal
    in_root '
        if dpkg-divert --list "*" | grep -q "by xtlock$"; then echo "diversions left:"; dpkg-divert --list "*" | grep "by xtlock$"; exit 1; fi
        for f in /usr/sbin/* /usr/local/sbin/*; do
            if [ -L "$f" ] && [ ! -e "$f" ]; then echo "dangling: $f -> $(readlink "$f")"; exit 1; fi
        done
        if grep -qs "xtlock install --fail2ban" /etc/fail2ban/action.d/iptables.local; then echo "fail2ban file left"; exit 1; fi
        [ ! -e /usr/bin/xtlock ] || { echo "/usr/bin/xtlock left"; exit 1; }' || return 1
    tools_work
}
through_xtlock() { # a call by absolute path, as ufw makes it, lands in xtlock's log
    in_root ": > /tmp/xtlock.log; XTLOCK_VERBOSE=1 /usr/sbin/iptables -A INPUT -s 192.0.2.9 -j DROP && /usr/sbin/iptables -D INPUT -s 192.0.2.9 -j DROP \
        && grep -q 'event=call prog=iptables' /tmp/xtlock.log" || fail "$1: /usr/sbin/iptables did not go through xtlock"
    echo "step=$1 ok"
}
ipset_through_xtlock() { # where ipset is installed (firewalld depends on it): diverted too
    in_root '[ -e /usr/sbin/ipset ]' || { echo "step=$1 ok (no ipset here)"; return; }
    in_root ": > /tmp/xtlock.log; XTLOCK_VERBOSE=1 /usr/sbin/ipset create xtlock-t hash:ip && XTLOCK_VERBOSE=1 /usr/sbin/ipset destroy xtlock-t \
        && grep -q 'event=call prog=ipset' /tmp/xtlock.log" || fail "$1: /usr/sbin/ipset did not go through xtlock: $(cat "$r/tmp/xtlock.log")"
    # ipset-translate is a link to ipset and picks its mode by argv[0]: it still does.
    [ "$(in_root "$translate")" = "$translated" ] || fail "$1: ipset-translate changed: $(in_root "$translate")"
    echo "step=$1 ok"
}
installed() { # install the package and everything `xtlock install` can make
    step "$1-dpkg-i" "dpkg -i /tmp/xtlock.deb"
    step "$1-install" "xtlock install --fail2ban --divert --dir /usr/local/sbin"
    step "$1-doctor" "xtlock doctor"
    through_xtlock "$1-through"
}

before=$(snapshot)
tools_work >/dev/null || fail "the tools do not work before anything was done"
translate='printf "create xtlock-t hash:ip\nadd xtlock-t 192.0.2.1\n" | ipset-translate restore 2>&1'
translated=$(in_root "$translate")

# README's recipe for ufw: the diversions alone. doctor is clean, every backend known.
step divert-only-dpkg-i "dpkg -i /tmp/xtlock.deb"
step divert-only-install "xtlock install --divert"
out=$(in_root "xtlock doctor" 2>&1) || fail "divert-only-doctor: $out"
case $out in *"version unknown"*) fail "divert-only-doctor: a backend unknown: $out" ;; esac
echo "step=divert-only-doctor ok"
through_xtlock divert-only-through
ipset_through_xtlock divert-only-ipset-through
step divert-only-remove "dpkg -r xtlock"
clean || fail "after dpkg -r of a divert-only install: $(clean 2>&1)"
echo "step=divert-only-clean ok"

installed first
step alternatives-legacy "update-alternatives --set iptables /usr/sbin/iptables-legacy"
through_xtlock alternatives-legacy-through
step alternatives-nft "update-alternatives --set iptables /usr/sbin/iptables-nft"
through_xtlock alternatives-nft-through
step alternatives-auto "update-alternatives --auto iptables"
step iptables-reinstall "dpkg -i /tmp/iptables.deb"
through_xtlock iptables-reinstall-through
step xtlock-upgrade "dpkg -i /tmp/xtlock.deb"
through_xtlock xtlock-upgrade-through

step remove "dpkg -r xtlock"
clean || fail "after dpkg -r: $(clean 2>&1)"
echo "step=remove-clean ok"
step remove-iptables-reinstall "dpkg -i /tmp/iptables.deb"

installed second
step purge "dpkg -P xtlock"
clean || fail "after dpkg -P: $(clean 2>&1)"
echo "step=purge-clean ok"
[ ! -e "$r/etc/xtlock.conf" ] || fail "purge left /etc/xtlock.conf"

installed third
step apt-remove "apt-get remove -y -q xtlock"
clean || fail "after apt-get remove: $(clean 2>&1)"
echo "step=apt-remove-clean ok"
step apt-remove-iptables-reinstall "dpkg -i /tmp/iptables.deb"

# The backstop: the binary gone before prerm could run (as if prerm had failed).
installed fourth
in_root 'mv /usr/bin/xtlock /usr/bin/xtlock.moved' || fail "backstop: move"
step backstop-purge "dpkg -P xtlock; rm -f /usr/bin/xtlock.moved"
clean || fail "after a removal whose prerm could not run: $(clean 2>&1)"
echo "step=backstop-clean ok"

after=$(snapshot)
[ "$before" = "$after" ] || fail "round trip: /usr/sbin or the diversions differ: $(diff <(echo "$before") <(echo "$after"))"
echo "step=round-trip ok"
