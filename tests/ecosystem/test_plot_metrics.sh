#!/usr/bin/env bash
# eco_plot_metrics: tools/plot_metrics.sh draws a PNG from an rbm_dist metrics file.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
command -v gnuplot >/dev/null || skip "gnuplot is not installed (Debian: apt-get install gnuplot-nox)"
plot=$src/tools/plot_metrics.sh

# Three epochs of an old run, then a new run appended (epoch 1 again), with a NaN (null).
m=$tmp/metrics.jsonl
for e in 1 2 3; do
  echo "{\"epoch\": $e, \"step\": $((e * 10)), \"recon_error\": 0.0$((9 - e)), \"free_energy_train\": -$((100 + e)), \"free_energy_valid\": -$((99 + e)).5, \"samples_per_s\": 1000, \"seconds\": $e, \"epoch_seconds\": 1, \"reduce_seconds\": 0.1, \"ranks\": 2}"
done >"$m"
for e in 1 2 3 4 5 6; do
  fv=-$((98 + 2 * e)).25
  ((e == 4)) && fv=null
  echo "{\"epoch\": $e, \"step\": $((e * 10)), \"recon_error\": 0.0$((8 - e))5, \"free_energy_train\": -$((100 + 2 * e)), \"free_energy_valid\": $fv, \"samples_per_s\": 1000, \"seconds\": $e, \"epoch_seconds\": 1, \"reduce_seconds\": 0.1, \"ranks\": 2}"
done >>"$m"

bash "$plot" "$m" "$tmp/curves.png" >"$tmp/out" 2>"$tmp/err" || fail "plot_metrics.sh exited with $?: $(cat "$tmp/err")"
grep -q "over 6 epochs" "$tmp/out" || fail "expected the newest run only (6 epochs): $(cat "$tmp/out")"
info=$(png_check "$tmp/curves.png" 900 760)
size=${info#* }
((size > 15000)) || fail "curves.png is only $size bytes: no curves drawn?"
ok "curves.png: $info bytes"

# Bad input: exit 2 and one line on stderr naming the file.
echo '{"loss": 1}' >"$tmp/other.jsonl"
for bad in "$tmp/missing.jsonl" "$tmp/other.jsonl" "$src/README.md"; do
  rc=0
  bash "$plot" "$bad" "$tmp/bad.png" >/dev/null 2>"$tmp/err" || rc=$?
  [[ $rc == 2 ]] || fail "plot_metrics.sh $bad: exit $rc, expected 2"
  [[ $(wc -l <"$tmp/err") == 1 ]] || fail "plot_metrics.sh $bad: not one line: $(cat "$tmp/err")"
  grep -qF "$bad" "$tmp/err" || fail "plot_metrics.sh $bad: the message does not name the file: $(cat "$tmp/err")"
  [[ ! -e $tmp/bad.png ]] || fail "plot_metrics.sh $bad: wrote a PNG anyway"
  ok "bad input $bad: $(cat "$tmp/err")"
done
