#!/bin/sh
# mkinitramfs.sh OUT INIT: a gzipped newc cpio whose /init is INIT (a
# static binary), with the mount points it uses. No device nodes: the
# kernel's built-in initramfs already has /dev/console, and INIT mounts
# devtmpfs. Needs cpio and gzip, not root.
set -eu
out=$1 init=$2
r=$(mktemp -d)
trap 'rm -rf "$r"' EXIT
mkdir -p "$r/proc" "$r/sys" "$r/dev"
cp "$init" "$r/init"
chmod 755 "$r/init"
(cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -9 >"$out.tmp")
mv "$out.tmp" "$out"
