#!/usr/bin/env bash
# Install what building and testing wirescope needs, from Debian/Ubuntu packages.
# Idempotent: only missing packages are installed, and apt-get update runs only then.
#   scripts/deps.sh [build|test|bench]...   (default: build test)
set -euo pipefail

build=(clang llvm libelf-dev zlib1g-dev pkg-config make file)
# The kernel matrix (scripts/matrix.sh): qemu, virtme-ng's venv and its initramfs
# (busybox), depmod for the unpacked kernels' modules. openssl: a TLS server for
# the http tests.
test=(iproute2 tcpdump python3 python3-venv curl openssl procps qemu-system-x86 busybox-static kmod)
bench=(bpftrace xdp-tools iperf3 nginx apache2-utils tcpdump valgrind iproute2 python3)

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(build test)
want=()
for g in "${groups[@]}"; do
    case "$g" in
        build) want+=("${build[@]}") ;;
        test) want+=("${test[@]}") ;;
        bench) want+=("${bench[@]}") ;;
        *) echo "deps.sh: unknown group $g (build, test, bench)" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps.sh: missing packages: ${missing[*]}; run as root (sudo) to install them" >&2
        exit 1
    fi
    echo "deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    for d in "$HOME/.cargo/bin" "/home/${SUDO_USER:-}/.cargo/bin"; do
        [ -x "$d/cargo" ] && { echo "deps.sh: cargo is in $d; add it to PATH" >&2; exit 1; }
    done
    echo "deps.sh: no Rust toolchain: install one with rustup (https://rustup.rs), then rerun" >&2
    exit 1
fi
