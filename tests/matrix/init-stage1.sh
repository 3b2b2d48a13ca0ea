#!/bin/busybox sh
# The guest's first stage: reach the host's files (9p) and make the root the second stage runs in.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m" || echo "init: insmod $m failed"; done
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^kcmp\.$1=//p"; }
opts=trans=virtio,version=9p2000.L,msize=262144,cache=loose
mount -t 9p -o "$opts,ro" host /host
mount -t 9p -o "$opts,ro" kernel /kernel
mount -t tmpfs -o mode=0755 rw /rw
mkdir /rw/upper /rw/work
# The kernel's packages over the host's /: its modules and headers where the host has none.
mount -t overlay overlay -o lowerdir=/kernel:/host,upperdir=/rw/upper,workdir=/rw/work /newroot
stage2=$(arg stage2)
umount /proc
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh "$stage2"
