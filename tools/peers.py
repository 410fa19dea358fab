#!/usr/bin/env python3
"""tools/peers.py — CD-1 training throughput of two peers on Fashion-MNIST, one thread.

  scikit-learn  BernoulliRBM(n_components=H, batch_size=B, learning_rate=0.1, n_iter=1).fit
                (Debian's python3-sklearn; note it trains with PCD-1, "stochastic maximum
                likelihood", i.e. persistent chains instead of CD-1's reconstructions; the
                cost per sample is the same kind: three products plus the statistics)
  PyTorch       a plain CD-1 loop written the way the common tutorial writes it:
                torch.mm, torch.sigmoid, torch.bernoulli at every step, an in-place
                update W += lr (v0' p0 - v1' p1) / B (Debian's python3-torch).

Both use 10*V*H flops per sample in their matrix products, like rbm_dist. Nothing is
downloaded: the images are read from the IDX .gz files with gzip + numpy.

  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python3 tools/peers.py [--data DIR]
      [--shapes 500x100,256x64] [--samples N] [--repeat R] [--only sklearn|torch]
      [--clock wall|cpu]
(tools/peers.sh sets the thread variables and checks the packages.)
"""
import argparse
import gzip
import os
import struct
import sys
import time

# One thread everywhere, before numpy/torch load their BLAS / OpenMP runtimes.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402


def read_idx_images(path):
    """IDX unsigned-byte file (gzip'd or not) -> uint8 array [N, rows*cols]."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim != 3:
        sys.exit(f"peers.py: {path}: not an unsigned-byte image IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != dims[0] * dims[1] * dims[2]:
        sys.exit(f"peers.py: {path}: size does not match the header")
    return data.reshape(dims[0], dims[1] * dims[2])


CLOCK = time.perf_counter  # --clock cpu: time.process_time (CPU time of this process)


def stats(v):
    v = sorted(v)
    return v[0], v[len(v) // 2], v[-1]


def bench_sklearn(X, H, B, repeat):
    from sklearn.neural_network import BernoulliRBM

    rates = []
    for r in range(repeat + 1):  # the first fit is a warm-up
        rbm = BernoulliRBM(n_components=H, batch_size=B, learning_rate=0.1, n_iter=1,
                           random_state=r, verbose=0)
        t0 = CLOCK()
        rbm.fit(X)
        t = CLOCK() - t0
        if r:
            rates.append(X.shape[0] / t)
    return rates


def bench_torch(X, H, B, repeat):
    import torch

    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    data = torch.from_numpy(X)
    V = data.shape[1]
    lr = 0.1

    class RBM:  # the tutorial's class, CD-1
        def __init__(self, nv, nh):
            self.W = torch.randn(nh, nv) * 0.01
            self.a = torch.zeros(1, nh)  # hidden bias
            self.b = torch.zeros(1, nv)  # visible bias

        def sample_h(self, x):
            wx = torch.mm(x, self.W.t())
            activation = wx + self.a.expand_as(wx)
            p_h_given_v = torch.sigmoid(activation)
            return p_h_given_v, torch.bernoulli(p_h_given_v)

        def sample_v(self, y):
            wy = torch.mm(y, self.W)
            activation = wy + self.b.expand_as(wy)
            p_v_given_h = torch.sigmoid(activation)
            return p_v_given_h, torch.bernoulli(p_v_given_h)

        def train(self, v0, vk, ph0, phk):
            n = v0.shape[0]
            self.W += lr * (torch.mm(v0.t(), ph0) - torch.mm(vk.t(), phk)).t() / n
            self.b += lr * torch.sum((v0 - vk), 0) / n
            self.a += lr * torch.sum((ph0 - phk), 0) / n

    def epoch(rbm):
        for s in range(0, data.shape[0] - B + 1, B):
            v0 = data[s : s + B]
            ph0, h0 = rbm.sample_h(v0)
            _, vk = rbm.sample_v(h0)
            phk, _ = rbm.sample_h(vk)
            rbm.train(v0, vk, ph0, phk)

    rbm = RBM(V, H)
    epoch(rbm)  # warm-up
    rates = []
    n = (data.shape[0] // B) * B
    for _ in range(repeat):
        t0 = CLOCK()
        epoch(rbm)
        rates.append(n / (CLOCK() - t0))
    return rates, torch.__version__, torch.get_num_threads()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--shapes", default="500x100,256x64", help="HxB pairs")
    ap.add_argument("--samples", type=int, default=20000, help="images per timed pass")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=["sklearn", "torch"])
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time, or this process's CPU time (shared, overloaded machine)")
    args = ap.parse_args()
    global CLOCK
    if args.clock == "cpu":
        CLOCK = time.process_time

    path = os.path.join(args.data, "train-images-idx3-ubyte.gz")
    if not os.path.exists(path):
        path = os.path.join(args.data, "train-images-idx3-ubyte")
    X = (read_idx_images(path)[: args.samples].astype(np.float32) / np.float32(255.0))
    shapes = []
    for item in args.shapes.split(","):
        h, b = item.split("x")
        shapes.append((int(h), int(b)))

    import sklearn

    versions = f"numpy {np.__version__}, scikit-learn {sklearn.__version__}"
    print(f"# peers: CD-1 samples/s on {X.shape[0]} Fashion-MNIST images x {X.shape[1]} pixels, "
          f"{args.repeat} timed passes after a warm-up (min..max, median), {args.clock} time")
    print(f"# {versions}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"# load average at start: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"#{'peer':>26} {'V':>5} {'H':>5} {'B':>5} {'samples/s (min..max)':>22} {'median':>8}")
    for H, B in shapes:
        if args.only in (None, "sklearn"):
            lo, med, hi = stats(bench_sklearn(X, H, B, args.repeat))
            print(f" {'sklearn BernoulliRBM (PCD)':>26} {X.shape[1]:5d} {H:5d} {B:5d} "
                  f"{f'{lo:.0f}..{hi:.0f}':>22} {med:8.0f}", flush=True)
        if args.only in (None, "torch"):
            rates, tv, nt = bench_torch(X, H, B, args.repeat)
            lo, med, hi = stats(rates)
            name = f"torch {tv} CD-1 ({nt} thr)"
            print(f" {name:>26} {X.shape[1]:5d} {H:5d} {B:5d} "
                  f"{f'{lo:.0f}..{hi:.0f}':>22} {med:8.0f}", flush=True)
    print(f"# load average at end: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
