#!/bin/bash
# Builds what the IPVS VM needs: Debian's stock kernel (which has the ip_vs modules; this
# machine's kernel does not), its ELF vmlinux for a fast PVH boot under QEMU, and a busybox
# initramfs with the modules, iproute2's ip, ipvsadm, nft, conntrack and the C libraries a Rust
# test binary needs. (The nftables plane's flowtable tests run there too: this machine's kernel
# has no nf_flow_table either.) Everything comes from Debian's packages. Idempotent: a second run reuses the cache.
#
# Usage: scripts/ipvs-vm/build.sh            (prints the cache directory on its last line)
# Cache: $HOLDFAST_VM_CACHE (default /var/cache/holdfast-ipvs-vm).
set -euo pipefail

cache=${HOLDFAST_VM_CACHE:-/var/cache/holdfast-ipvs-vm}
mkdir -p "$cache"
cd "$cache"

need=()
for tool in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio xz:xz-utils \
    ipvsadm:ipvsadm ip:iproute2 gzip:gzip nft:nftables conntrack:conntrack; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
# busybox-static specifically: the initramfs has no libc of its own for busybox.
[ -x /bin/busybox ] && file_is_static=$(ldd /bin/busybox 2>&1 | grep -c "not a dynamic" || true) || file_is_static=0
[ "${file_is_static:-0}" -ge 1 ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The kernel package linux-image-amd64 points at (downloaded, never installed).
# (Readers here consume their whole input: one that stopped early would kill the writer with
# SIGPIPE, which `pipefail` turns into this script's failure.)
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ && !n++ {print $2}')
if [ -z "$kpkg" ]; then
    echo "ipvs-vm: cannot tell which kernel package linux-image-amd64 depends on" >&2
    exit 1
fi
if ! ls "$kpkg"_*.deb >/dev/null 2>&1; then
    apt-get download "$kpkg" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "$kpkg" >/dev/null; }
fi
deb=$(ls "$kpkg"_*.deb | sed -n 1p)
kroot=$cache/kroot-$kpkg
if [ ! -d "$kroot/lib/modules" ]; then
    rm -rf "$kroot.tmp"
    dpkg-deb -x "$deb" "$kroot.tmp"
    mv "$kroot.tmp" "$kroot"
fi
kver=$(ls "$kroot/lib/modules" | sed -n 1p)
[ -f "$kroot/lib/modules/$kver/modules.dep" ] || busybox depmod -b "$kroot" "$kver"

# vmlinux: the ELF inside the xz-compressed bzImage (PVH boot skips decompressing under
# emulation, about 3 s a boot).
if [ ! -s vmlinux ] || [ "$(head -c4 vmlinux | od -An -tx1 | tr -d ' ')" != 7f454c46 ]; then
    off=$(LC_ALL=C grep -obUaP -m1 '\xfd7zXZ\x00' "$kroot/boot/vmlinuz-$kver" | sed -n 1p | cut -d: -f1)
    tail -c +$((off + 1)) "$kroot/boot/vmlinuz-$kver" | xz -dc > vmlinux 2>/dev/null || true
    if [ "$(head -c4 vmlinux | od -An -tx1 | tr -d ' ')" != 7f454c46 ]; then
        echo "ipvs-vm: could not extract vmlinux from vmlinuz-$kver" >&2
        exit 1
    fi
fi

# The initramfs.
root=$cache/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,host,lib/modules,usr/bin,usr/sbin}
cp /bin/busybox "$root/bin/busybox"
for l in sh mount umount mkdir cat echo sleep poweroff modprobe insmod ln ls dmesg \
    grep sed tr head tail wc kill ps nc cut sync uname hostname true false test seq sysctl; do
    ln -sf busybox "$root/bin/$l"
done

# Modules: IPVS and its schedulers, conntrack, nftables with NAT and the flowtable, veth and
# bridge for namespaces, 9p for the share, with their dependency closure from modules.dep.
mdir=$kroot/lib/modules/$kver
want="ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh
      ip_vs_sed ip_vs_nq ip_vs_mh ip_vs_fo ip_vs_ovf nf_conntrack veth bridge ipip
      nf_tables nft_chain_nat nft_nat nft_ct nft_numgen nft_hash nft_fwd_netdev nf_flow_table
      nf_flow_table_inet nft_flow_offload nf_conntrack_netlink ip_vs_pe_sip
      crc32c_generic 9p 9pnet_virtio virtio_pci"
declare -A seen=()
queue=()
for m in $want; do
    p=$(grep -E "/${m}\.ko(\.[a-z]+)?:" "$mdir/modules.dep" | sed -n 1p | cut -d: -f1)
    [ -n "$p" ] || { echo "ipvs-vm: module $m not in $kver" >&2; exit 1; }
    queue+=("$p")
done
while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    [ -n "${seen[$p]:-}" ] && continue
    seen[$p]=1
    for d in $(grep -E "^${p}:" "$mdir/modules.dep" | cut -d: -f2); do
        queue+=("$d")
    done
done
for p in "${!seen[@]}"; do
    mkdir -p "$root/lib/modules/$kver/$(dirname "$p")"
    case $p in
        *.ko.xz) xz -dc "$mdir/$p" > "$root/lib/modules/$kver/${p%.xz}" ;;
        *.ko.zst) zstd -dcq "$mdir/$p" > "$root/lib/modules/$kver/${p%.zst}" ;;
        *) cp "$mdir/$p" "$root/lib/modules/$kver/$p" ;;
    esac
done
cp "$mdir/modules.order" "$mdir/modules.builtin" "$root/lib/modules/$kver/" 2>/dev/null || true
busybox depmod -b "$root" "$kver"

# Dynamic programs with their libraries, and the usual C libraries for Rust binaries.
copy_with_libs() {
    local src=$1 dst=$2
    mkdir -p "$root/$(dirname "$dst")"
    cp -L "$src" "$root/$dst"
    ldd "$src" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | while read -r lib; do
        mkdir -p "$root/$(dirname "$lib")"
        cp -L "$lib" "$root/$lib"
    done
}
copy_with_libs "$(command -v ip)" /sbin/ip
copy_with_libs "$(command -v ipvsadm)" /sbin/ipvsadm
copy_with_libs "$(command -v nft)" /usr/sbin/nft
copy_with_libs "$(command -v conntrack)" /usr/sbin/conntrack
for lib in libc.so.6 libm.so.6 libgcc_s.so.1 libdl.so.2 librt.so.1 libpthread.so.0 libutil.so.1; do
    f=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ && !n++ {print $NF}')
    [ -n "$f" ] && mkdir -p "$root/$(dirname "$f")" && cp -L "$f" "$root/$f"
done
mkdir -p "$root/lib64"
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"

# Users for scripts run as script_user (MISC_CHECK, notify).
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
# The IPVS tests change the guest's own namespace (bridge, addresses): they refuse to run
# anywhere this marker is missing, so never on a host.
echo "holdfast IPVS test VM" > "$root/etc/holdfast-ipvs-vm"

cat > "$root/init" <<'INIT'
#!/bin/sh
export PATH=/opt/bin:/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
# nft -f - reads /dev/stdin, which devtmpfs does not make.
ln -sf /proc/self/fd /dev/fd; ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/netns /var
ln -s /run /var/run
dmesg -n 1
modprobe crc32c_generic
for m in ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh \
    ip_vs_sed ip_vs_nq ip_vs_mh ip_vs_fo ip_vs_ovf nf_conntrack veth bridge ipip \
    nf_tables nft_chain_nat nft_nat nft_ct nft_numgen nft_hash nft_fwd_netdev nf_flow_table \
    nf_flow_table_inet nft_flow_offload nf_conntrack_netlink ip_vs_pe_sip; do
    modprobe $m || echo "ipvs-vm: modprobe $m failed"
done
/sbin/ip link set lo up
modprobe virtio_pci; modprobe 9pnet_virtio; modprobe 9p
echo
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host /host 2>/dev/null; then
    cd /host
    /bin/sh -c '. /host/cmd.sh' > /host/output.txt 2>&1
    echo $? > /host/rc
    sync
else
    echo "===IPVS-VM no 9p share"
fi
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > initrd.img
echo "$cache"
