#include "rbm/mpi_env.hpp"

#include <mpi.h>

#include <cstdio>
#include <new>
#include <vector>

namespace rbm {

void agree(const MpiEnv& env, const std::function<void()>& check) {
  std::string msg;
  int code = 0;
  try {
    check();
  } catch (const Error& e) {
    msg = e.what();
    code = e.code();
  }
  // Lowest failing rank, or env.size when all succeeded.
  int mine = code ? env.rank : env.size, first = env.size;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == env.size) return;
  int len = static_cast<int>(msg.size());
  MPI_Bcast(&len, 1, MPI_INT, first, MPI_COMM_WORLD);
  MPI_Bcast(&code, 1, MPI_INT, first, MPI_COMM_WORLD);
  msg.resize(len);
  MPI_Bcast(msg.data(), len, MPI_CHAR, first, MPI_COMM_WORLD);
  throw CollectiveError(msg, code);
}

void broadcast_string(std::string& s) {
  unsigned long long len = s.size();
  MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
  s.resize(len);
  MPI_Bcast(s.data(), static_cast<int>(len), MPI_CHAR, 0, MPI_COMM_WORLD);
}

int run_mpi_program(const char* prog, int argc, char** argv,
                    const std::function<int(const MpiEnv&)>& body) {
  MPI_Init(&argc, &argv);
  MpiEnv env;
  MPI_Comm_rank(MPI_COMM_WORLD, &env.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &env.size);
  int code = exit_code::ok;
  std::string local;
  try {
    code = body(env);
  } catch (const CollectiveError& e) {
    if (env.root()) std::fprintf(stderr, "%s: %s\n", prog, e.what());
    code = e.code();
  } catch (const Error& e) {
    local = e.what();
    code = e.code();
  } catch (const std::bad_alloc&) {
    local = "out of memory (reduce --batch-size or --chains, or use more nodes)";
    code = exit_code::runtime;
  } catch (const std::exception& e) {
    local = std::string("internal error: ") + e.what();
    code = exit_code::runtime;
  }
  if (!local.empty()) {
    if (env.size > 1)
      std::fprintf(stderr, "%s: rank %d: %s\n", prog, env.rank, local.c_str());
    else
      std::fprintf(stderr, "%s: %s\n", prog, local.c_str());
    std::fflush(stderr);
    if (env.size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  }
  std::fflush(stdout);
  MPI_Finalize();
  return code;
}

int run_program(const char* prog, const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", prog, e.what());
    return e.code();
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of memory\n", prog);
    return exit_code::runtime;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", prog, e.what());
    return exit_code::runtime;
  }
}

}  // namespace rbm
