#!/bin/sh
# verify_units.sh UNIT_DIR HATCHERYD WORK_DIR: systemd-analyze verify of
# config/systemd/ (the ctest entry systemd_units). verify wants ExecStart's
# binary to exist, so the service is checked as a copy whose ExecStart
# names the build's hatcheryd (nothing else changes). It exits 0 even on
# unknown keys or bad values, so any line it prints fails the test.
set -eu
units=$1 hatcheryd=$2 work=$3
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "SKIPPED: systemd-analyze is not installed (scripts/deps installs the systemd package)"
	exit 0
fi
rm -rf "$work"
mkdir -p "$work"
cp "$units/hatcheryd.socket" "$work/"
grep -q '^ExecStart=/usr/sbin/hatcheryd ' "$units/hatcheryd.service"
sed "s|^ExecStart=/usr/sbin/hatcheryd |ExecStart=$hatcheryd |" \
	"$units/hatcheryd.service" >"$work/hatcheryd.service"
out=$(systemd-analyze verify "$work/hatcheryd.socket" "$work/hatcheryd.service" 2>&1) || {
	echo "$out"
	echo "systemd-analyze verify failed"
	exit 1
}
if [ -n "$out" ]; then
	echo "$out"
	echo "systemd-analyze verify: the units above have problems"
	exit 1
fi
echo "systemd-analyze verify: hatcheryd.socket and hatcheryd.service are clean ($(systemd-analyze --version | head -n1))"
