#!/bin/bash
# systemd_in_vm.sh [BUILD_DIR]: config/systemd/'s units under a real systemd.
# Run it inside scripts/vm, whose overlay root and fresh /run are thrown away:
#
#   scripts/vm -m 3G -t 900 -- tests/tools/systemd_in_vm.sh
#
# It installs the units (ExecStart pointed at BUILD_DIR/hatcheryd, default
# build/) and a config with cgroup = required and cgroup_root = the unit's
# cgroup, starts Debian's systemd as pid 1 of a new pid namespace (the VM's
# own init is busybox) with a target that wants hatcheryd.socket only, and
# checks: socket activation by the first client; Type=notify reaching active
# with STATUS=; the delegated cgroup (hatcheryd in ROOT/supervisor, the
# children under ROOT/hatchery); the unit's capabilities, no_new_privs and
# seccomp on the running daemon; a lease; no watchdog restart across
# WatchdogSec; stop leaves the socket and the next client starts it again;
# stopping the socket removes it. Exit 0 when all hold. Not a ctest entry:
# it needs scripts/vm (or a throwaway machine), and a minute or two.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$top/build}
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

[ "$(id -u)" = 0 ] && [ -w /dev/kvm ] || { echo "needs root and /dev/kvm (run it in scripts/vm)"; exit 2; }
mkdir -p /etc/hatchery /etc/systemd/system
cp "$top/config/systemd/hatcheryd.socket" /etc/systemd/system/
sed "s|^ExecStart=/usr/sbin/hatcheryd |ExecStart=$build/hatcheryd |" \
	"$top/config/systemd/hatcheryd.service" >/etc/systemd/system/hatcheryd.service
cat >/etc/hatchery/hatchery.conf <<EOF
[supervisor]
socket = /run/hatchery/hatchery.sock
cgroup = required
cgroup_root = /sys/fs/cgroup/system.slice/hatcheryd.service
jail_uid_base = 200000
[pool "default"]
min_idle = 2
max = 4
memory_mib = 16
EOF
cat >/etc/systemd/system/hatch-test.target <<EOF
[Unit]
Description=hatchery test
Wants=hatcheryd.socket
EOF
# Not in /tmp: systemd-tmpfiles empties it at boot.
console=$(mktemp -p /var/tmp)
unshare --fork --pid --mount --mount-proc /lib/systemd/systemd --system \
	--unit=hatch-test.target --log-target=console </dev/null >"$console" 2>&1 &
sleep 2
sd=$(pgrep -n -f '^/lib/systemd/systemd --system')
[ -n "$sd" ] || { cat "$console"; echo "FAIL: systemd did not start"; exit 1; }
nsx() { nsenter -t "$sd" -m -p "$@"; }
prop() { nsx systemctl show -P "$1" "$2"; }
wait_for() { # UNIT PROPERTY VALUE SECONDS
	for _ in $(seq 1 "$4"); do [ "$(prop "$2" "$1")" = "$3" ] && return 0; sleep 1; done
	return 1
}
echo "systemd: $(nsx systemctl --version | head -n1), pid $sd (host view)"
check "hatcheryd.socket listening" wait_for hatcheryd.socket ActiveState active 120
check "socket file is srw-rw-rw-" test "$(stat -c %A /run/hatchery/hatchery.sock)" = srw-rw-rw-
check "service not started before a client" test "$(prop ActiveState hatcheryd.service)" = inactive
check "the first client starts it (ping)" nsx "$build/hatchctl" -t 120000 ping
check "Type=notify: active once the pools are full" wait_for hatcheryd.service ActiveState active 120
status=$(prop StatusText hatcheryd.service)
echo "StatusText: $status"
check "STATUS= says the pool is full" grep -q "1 pool(s), 2 idle, 0 leased" <<<"$status"
cg=/sys/fs/cgroup/system.slice/hatcheryd.service
main=$(prop MainPID hatcheryd.service)
check "hatcheryd moved itself into ROOT/supervisor" test -n "$(cat $cg/supervisor/cgroup.procs)"
check "ROOT itself holds no process" test -z "$(cat $cg/cgroup.procs)"
check "ROOT enables cpu memory pids" grep -q "cpu memory pids" $cg/cgroup.subtree_control
for f in $cg/hatchery/default/*/cgroup.procs; do echo "$f: $(tr '\n' ' ' <"$f")"; done
# Each holds the child and KVM's worker for its VM (docs/security.md).
check "two children, each in its cgroup under ROOT/hatchery/default" \
	test "$(grep -l . $cg/hatchery/default/child-*/cgroup.procs | wc -l)" = 2
hpid=$(cat $cg/supervisor/cgroup.procs)
grep -E '^(CapPrm|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/"$hpid"/status
check "capabilities: KILL SETGID SETUID SETPCAP SYS_ADMIN" grep -q '^CapPrm:.*00000000002001e0' /proc/"$hpid"/status
check "no_new_privs" grep -q '^NoNewPrivs:.*1' /proc/"$hpid"/status
check "a lease" nsx "$build/hatchctl" -t 120000 acquire default
echo "waiting past WatchdogSec=30s..."
sleep 35
check "no watchdog restart (same main pid, NRestarts=0)" \
	test "$(prop MainPID hatcheryd.service)/$(prop NRestarts hatcheryd.service)" = "$main/0"
nsx systemctl stop hatcheryd.service 2>/dev/null
check "stopped cleanly" test "$(prop ActiveState hatcheryd.service)/$(prop Result hatcheryd.service)" = inactive/success
check "the socket outlives the service" test -S /run/hatchery/hatchery.sock
check "the next client starts it again" nsx "$build/hatchctl" -t 120000 ping
check "and it is active again" wait_for hatcheryd.service ActiveState active 120
nsx journalctl -u hatcheryd --no-pager 2>/dev/null | tail -n 12
nsx systemctl stop hatcheryd.socket hatcheryd.service 2>/dev/null
check "stopping the socket unit removes the socket" test ! -e /run/hatchery/hatchery.sock
kill -9 "$sd"
if [ "$fails" -ne 0 ]; then
	echo "---- systemd's console ----"; tail -n 60 "$console"
	echo "systemd_in_vm: $fails check(s) failed"; exit 1
fi
echo "systemd_in_vm: all checks passed"
