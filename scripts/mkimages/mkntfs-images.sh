#!/usr/bin/env bash
# mkntfs-images.sh OUTDIR [CORPUS_DISK]
#
# Builds the NTFS test images the ntfs and CLI tests read, with the real
# tools (mkntfs, ntfs-3g, sfdisk): bare partitions with 512 B, 4 KiB and
# 64 KiB clusters, an MBR disk whose NTFS lives in a logical partition, a
# GPT disk, and (when CORPUS_DISK is given) a copy of a Windows-formatted
# disk with files added. Needs root and FUSE. Images are sparse files of a
# few tens of MB. Prints nothing on success. MKIMAGES_ONLY="gpt.img ..."
# limits the build to the named images.
set -euo pipefail
out=$1 corpus=${2:-}
mkdir -p "$out"
mnt=$(mktemp -d)
trap 'mountpoint -q "$mnt" && umount "$mnt"; rmdir "$mnt"' EXIT

want() { [ -z "${MKIMAGES_ONLY:-}" ] || [[ " $MKIMAGES_ONLY " == *" $1 "* ]]; }
mount_img() { ntfs-3g -o "streams_interface=windows${2:+,$2}" "$1" "$mnt"; }
unmount_img() { sync; umount "$mnt"; }

# populate DIR RICH [EXTRA]: the common tree, then the function EXTRA;
# RICH=1 adds the heavy cases.
populate() {
	local d=$1 rich=$2
	echo "hello, kvmify" >"$d/hello.txt"
	: >"$d/empty"
	mkdir -p "$d/Windows/System32/config" "$d/a/b/c/d/e/f/g/h/i/j/k/l"
	echo deep >"$d/a/b/c/d/e/f/g/h/i/j/k/l/deep.txt"
	printf 'ünïcødé\n' >"$d/Ünïcødé – ファイル.txt"
	mkdir "$d/Ω-dir" && echo omega >"$d/Ω-dir/ωμέγα.bin"
	head -c 70000 /dev/urandom >"$d/Windows/System32/config/SOFTWARE"
	# A directory large enough to need an $INDEX_ALLOCATION B+ tree.
	mkdir "$d/many"
	for i in $(seq 1 300); do echo "$i" >"$d/many/file-with-a-longish-name-$i.txt"; done
	# A named stream, read as path:stream.
	echo body >"$d/streams.txt"
	echo "alternate data" >"$d/streams.txt:ads1"
	if [ -n "${3:-}" ]; then "$3" "$d"; fi
	[ "$rich" = 1 ] || return 0
	# Many hard links with long names push $FILE_NAME attributes out of the
	# base record: the file gets an $ATTRIBUTE_LIST.
	mkdir "$d/links"
	head -c 5000 /dev/urandom >"$d/links/target"
	for i in $(seq 1 60); do
		ln "$d/links/target" "$d/links/hard-link-with-a-rather-long-name-to-fill-the-mft-record-$i"
	done
	# Many named streams too.
	echo base >"$d/many-streams"
	for i in $(seq 1 40); do echo "stream $i" >"$d/many-streams:stream-number-$i-with-long-name"; done
	# Sparse: a hole, then data, then a hole.
	truncate -s 3M "$d/sparse.bin"
	echo "in the middle" | dd of="$d/sparse.bin" bs=1 seek=1500000 conv=notrunc status=none
	# A hive-sized file in many runs: lay down 64 KiB fillers, fill the
	# rest of the volume, free every other filler, write the file into the
	# holes, then free the bulk again.
	mkdir "$d/frag"
	for i in $(seq 1 200); do head -c 65536 /dev/zero >"$d/frag/f$i"; done
	dd if=/dev/zero of="$d/frag/bulk" bs=1M status=none 2>/dev/null || true
	for i in $(seq 1 2 200); do rm "$d/frag/f$i"; done
	head -c $((6 * 1024 * 1024 + 1234)) /dev/urandom >"$d/Windows/System32/config/SYSTEM"
	rm "$d/frag/bulk"
}

# add_compressed DIR: a directory whose new files are compressed.
add_compressed() {
	mkdir "$1/compressed"
	python3 -c 'import os,sys; os.setxattr(sys.argv[1], "system.ntfs_attrib_be", bytes.fromhex("00000800"))' "$1/compressed"
	for i in $(seq 1 2000); do echo "line $i of a compressible text file"; done >"$1/compressed/text.txt"
	head -c 100000 /dev/urandom >"$1/compressed/random.bin"
	{ head -c 30000 /dev/zero; head -c 20000 /dev/urandom; head -c 70000 /dev/zero; } >"$1/compressed/mixed.bin"
}

# bare CLUSTER SIZE_MB NAME RICH
bare() {
	want "$3" || return 0
	local img="$out/$3"
	truncate -s "$2M" "$img"
	mkntfs -q -F -f -c "$1" -s 512 -p 0 -H 255 -S 63 -L "kvmify-$1" "$img" >/dev/null 2>&1
	mount_img "$img" compression
	if [ "$1" -le 4096 ]; then populate "$mnt" "$4" add_compressed; else populate "$mnt" "$4"; fi
	unmount_img
}

bare 4096 40 bare-4k.img 1
bare 512 24 bare-512.img 0
bare 65536 48 bare-64k.img 0

# A volume whose $MFT runlist outgrows record 0 and continues in an
# extension record through $ATTRIBUTE_LIST, as on old busy Windows volumes:
# fill the volume with 1.5 KiB files, free every other one, then create
# empty files until the MFT has grown into the scattered holes; free most
# of them again and add a few files.
frag_mft() {
	local img="$out/frag-mft.img"
	truncate -s 8M "$img"
	mkntfs -q -F -f -c 512 -s 512 -p 0 -H 255 -S 63 -L kvmify-fragmft "$img" >/dev/null 2>&1
	mount_img "$img"
	mkdir "$mnt/mftfill" "$mnt/mftgrow"
	python3 - "$mnt" <<'PY'
import os, sys
d = sys.argv[1]
n = 0
try:
    while True:
        with open(f"{d}/mftfill/{n}", "wb") as f:
            f.write(b"x" * 1536)
        n += 1
except OSError:
    pass
for i in range(0, n, 2):
    os.remove(f"{d}/mftfill/{i}")
m = 0
try:
    while m < 20000:
        open(f"{d}/mftgrow/{m}", "wb").close()
        m += 1
except OSError:
    pass
for i in range(n):
    if i % 2 and i % 97 != 1:
        os.remove(f"{d}/mftfill/{i}")
for i in range(m):
    if i % 211:
        os.remove(f"{d}/mftgrow/{i}")
PY
	# A few files of each kind for the oracle walk (the full common tree
	# would cost hundreds of ntfscat runs here).
	echo "hello, kvmify" >"$mnt/hello.txt"
	mkdir -p "$mnt/Windows/System32/config"
	head -c 70000 /dev/urandom >"$mnt/Windows/System32/config/SYSTEM"
	printf 'ünïcødé\n' >"$mnt/Ünïcødé.txt"
	unmount_img
}
want frag-mft.img && frag_mft

# MBR: a primary FAT-typed partition, then NTFS inside a logical partition.
mbr_logical() {
img="$out/mbr-logical.img"
truncate -s 48M "$img"
printf 'label: dos\nstart=2048, size=4M, type=c\ntype=5\nsize=8M, type=83\nsize=24M, type=7\n' | sfdisk -q "$img"
start=$(sfdisk --json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][-1]["start"])')
size=$(sfdisk --json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][-1]["size"])')
truncate -s $((size * 512)) "$out/part.tmp"
mkntfs -q -F -f -c 4096 -s 512 -p "$start" -H 255 -S 63 "$out/part.tmp" >/dev/null 2>&1
mount_img "$out/part.tmp"
populate "$mnt" 0
# A hibernation file header, as Windows leaves after hibernating.
{ printf 'HIBR'; head -c 8188 /dev/zero; } >"$mnt/hiberfil.sys"
unmount_img
dd if="$out/part.tmp" of="$img" bs=512 seek="$start" conv=notrunc,sparse status=none
rm "$out/part.tmp"

}
want mbr-logical.img && mbr_logical

# GPT with a Microsoft basic data partition as the second entry.
gpt() {
img="$out/gpt.img"
truncate -s 40M "$img"
printf 'label: gpt\nsize=4M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI"\nsize=30M, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="Basic data partition"\n' | sfdisk -q "$img"
start=$(sfdisk --json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][1]["start"])')
size=$(sfdisk --json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][1]["size"])')
truncate -s $((size * 512)) "$out/part.tmp"
mkntfs -q -F -f -c 4096 -s 512 -p "$start" "$out/part.tmp" >/dev/null 2>&1
mount_img "$out/part.tmp"
populate "$mnt" 0
unmount_img
dd if="$out/part.tmp" of="$img" bs=512 seek="$start" conv=notrunc,sparse status=none
rm "$out/part.tmp"

}
want gpt.img && gpt

# A copy of the Windows-formatted corpus disk with files added by ntfs-3g.
if [ -n "$corpus" ] && want win-copy.img; then
	img="$out/win-copy.img"
	cp --sparse=always "$corpus" "$img"
	chmod u+w "$img"
	# The corpus disk's only partition starts at LBA 128.
	dd if="$img" of="$out/part.tmp" bs=512 skip=128 status=none
	mount_img "$out/part.tmp"
	populate "$mnt" 0
	unmount_img
	dd if="$out/part.tmp" of="$img" bs=512 seek=128 conv=notrunc status=none
	rm "$out/part.tmp"
fi
