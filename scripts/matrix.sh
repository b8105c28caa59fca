#!/usr/bin/env bash
# The kernel matrix: the privileged integration suite on this host and inside a
# virtual machine per Debian kernel, one report line per kernel.
#   scripts/matrix.sh [KERNEL...]     KERNEL: host, 5.10, 6.1, 6.12 (default: all four)
# Guests boot Debian's kernel packages (scripts/vm/kernel.sh, cached in .cache/kernels)
# with virtme-ng (pinned, installed from PyPI into .cache/virtme-ng-*): the guest's root
# is this host's file system shared read-only over 9p with tmpfs overlays, so the very
# test executables, wirescope binary, ip and tcpdump of the host run there unchanged.
# Settings (environment):
#   VM_ACCEL=auto|kvm|tcg   auto: KVM if a trial boot works, else software emulation
#   VM_TIMEOUT=SECS         hard limit per guest, boot included (default 2400)
#   VM_MEMORY=2G VM_CPUS=2  guest size
#   GUEST_PATIENCE=SECS     WIRESCOPE_TEST_PATIENCE inside guests (default 180)
#   GUEST_MANY_CONNS=N      connections of conn's many-connections test in guests,
#                           per attach method (default 10000, as on the host)
# Results and consoles: .cache/matrix/<kernel>/. Exit status 1 if any kernel failed.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

VNG_VERSION=1.42
VM_ACCEL=${VM_ACCEL:-auto}
VM_TIMEOUT=${VM_TIMEOUT:-2400}
VM_MEMORY=${VM_MEMORY:-2G}
VM_CPUS=${VM_CPUS:-2}
GUEST_PATIENCE=${GUEST_PATIENCE:-180}
GUEST_MANY_CONNS=${GUEST_MANY_CONNS:-10000}
# Inside guests every attach method must run (and fail loudly if it cannot).
GUEST_ATTACH=fentry,kprobe,tracepoint

all=(host 5.10 6.1 6.12)
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=("${all[@]}")
for k in "${kernels[@]}"; do
    case "$k" in
        host | 5.10 | 6.1 | 6.12) ;;
        *) echo "matrix.sh: unknown kernel '$k' (choose from: ${all[*]})" >&2; exit 2 ;;
    esac
done

say() { echo "matrix: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "the privileged suite needs root: run as root (sudo make test)"
runs="$top/.cache/matrix"
mkdir -p "$runs"

# The test executables and the wirescope binary they run, built once (static: they
# run in every guest as they are). cargo lists them in its JSON messages.
say "building the test executables"
cargo test --locked --no-run --message-format=json >"$runs/build.json"
mapfile -t exes < <(python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["kind"] == ["test"]:
        print(m["executable"])
' <"$runs/build.json")
bin=$(python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["kind"] == ["bin"] and not m["profile"]["test"]:
        print(m["executable"])
' <"$runs/build.json")
[ ${#exes[@]} -gt 0 ] || die "cargo built no integration test executable"
[ -x "$bin" ] || die "cargo built no wirescope binary"
# Run copies, so that a build in this tree while the matrix runs (minutes)
# cannot replace an executable under a running guest; the tests find the
# binary through WIRESCOPE_BIN.
snap="$runs/bin"
rm -rf "$snap"
mkdir -p "$snap"
cp "$bin" "${exes[@]}" "$snap/"
bin="$snap/$(basename "$bin")"
for i in "${!exes[@]}"; do exes[i]="$snap/$(basename "${exes[i]}")"; done
export WIRESCOPE_BIN="$bin"
say "test executables: ${exes[*]##*/}"

# virtme-ng, pinned, in its own virtual environment.
vng_env="$top/.cache/virtme-ng-$VNG_VERSION"
# vng calls its helpers (virtme-run) through PATH.
vng=(env "PATH=$vng_env/bin:$PATH" "$vng_env/bin/vng")
ensure_vng() {
    [ -x "$vng_env/bin/vng" ] && return 0
    say "installing virtme-ng $VNG_VERSION into $vng_env"
    rm -rf "$vng_env"
    python3 -m venv "$vng_env" ||
        die "python3 -m venv failed: install python3-venv (scripts/deps.sh test)"
    "$vng_env/bin/pip" install -q "virtme-ng==$VNG_VERSION" || die "pip install virtme-ng failed"
}

# Run a command under a hard time limit; Ctrl-C or TERM of this script ends it too.
limited() {
    local secs=$1 pid status=0
    shift
    timeout --kill-after=30 "$secs" "$@" &
    pid=$!
    trap 'kill -TERM $pid 2>/dev/null; wait $pid; exit 130' INT TERM
    wait "$pid" || status=$?
    trap - INT TERM
    return "$status"
}

# KVM only when a real trial boot with it works: on some machines /dev/kvm exists
# but qemu aborts with it.
accel=""
choose_accel() {
    local vmlinuz=$1 log="$runs/kvm-trial.log"
    case "$VM_ACCEL" in
        kvm | tcg) accel=$VM_ACCEL; say "accelerator $accel (VM_ACCEL)"; return ;;
        auto) ;;
        *) die "VM_ACCEL must be auto, kvm or tcg" ;;
    esac
    if [ ! -w /dev/kvm ]; then
        accel=tcg
        say "no usable /dev/kvm: software emulation (TCG)"
        return
    fi
    say "trial boot with KVM"
    # The guest computes the marker, so finding it proves the guest ran.
    # shellcheck disable=SC2016
    if limited 120 "${vng[@]}" --run "$vmlinuz" --force-9p --verbose --memory 512M --cpus 1 \
        --exec 'echo wirescope-kvm-trial-$((6 * 7))' >"$log" 2>&1 &&
        grep -q 'wirescope-kvm-trial-42' "$log"; then
        accel=kvm
        say "KVM works: using it"
    else
        accel=tcg
        say "KVM trial boot failed ($(grep -m1 -iE 'error|abort|assert' "$log" || tail -n 1 "$log")): software emulation (TCG)"
    fi
}

declare -A line
total_passed=0
total_failed=0
bad=0

# Summarise one kernel's run directory: report line, and on failure the failing
# tests with their output (or the console's tail when the run did not finish).
report() {
    local k=$1 out=$2 secs=$3 status=$4 console=$5 how=$6 passed failed release probe
    local took
    took=$(printf '%dm%02ds' $((secs / 60)) $((secs % 60)))
    if [ ! -f "$out/done" ] || [ ! -f "$out/result" ]; then
        local why="did not finish (exit status $status)"
        case "$status" in
            124 | 137) why="killed after the ${VM_TIMEOUT}s limit" ;;
        esac
        line[$k]=$(printf '%-5s %-24s %-4s FAILED: %s, %s' "$k" "-" "$how" "$why" "$took")
        say "$k: $why; last lines of $console:"
        tail -n 40 "$console" | sed 's/^/    /' >&2
        total_failed=$((total_failed + 1))
        bad=1
        return
    fi
    read -r passed failed release <"$out/result"
    probe=$(cat "$out/probe" 2>/dev/null || echo "n/a")
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    local verdict=ok
    if [ "$failed" -ne 0 ]; then
        verdict=FAILED
        bad=1
        say "$k: $failed failed; the failures (full log: $out/log):"
        local f
        for f in "$out"/*.log; do
            # libtest's failure section: each failing test's output, then their names.
            sed -n '/^failures:$/,/^test result:/p' "$f" | sed 's/^/    /' >&2
        done
        grep -E '^suite.sh: .* counted as one failure' "$out/log" | sed 's/^/    /' >&2 || true
    fi
    line[$k]=$(printf '%-5s %-24s %-4s %-6s %3d passed, %d failed  %s  probe: %s' \
        "$k" "$release" "$how" "$verdict" "$passed" "$failed" "$took" "$probe")
}

for k in "${kernels[@]}"; do
    out="$runs/$k"
    rm -rf "$out"
    mkdir -p "$out/run"
    console="$out/console.log"
    start=$(date +%s)
    status=0
    if [ "$k" = host ]; then
        say "host: running the suite on $(uname -r)"
        # On the host the attach methods stay automatic (no WIRESCOPE_TEST_ATTACH).
        limited "$VM_TIMEOUT" env -u WIRESCOPE_TEST_ATTACH \
            scripts/vm/suite.sh "$out/run" "$bin" "${exes[@]}" >"$console" 2>&1 || status=$?
        report "$k" "$out/run" $(($(date +%s) - start)) "$status" "$console" host
        continue
    fi
    if ! kdir=$(scripts/vm/kernel.sh "$k" 2>"$out/fetch.log"); then
        cat "$out/fetch.log" >&2
        line[$k]=$(printf '%-5s %-24s %-4s FAILED: could not fetch the kernel (see %s)' "$k" - - "$out/fetch.log")
        total_failed=$((total_failed + 1))
        bad=1
        continue
    fi
    vmlinuz=$(ls "$kdir"/boot/vmlinuz-*)
    ensure_vng
    [ -n "$accel" ] || choose_accel "$vmlinuz"
    accel_opts=(--disable-kvm "--qemu-opts=-accel tcg,thread=multi")
    [ "$accel" = kvm ] && accel_opts=()
    guest_cmd=$(printf '%q ' env "WIRESCOPE_BIN=$bin" "WIRESCOPE_TEST_PATIENCE=$GUEST_PATIENCE" \
        "WIRESCOPE_TEST_MANY_CONNS=$GUEST_MANY_CONNS" \
        "WIRESCOPE_TEST_ATTACH=$GUEST_ATTACH" "$top/scripts/vm/suite.sh" "$out/run" "$bin" "${exes[@]}")
    say "$k: booting $(basename "$vmlinuz") ($accel, $VM_CPUS CPUs, $VM_MEMORY, limit ${VM_TIMEOUT}s)"
    # --verbose puts the guest console (kernel messages and the suite's output) in the
    # console log; results come back through the writable share $out/run.
    limited "$VM_TIMEOUT" "${vng[@]}" --run "$vmlinuz" --force-9p --verbose \
        --memory "$VM_MEMORY" --cpus "$VM_CPUS" "${accel_opts[@]}" \
        --rwdir="$out/run" --append "loglevel=4" \
        --exec "$guest_cmd" >"$console" 2>&1 || status=$?
    report "$k" "$out/run" $(($(date +%s) - start)) "$status" "$console" "$accel"
done

echo
echo "kernel matrix (logs in $runs/<kernel>/):"
for k in "${kernels[@]}"; do
    echo "  ${line[$k]}"
done
echo "matrix: $total_passed passed, $total_failed failed"
exit "$bad"
