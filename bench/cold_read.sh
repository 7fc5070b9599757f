# Sourced by bench/tiering.sh and bench/backups.sh: a cold sequential read
# of a whole volume beside a plain parallel-GET client, like for like.
# Both sides discard what they read (nbdcopy to null:, the plain client
# drops each body); each run starts from a freshly started daemon (nothing
# cached) and alternates with the plain client; figures are medians of the
# runs. Then one more read goes to a file (not a pipe: nbdcopy copies one
# request at a time into a pipe), is checked against the source and timed
# too (nbdcopy writing it to disk shares the two cores with LocalStack).
#
# cold_read_vs_plain RESTART URI SRC SIZE_MIB RUNS
#   RESTART: a command that restarts the daemon; URI: the volume's NBD URI;
#   SRC: a file with the volume's content (also the plain client's objects).
# Sets READS and GETS (each run's MiB/s), READ and GET (their medians) and
# TOFILE (MiB/s of the checked read to a file). Needs $PY (the emulators'
# Python with boto3).
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
mib_per_s() { awk -v s="$1" -v a="$2" -v b="$3" 'BEGIN {printf "%.1f", s/(b-a)}'; }

cold_read_vs_plain() {
  local restart=$1 uri=$2 src=$3 size_mib=$4 runs=$5 t0 t1
  READS=(); GETS=()
  for _ in $(seq "$runs"); do
    $restart
    t0=$(now); nbdcopy "$uri" null:; t1=$(now)
    READS+=("$(mib_per_s "$size_mib" "$t0" "$t1")")
    GETS+=("$("$PY" bench/plain_s3.py get "$src" 8)")
  done
  READ=$(printf '%s\n' "${READS[@]}" | median)
  GET=$(printf '%s\n' "${GETS[@]}" | median)
  $restart
  t0=$(now); nbdcopy "$uri" "$src.back"; t1=$(now)
  cmp "$src.back" "$src"; rm -f "$src.back"
  TOFILE=$(mib_per_s "$size_mib" "$t0" "$t1")
}
