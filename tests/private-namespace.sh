# Sourced by the scenario scripts (tests/*/…sh), which their Rust tests run under
# `unshare -n -m` with HOST_NETNS and HOST_MNTNS set to the host's namespaces.
# Refuses to go on unless this is a new network namespace holding only lo and a private
# mount namespace; then gives it a private /run, so lock files are private too.
# Usage: enter_private_namespace NAME
enter_private_namespace() {
    if [ "$(readlink /proc/self/ns/net)" = "${HOST_NETNS:-}" ] || [ "$(ip -o link show | wc -l)" -ne 1 ]; then
        echo "$1: not in a fresh network namespace; refusing to touch any rule" >&2
        exit 3
    fi
    if [ "$(readlink /proc/self/ns/mnt)" = "${HOST_MNTNS:-}" ]; then
        echo "$1: not in a private mount namespace; refusing to mount anything" >&2
        exit 3
    fi
    mount --make-rprivate /
    mount -t tmpfs "xtlock-$1" /run
}
