#!/usr/bin/perl
# tests/slurm/make_idx.pl DIR N_TRAIN N_TEST — writes small MNIST-style IDX files
# (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-*) of 28x28 synthetic
# patterns into DIR: class c = i % 10 is a bar (5 horizontal, 5 vertical positions)
# plus deterministic noise. Perl because it is an essential package on Debian.
use strict;
use warnings;

my ($dir, $ntrain, $ntest) = @ARGV;
die "usage: $0 DIR N_TRAIN N_TEST\n" unless defined $ntest;
my $R = 28;
my $state = 12345;
sub rnd { $state = ($state * 1103515245 + 12345) % 2147483648; return $state / 2147483648; }

sub image {
  my ($c) = @_;
  my @px;
  for my $r (0 .. $R - 1) {
    for my $q (0 .. $R - 1) {
      my $pos = $c < 5 ? $r : $q;
      my $lo = 3 + 5 * ($c % 5);
      my $on = ($pos >= $lo && $pos < $lo + 3) ? 1 : 0;
      my $v = $on ? 200 + int(rnd() * 56) : int(rnd() * 40);
      $v = 255 - $v if rnd() < 0.03;    # a little salt-and-pepper noise
      push @px, $v;
    }
  }
  return pack('C*', @px);
}

sub write_set {
  my ($prefix, $n) = @_;
  open(my $fi, '>:raw', "$dir/$prefix-images-idx3-ubyte") or die "$dir: $!\n";
  open(my $fl, '>:raw', "$dir/$prefix-labels-idx1-ubyte") or die "$dir: $!\n";
  print $fi pack('N4', 0x00000803, $n, $R, $R);
  print $fl pack('N2', 0x00000801, $n);
  for my $i (0 .. $n - 1) {
    my $c = $i % 10;
    print $fi image($c);
    print $fl pack('C', $c);
  }
  close($fi) or die;
  close($fl) or die;
}

write_set('train', $ntrain);
write_set('t10k', $ntest);
