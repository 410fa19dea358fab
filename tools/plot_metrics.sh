#!/usr/bin/env bash
# tools/plot_metrics.sh — learning curves of an rbm_dist run as a PNG, drawn by gnuplot.
#
#   bash tools/plot_metrics.sh METRICS.jsonl OUT.png [TITLE]
#
# METRICS.jsonl is what `rbm_dist --metrics FILE` writes (one JSON object per epoch).
# Top panel: reconstruction error against epoch. Bottom panel: mean free energy of the
# training and validation (monitor) images (left axis) and their gap, valid - train,
# on the right axis: a gap that keeps growing means overfitting (Hinton 2010, §6).
#
# A metrics file is appended to: a resumed run that redid epochs keeps the last line of
# each epoch; a line with epoch 1 after others starts a new run and only the newest run
# is drawn. `null` values (NaN/Inf in the run) are left out of the curves.
# Needs gnuplot (Debian: gnuplot-nox) and perl (JSON::PP is part of perl's core).
set -euo pipefail
me=plot_metrics.sh
die() { echo "$me: $*" >&2; exit 2; }

(($# >= 2 && $# <= 3)) || die "usage: $me METRICS.jsonl OUT.png [TITLE]"
metrics=$1 out=$2
title=${3:-$(basename -- "$metrics")}
[[ -r $metrics ]] || die "$metrics: no such file or not readable (write it with rbm_dist --metrics FILE)"
[[ $out == *.png ]] || die "$out: the output must be a .png file"
outdir=$(dirname -- "$out")
[[ -d $outdir ]] || die "$out: folder $outdir does not exist"
command -v gnuplot >/dev/null 2>&1 ||
  { echo "$me: gnuplot not found (Debian: apt-get install gnuplot-nox)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
data=$tmp/metrics.dat

# JSON lines -> "epoch recon F_train F_valid gap" columns (NaN = no value).
perl -MJSON::PP -e '
  use strict; use warnings;
  my ($file, $out) = @ARGV;
  open(my $in, "<", $file) or die "$file: $!\n";
  my (%row, $n);
  while (my $line = <$in>) {
    next if $line =~ /^\s*$/;
    my $j = eval { JSON::PP::decode_json($line) };
    die "$file:$.: not a JSON object (is this an rbm_dist --metrics file?)\n"
      unless ref $j eq "HASH";
    die "$file:$.: no \"epoch\" key (is this an rbm_dist --metrics file?)\n"
      unless defined $j->{epoch};
    %row = () if $j->{epoch} == 1;   # a new run appended to the same file
    $row{$j->{epoch}} = $j;
    $n++;
  }
  die "$file: no metrics lines (the run has not finished an epoch yet?)\n" unless $n;
  open(my $o, ">", $out) or die "$out: $!\n";
  my $v = sub { defined $_[0] ? $_[0] : "NaN" };
  for my $e (sort { $a <=> $b } keys %row) {
    my $j = $row{$e};
    my ($t, $va) = ($j->{free_energy_train}, $j->{free_energy_valid});
    my $gap = (defined $t && defined $va) ? $va - $t : undef;
    print $o join(" ", $e, $v->($j->{recon_error}), $v->($t), $v->($va), $v->($gap)), "\n";
  }
' "$metrics" "$data" 2>"$tmp/err" || die "$(head -n 1 "$tmp/err")"

epochs=$(wc -l <"$data")
xtics=""
((epochs <= 20)) && xtics="set xtics 1"   # whole epochs only
terminal="pngcairo noenhanced size 900,760 font 'sans,10'"
gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1 || terminal="png noenhanced size 900,760"
# gnuplot string literals: escape backslashes and double quotes of the title and path.
q() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }

gnuplot >"$tmp/gnuplot.log" 2>&1 <<EOF || die "gnuplot failed: $(grep -v '^\s*$' "$tmp/gnuplot.log" | tail -n 1)"
set terminal $terminal
set output $(q "$out")
set datafile missing "NaN"
set multiplot layout 2,1 title $(q "$title")
set grid
set key top right
set xlabel "epoch"
$xtics
set ylabel "reconstruction error (MSE per pixel)"
plot $(q "$data") using 1:2 with linespoints pt 7 ps 0.6 lw 2 title "reconstruction error"
set ylabel "mean free energy"
set y2label "gap (valid - train)"
set ytics nomirror
set y2tics
set key below horizontal
plot $(q "$data") using 1:3 with linespoints pt 7 ps 0.6 lw 2 title "F train", \
     '' using 1:4 with linespoints pt 5 ps 0.6 lw 2 title "F validation", \
     '' using 1:5 axes x1y2 with linespoints pt 9 ps 0.7 lw 1 dt 2 title "gap (right axis)"
unset multiplot
EOF
[[ -s $out ]] || die "gnuplot wrote no $out"
echo "plot: wrote $out: reconstruction error and free energies (train, validation, gap) over $epochs epochs"
