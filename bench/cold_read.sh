# Sourced by bench/tiering.sh and bench/backups.sh: a cold sequential read
# of a whole volume beside a plain parallel-GET client, like for like.
# Both sides discard what they read (nbdcopy to null:, the plain client
# drops each body); each run starts from a freshly started daemon (nothing
# cached) and alternates with the plain client; figures are medians of the
# runs. Then one more read goes to a file (not a pipe: nbdcopy copies one
# request at a time into a pipe), is checked against the source and timed
# too (nbdcopy writing it to disk shares the two cores with LocalStack).
#
# Where the two cores go is measured beside the speed: CPU seconds per GiB
# read of the daemon, of the plain client and of LocalStack serving each
# (the emulator's CPU is what the two clients share the machine with).
#
# cold_read_vs_plain RESTART URI SRC SIZE_MIB RUNS
#   RESTART: a command that restarts the daemon and sets DAEMON_PID; URI:
#   the volume's NBD URI; SRC: a file with the volume's content (also the
#   plain client's objects).
# Also defines median, now, ratio and mib_per_s for the scripts that source it.
# Sets READS and GETS (each run's MiB/s), READ and GET (their medians),
# PAIRED (the median of each run's READ/GET), TOFILE (MiB/s of the checked
# read to a file) and CPU (a Markdown-ready line of CPU s/GiB medians).
# Needs $PY (the emulators' Python with boto3) and $TIERD_EMU_RUN.
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
mib_per_s() { awk -v s="$1" -v a="$2" -v b="$3" 'BEGIN {printf "%.1f", s/(b-a)}'; }
# CPU seconds a process has used so far (user + system, all its threads).
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
per_gib() { awk -v a="$1" -v b="$2" -v m="$3" 'BEGIN {printf "%.2f", (b - a) * 1024 / m}'; }

cold_read_vs_plain() {
  local restart=$1 uri=$2 src=$3 size_mib=$4 runs=$5 t0 t1 c0 c1 l0 l1 l2 out
  local ls_pid r_ratio=() t_cpu=() p_cpu=() lt_cpu=() lp_cpu=()
  ls_pid=$(cat "$TIERD_EMU_RUN/localstack.pid")
  READS=(); GETS=()
  for _ in $(seq "$runs"); do
    $restart
    l0=$(cpu_s "$ls_pid"); c0=$(cpu_s "$DAEMON_PID")
    t0=$(now); nbdcopy "$uri" null:; t1=$(now)
    c1=$(cpu_s "$DAEMON_PID"); l1=$(cpu_s "$ls_pid")
    READS+=("$(mib_per_s "$size_mib" "$t0" "$t1")")
    out=$("$PY" bench/plain_s3.py get "$src" 8)
    l2=$(cpu_s "$ls_pid")
    GETS+=("${out% *}"); p_cpu+=("${out#* }")
    t_cpu+=("$(per_gib "$c0" "$c1" "$size_mib")")
    lt_cpu+=("$(per_gib "$l0" "$l1" "$size_mib")"); lp_cpu+=("$(per_gib "$l1" "$l2" "$size_mib")")
    r_ratio+=("$(ratio "${READS[-1]}" "${GETS[-1]}")")
  done
  READ=$(printf '%s\n' "${READS[@]}" | median)
  GET=$(printf '%s\n' "${GETS[@]}" | median)
  PAIRED=$(printf '%s\n' "${r_ratio[@]}" | median)
  CPU="tierd $(printf '%s\n' "${t_cpu[@]}" | median), plain client $(printf '%s\n' "${p_cpu[@]}" | median); LocalStack serving tierd $(printf '%s\n' "${lt_cpu[@]}" | median), serving the plain client $(printf '%s\n' "${lp_cpu[@]}" | median)"
  $restart
  t0=$(now); nbdcopy "$uri" "$src.back"; t1=$(now)
  cmp "$src.back" "$src"; rm -f "$src.back"
  TOFILE=$(mib_per_s "$size_mib" "$t0" "$t1")
}
