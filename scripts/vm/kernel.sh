#!/usr/bin/env bash
# Fetch one of Debian's kernels for the kernel matrix and unpack it (never installed):
#   scripts/vm/kernel.sh SERIES      SERIES is 5.10 (bullseye), 6.1 or 6.12 (bookworm)
# Prints the directory that holds boot/vmlinuz-<release> and lib/modules/<release>/
# (with modules.dep made by depmod), cached under .cache/kernels/SERIES. A cached kernel
# is used as it is; delete its folder to fetch the newest one again.
# apt-get uses a private sources list and private lists under .cache/apt: the system's
# apt configuration is read (for its Debian archive addresses) but never changed.
set -euo pipefail

series=${1:?usage: scripts/vm/kernel.sh 5.10|6.1|6.12}
top=$(cd "$(dirname "$0")/../.." && pwd)
cache="$top/.cache"

case "$series" in
    5.10) suite=bullseye; meta=linux-image-amd64 ;;
    6.1) suite=bookworm; meta=linux-image-amd64 ;;
    6.12) suite=bookworm; meta=linux-image-6.12-amd64 ;;
    *) echo "kernel.sh: unknown kernel series '$series' (5.10, 6.1, 6.12)" >&2; exit 2 ;;
esac

dest="$cache/kernels/$series"
if [ -f "$dest/ready" ]; then
    echo "$dest"
    exit 0
fi

say() { echo "kernel.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# The Debian archive and security archive this machine's apt already uses.
# shellcheck disable=SC2016 # apt's own $(...) format fields, not shell
targets=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' | sort -u)
archive=$(awk '$2 !~ /-/ {print $1; exit}' <<<"$targets")
security=$(awk '$2 ~ /-security$/ {print $1; exit}' <<<"$targets")
if [ -z "$archive" ] || [ -z "$security" ]; then
    die "no Debian archive and security archive in this machine's apt sources (found: ${targets:-nothing}); the kernel matrix fetches Debian's kernels from them"
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || die "$keyring missing: apt-get install debian-archive-keyring"

aptdir="$cache/apt/$suite"
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/parts"
cat >"$aptdir/sources.list" <<LIST
deb [signed-by=$keyring] $archive $suite main
deb [signed-by=$keyring] $security $suite-security main
LIST
apt_opts=(
    -o "Dir::Etc::SourceList=$aptdir/sources.list"
    -o "Dir::Etc::SourceParts=$aptdir/parts"
    -o "Dir::State::Lists=$aptdir/lists"
    -o "Dir::Cache=$aptdir/cache"
    -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=1"
)
say "updating the private package lists for $suite"
apt-get "${apt_opts[@]}" -qq update >&2 || die "apt-get update of $suite failed"

# The meta package names the current image package (signed or unsigned, same kernel).
pkg=$(apt-cache "${apt_opts[@]}" depends "$meta" | awk '/Depends: linux-image-/ {print $2; exit}')
[ -n "$pkg" ] || die "apt-cache found no image package behind $meta in $suite"

mkdir -p "$cache/kernels"
tmp=$(mktemp -d "$cache/kernels/.fetch-$series.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
say "downloading $pkg ($suite)"
(cd "$tmp" && apt-get "${apt_opts[@]}" -qq download "$pkg" >&2) || die "apt-get download $pkg failed"
deb=$(ls "$tmp"/*.deb)
dpkg-deb -x "$deb" "$tmp/root"
release=$(ls "$tmp/root/lib/modules")
[ -f "$tmp/root/boot/vmlinuz-$release" ] || die "$pkg holds no boot/vmlinuz-$release"
# Debian runs depmod when the package is installed; we only unpacked it.
depmod -b "$tmp/root" "$release"
echo "$pkg $(dpkg-deb -f "$deb" Version) $release" >"$tmp/root/package"
rm -f "$deb"
rm -rf "$dest"
mv "$tmp/root" "$dest"
touch "$dest/ready"
say "cached $pkg as $dest"
echo "$dest"
