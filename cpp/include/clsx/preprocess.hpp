// Image -> CHW float32 tensor, the twin of clsx.preprocess.preprocess.
//
// Resize the shorter side to resize_size with Pillow's resampling (its Resample.c: separable, two passes
// in Pillow 13's order, filter support widened by the downscale factor, 22-bit fixed-point coefficients,
// rounding and clipping to uint8 after each pass), center-crop with torchvision's round-half-even offsets
// (zero padding when the image is smaller), scale, reorder, normalize. The resampling and normalization
// are clsx/resample.h, the same native code the Python package runs.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "clsx/image.hpp"

namespace clsx {

enum class Interpolation { Nearest, Bilinear, Bicubic, Lanczos, Box, Hamming };

/// "bilinear" -> Interpolation::Bilinear ...; throws clsx::Error for unknown names.
Interpolation parse_interpolation(const std::string& name);

/// The `model.preprocess` section of the metadata document (see clsx/spec.py, PreprocessSpec).
struct PreprocessSpec {
  std::array<int, 3> input_size{3, 224, 224};  ///< C, H, W
  int resize_size = 256;
  Interpolation interpolation = Interpolation::Bilinear;
  std::vector<float> mean{0.485f, 0.456f, 0.406f};
  std::vector<float> std{0.229f, 0.224f, 0.225f};
  bool bgr = false;            ///< channel_order == "BGR"
  float input_range = 1.0f;    ///< 1 for [0, 1], 255 for [0, 255]

  int channels() const { return input_size[0]; }
  int height() const { return input_size[1]; }
  int width() const { return input_size[2]; }
  std::size_t tensor_size() const { return static_cast<std::size_t>(channels()) * height() * width(); }
};

/// Pillow's Image.resize(size, filter) for 8-bit L/RGB images (a no-op copy when the size is unchanged).
Image resize(const Image& img, int width, int height, Interpolation filter);

/// torchvision Resize(size): shorter side -> size, the longer one scaled and truncated.
Image resize_shorter(const Image& img, int size, Interpolation filter);

/// torchvision CenterCrop (round-half-even offsets; zero-pads an image smaller than the crop).
Image center_crop(const Image& img, int height, int width);

/// Cropped image -> normalized CHW float32 values, appended to `out`.
void to_tensor(const Image& img, const PreprocessSpec& spec, float* out);

/// The whole pipeline on a decoded, upright image of spec.channels() channels.
std::vector<float> preprocess(const Image& img, const PreprocessSpec& spec);

/// Decode + preprocess a file.
std::vector<float> preprocess_file(const std::filesystem::path& path, const PreprocessSpec& spec);

}  // namespace clsx
