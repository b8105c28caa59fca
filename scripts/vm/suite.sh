#!/usr/bin/env bash
# Run the privileged integration suite on the kernel this runs on: on the host,
# and unchanged inside every kernel-matrix guest (scripts/matrix.sh starts it there).
#   scripts/vm/suite.sh OUTDIR WIRESCOPE_BIN TEST_EXE...
# Writes into OUTDIR:
#   log      everything the test executables printed
#   result   one line: "<passed> <failed> <kernel release>"
#   probe    one line: the attach method per command from `wirescope probe --json`,
#            or "n/a" when this wirescope has no probe command
#   done     written last; its absence means the run did not finish
# Exit status 0 when every test passed and at least one ran.
set -euo pipefail

out=${1:?usage: suite.sh OUTDIR WIRESCOPE_BIN TEST_EXE...}
bin=${2:?usage: suite.sh OUTDIR WIRESCOPE_BIN TEST_EXE...}
shift 2
[ $# -gt 0 ] || { echo "suite.sh: no test executables given" >&2; exit 2; }
mkdir -p "$out"
rm -f "$out/log" "$out/result" "$out/probe" "$out/done"

say() { echo "suite.sh: $*" | tee -a "$out/log" >&2; }

# What the tests need from the kernel's file systems; mounted only where missing.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
if [ -d /sys/kernel/tracing ] && ! mountpoint -q /sys/kernel/tracing; then
    mount -t tracefs tracefs /sys/kernel/tracing || say "could not mount tracefs"
fi

release=$(uname -r)
say "kernel $release, attach methods forced: ${WIRESCOPE_TEST_ATTACH:-none (auto)}," \
    "patience ${WIRESCOPE_TEST_PATIENCE:-60}s"

passed=0
failed=0
for exe in "$@"; do
    name=$(basename "$exe")
    name=${name%-*}
    say "running $name ($exe)"
    status=0
    # Two threads, as on the host: tests make their own namespaces, so they may overlap.
    "$exe" --test-threads=2 >"$out/$name.log" 2>&1 || status=$?
    cat "$out/$name.log" >>"$out/log"
    cat "$out/$name.log"
    # libtest's closing line: "test result: ok. 14 passed; 0 failed; 0 ignored; ..."
    line=$(grep -E '^test result: ' "$out/$name.log" | tail -n 1 || true)
    if [ -z "$line" ]; then
        say "$name exited with status $status and no test result line: counted as one failure"
        failed=$((failed + 1))
        continue
    fi
    p=$(sed -E 's/.* ([0-9]+) passed;.*/\1/' <<<"$line")
    f=$(sed -E 's/.* ([0-9]+) failed;.*/\1/' <<<"$line")
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        say "$name exited with status $status although no test failed: counted as one failure"
        failed=$((failed + 1))
    fi
done

# Which attach method each command uses here, from the binary itself (never assumed).
probe="n/a"
if "$bin" probe --help >/dev/null 2>&1; then
    if "$bin" probe --json >"$out/probe.json" 2>"$out/probe.err"; then
        probe=$(python3 "$(dirname "$0")/probe_summary.py" <"$out/probe.json" 2>>"$out/probe.err" ||
            echo "unreadable (see probe.json)")
    else
        probe="failed: $(tail -n 1 "$out/probe.err")"
    fi
    { echo "--- wirescope probe --json"; cat "$out/probe.json" "$out/probe.err"; } >>"$out/log"
fi

if [ $((passed + failed)) -eq 0 ]; then
    say "no test ran: counted as one failure"
    failed=1
fi
echo "$probe" >"$out/probe"
echo "$passed $failed $release" >"$out/result"
say "$passed passed, $failed failed on $release"
sync
touch "$out/done"
sync
[ "$failed" -eq 0 ]
