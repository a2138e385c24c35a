// Declarations shared by the selective search op's files (Uijlings et al. 2013): the strategy
// lists, Felzenszwalb-Huttenlocher graph segmentation and the hierarchical grouping.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace fastops::selective_search {

// Colour spaces the paper diversifies over (section 4.1): each gives planes on the 0..255 scale.
enum class ColourSpace : int8_t { Hsv, Lab, RgI, Hue, Intensity };

// Which similarity terms a grouping sums (section 3.2): colour, texture, size, fill.
struct SimilaritySet {
  bool colour, texture, size, fill;
};

// Every grouping strategy of a call: colour spaces x thresholds k x similarity sets.
struct Plan {
  std::vector<ColourSpace> colour_spaces;
  std::vector<double> ks;
  std::vector<SimilaritySet> similarities;
  double sigma = 0.8;
  int64_t min_size = -1;  // -1: each k's own value (the paper's minSize = k)
};

// The mode's strategies (the paper's Table 5), with `ks` replacing the mode's thresholds when not empty.
Plan make_plan(const std::string& mode, const std::vector<double>& ks, double sigma, int64_t min_size);

// Checks the image (rank, channels, dtype, size), mode and hyperparameters; errors name the argument.
void check_args(const at::Tensor& image, const std::string& mode, at::ArrayRef<double> ks, double sigma,
                int64_t min_size, int64_t max_proposals);

// An image in one colour space: `channels` planes of height x width floats on the 0..255 scale.
struct Planes {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<float> values;  // [channels][height][width]
  int64_t pixels() const { return height * width; }
  const float* plane(int64_t c) const { return values.data() + c * pixels(); }
  float* plane(int64_t c) { return values.data() + c * pixels(); }
};

// RGB planes (0..255) converted to `space`.
Planes convert(const Planes& rgb, ColourSpace space);

// One edge of the 8-neighbour pixel graph: the two pixels (raster indices) and their distance.
struct Edge {
  float weight;
  int32_t a, b;
};

// The edges of the image smoothed by a Gaussian of `sigma`, by increasing weight (stable: ties
// keep the raster order in which the edges are listed).
std::vector<Edge> sorted_edges(const Planes& image, double sigma);

// Felzenszwalb-Huttenlocher segmentation over `edges`: components joined while the edge weight is
// at most each side's internal difference plus k / |C|, then components smaller than `min_size`
// joined along the remaining edges in weight order. labels[p] in 0..n-1, numbered in raster order
// of each region's first pixel; returns n.
int32_t segment_graph(const std::vector<Edge>& edges, int64_t num_pixels, double k, int64_t min_size,
                      std::vector<int32_t>& labels);

// Per-pixel histogram bins of an image in one colour space: 25 colour bins per channel and,
// per channel and each of 8 orientations, 10 bins of the Gaussian derivative's response.
struct PixelBins {
  int64_t channels = 0;
  std::vector<uint8_t> colour;   // [pixel][channel]
  std::vector<uint8_t> texture;  // [pixel][channel * 8 + orientation]
};
constexpr int kColourBins = 25;
constexpr int kTextureBins = 10;
constexpr int kOrientations = 8;

PixelBins pixel_bins(const Planes& image);

// A box in pixel edges: x1 <= x < x2, y1 <= y < y2.
struct Box {
  int32_t x1, y1, x2, y2;
};

// The initial regions of one segmentation: size, box, L1-normalised colour and texture
// histograms, and the 8-neighbour adjacency.
struct Regions {
  int32_t count = 0;
  int64_t colour_length = 0, texture_length = 0;
  std::vector<int64_t> sizes;
  std::vector<Box> boxes;
  std::vector<float> histograms;                   // [region][colour_length + texture_length]
  std::vector<std::pair<int32_t, int32_t>> pairs;  // adjacent (a, b), a < b, sorted
};

Regions initial_regions(const std::vector<int32_t>& labels, int32_t count, int64_t height, int64_t width,
                        const PixelBins& bins);

// Greedy hierarchical grouping: the most similar adjacent pair merged until one region is left.
// Returns every region of the hierarchy in creation order (the initial regions, then each merge).
std::vector<Box> hierarchical_grouping(const Regions& regions, SimilaritySet similarity, int64_t image_size);

}  // namespace fastops::selective_search
