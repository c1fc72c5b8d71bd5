#!/bin/sh
# check-source.sh - the small source check of STYLE.md: banned calls never enter src/.
set -eu
cd "$(dirname "$0")/.."
bad=$(grep -nE '\b(strcpy|strcat|sprintf|gets|atoi|strtok)[[:space:]]*\(' src/*/*.c src/*/*.h || true)
if [ -n "$bad" ]; then
	echo "check-source: banned functions (see STYLE.md):" >&2
	echo "$bad" >&2
	exit 1
fi
echo "check-source: ok"
