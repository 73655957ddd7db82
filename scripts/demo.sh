#!/usr/bin/env bash
# The main job, on a demo disk kvmify builds itself: a small MBR/NTFS disk
# holding an XP-style Windows tree whose SYSTEM hive (synthesised by kvmify's
# own registry engine, no external data) would stop with 0x7B on QEMU's PIIX3
# IDE controller. kvmify inspects it, plans the fix, and boots it with
# 'kvmify boot' (fix into an overlay, NBD export, QEMU with the matching
# machine); the served disk is inspected again and the source image is shown
# unchanged by hash.
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

step "boot it: kvmify patches into the overlay, serves it and runs QEMU (headless, serial console here)"
# The demo disk's boot code prints a marker on COM1 and powers the VM off,
# so kvmify boot returns with QEMU's exit status.
timeout 120 $kvmify boot "$demo/disk.img" --overlay "$demo/disk.kvmify-overlay" </dev/null | tee "$demo/serial.txt"
grep -q KVMIFY-BOOT-OK "$demo/serial.txt" || { echo "QEMU did not print the boot marker" >&2; exit 1; }

step "the same VM as a command line and as a libvirt domain (nothing is changed)"
$kvmify boot "$demo/disk.img" --overlay "$demo/disk.kvmify-overlay" --dry-run
$kvmify boot "$demo/disk.img" --overlay "$demo/disk.kvmify-overlay" --libvirt > "$demo/domain.xml"
virt-xml-validate "$demo/domain.xml" domain

step "inspect the disk as served (exported from the overlay)"
$kvmify export "$demo/disk.img" "$demo/served.raw" --overlay "$demo/disk.kvmify-overlay"
$kvmify inspect "$demo/served.raw"

step "the overlay holds the patch"
$kvmify overlay info "$demo/disk.kvmify-overlay"

step "the source image is untouched"
after=$(sha256sum < "$demo/disk.img")
echo "sha256 before: ${before%% *}"
echo "sha256 after:  ${after%% *}"
[ "$before" = "$after" ] || { echo "SOURCE IMAGE CHANGED" >&2; exit 1; }
echo "demo complete: $demo/disk.img boots patched with kvmify boot; served copy in $demo/served.raw"
