#!/bin/sh
# fuzz.sh - build the libFuzzer targets with clang (ASan + UBSan) and run each one
# for SECONDS (default 600) seeded with its checked-in corpus. New interesting
# inputs land in build-fuzz/corpus/<target>/; crashes in build-fuzz/crashes/ and
# fail the run. Copy crashers into tests/fuzz/corpus/<target>/ once fixed.
set -eu
SECONDS_PER_TARGET=${1:-600}
cd "$(dirname "$0")/.."
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DRELEVO_FUZZ=ON \
	-DRELEVO_SANITIZE=ON >/dev/null
cmake --build build-fuzz -j "$(nproc)" >/dev/null
mkdir -p build-fuzz/crashes
status=0
for src in tests/fuzz/fuzz_*.c; do
	t=$(basename "$src" .c)
	mkdir -p "build-fuzz/corpus/$t"
	echo "fuzz: $t for ${SECONDS_PER_TARGET}s"
	if ! "build-fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
		-artifact_prefix="build-fuzz/crashes/$t-" \
		"build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" >"build-fuzz/$t.log" 2>&1; then
		echo "fuzz: $t FAILED, see build-fuzz/$t.log and build-fuzz/crashes/" >&2
		status=1
	fi
	grep -E 'stat::number_of_executed_units|stat::new_units_added' "build-fuzz/$t.log" || true
done
exit $status
