#!/usr/bin/env bash
# The .deb installed and started, in a throwaway machine (it writes /usr,
# /etc and dpkg's database, and the shipped config takes the jail uids
# 200000.. and /run/hatchery/hatchery.sock, which a daemon already running
# on a development host may hold):
#
#   scripts/vm -t 900 -- tests/install/check_deb.sh "$(scripts/package | tail -n 1)"
#
# Installs the package, starts /usr/sbin/hatcheryd on
# /etc/hatchery/hatchery.conf exactly as installed, waits for its pools to
# fill and calls the installed default guest; then starts it on a copy whose
# linux pool is uncommented (no kernel = / initrd =, so the compiled-in
# defaults: the installed kernel and initramfs) and runs `uname -r` in it;
# then removes the package. Exit 0 when every step worked.
set -euo pipefail
deb=${1:?usage: check_deb.sh DEB}
sock=/run/hatchery/hatchery.sock
log=$(mktemp -d /tmp/check-deb.XXXXXX)
pid=
fail() {
  echo "check_deb: FAIL: $*" >&2
  tail -n 20 "$log"/*.log >&2 || true
  [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
  exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || fail "hatcheryd exited $? on SIGTERM"; pid=; }
wait_socket() {
  for _ in $(seq 120); do [[ -S $sock ]] && return 0; sleep 1; done
  fail "no socket at $sock after 120 s"
}

dpkg -i "$deb" >"$log/dpkg.log" 2>&1 || fail "dpkg -i $deb"
echo "check_deb: installed $(dpkg-query -W -f='${Package} ${Version}' hatchery)"

/usr/sbin/hatcheryd -c /etc/hatchery/hatchery.conf 2>"$log/as-is.log" &
pid=$!
wait_socket
# Until the booted pool (min_idle 2) is full.
for _ in $(seq 120); do
  [[ $(hatchctl status 2>/dev/null | awk '$1 == "booted" && $2 == "booted" { print $3 }') == 2 ]] &&
    break
  sleep 1
done
hatchctl status | sed -n '1,8p'
out=$(hatchctl run booted echo installed-guest) || fail "hatchctl run booted echo"
[[ $out == installed-guest ]] || fail "the installed guest answered \"$out\""
echo "check_deb: the installed config as is: pools filled, the installed guest answers"
stop

# The shipped linux pool, uncommented, with the pool's defaults.
sed -e 's/^;\[pool "sandbox"\]/[pool "sandbox"]/' \
    -e 's/^;\(kind\|memory_mib\|min_idle\|max\|allow_uids\|pids_max\) /\1 /' \
    /etc/hatchery/hatchery.conf >"$log/linux.conf"
sed -i -e '/^\[pool "sandbox"\]/,$ s/^min_idle = 2/min_idle = 1/' "$log/linux.conf"
# Emulated under scripts/vm: a boot takes 10-50 s.
printf 'boot_timeout_ms = 300000\nhealth_interval_ms = 30000\nhealth_timeout_ms = 20000\n' \
  >>"$log/linux.conf"
/usr/sbin/hatcheryd --check-config -c "$log/linux.conf" | grep -F 'pool "sandbox"'
/usr/sbin/hatcheryd -c "$log/linux.conf" 2>"$log/linux.log" &
pid=$!
wait_socket
release=$(hatchctl exec sandbox --deadline 300000 -- uname -r) || fail "hatchctl exec sandbox"
echo "check_deb: a linux pool on the installed kernel and initramfs: uname -r = $release"
stop

dpkg -r hatchery >"$log/dpkg.log" 2>&1 || fail "dpkg -r hatchery"
[[ ! -e /usr/sbin/hatcheryd && -e /etc/hatchery/hatchery.conf ]] ||
  fail "dpkg -r: the binaries should be gone and the conffile kept"
dpkg -P hatchery >"$log/dpkg.log" 2>&1 || fail "dpkg -P hatchery"
[[ ! -e /etc/hatchery/hatchery.conf ]] || fail "dpkg -P kept the config"
echo "check_deb: dpkg -r kept the conffile, dpkg -P removed it"
rm -rf "$log"
