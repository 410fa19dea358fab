// png_grid.cpp — tile grids and PNG output (see rbm/png_grid.hpp).
#include "rbm/png_grid.hpp"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "rbm/atomic_file.hpp"
#include "rbm/errors.hpp"

namespace rbm::png {

GridLayout::GridLayout(size_t n_tiles, size_t rows, size_t cols, size_t per_row)
    : tiles(n_tiles), tile_rows(rows), tile_cols(cols) {
  if (n_tiles == 0 || rows == 0 || cols == 0) throw Error("tile grid: nothing to draw");
  grid_cols = per_row
                  ? per_row
                  : static_cast<size_t>(std::ceil(std::sqrt(static_cast<double>(n_tiles))));
  grid_cols = std::min(grid_cols, n_tiles);
  grid_rows = (n_tiles + grid_cols - 1) / grid_cols;
}

std::vector<uint8_t> scale_to_bytes(const float* w, size_t n) {
  std::vector<uint8_t> out(n, 128);
  if (n == 0) return out;
  const auto [lo, hi] = std::minmax_element(w, w + n);
  const double min = *lo, range = static_cast<double>(*hi) - min;
  if (!(range > 0)) return out;
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<uint8_t>(std::lround(255.0 * (static_cast<double>(w[i]) - min) / range));
  return out;
}

std::vector<uint8_t> probs_to_bytes(const float* p, size_t n) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<uint8_t>(std::lround(255.0 * std::clamp(static_cast<double>(p[i]), 0.0, 1.0)));
  return out;
}

Image tile_grid(const std::vector<std::vector<uint8_t>>& tiles, const GridLayout& g,
                uint8_t border) {
  Image img;
  img.width = g.width();
  img.height = g.height();
  img.pixels.assign(img.width * img.height, border);
  for (size_t j = 0; j < tiles.size() && j < g.tiles; ++j) {
    if (tiles[j].size() != g.tile_rows * g.tile_cols)
      throw Error(fmt("tile grid: tile ", j, " has ", tiles[j].size(), " pixels, expected ",
                      g.tile_rows * g.tile_cols));
    for (size_t r = 0; r < g.tile_rows; ++r)
      std::memcpy(&img.at(g.top(j) + r, g.left(j)), tiles[j].data() + r * g.tile_cols,
                  g.tile_cols);
  }
  return img;
}

void write_png(const std::string& path, const Image& img) {
  AtomicFile out(path);
  png_image pi;
  std::memset(&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  pi.width = static_cast<png_uint_32>(img.width);
  pi.height = static_cast<png_uint_32>(img.height);
  pi.format = PNG_FORMAT_GRAY;
  // libpng's simplified writer checks fwrite, fflush and fclose and reports in message.
  if (!png_image_write_to_file(&pi, out.temp_path().c_str(), 0, img.pixels.data(),
                               static_cast<png_int_32>(img.width), nullptr)) {
    const std::string msg = pi.message;
    png_image_free(&pi);
    throw Error(path + ": cannot write PNG (" + msg + ")");
  }
  out.commit();
}

}  // namespace rbm::png
