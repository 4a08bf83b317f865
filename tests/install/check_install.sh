#!/usr/bin/env bash
# The install, staged with DESTDIR into a temporary directory and checked
# (ctest entry `install`; arguments name=value, given by CMakeLists.txt):
#   - every file the install is meant to put down is there (the list below
#     is this test's own, so a lost install rule fails it);
#   - the installed config names files the install put down, and the
#     installed hatcheryd accepts it (--check-config, on a copy whose paths
#     point into the staging directory);
#   - the installed hatcheryd's kind = linux defaults name the installed
#     kernel and initramfs, not the build tree's;
#   - a guest built from the installed SDK alone (headers, library, linker
#     script) is one hatcheryd accepts;
#   - installing to another prefix than the configured one is refused
#     before anything is written.
set -euo pipefail
for a in "$@"; do declare "${a%%=*}=${a#*=}"; done
: "${build:?}" "${prefix:?}" "${bindir:?}" "${sbindir:?}" "${sysconfdir:?}" \
  "${pkglibdir:?}" "${includedir:?}" "${docdir:?}" "${cc:?}" "${src:?}"
kernel=${kernel:-}

t=$(mktemp -d /tmp/hatchery-install.XXXXXX)
trap 'rm -rf "$t"' EXIT
fail() { echo "check_install: FAIL: $*" >&2; exit 1; }

DESTDIR=$t/root cmake --install "$build" >"$t/install.log" 2>&1 ||
  { cat "$t/install.log" >&2; fail "cmake --install with DESTDIR failed"; }
r=$t/root

# --- every file where it belongs ---------------------------------------------
want_x=("$sbindir/hatcheryd" "$bindir/hatchctl" "$pkglibdir/hatchery-agent")
want_f=("$sysconfdir/hatchery.conf" "$pkglibdir/default.elf"
        "$pkglibdir/sdk/libhatch_guest.a" "$pkglibdir/sdk/crt0.o" "$pkglibdir/sdk/guest.ld"
        "$includedir/hatchery/hatchery_guest.h" "$includedir/hatchery/hatchery_guest_abi.h"
        "$docdir/README.md")
for d in "$src"/docs/*.md; do want_f+=("$docdir/${d##*/}"); done
if [[ -n $kernel ]]; then
  want_f+=("$pkglibdir/vmlinuz" "$pkglibdir/initramfs.cpio.gz")
  [[ $kernel == "$pkglibdir/vmlinuz" ]] || fail "kernel default $kernel is not $pkglibdir/vmlinuz"
fi
for u in "$src"/config/systemd/*.service "$src"/config/systemd/*.socket \
         "$src"/config/systemd/*.service.in "$src"/config/systemd/*.socket.in; do
  [[ -e $u ]] && { u=${u##*/}; want_f+=("$prefix/lib/systemd/system/${u%.in}"); }
done
n=0
for f in "${want_x[@]}"; do [[ -f $r$f && -x $r$f ]] || fail "missing executable $f"; n=$((n + 1)); done
for f in "${want_f[@]}"; do [[ -f $r$f && -s $r$f ]] || fail "missing file $f"; n=$((n + 1)); done
# Nothing outside the prefix but the config (sysconfdir is /etc for /usr).
extra=$(cd "$r" && find . -type f | sed 's|^\.||' |
        grep -v -e "^$prefix/" -e "^$sysconfdir/" || true)
[[ -z $extra ]] || fail "installed outside $prefix and $sysconfdir: $extra"
echo "check_install: $n files in place under DESTDIR (prefix $prefix, config $sysconfdir)"

# --- the installed config starts as is ----------------------------------------
conf=$r$sysconfdir/hatchery.conf
paths=$(sed -nE 's/^(guest|kernel|initrd|snapshot)[[:space:]]*=[[:space:]]*([^[:space:];]+).*/\2/p' "$conf")
[[ -n $paths ]] || fail "the installed config names no guest"
for p in $paths; do
  [[ $p == "$pkglibdir"/* && -f $r$p ]] || fail "the installed config names $p, which the install did not put down"
done
esc() { printf '%s' "$1" | sed 's/[&|\\]/\\&/g'; }
sed "s|$(esc "$pkglibdir")/|$(esc "$r$pkglibdir")/|g" "$conf" >"$t/staged.conf"
out=$("$r$sbindir/hatcheryd" --check-config -c "$t/staged.conf" 2>&1) ||
  fail "the installed hatcheryd refuses the installed config: $out"
grep -qF "guest $r$pkglibdir/default.elf" <<<"$out" || fail "unexpected --check-config output: $out"
echo "check_install: installed hatcheryd --check-config on the installed config: ok"
sed 's/^/  /' <<<"$out"

# --- compiled-in kind = linux defaults ----------------------------------------
if [[ -n $kernel ]]; then
  printf '[pool "sandbox"]\nkind = linux\nmemory_mib = 256\n' >"$t/linux.conf"
  out=$("$r$sbindir/hatcheryd" --check-config -c "$t/linux.conf" 2>&1 || true)
  grep -qF "kernel $pkglibdir/vmlinuz" <<<"$out" ||
    fail "the installed hatcheryd's kernel default is not $pkglibdir/vmlinuz: $out"
  out=$("$build/hatcheryd" --check-config -c "$t/linux.conf" 2>&1) ||
    fail "the build tree's hatcheryd lost its build/linux/ defaults: $out"
  grep -qF "kernel $build/linux/vmlinuz" <<<"$out" || fail "build tree default: $out"
  echo "check_install: kind = linux defaults: installed $pkglibdir/vmlinuz, build tree $build/linux/vmlinuz"
fi

# --- a guest from the installed SDK -------------------------------------------
cat >"$t/upper.c" <<'EOF'
#include <hatchery_guest.h>

HATCH_GUEST_FUNCTION(upper)
{
	for (uint64_t i = 0; i < call->in_len; i++) {
		uint8_t c = call->in[i];
		call->out[i] = c >= 'a' && c <= 'z' ? c - 32 : c;
	}
	call->out_len = call->in_len;
	return 0;
}
EOF
sdk=$r$pkglibdir/sdk
"$cc" -O2 -ffreestanding -fno-builtin -nostdlib -static -fno-pic -fno-pie -mno-red-zone \
  -fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none \
  -I "$r$includedir/hatchery" -T "$sdk/guest.ld" -Wl,--build-id=none \
  -Wl,-z,noexecstack -Wl,-z,max-page-size=4096 \
  "$t/upper.c" "$sdk/libhatch_guest.a" -o "$t/upper.elf" 2>"$t/cc.log" ||
  { cat "$t/cc.log" >&2; fail "a guest does not build with the installed SDK"; }
printf '[pool "upper"]\nkind = booted\nguest = %s\n' "$t/upper.elf" >"$t/upper.conf"
out=$("$r$sbindir/hatcheryd" --check-config -c "$t/upper.conf" 2>&1) ||
  fail "hatcheryd refuses a guest built with the installed SDK: $out"
echo "check_install: a guest built with the installed SDK alone: accepted"

# --- another prefix is refused, before anything is written ---------------------
if DESTDIR=$t/other cmake --install "$build" --prefix "$t/elsewhere" >"$t/other.log" 2>&1; then
  fail "cmake --install --prefix (not the configured prefix) succeeded"
fi
# (cmake wraps the message: compare with the line breaks taken out)
tr -s ' \n' '  ' <"$t/other.log" | grep -q "was configured for prefix $prefix .* reconfigure with" ||
  { cat "$t/other.log" >&2; fail "no reason given"; }
[[ -z $(find "$t/other" -type f 2>/dev/null) ]] || fail "files were written for the wrong prefix"
echo "check_install: --prefix other than the configured one: refused, nothing written"
