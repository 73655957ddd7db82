#!/usr/bin/env bash
# The main job, on a demo disk kvmify builds itself: a small MBR/NTFS disk
# holding an XP-style Windows tree whose SYSTEM hive (synthesised by kvmify's
# own registry engine, no external data) would stop with 0x7B on QEMU's PIIX3
# IDE controller. kvmify inspects it, serves it patched over NBD, and the
# served disk is inspected again; QEMU boots from the export; the source image
# is shown unchanged by hash.
#
# Debian 12, as root (installs qemu, ntfs-3g, libnbd tools when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
scripts/install-deps.sh

demo=${DEMO_DIR:-demo}
rm -rf "$demo"
mkdir -p "$demo/tree/Windows/System32/config" "$demo/tree/Windows/System32/drivers"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build kvmify"
go build -o bin/kvmify ./cmd/kvmify
kvmify=bin/kvmify

step "build the demo disk ($demo/disk.img)"
go run ./internal/demodisk/mkhive "$demo/tree/Windows/System32/config/SYSTEM"
for d in atapi intelide pciide pciidex disk classpnp; do
	printf 'MZ demo driver %s\n' "$d" > "$demo/tree/Windows/System32/drivers/$d.sys"
done
printf '[boot loader]\r\ndefault=multi(0)disk(0)rdisk(0)partition(1)\\WINDOWS\r\n' > "$demo/tree/boot.ini"
scripts/mkdisk.sh "$demo/disk.img" 64 "$demo/tree"
chmod 0444 "$demo/disk.img"
before=$(sha256sum < "$demo/disk.img")

step "inspect: what QEMU would do with the disk as it is"
$kvmify inspect "$demo/disk.img"

step "plan: what the boot fix changes (nothing is written)"
$kvmify plan "$demo/disk.img"

step "serve it patched over NBD"
sock=$(realpath "$demo")/nbd.sock
$kvmify serve "$demo/disk.img" --overlay "$demo/disk.kvmify-overlay" --unix "$sock" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.1; done
uri="nbd+unix:///?socket=$sock"
nbdinfo "$uri"

step "QEMU boots from the export (the demo disk's boot code prints a marker)"
timeout 30 qemu-system-x86_64 -display none -no-reboot -m 64 -serial "file:$demo/serial.txt" \
	-drive "file=$uri,format=raw,if=ide" &
vm=$!
for _ in $(seq 300); do grep -q KVMIFY-BOOT-OK "$demo/serial.txt" 2>/dev/null && break; sleep 0.1; done
kill $vm 2>/dev/null || true; wait $vm 2>/dev/null || true
echo "serial console: $(tr -d '\r\0' < "$demo/serial.txt")"

step "inspect the served disk"
qemu-img convert -f raw -O raw "$uri" "$demo/served.raw"
$kvmify inspect "$demo/served.raw"

step "stop the server; the overlay holds the patch"
kill -TERM $server; wait $server
trap - EXIT
$kvmify overlay info "$demo/disk.kvmify-overlay"

step "the source image is untouched"
after=$(sha256sum < "$demo/disk.img")
echo "sha256 before: ${before%% *}"
echo "sha256 after:  ${after%% *}"
[ "$before" = "$after" ] || { echo "SOURCE IMAGE CHANGED" >&2; exit 1; }
echo "demo complete: $demo/disk.img boots patched via $uri; served copy in $demo/served.raw"
