#!/usr/bin/env bash
# Installs the Debian 12 packages kvmify's tests and demo use as real peers
# (qemu, nbdkit, libnbd tools, ntfs-3g, hivex, fuse3, OVMF and GRUB EFI,
# libvirt's validator, libewf's tools, xmount, gcab/cabextract), only when missing.
set -euo pipefail

pkgs=(qemu-utils qemu-system-x86 nbdkit libnbd-bin python3-libnbd ntfs-3g fdisk
      python3-hivex libhivex-bin libwin-hivex-perl fuse3 fio jq openssl
      ovmf grub-efi-amd64-bin grub-common mtools dosfstools libvirt-clients libxml2-utils
      ewf-tools xmount gcab cabextract sleuthkit)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# FUSE needs the device node; containers sometimes lack it.
if [ ! -e /dev/fuse ] && [ "$(id -u)" -eq 0 ]; then
	mknod -m 666 /dev/fuse c 10 229 2>/dev/null || true
fi
