#!/usr/bin/env bash
# Cost-aware auto against fixed cooling periods: `tierd simulate` on five
# 90-day (30 for the MSR-format sample) workloads, each policy's monthly cost
# over the offline optimum's for the same trace and prices (S3 Standard
# list prices, EBS gp3 local), thrash (extents back within a day of being
# tiered) as a % of extents tiered, and the share of read requests that
# touched cold data. The workloads come from tiering/examples/gen_workloads.rs
# (archive, database with a weekly full scan, VM images with a moving
# working set, nightly batch) and gen_trace.rs (the MSR-format sample of
# bench/simulate.sh, 1 M events). Results go to bench/out/policies.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out
DIR=${TRACE_DIR:-/tmp/tierd-policies}
mkdir -p "$OUT" "$DIR"
cargo build --release -p tiering --bin tierd --example gen_workloads --example gen_trace
target/release/examples/gen_workloads "$DIR"
[ -s "$DIR/msr-sample.csv" ] || target/release/examples/gen_trace 1000000 "$DIR/msr-sample.csv"
# The cost-aware classes: cooling_period = "auto" with the default and
# never retrievals, with a 5% thrash bound, and with write overlays (with
# and without a 5% cold-read guard).
cat >"$DIR/policies.toml" <<TOML
[backends.store]
kind = "fs"
root = "$DIR/objects"
[classes.auto-auto]
backend = "store"
tiering_policy = "auto"
cooling_period = "auto"
[classes.auto-auto-never]
backend = "store"
tiering_policy = "auto"
cooling_period = "auto"
retrieval_policy = "never"
[classes.auto-auto-thrash5]
backend = "store"
tiering_policy = "auto"
cooling_period = "auto"
retrieval_policy = "never"
max_thrash_fraction = 0.05
[classes.auto-auto-overlay]
backend = "store"
tiering_policy = "auto"
cooling_period = "auto"
write_overlay = true
[classes.auto-auto-never-overlay]
backend = "store"
tiering_policy = "auto"
cooling_period = "auto"
retrieval_policy = "never"
write_overlay = true
[classes.auto-auto-never-overlay-cold5]
backend = "store"
tiering_policy = "auto"
cooling_period = "auto"
retrieval_policy = "never"
write_overlay = true
max_cold_read_fraction = 0.05
TOML
CLASSES=(auto:31d auto:7d auto:1d all auto-auto auto-auto-never auto-auto-thrash5 auto-auto-overlay auto-auto-never-overlay auto-auto-never-overlay-cold5)
args=(-c "$DIR/policies.toml")
for c in "${CLASSES[@]}"; do args+=(--class "$c"); done
for w in archive database vm batch msr-sample; do
  target/release/tierd simulate --trace "$DIR/$w.csv" "${args[@]}" \
    --scan-interval 1h --thrash-window 1d --json >"$DIR/$w.json"
done
python3 - "$DIR" "${CLASSES[@]}" <<'EOF' | tee "$OUT/policies.md"
import json, sys
d, classes = sys.argv[1], sys.argv[2:]
work = ["archive", "database", "vm", "batch", "msr-sample"]
rows = {c: [] for c in classes}
opt_rows = []
for w in work:
    r = json.load(open(f"{d}/{w}.json"))
    opt = r["optimum"][0]
    o = opt["cost"]["total"]
    opt_rows.append((opt["thrash"], opt["extents_tiered"]))
    for p in r["policies"]:
        ratio = p["cost"]["total"] / o
        thrash = 100.0 * p["thrash"] / max(p["extents_tiered"], 1)
        cold = 100.0 * p["cold_read_requests"] / max(p["read_requests"], 1)
        rows[p["name"]].append((ratio, thrash, cold, p.get("cooling_ms", [None])[0] if p.get("cooling_ms") else None))
print("cost ÷ optimum (thrash % of tiered extents, % of reads cold)\n")
print("| policy | " + " | ".join(work) + " | mean |")
print("|---|" + "---|" * (len(work) + 1))
for c in classes:
    cells = [f"{x:.2f} ({t:.0f}%, {k:.1f}%)" for x, t, k, _ in rows[c]]
    mean = sum(x for x, _, _, _ in rows[c]) / len(rows[c])
    print(f"| {c} | " + " | ".join(cells) + f" | {mean:.2f} |")
cells = [f"1.00 ({100.0 * t / max(n, 1):.0f}%)" for t, n in opt_rows]
print("| optimum | " + " | ".join(cells) + " | 1.00 |")
print()
for c in classes:
    cool = [x for _, _, _, x in rows[c]]
    if any(cool):
        print(f"{c}: cooling at the end " + ", ".join(
            f"{w} {ms / 3.6e6:.1f} h" for w, ms in zip(work, cool) if ms))
EOF
