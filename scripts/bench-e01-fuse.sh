#!/usr/bin/env bash
# bench-e01-fuse.sh E01 [ROUNDS]
#
# Reads one E01 set through three FUSE exports side by side, interleaved
# per round: kvmify mount (disk.img, --no-patch --ephemeral), ewfmount
# (libewf) and xmount --in ewf. Figures per target and round: rr_qd1 (fio
# 4 KiB randread, psync, direct when the file allows, IOPS; first, so round
# 1 is random reads of a freshly started daemon), seq_buf (dd bs=1M
# iflag=nocache) and seq_direct (dd bs=1M iflag=direct, MiB/s); round 1's
# sequential reads are the first pass over the image;
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
    a=(--name=rr --filename="$f" --ioengine=psync --rw=randread --bs=4k --time_based --runtime="$RUNTIME" --norandommap --randrepeat=1 --output-format=json)
    if fio "${a[@]}" --direct=1 > "$W/fio.json" 2>"$W/fio.err" || fio "${a[@]}" --invalidate=1 > "$W/fio.json" 2>"$W/fio.err"; then
      echo "rr_qd1 $t $r $(jq '.jobs[0].read.iops' "$W/fio.json")"
    else
      echo "rr_qd1 $t $r failed: $(grep -m1 -oh 'error=[^"]*' "$W/fio.err" "$W/fio.json")"
    fi
    dd if="$f" iflag=nocache count=0 status=none 2>/dev/null
    t0=$(now); dd if="$f" of=/dev/null bs=1M iflag=nocache status=none; t1=$(now)
    echo "seq_buf $t $r $(echo "$mib/($t1-$t0)" | bc -l)"
    t0=$(now)
    if dd if="$f" of=/dev/null bs=1M iflag=direct status=none 2>/dev/null; then
      t1=$(now); echo "seq_direct $t $r $(echo "$mib/($t1-$t0)" | bc -l)"
    fi
  done
done | tee "$W/res"
# Per figure: the median of each target, and kvmify's ratio to the faster
# peer paired within each round (median over rounds, and round 1 alone).
awk '$4 ~ /^[0-9.]+$/ { v[$1" "$2" "$3]=$4; f[$1]=1; n[$1" "$2]++; x[$1" "$2" "n[$1" "$2]]=$4 }
function med(k, m,  i, j, t, a) { for (i = 1; i <= m; i++) a[i] = x[k" "i]
  for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
END { for (g in f) { line = "median " g
    for (t in n) { split(t, q, " "); if (q[1] == g) line = line sprintf(" %s=%.0f", q[2], med(t, n[t])) }
    m = 0; for (r = 1; (g" kvmify "r) in v; r++) { b = v[g" ewfmount "r]; if (v[g" xmount "r] > b) b = v[g" xmount "r]
      if (b > 0) { m++; x["ratio "g" "m] = v[g" kvmify "r] / b; if (r == 1) first = x["ratio "g" "m] } }
    if (m) line = line sprintf(" kvmify/faster-peer=%.2f (round 1: %.2f)", med("ratio "g, m), first)
    print line } }' "$W/res"
for t in kvmify ewfmount xmount; do
  echo "peak_rss_kib $t $(awk '/VmHWM/ {print $2}' "/proc/${P[$t]}/status" 2>/dev/null)"
done
fusermount3 -u "$W/me"; fusermount3 -u "$W/mx"; fusermount3 -u "$W/mk"
sleep 1; kill "$KPID" 2>/dev/null; wait "$KPID" 2>/dev/null
rm -rf "$W"
