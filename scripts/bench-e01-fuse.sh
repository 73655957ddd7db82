#!/usr/bin/env bash
# bench-e01-fuse.sh E01 [ROUNDS]
#
# Reads one E01 set through three FUSE exports side by side, interleaved
# per round: kvmify mount (disk.img, --no-patch --ephemeral), ewfmount
# (libewf) and xmount --in ewf. Figures per target and round: seq_buf
# (dd bs=1M iflag=nocache), seq_direct (dd bs=1M iflag=direct, MiB/s) and
# rr_qd1 (fio 4 KiB randread, psync, direct when the file allows, IOPS);
# then each daemon's peak RSS (VmHWM, KiB). kvmify mount needs a Windows
# install on the image (it reads the SYSTEM hive for its report files).
# Env: KVMIFY=bin/kvmify RUNTIME=4. Needs root (FUSE), ewf-tools, xmount,
# fio, jq, bc.
set -u
E01=$(realpath "$1"); ROUNDS=${2:-3}; KVMIFY=$(realpath "${KVMIFY:-bin/kvmify}"); RUNTIME=${RUNTIME:-4}
W=$(mktemp -d /tmp/e01fuse.XXXX)
mkdir -p "$W/mk" "$W/me" "$W/mx"
setsid "$KVMIFY" mount --no-patch --ephemeral "$E01" "$W/mk" > "$W/mk.log" 2>&1 &
KPID=$!
ewfmount "$E01" "$W/me" > "$W/me.log" 2>&1
xmount --in ewf "$E01" --out raw "$W/mx" > "$W/mx.log" 2>&1
for _ in $(seq 150); do [ -e "$W/mk/disk.img" ] && break; sleep 0.2; done
declare -A F=([kvmify]=$W/mk/disk.img [ewfmount]=$W/me/ewf1 [xmount]=$(ls "$W"/mx/*.dd))
declare -A P=([kvmify]=$KPID [ewfmount]=$(pgrep -n -x ewfmount) [xmount]=$(pgrep -n -x xmount))
mib=$(( $(stat -c %s "${F[kvmify]}") / 1048576 ))
now() { date +%s.%N; }
for r in $(seq "$ROUNDS"); do
  for t in kvmify ewfmount xmount; do
    f=${F[$t]}
    dd if="$f" iflag=nocache count=0 status=none 2>/dev/null
    t0=$(now); dd if="$f" of=/dev/null bs=1M iflag=nocache status=none; t1=$(now)
    echo "seq_buf $t $r $(echo "$mib/($t1-$t0)" | bc -l)"
    t0=$(now)
    if dd if="$f" of=/dev/null bs=1M iflag=direct status=none 2>/dev/null; then
      t1=$(now); echo "seq_direct $t $r $(echo "$mib/($t1-$t0)" | bc -l)"
    fi
    a=(--name=rr --filename="$f" --ioengine=psync --rw=randread --bs=4k --time_based --runtime="$RUNTIME" --norandommap --randrepeat=1 --output-format=json)
    fio "${a[@]}" --direct=1 > "$W/fio.json" 2>/dev/null || fio "${a[@]}" --invalidate=1 > "$W/fio.json" 2>/dev/null
    echo "rr_qd1 $t $r $(jq '.jobs[0].read.iops' "$W/fio.json")"
  done
done
for t in kvmify ewfmount xmount; do
  echo "peak_rss_kib $t $(awk '/VmHWM/ {print $2}' "/proc/${P[$t]}/status" 2>/dev/null)"
done
fusermount3 -u "$W/me"; fusermount3 -u "$W/mx"; fusermount3 -u "$W/mk"
sleep 1; kill "$KPID" 2>/dev/null; wait "$KPID" 2>/dev/null
rm -rf "$W"
