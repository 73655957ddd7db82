#!/usr/bin/env bash
# mkdisk.sh OUT SIZE_MB TREE_DIR [CLUSTER]
#
# Builds a whole-disk raw image like a small physical Windows disk: an MBR
# with one NTFS partition (type 0x07, active) at 1 MiB holding a copy of
# TREE_DIR, and boot code in the MBR that prints "KVMIFY-BOOT-OK" on the
# first serial port and powers off, so a test can see QEMU boot the disk.
# Needs mkntfs and ntfs-3g (root, FUSE) and sfdisk.
set -euo pipefail
out=$1 size_mb=$2 tree=$3 cluster=${4:-4096}
[ -d "$tree" ] || { echo "mkdisk: $tree is not a directory" >&2; exit 2; }
work=$(mktemp -d)
trap 'mountpoint -q "$work/mnt" && umount "$work/mnt"; rm -rf "$work"' EXIT

part_start=$((1024 * 1024))
part_size=$(( size_mb * 1024 * 1024 - part_start ))
truncate -s "${size_mb}M" "$out.tmp"
printf 'label: dos\nlabel-id: 0x4b564d49\nstart=2048, type=7, bootable\n' | sfdisk -q "$out.tmp"

truncate -s "$part_size" "$work/part.img"
# mkntfs warns that a file is not a block device; show its output only on failure.
if ! mkntfs -q -F -f -c "$cluster" -s 512 -p 2048 -H 255 -S 63 -L KVMIFYDEMO "$work/part.img" >"$work/mkntfs.log" 2>&1; then
	cat "$work/mkntfs.log" >&2; exit 1
fi
mkdir "$work/mnt"
ntfs-3g "$work/part.img" "$work/mnt"
# Real Windows files are not sparse, and the NTFS planner refuses sparse
# files, so never let cp punch holes.
cp -r --sparse=never "$tree"/. "$work/mnt/"
umount "$work/mnt"
dd if="$work/part.img" of="$out.tmp" bs=1M seek=1 conv=notrunc,sparse status=none

# MBR boot code (real mode, loaded at 0x7C00): write the message to COM1
# (port 0x3F8) byte by byte, then power the machine off through the ACPI
# PM1a control register SeaBIOS maps at 0x604 on QEMU's pc and q35 machines
# (SLP_EN with sleep type 0, which QEMU's _S5 names), so a VM started for it
# exits by itself; halt if that does nothing. Hand-assembled:
#   cli; xor ax,ax; mov ds,ax; mov si,0x7C1D; mov dx,0x3F8
#   l: lodsb; test al,al; jz d; out dx,al; jmp l
#   d: mov dx,0x604; mov ax,0x2000; out dx,ax
#   h: hlt; jmp h
#   msg at 0x7C1D
code='\xfa\x31\xc0\x8e\xd8\xbe\x1d\x7c\xba\xf8\x03\xac\x84\xc0\x74\x03\xee\xeb\xf8\xba\x04\x06\xb8\x00\x20\xef\xf4\xeb\xfd'
{ printf "$code"; printf 'KVMIFY-BOOT-OK\r\n\0'; } | dd of="$out.tmp" bs=1 conv=notrunc status=none
mv "$out.tmp" "$out"
