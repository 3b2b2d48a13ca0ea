#!/bin/sh
# The guest's second stage, in its overlay root: what systemd would mount, then the command of
# the run folder, its output and status written back there, then power off. /tmp stays the
# overlay's (writes land in its tmpfs): a checkout under the host's /tmp is seen there.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=0755 run /run
mkdir -p /dev/pts /dev/shm /run/guest
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t tracefs nodev /sys/kernel/tracing
mount -t debugfs nodev /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 run /run/guest
ip link set lo up
hostname kcmp-guest
echo 1 >/proc/sys/kernel/sysrq
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
sh /run/guest/cmd >/run/guest/output 2>&1 </dev/null
echo $? >/run/guest/rc
sync
echo o >/proc/sysrq-trigger
sleep 10
