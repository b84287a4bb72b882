#!/bin/bash
# Boots Debian's kernel under QEMU (software emulation: this machine's KVM runs only PVM
# guests) with the initramfs build.sh made, runs a shell command in the guest as root and
# returns its output and exit status. The guest has no network device at all (-nic none):
# nothing it does can reach the host's network. Files given with --put are copied into a
# 9p share the guest mounts at /host (its working directory).
#
# Usage: scripts/ipvs-vm/run.sh [--timeout S] [--put FILE[:NAME]]... -c 'COMMAND'
# Exit status: the command's; 124 if the VM did not finish in time; 125 if it did not run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
timeout=300
cmd=
puts=()
while [ $# -gt 0 ]; do
    case $1 in
        --timeout) timeout=$2; shift 2 ;;
        --put) puts+=("$2"); shift 2 ;;
        -c) cmd=$2; shift 2 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$cmd" ] || { echo "run.sh: -c COMMAND is required" >&2; exit 2; }

cache=$("$here/build.sh" | tail -1)
share=$(mktemp -d /tmp/holdfast-ipvs-vm.XXXXXX)
trap 'rm -rf "$share"' EXIT
for p in "${puts[@]}"; do
    src=${p%%:*}
    name=${p#*:}
    [ "$name" = "$p" ] && name=$(basename "$src")
    cp "$src" "$share/$name"
done
printf '%s\n' "$cmd" > "$share/cmd.sh"

set +e
timeout --kill-after=5 "$timeout" qemu-system-x86_64 -accel tcg -m 1024 -smp 1 \
    -nographic -no-reboot -nic none \
    -kernel "$cache/vmlinux" -initrd "$cache/initrd.img" \
    -append "console=ttyS0 panic=-1 quiet" \
    -virtfs "local,path=$share,mount_tag=host,security_model=none" \
    </dev/null > "$share/console.txt" 2>&1
qrc=$?
set -e
if [ -f "$share/rc" ]; then
    cat "$share/output.txt"
    exit "$(cat "$share/rc")"
fi
echo "ipvs-vm: the command did not finish (qemu exit $qrc); console tail:" >&2
tr '\r' '\n' < "$share/console.txt" | tail -30 >&2
[ $qrc -eq 124 ] && exit 124
exit 125
