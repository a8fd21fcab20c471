#!/bin/bash
# Runs each case of tests/cli/batchable_shapes.rs twice, each time in a fresh network
# namespace of its own with the same set-up: once as the bare command, once as its line
# in a `<prog>-restore --noflush` transaction; records status, stdout, stderr and the
# tables after each.
# Usage (by tests/cli/batchable_shapes.rs): unshare -n -m bash shapes.sh CASES
# CASES: a directory with one directory per case holding `prog` (iptables-legacy, ...),
# `table`, `line` (the restore line), `argv` (the command's words, each ending in NUL),
# `fixture` (restore input loaded first, maybe empty) and `sets` (`ipset restore` input,
# maybe empty). Each case directory gets, for RUN in bare and restore: RUN.status,
# RUN.out, RUN.err, RUN.save, RUN.before (the tables after the set-up).
set -u
. "$(dirname "$0")/../private-namespace.sh"

# One run, in the fresh network namespace `unshare -n` made for it (the mount
# namespace, with its private /run, is the outer one's).
inner() {
    local run=$1 dir=$2 prog
    if [ "$(readlink /proc/self/ns/net)" = "${HOST_NETNS:-}" ] ||
        [ "$(readlink /proc/self/ns/net)" = "$OUTER_NETNS" ] ||
        [ "$(ip -o link show | wc -l)" -ne 1 ]; then
        echo "batchable-shapes: not in a fresh network namespace; refusing to touch any rule" >&2
        exit 3
    fi
    prog=$(cat "$dir/prog")
    if [ -s "$dir/sets" ]; then
        ipset restore < "$dir/sets" || { echo "$dir: ipset set-up failed" >&2; exit 3; }
    fi
    if [ -s "$dir/fixture" ]; then
        "$prog-restore" --noflush < "$dir/fixture" || { echo "$dir: set-up failed" >&2; exit 3; }
    fi
    "$prog-save" | grep -v '^#' > "$dir/$run.before"
    case $run in
    bare)
        local args=() word
        while IFS= read -r -d '' word; do args+=("$word"); done < "$dir/argv"
        timeout 20 "$prog" "${args[@]}" < /dev/null > "$dir/$run.out" 2> "$dir/$run.err"
        ;;
    restore)
        printf '*%s\n%s\nCOMMIT\n' "$(cat "$dir/table")" "$(cat "$dir/line")" |
            timeout 20 "$prog-restore" --noflush > "$dir/$run.out" 2> "$dir/$run.err"
        ;;
    esac
    echo $? > "$dir/$run.status"
    "$prog-save" | grep -v '^#' > "$dir/$run.save"
}

if [ "${1:-}" = --inner ]; then
    inner "$2" "$3"
    exit
fi

enter_private_namespace batchable-shapes
export LC_ALL=C OUTER_NETNS
OUTER_NETNS=$(readlink /proc/self/ns/net)
unset XTABLES_LOCKFILE POSIXLY_CORRECT
count=0
for dir in "$1"/*/; do
    dir=${dir%/}
    for run in bare restore; do
        unshare -n bash "$0" --inner "$run" "$dir" || exit 3
    done
    count=$((count + 1))
done
echo "done cases=$count"
