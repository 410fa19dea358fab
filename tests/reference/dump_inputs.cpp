// reference_dump — writes the inputs of the independent CD reference (cd_reference.py):
// a 6x4 RBM, three data batches, the hyper-parameters, the initial PCD chains, and every
// uniform that cd_gradient draws for the cases CD-1, CD-3 and PCD-2 over 3 steps, from
// our CounterRng. Not installed; run by regenerate.sh only (the tests read the fixture).
//
// usage: reference_dump OUT.h5
//
// File layout (row-major; one sample or chain per row, as in the training files):
//   attrs  seed, lr, momentum, weight_decay (SgdHyper of every step), V, H, B, C
//   /init/W [V, H] f32, /init/b [V] f32, /init/c [H] f32   initial parameters
//   /X [S, B, V] f32          step s's data batch, values in [0, 1] (grey and binary rows)
//   /steps [S] i64            the global step numbers (the RNG's step counter)
//   /sample_index [B] i64     global sample ids of the batch columns
//   /chains0 [C, V] f32       initial PCD chains (binary), /chain_index [C] i64
//   /<case> (cd1, cd3, pcd2), attrs k and pcd (0/1); for each step s, /<case>/step<s>/:
//     hidden_sub<t>  [rows, H]  uniforms of rng.uniforms(Stream::hidden, t, step, id, H)
//     visible_sub<t> [rows, V]  uniforms of rng.uniforms(Stream::visible, t, step, id, V)
//   rows are the samples (ids sample_index) for t < 128 and the chains (ids chain_index)
//   for t >= 128. The convention of src/rbm.cpp: a unit is 1 iff u < p.
//     CD-k: hidden_sub0 (h0 ~ p(h|x)); for t = 1..k-1: visible_sub<t>, hidden_sub<t>.
//     PCD-k: hidden_sub0 (h0 of the data: the reconstruction monitor only); for
//            t = 1..k: hidden_sub<128+t> then visible_sub<128+t> (one Gibbs sweep).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "rbm/errors.hpp"
#include "rbm/h5.hpp"
#include "rbm/rng.hpp"

using namespace rbm;

namespace {
constexpr size_t V = 6, H = 4, B = 5, C = 3, S = 3;
constexpr uint64_t kSeed = 20240611;
constexpr int64_t kSteps[S] = {10, 11, 12};
constexpr int64_t kSampleIndex[B] = {3, 17, 42, 99, 1234567};
constexpr int64_t kChainIndex[C] = {2, 5, 11};
constexpr uint32_t kChainSub = 128;  // src/rbm.cpp: PCD chains use sub 128 + t

struct Case {
  const char* name;
  int k;
  bool pcd;
};
constexpr Case kCases[] = {{"cd1", 1, false}, {"cd3", 3, false}, {"pcd2", 2, true}};

void write_uniforms(hid_t f, const CounterRng& rng, const std::string& group, Stream s,
                    uint32_t sub, uint64_t step, const int64_t* ids, size_t rows, size_t units) {
  std::vector<float> u(rows * units);
  for (size_t r = 0; r < rows; ++r)
    rng.uniforms(s, sub, step, static_cast<uint64_t>(ids[r]), u.data() + r * units, units);
  const std::string name = (s == Stream::hidden ? "/hidden_sub" : "/visible_sub") + std::to_string(sub);
  h5::write_array(f, group + name, u.data(), {rows, units});
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: reference_dump OUT.h5\n");
    return 2;
  }
  try {
    const std::string path = argv[1];
    h5::Id f = h5::create_file(path);
    h5::write_attr(f, "seed", static_cast<int64_t>(kSeed));
    h5::write_attr(f, "lr", 0.3);
    h5::write_attr(f, "momentum", 0.5);
    h5::write_attr(f, "weight_decay", 0.02);
    for (auto [n, v] : {std::pair{"V", V}, std::pair{"H", H}, std::pair{"B", B}, std::pair{"C", C}})
      h5::write_attr(f, n, static_cast<int64_t>(v));

    // Parameters of a few units' size (|W| <= 1.6): the conditionals are far from 0 and 1
    // and differ per unit.
    std::vector<float> W(V * H), b(V), c(H);
    for (size_t i = 0; i < V; ++i)
      for (size_t j = 0; j < H; ++j)
        W[i * H + j] = static_cast<float>(1.6 * std::sin(0.9 * static_cast<double>(i * H) + 1.7 * j + 0.3));
    for (size_t i = 0; i < V; ++i) b[i] = static_cast<float>(0.8 * std::cos(1.1 * i + 0.2));
    for (size_t j = 0; j < H; ++j) c[j] = static_cast<float>(0.6 * std::sin(2.3 * j - 0.4));
    h5::write_array(f, "/init/W", W.data(), {V, H});
    h5::write_array(f, "/init/b", b.data(), {V});
    h5::write_array(f, "/init/c", c.data(), {H});

    // Data: samples 0, 2, 4 grey values in [0.05, 0.95] (some exactly 0 or 1 set below),
    // samples 1, 3 binary.
    std::vector<float> X(S * B * V);
    for (size_t s = 0; s < S; ++s)
      for (size_t n = 0; n < B; ++n)
        for (size_t i = 0; i < V; ++i) {
          float& x = X[(s * B + n) * V + i];
          if (n % 2 == 0)
            x = static_cast<float>(0.5 + 0.45 * std::sin(2.0 * i + 3.1 * n + 1.3 * s));
          else
            x = (i + n + s) % 3 == 0 || (i * n + s) % 4 == 1 ? 1.0f : 0.0f;
        }
    X[(0 * B + 0) * V + 5] = 1.0f;  // grey rows with an exact 0 and 1
    X[(1 * B + 2) * V + 0] = 0.0f;
    h5::write_array(f, "/X", X.data(), {S, B, V});
    h5::write_array(f, "/steps", kSteps, {S});
    h5::write_array(f, "/sample_index", kSampleIndex, {B});
    std::vector<float> chains(C * V);
    for (size_t m = 0; m < C; ++m)
      for (size_t i = 0; i < V; ++i) chains[m * V + i] = (i + 2 * m) % 3 == 0 ? 1.0f : 0.0f;
    h5::write_array(f, "/chains0", chains.data(), {C, V});
    h5::write_array(f, "/chain_index", kChainIndex, {C});

    const CounterRng rng(kSeed);
    for (const Case& cs : kCases) {
      const std::string g = std::string("/") + cs.name;
      h5::ensure_group(f, g);
      {
        h5::Id grp = h5::open_object(f, g);
        h5::write_attr(grp, "k", static_cast<int64_t>(cs.k));
        h5::write_attr(grp, "pcd", static_cast<int64_t>(cs.pcd));
      }
      for (size_t s = 0; s < S; ++s) {
        const std::string gs = g + "/step" + std::to_string(s);
        const auto step = static_cast<uint64_t>(kSteps[s]);
        write_uniforms(f, rng, gs, Stream::hidden, 0, step, kSampleIndex, B, H);
        if (!cs.pcd) {
          for (int t = 1; t < cs.k; ++t) {
            write_uniforms(f, rng, gs, Stream::visible, t, step, kSampleIndex, B, V);
            write_uniforms(f, rng, gs, Stream::hidden, t, step, kSampleIndex, B, H);
          }
        } else {
          for (int t = 1; t <= cs.k; ++t) {
            write_uniforms(f, rng, gs, Stream::hidden, kChainSub + t, step, kChainIndex, C, H);
            write_uniforms(f, rng, gs, Stream::visible, kChainSub + t, step, kChainIndex, C, V);
          }
        }
      }
    }
    h5::close_written(f, path);
    std::printf("wrote %s\n", path.c_str());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "reference_dump: %s\n", e.what());
    return 1;
  }
}
