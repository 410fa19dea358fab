// rbm/png_grid.hpp — greyscale tile grids (filters, samples) written as PNG with libpng.
//
// defines: rbm::png::Image, GridLayout, scale_to_bytes, probs_to_bytes, tile_grid, write_png
//
// A grid has `grid_cols` tiles per row, tiles of tile_rows x tile_cols pixels, and a
// 1-pixel border around and between tiles:
//   width  = grid_cols * (tile_cols + 1) + 1,  height = grid_rows * (tile_rows + 1) + 1,
//   tile j's top-left pixel at (y, x) = (1 + (j / grid_cols) (tile_rows + 1),
//                                        1 + (j % grid_cols) (tile_cols + 1)).
// Pixels of tile j are its values in row-major order (pixel p at row p / tile_cols,
// column p % tile_cols: the MNIST flattening).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rbm::png {

/// 8-bit greyscale image, row-major, 0 = black.
struct Image {
  size_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // [height, width]
  uint8_t& at(size_t y, size_t x) { return pixels[y * width + x]; }
  uint8_t at(size_t y, size_t x) const { return pixels[y * width + x]; }
};

struct GridLayout {
  size_t tiles = 0, tile_rows = 0, tile_cols = 0, grid_rows = 0, grid_cols = 0;
  GridLayout(size_t n_tiles, size_t rows, size_t cols, size_t per_row);
  size_t width() const { return grid_cols * (tile_cols + 1) + 1; }
  size_t height() const { return grid_rows * (tile_rows + 1) + 1; }
  size_t top(size_t j) const { return 1 + (j / grid_cols) * (tile_rows + 1); }
  size_t left(size_t j) const { return 1 + (j % grid_cols) * (tile_cols + 1); }
};

/// Per-tile linear scaling: min(w) -> 0, max(w) -> 255, i.e.
/// byte = round(255 (w - min) / (max - min)); a constant tile becomes 128.
std::vector<uint8_t> scale_to_bytes(const float* w, size_t n);

/// Probabilities in [0, 1] -> round(255 p) (clamped), no per-tile scaling.
std::vector<uint8_t> probs_to_bytes(const float* p, size_t n);

/// Places tiles (tiles[j] has tile_rows * tile_cols bytes) into the grid; the border
/// and unused cells get `border`.
Image tile_grid(const std::vector<std::vector<uint8_t>>& tiles, const GridLayout& layout,
                uint8_t border);

/// Writes an 8-bit greyscale PNG with libpng's simplified API, atomically
/// (rbm/atomic_file.hpp). Throws rbm::Error.
void write_png(const std::string& path, const Image& img);

}  // namespace rbm::png
