#!/usr/bin/env bash
# Brings a Debian/Ubuntu host to the point where kcmp-monitor runs and its tests pass.
# Idempotent: each step checks first and does only what is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root to install packages and mount tracefs; run: sudo make setup"
command -v apt-get >/dev/null || die "needs apt-get (Debian or Ubuntu); install BCC, kernel headers and python3-venv by hand"

kernel=$(uname -r)
arch=$(dpkg --print-architecture)

# Debian's BCC is the real one (PyPI's "bcc" is an unrelated package); strace, gcc and bpftool
# serve the tests.
packages=(python3-bpfcc python3-venv gcc make strace bpftool)
# `setup.sh --bench` adds the peers the benchmark measures us against; `--test` a real Docker
# engine for the container tests (which start dockerd themselves where it is not running) and
# debootstrap, which makes the Debian base the monitor's image is built on there; and
# gcc-multilib for a 32-bit test program.
[ "${1:-}" = "--bench" ] && packages+=(bpftrace bpfcc-tools linux-perf)
[ "${1:-}" = "--test" ] && packages+=(docker.io libc6-dev debootstrap gcc-multilib openssl)
# The kernel matrix (tests/matrix) boots Debian's kernels in QEMU with a busybox initramfs;
# kmod's depmod and zstd unpack their packages. Without QEMU's recommends (firmware, GUI).
matrix=()
[ "${1:-}" = "--test" ] && matrix+=(qemu-system-x86 busybox-static kmod zstd)
missing_of() {
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}
apt_updated=
apt_update() { [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }; }
install() {
    say "installing $*"
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
mapfile -t missing < <(missing_of "${packages[@]}")
[ ${#missing[@]} -eq 0 ] || install "${missing[@]}"
mapfile -t missing < <(missing_of "${matrix[@]}")
[ ${#missing[@]} -eq 0 ] || install --no-install-recommends "${missing[@]}"

# BCC compiles against /lib/modules/$kernel/build. Prefer the exact headers; a custom kernel has
# none, so take the distro's nearest headers and point the running kernel's module dir at them.
if [ ! -e "/lib/modules/$kernel/build/Makefile" ]; then
    apt_update
    if apt-cache show "linux-headers-$kernel" >/dev/null 2>&1; then
        say "installing linux-headers-$kernel"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "linux-headers-$kernel" >/dev/null
    else
        for meta in "linux-headers-cloud-$arch" "linux-headers-$arch" linux-headers-generic; do
            if apt-cache show "$meta" >/dev/null 2>&1; then
                say "no headers packaged for $kernel; installing the nearest: $meta"
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$meta" >/dev/null
                break
            fi
        done
        nearest=$(find /lib/modules -mindepth 2 -maxdepth 2 -name build -xtype d 2>/dev/null \
                  | grep -v "^/lib/modules/$kernel/" | sort -V | tail -n 1)
        [ -n "$nearest" ] || die "no kernel headers found for $kernel and none packaged; install your kernel's headers"
        from=$(dirname "$nearest")
        mkdir -p "/lib/modules/$kernel"
        for link in build source; do
            [ -e "$from/$link" ] && ln -sfn "$(readlink -f "$from/$link")" "/lib/modules/$kernel/$link"
        done
        say "linked /lib/modules/$kernel/build to the headers of $(basename "$from")"
    fi
fi

# The tests run a real Prometheus and promtool. Unpacked into .tools rather than installed, so
# that no Prometheus service starts on the host.
if [ ! -x .tools/prometheus/usr/bin/prometheus ]; then
    say "unpacking Debian's prometheus package into .tools/prometheus (for the tests)"
    apt_update
    tmp=$(mktemp -d)
    chmod a+rwx "$tmp"  # apt downloads as the _apt user
    (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
    mkdir -p .tools/prometheus
    dpkg-deb -x "$tmp"/prometheus_*.deb .tools/prometheus
    rm -rf "$tmp"
fi

if [ ! -d /sys/kernel/tracing/events ]; then
    say "mounting tracefs on /sys/kernel/tracing"
    mount -t tracefs nodev /sys/kernel/tracing
fi

# The venv sees Debian's dist-packages, where BCC's Python module lives.
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    say "installing kcmp-monitor into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch .venv/.installed
fi
ln -sfn "$PWD/.venv/bin/kcmp-monitor" /usr/local/bin/kcmp-monitor
say "ready"
