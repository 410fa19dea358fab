// rbm_eval's outputs (pictures, features, probe) and errors against references this file computes itself, in double, without the code
// under test: log Z by enumeration (all joint states of a tiny RBM; all hidden states of
// 784 x 16 and 20 x 12 RBMs), free energies and pseudo-likelihood by loops, hidden
// probabilities by a naive loop, PNGs decoded with libpng, and a probe whose accuracy
// follows from the data. The program is run as a user runs it (also under mpirun).
#include "eval_util.hpp"

using namespace evaltest;
// ---- pictures -----------------------------------------------------------------------------

// Tiles of a non-square image shape (12 x 10 from the dataset's rows/cols attributes):
// --max-tiles 5 gives a ceil(sqrt(5)) = 3 column grid, 2 rows, 1-px black borders.
// Every pixel of every tile must be round(255 (w - min) / (max - min)) of its unit's
// weights (computed here in double from the stored floats, as documented).
TEST(EvalPng, FiltersDecodeToPerTileScaledWeights) {
  TempDir tmp;
  const size_t rows = 12, cols = 10, V = rows * cols, H = 7;
  const Rbm m = random_rbm(V, H, 0.5, 0.0, 1.0, 1.0, 31);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", rows, cols, random_images(10, V, 1), random_images(10, V, 2));
  auto r = eval("filters " + (tmp / "m.h5") + " --data " + (tmp / "d.h5") + " --out " +
                (tmp / "f.png") + " --max-tiles 5 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const Gray g = read_png(tmp / "f.png");
  ASSERT_EQ(g.width, 3 * (cols + 1) + 1);
  ASSERT_EQ(g.height, 2 * (rows + 1) + 1);
  for (size_t j = 0; j < 5; ++j) {
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < V; ++i) lo = std::min(lo, m.w(i, j)), hi = std::max(hi, m.w(i, j));
    const size_t top = 1 + (j / 3) * (rows + 1), left = 1 + (j % 3) * (cols + 1);
    for (size_t i = 0; i < V; ++i)
      ASSERT_EQ(g.at(top + i / cols, left + i % cols),
                static_cast<int>(std::lround(255 * (m.w(i, j) - lo) / (hi - lo))))
          << "unit " << j << " pixel " << i;
    EXPECT_EQ(g.at(top - 1, left), 0);  // border above the tile
  }
  for (size_t y = 1 + (rows + 1); y < g.height - 1; ++y)  // the unused 6th cell stays border
    for (size_t x = 1 + 2 * (cols + 1); x < g.width - 1; ++x) ASSERT_EQ(g.at(y, x), 0);

  // Without --data a 784-pixel model is drawn as 28 x 28 tiles; all 3 units: 2 x 2 grid.
  write_model(tmp / "sq.h5", random_rbm(784, 3, 0.5, 0.0, 1.0, 1.0, 32));
  r = eval("filters " + (tmp / "sq.h5") + " --out " + (tmp / "sq.png"));
  ASSERT_EQ(r.code, 0) << r.err;
  const Gray sq = read_png(tmp / "sq.png");
  EXPECT_EQ(sq.width, 2u * 29 + 1);
  EXPECT_EQ(sq.height, 2u * 29 + 1);
}

// Chains x snapshots grid: 3 chains (rows) x 4 snapshots (columns) of 4 x 4 tiles. Each
// tile is round(255 p(v|h)) of sweep t_s = burn_in + s spacing, replayed here with the
// documented random numbers (noise start kSubChainInit; sweep t draws h with
// kSubChainHidden and v with kSubChainVisible, step t, index = chain). The program's
// float probabilities differ from these double ones by ~1e-7, so a pixel may round the
// other way at a .5 boundary: +-1.
TEST(EvalPng, SamplesReplayTheDocumentedGibbsChains) {
  TempDir tmp;
  const size_t V = 16, H = 5, chains = 3, snaps = 4, burn_in = 2, spacing = 3;
  const Rbm m = random_rbm(V, H, 1.0, 0.0, 1.0, 1.0, 41);
  write_model(tmp / "m.h5", m);
  auto r = eval("samples " + (tmp / "m.h5") + " --out " + (tmp / "s.png") +
                " --chains 3 --snapshots 4 --burn-in 2 --spacing 3 --seed 9 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const Gray g = read_png(tmp / "s.png");
  ASSERT_EQ(g.width, snaps * 5 + 1);
  ASSERT_EQ(g.height, chains * 5 + 1);
  const rbm::CounterRng rng(9);
  std::vector<float> u(std::max(V, H));
  for (size_t c = 0; c < chains; ++c) {
    std::vector<double> v(V), h(H), p(V);
    rng.uniforms(rbm::Stream::eval, rbm::eval::kSubChainInit, 0, c, u.data(), V);
    for (size_t i = 0; i < V; ++i) v[i] = u[i] < 0.5f ? 1.0 : 0.0;
    for (size_t t = 1, s = 0; s < snaps; ++t) {
      rng.uniforms(rbm::Stream::eval, rbm::eval::kSubChainHidden, t, c, u.data(), H);
      for (size_t j = 0; j < H; ++j) {
        double a = m.c[j];
        for (size_t i = 0; i < V; ++i) a += m.w(i, j) * v[i];
        h[j] = u[j] < sigmoid(a) ? 1.0 : 0.0;
      }
      rng.uniforms(rbm::Stream::eval, rbm::eval::kSubChainVisible, t, c, u.data(), V);
      for (size_t i = 0; i < V; ++i) {
        double a = m.b[i];
        for (size_t j = 0; j < H; ++j) a += m.w(i, j) * h[j];
        p[i] = sigmoid(a);
        v[i] = u[i] < p[i] ? 1.0 : 0.0;
      }
      if (t != burn_in + s * spacing) continue;
      for (size_t i = 0; i < V; ++i)
        ASSERT_NEAR(g.at(1 + c * 5 + i / 4, 1 + s * 5 + i % 4), 255 * p[i], 0.5 + 1e-3)
            << "chain " << c << " snapshot " << s << " pixel " << i;
      ++s;
    }
  }
}

// ---- transform and probe ----------------------------------------------------------------

// Features are p(h_j = 1 | x) = sigmoid(c_j + sum_i W_ij x_i / 255), here in double. The
// program's float GEMM (with x/255 rounded to float) is off by at most
// gamma(V + 2)(|c_j| + sum_i |W_ij x_i|) in the argument, times sigmoid' <= 1/4, plus a few
// float roundings of the result (4u). Labels must be the input bytes.
TEST(EvalTransform, FeaturesAreHiddenProbabilitiesAndLabelsAreCopied) {
  TempDir tmp;
  const size_t V = 20, H = 6;
  const Rbm m = random_rbm(V, H, 1.0, 0.0, 1.0, 1.0, 51);
  const Split train = random_images(50, V, 7), test = random_images(30, V, 8);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 4, 5, train, test);
  const std::string out = tmp / "feat.h5";
  auto r = eval("transform " + (tmp / "m.h5") + " " + (tmp / "d.h5") + " --out " + out + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  rbm::h5::Id f = rbm::h5::open_file(out);
  for (const auto& [name, split] : {std::pair{"train", &train}, std::pair{"test", &test}}) {
    std::vector<hsize_t> dims;
    const auto feat = rbm::h5::read_array<float>(f, std::string("/") + name + "/features", out, &dims);
    ASSERT_EQ(dims, (std::vector<hsize_t>{split->n(), H})) << name;
    const auto labels = rbm::h5::read_array<uint8_t>(f, std::string("/") + name + "/labels", out);
    EXPECT_EQ(labels, split->labels) << name;
    for (size_t k = 0; k < split->n(); ++k)
      for (size_t j = 0; j < H; ++j) {
        double a = m.c[j], mag = std::abs(m.c[j]);
        for (size_t i = 0; i < V; ++i) {
          const double x = split->images[k * V + i] / 255.0;
          a += m.w(i, j) * x;
          mag += std::abs(m.w(i, j) * x);
        }
        ASSERT_NEAR(feat[k * H + j], sigmoid(a), 0.25 * gamma(V + 2) * mag + 4 * kU)
            << name << " image " << k << " unit " << j;
      }
  }
  // An existing output is replaced only with --force; --split test writes only /test.
  r = eval("transform " + (tmp / "m.h5") + " " + (tmp / "d.h5") + " --out " + out);
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  r = eval("transform " + (tmp / "m.h5") + " " + (tmp / "d.h5") + " --out " + out +
           " --split test --force");
  ASSERT_EQ(r.code, 0) << r.err;
  rbm::h5::Id g = rbm::h5::open_file(out);
  EXPECT_TRUE(rbm::h5::exists(g, "/test/features"));
  EXPECT_FALSE(rbm::h5::exists(g, "/train/features"));
}

// A separable synthetic task with a known answer. 4 x 4 images, class k = row k fully on
// (255), every other row at most one pixel on. The RBM's hidden unit j detects row j:
// W_ij = 4 on row j, c_j = -10, so p(h_j | x) >= sigmoid(6) for the image's class and
// <= sigmoid(-6) for the others.
// Why accuracy must be 1: let m be a margin of a linear scorer T* on the training set
// (pixels: T*_k = indicator of row k, m = 4 - 1 = 3, ||T*||^2 = 16; features: T* = I,
// m = sigmoid(6) - sigmoid(-6) > 0.99, ||T*||^2 = 4). At t T* the objective is at most
// (C - 1) e^{-t m} + (l2/2) t^2 ||T*||^2: with C = 4, l2 = 1e-6 and t = 4 (pixels) or
// t = 10 (features) that is < 4e-4, below log(2)/N = 3.5e-3 for N = 200. Any point with
// objective < log(2)/N has every training loss < log 2, i.e. p(y_n | x_n) > 1/2: every
// training image is classified correctly. The test images are training images, so the
// test accuracy is 1 as soon as the reported objective is below log(2)/N — checked too.
TEST(EvalProbe, SeparableDataIsClassifiedPerfectly) {
  TempDir tmp;
  const size_t V = 16, H = 4, N = 200;
  Rbm m{V, H, std::vector<float>(V * H, 0.0f), std::vector<float>(V, 0.0f),
        std::vector<float>(H, -10.0f)};
  for (size_t i = 0; i < V; ++i) m.W[i * H + i / 4] = 4.0f;
  std::mt19937_64 gen(61);
  Split train{std::vector<uint8_t>(N * V, 0), std::vector<uint8_t>(N)};
  for (size_t k = 0; k < N; ++k) {
    const size_t cls = k % 4;
    train.labels[k] = static_cast<uint8_t>(cls);
    for (size_t row = 0; row < 4; ++row) {
      if (row == cls) {
        for (size_t c = 0; c < 4; ++c) train.images[k * V + row * 4 + c] = 255;
      } else if (const size_t c = gen() % 5; c < 4) {  // one pixel on, or none
        train.images[k * V + row * 4 + c] = 255;
      }
    }
  }
  Split test{std::vector<uint8_t>(train.images.begin(), train.images.begin() + 100 * V),
             std::vector<uint8_t>(train.labels.begin(), train.labels.begin() + 100)};
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 4, 4, train, test);
  auto r = eval("probe " + (tmp / "m.h5") + " " + (tmp / "d.h5") +
                " --l2 1e-6 --max-iter 500 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LT(json(r, "features_objective"), std::log(2.0) / N);
  EXPECT_LT(json(r, "raw_objective"), std::log(2.0) / N);
  EXPECT_EQ(json(r, "features_test_accuracy"), 1.0);
  EXPECT_EQ(json(r, "raw_test_accuracy"), 1.0);
  EXPECT_EQ(json(r, "classes"), 4);
  EXPECT_EQ(json(r, "train_images"), 200);
}

// ---- errors -------------------------------------------------------------------------------

// Bad input: exit code 2, exactly one line on stderr, "rbm_eval: ..." naming the problem.
TEST(EvalErrors, BadInputIsOneLineAndExitCode2) {
  TempDir tmp;
  const Rbm m = random_rbm(20, 4, 1.0, 0.0, 1.0, 1.0, 71);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d20.h5", 4, 5, random_images(10, 20, 1), random_images(10, 20, 2));
  write_data(tmp / "d16.h5", 4, 4, random_images(10, 16, 1), random_images(10, 16, 2));
  const std::string M = tmp / "m.h5", D = tmp / "d20.h5";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"loglik " + (tmp / "none.h5") + " " + D, "cannot open"},
      {"loglik " + D + " " + D, "not an rbm checkpoint"},
      {"loglik " + M + " " + (tmp / "d16.h5"), "V = 20"},
      {"pseudo " + M + " " + D + " --split validation", "/validation/images"},
      {"loglik " + M + " " + D + " --binarize sometimes", "--binarize sometimes"},
      {"loglik " + M + " " + D + " --runs 1", "--runs"},
      {"loglik " + M + " " + D + " --nope", "nope"},
      {"filters " + M, "--out"},
      {"samples " + M + " --out " + (tmp / "no/such/dir/s.png"), "does not exist"},
      {"probe " + M + " " + D + " --split train", "--split train"},
      {"transform " + M, "DATA.h5"},
      {"frobnicate " + M, "unknown subcommand"},
      {"", "no subcommand"},
  };
  for (const auto& [args, needle] : cases) {
    auto r = eval(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
    EXPECT_EQ(count_lines(r.err), 1u) << args << "\n" << r.err;
    EXPECT_EQ(count_lines(r.err, "rbm_eval: "), 1u) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(r.out.find('{'), std::string::npos) << args;  // no JSON result
  }
  // --help shows the defaults and exits 0.
  auto r = eval("loglik --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--betas K (=14500)"), std::string::npos) << r.out;
}

// Under mpirun every rank sees the same bad input: rank 0 alone prints the one line and
// all ranks exit 2 (mpirun then adds its own "exited with non-zero status" box, which is
// not ours: we count our lines).
TEST(EvalErrors, TwoRanksReportBadInputOnce) {
  TempDir tmp;
  write_model(tmp / "m.h5", random_rbm(20, 4, 1.0, 0.0, 1.0, 1.0, 71));
  write_data(tmp / "d16.h5", 4, 4, random_images(10, 16, 1), random_images(10, 16, 2));
  auto r = eval("loglik " + (tmp / "m.h5") + " " + (tmp / "d16.h5"), 2);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(count_lines(r.err, "rbm_eval"), 1u) << r.err;
  EXPECT_NE(r.err.find("V = 20"), std::string::npos) << r.err;
}


// A model with NaN or Inf parameters (a diverged run) is refused by every subcommand,
// naming the file and the first bad parameter; before, all six exited 0 and printed
// "log Z = -nan", wrote PNGs and NaN features.
TEST(EvalErrors, NonFiniteModelIsRefusedByEverySubcommand) {
  TempDir tmp;
  Rbm m = random_rbm(20, 4, 1.0, 0.0, 1.0, 1.0, 71);
  m.W[3 * 4 + 2] = NAN;
  write_model(tmp / "nan.h5", m);
  m.W[3 * 4 + 2] = 0.5f;
  m.c[1] = -INFINITY;
  write_model(tmp / "inf.h5", m);
  write_data(tmp / "d.h5", 4, 5, random_images(10, 20, 1), random_images(10, 20, 2));
  const std::string D = tmp / "d.h5";
  for (const auto& [model, where] : {std::pair<std::string, std::string>{tmp / "nan.h5",
                                                                         "/model/weights[3, 2] is nan"},
                                     {tmp / "inf.h5", "/model/hidden_bias[1] is -inf"}}) {
    for (const std::string& args :
         {"loglik " + model + " " + D, "pseudo " + model + " " + D,
          "filters " + model + " --out " + (tmp / "f.png"),
          "samples " + model + " --out " + (tmp / "s.png"),
          "transform " + model + " " + D + " --out " + (tmp / "t.h5"),
          "probe " + model + " " + D + " --split test"}) {
      auto r = eval(args);
      EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
      EXPECT_EQ(count_lines(r.err), 1u) << args << "\n" << r.err;
      EXPECT_NE(r.err.find(model + ": " + where), std::string::npos) << args << "\n" << r.err;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(tmp / "f.png"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "s.png"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "t.h5"));
  auto r = eval("loglik " + (tmp / "nan.h5") + " " + D, 2);  // every rank refuses it
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(count_lines(r.err, "rbm_eval"), 1u) << r.err;
}

// --exact-max above the cap (24) is refused before the AIS run: here an AIS of 10^6 runs
// x 10^6 betas that would take days. The message says how long enumeration would take.
TEST(EvalErrors, ExactMaxAboveTheCapIsRefusedBeforeAnyWork) {
  TempDir tmp;
  write_model(tmp / "m.h5", random_rbm(784, 30, 0.1, 0.0, 1.0, 1.0, 5));
  write_data(tmp / "d.h5", 28, 28, random_images(10, 784, 1), random_images(10, 784, 2));
  auto r = eval("loglik " + (tmp / "m.h5") + " " + (tmp / "d.h5") +
                " --runs 1000000 --betas 1000000 --exact-max 30");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_LT(r.seconds, 30);
  EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("--exact-max 30"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" h on one core"), std::string::npos) << r.err;  // hours
  EXPECT_NE(r.err.find("at most 24"), std::string::npos) << r.err;
  r = eval("loglik --help");
  EXPECT_NE(r.out.find("at most 24"), std::string::npos) << r.out;
}
