#!/usr/bin/python3
"""Independent float64 reference of the CD-k / PCD-k gradient and the SGD update.

usage: /usr/bin/python3 cd_reference.py cd_inputs.h5 cd_reference.h5

Reads the inputs written by reference_dump (dump_inputs.cpp: parameters, data, the
uniforms our CounterRng draws) and computes, from the documented rules only
(include/rbm/rbm.hpp, README "The learning rule, exactly"), in float64:

  p(h_j = 1 | v) = sigmoid(c_j + sum_i v_i W_ij),  p(v_i = 1 | h) = sigmoid(b_i + sum_j W_ij h_j)
  a unit is sampled as 1 iff u < p (u from the dumped uniforms)
  positive phase: hidden probabilities given the data x
  CD-k: h0 ~ p(h|x); for t = 1..k: v_t = p(v|h_{t-1}), p(h|v_t); intermediate v_t, h_t
        (t < k) sampled, the last step keeps probabilities; negative term v_k p(h|v_k)'
  PCD-k: every chain makes k sweeps v -> h (sampled) -> v (sampled), stays binary;
        negative term v p(h|v)' over the chains
  dW = sum_n x_n p(h|x_n)' / B - sum_m v_m p(h|v_m)' / N   (N = B for CD, C for PCD)
  db, dc likewise; recon_sq = sum_n |x_n - p(v|h0_n)|^2
  m <- mu m + lr (g - lambda W) on the weights, m <- mu m + lr g on the biases; theta += m

Writes cd_reference.h5: a copy of every input, and per case the expected gradients of
each step [S, ...], the parameters after each step's update [S, ...], recon_sq [S], the
chains after each step (PCD) and the attribute min_margin = min |u - p| over every
sampled unit (the test requires it to be far above float32's error in p).
"""
import sys

import h5py
import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def sample(p, u):
    return (u < p).astype(np.float64)


def run_case(inp, name, margins):
    grp = inp[name]
    k, pcd = int(grp.attrs["k"]), bool(grp.attrs["pcd"])
    W = inp["init/W"][()].astype(np.float64)  # [V, H]
    b = inp["init/b"][()].astype(np.float64)  # [V]
    c = inp["init/c"][()].astype(np.float64)  # [H]
    mW, mb, mc = np.zeros_like(W), np.zeros_like(b), np.zeros_like(c)
    lr, mu, lam = (float(inp.attrs[a]) for a in ("lr", "momentum", "weight_decay"))
    chains = inp["chains0"][()].astype(np.float64)  # [C, V]
    X_all = inp["X"][()].astype(np.float64)  # [S, B, V]
    out = {key: [] for key in ("grad_W", "grad_b", "grad_c", "W", "b", "c", "recon_sq", "chains")}

    def ph(v):  # [rows, V] -> [rows, H]
        return sigmoid(v @ W + c)

    def pv(h):  # [rows, H] -> [rows, V]
        return sigmoid(h @ W.T + b)

    def draw(p, u):
        margins.append(np.min(np.abs(u.astype(np.float64) - p)))
        return sample(p, u)

    for s in range(X_all.shape[0]):
        u = {key: grp[f"step{s}/{key}"][()] for key in grp[f"step{s}"]}
        X = X_all[s]
        B = X.shape[0]
        H0 = ph(X)  # positive phase: probabilities
        h = draw(H0, u["hidden_sub0"])
        recon = np.sum((X - pv(h)) ** 2)
        if not pcd:
            for t in range(1, k + 1):
                v = pv(h)
                if t < k:
                    v = draw(v, u[f"visible_sub{t}"])
                hn = ph(v)
                if t < k:
                    h = draw(hn, u[f"hidden_sub{t}"])
            vneg, hneg, N = v, hn, B
        else:
            for t in range(1, k + 1):
                hc = draw(ph(chains), u[f"hidden_sub{128 + t}"])
                chains = draw(pv(hc), u[f"visible_sub{128 + t}"])
            vneg, hneg, N = chains, ph(chains), chains.shape[0]
        gW = X.T @ H0 / B - vneg.T @ hneg / N
        gb = X.sum(0) / B - vneg.sum(0) / N
        gc = H0.sum(0) / B - hneg.sum(0) / N
        mW = mu * mW + lr * (gW - lam * W)
        mb = mu * mb + lr * gb
        mc = mu * mc + lr * gc
        W, b, c = W + mW, b + mb, c + mc
        for key, val in (("grad_W", gW), ("grad_b", gb), ("grad_c", gc), ("W", W), ("b", b),
                         ("c", c), ("recon_sq", recon), ("chains", chains)):
            out[key].append(np.array(val, dtype=np.float64))
    return k, pcd, out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: cd_reference.py cd_inputs.h5 cd_reference.h5")
    with h5py.File(sys.argv[1], "r") as inp, h5py.File(sys.argv[2], "w") as res:
        for key, val in inp.attrs.items():
            res.attrs[key] = val
        for key in ("init", "X", "steps", "sample_index", "chains0", "chain_index"):
            inp.copy(key, res)
        margins = []
        for name in ("cd1", "cd3", "pcd2"):
            inp.copy(name, res)  # the uniforms
            k, pcd, out = run_case(inp, name, margins)
            for key, vals in out.items():
                if key == "chains" and not pcd:
                    continue
                res[f"{name}/expected/{key}"] = np.stack(vals)
        res.attrs["min_margin"] = float(min(margins))
        res.attrs["generator"] = "tests/reference/cd_reference.py (numpy float64)"
        print(f"wrote {sys.argv[2]}; min |u - p| over the sampled units = {min(margins):.3g}")


if __name__ == "__main__":
    main()
