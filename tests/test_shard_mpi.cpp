// Real multi-rank read (run by ctest under `mpirun -np 4`): every rank reads only
// its shard; an allreduce of per-row checksums must equal the checksums of the
// whole file read serially, and the row counts must add up to N.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <filesystem>

#include "rbm/dataset.hpp"
#include "test_util.hpp"

using namespace rbm;

namespace {
// Position-weighted checksum of one row: detects a wrong or permuted row.
uint64_t row_sum(const uint8_t* r, size_t d, size_t g) {
  uint64_t s = 1469598103934665603ull ^ g;
  for (size_t p = 0; p < d; ++p) s = (s ^ r[p]) * 1099511628211ull;
  return s;
}
}  // namespace

TEST(ShardMpi, AllreduceOfRowChecksumsMatchesWholeFile) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // Rank 0 writes the file into a folder every rank can see (same machine).
  char dir[256] = {0};
  if (rank == 0) {
    std::snprintf(dir, sizeof dir, "/tmp/rbm_shard_mpi_%d", static_cast<int>(getpid()));
    std::filesystem::create_directories(dir);
    test::write_pattern_h5(std::string(dir) + "/d.h5", 6007, 29);
  }
  MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
  const std::string path = std::string(dir) + "/d.h5";

  Shard s = read_shard(path, schema::train_images, rank, size);
  // XOR and SUM of row checksums over this rank's rows, plus the row count.
  uint64_t local[3] = {0, 0, s.rows()}, global[3] = {0, 0, 0};
  for (size_t l = 0; l < s.rows(); ++l) {
    uint64_t c = row_sum(s.row(l), s.dim, s.layout.global_row(l));
    local[0] ^= c;
    local[1] += c;
  }
  MPI_Allreduce(&local[0], &global[0], 1, MPI_UINT64_T, MPI_BXOR, MPI_COMM_WORLD);
  MPI_Allreduce(&local[1], &global[1], 2, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);

  Shard all = read_all(path, schema::train_images);
  uint64_t x = 0, sum = 0;
  for (size_t g = 0; g < all.rows(); ++g) {
    uint64_t c = row_sum(all.row(g), all.dim, g);
    x ^= c;
    sum += c;
  }
  EXPECT_EQ(global[2], 6007u);
  EXPECT_EQ(global[0], x);
  EXPECT_EQ(global[1], sum);
  // Each rank held at most ceil(N/P) rows: it did not read the whole file.
  EXPECT_LE(s.pixels.size(), (6007 / size + 1) * 29u);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) std::filesystem::remove_all(dir);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {  // only rank 0 prints gtest output
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}
