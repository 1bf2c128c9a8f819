// Resize, crop and normalize exactly as clsx.preprocess does: with the same native kernels.
//
// The resampling (Pillow 13's Resample.c, cut to the crop) and the normalization are cpp/src/resample.c, the
// one implementation the Python package's clsx.core._resample binds too; this file adapts them to clsx::Image
// and keeps what is C++-only: NEAREST (Pillow's affine scale, Geometry.c), padding crops, the spec's constants.
#include "clsx/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <new>

#include "clsx/error.hpp"
#include "clsx/resample.h"

namespace clsx {
namespace {

int filter_number(Interpolation f) {
  switch (f) {
    case Interpolation::Lanczos: return CLSX_LANCZOS;
    case Interpolation::Bilinear: return CLSX_BILINEAR;
    case Interpolation::Bicubic: return CLSX_BICUBIC;
    case Interpolation::Box: return CLSX_BOX;
    case Interpolation::Hamming: return CLSX_HAMMING;
    case Interpolation::Nearest: break;
  }
  throw Error("internal: no convolution filter for nearest");
}

/// The crop (left, top, width x height) of `img` resized to new_w x new_h with a convolution filter.
Image resize_crop(const Image& img, int new_w, int new_h, int left, int top, int width, int height, Interpolation filter) {
  Image out{width, height, img.channels, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * img.channels)};
  thread_local std::vector<std::uint8_t> scratch;  // reused: fresh pages per image cost more than the resize
  for (;;) {
    const std::ptrdiff_t rc = clsx_resize_crop(img.data.data(), img.width, img.height, img.channels, new_w, new_h, left, top, width,
                                               height, filter_number(filter), out.data.data(), scratch.data(), scratch.size());
    if (rc == 0) return out;
    if (rc == -1) throw std::bad_alloc();
    if (rc < 0) throw Error("internal: resize arguments out of range");
    scratch.resize(static_cast<std::size_t>(rc));
  }
}

/// torchvision Resize(size)'s output (width, height).
std::pair<int, int> resized_size(int w, int h, int size) {
  const int shorter = std::min(w, h), longer = std::max(w, h);
  if (shorter == size) return {w, h};
  // Python: int(size * long / short): true division of exact integers, then truncation
  const int new_long = static_cast<int>(static_cast<double>(static_cast<std::int64_t>(size) * longer) / shorter);
  return w <= h ? std::pair{size, new_long} : std::pair{new_long, size};
}

/// torchvision CenterCrop's offset along one side (Python's round(): half to even, which nearbyint does).
int crop_offset(int size, int crop) { return static_cast<int>(std::nearbyint((size - crop) / 2.0)); }

/// Pillow's ImagingScaleAffine (nearest neighbour), which Image.resize uses for NEAREST.
Image resize_nearest(const Image& in, int out_w, int out_h) {
  const int ch = in.channels;
  Image out{out_w, out_h, ch, std::vector<std::uint8_t>(static_cast<std::size_t>(out_w) * out_h * ch, 0)};
  const double a0 = static_cast<double>(in.width) / out_w, a4 = static_cast<double>(in.height) / out_h;
  auto coord = [](double v) { return v < 0.0 ? -1 : static_cast<int>(v); };
  std::vector<int> xin(out_w, -1);
  double xo = 0.0 + a0 * 0.5;
  for (int x = 0; x < out_w; ++x) {
    const int xi = coord(xo);
    if (xi >= 0 && xi < in.width) xin[x] = xi;
    xo += a0;
  }
  double yo = 0.0 + a4 * 0.5;
  for (int y = 0; y < out_h; ++y) {
    const int yi = coord(yo);
    if (yi >= 0 && yi < in.height) {
      for (int x = 0; x < out_w; ++x) {
        if (xin[x] >= 0) std::copy_n(in.row(yi) + static_cast<std::size_t>(xin[x]) * ch, ch, out.row(y) + static_cast<std::size_t>(x) * ch);
      }
    }
    yo += a4;
  }
  return out;
}

}  // namespace

Interpolation parse_interpolation(const std::string& name) {
  if (name == "nearest") return Interpolation::Nearest;
  if (name == "bilinear") return Interpolation::Bilinear;
  if (name == "bicubic") return Interpolation::Bicubic;
  if (name == "lanczos") return Interpolation::Lanczos;
  if (name == "box") return Interpolation::Box;
  if (name == "hamming") return Interpolation::Hamming;
  throw Error("unknown interpolation '" + name + "': use nearest, bilinear, bicubic, lanczos, box or hamming");
}

Image resize(const Image& img, int width, int height, Interpolation filter) {
  if (width < 1 || height < 1) throw Error("resize target must be at least 1x1");
  if (width == img.width && height == img.height) return img;
  if (filter == Interpolation::Nearest) return resize_nearest(img, width, height);
  return resize_crop(img, width, height, 0, 0, width, height, filter);
}

Image resize_shorter(const Image& img, int size, Interpolation filter) {
  const auto [w, h] = resized_size(img.width, img.height, size);
  return resize(img, w, h, filter);
}

Image center_crop(const Image& img, int height, int width) {
  const int ch = img.channels;
  const Image* src = &img;
  Image padded;
  if (img.width < width || img.height < height) {
    const int pw = std::max(img.width, width), ph = std::max(img.height, height);
    padded = Image{pw, ph, ch, std::vector<std::uint8_t>(static_cast<std::size_t>(pw) * ph * ch, 0)};
    const int ox = (pw - img.width) / 2, oy = (ph - img.height) / 2;
    for (int y = 0; y < img.height; ++y) {
      std::copy_n(img.row(y), static_cast<std::size_t>(img.width) * ch, padded.row(y + oy) + static_cast<std::size_t>(ox) * ch);
    }
    src = &padded;
  }
  const int top = crop_offset(src->height, height), left = crop_offset(src->width, width);
  Image out{width, height, ch, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * ch)};
  for (int y = 0; y < height; ++y) {
    std::copy_n(src->row(y + top) + static_cast<std::size_t>(left) * ch, static_cast<std::size_t>(width) * ch, out.row(y));
  }
  return out;
}

void to_tensor(const Image& img, const PreprocessSpec& spec, float* out) {
  const int c = spec.channels(), h = spec.height(), w = spec.width();
  if (img.channels != c || img.height != h || img.width != w) {
    throw Error("internal: tensor of " + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w) +
                " from an image of " + std::to_string(img.channels) + "x" + std::to_string(img.height) + "x" +
                std::to_string(img.width));
  }
  // x * scale + offset with per-channel constants computed in double and rounded to float once, then a
  // float multiply and a float add (clsx_normalize): what clsx.core.preprocess.to_tensor does, bit for bit.
  const double range = spec.input_range == 1.0f ? 255.0 : 255.0 / static_cast<double>(spec.input_range);
  float scale[4], offset[4];
  for (int oc = 0; oc < c; ++oc) {
    const double mean = spec.mean[oc], sd = spec.std[oc];
    scale[oc] = static_cast<float>(1.0 / (range * sd));
    offset[oc] = static_cast<float>(-mean / sd);
  }
  clsx_normalize(img.data.data(), static_cast<std::ptrdiff_t>(h) * w, c, scale, offset, spec.bgr && c == 3, out);
}

std::vector<float> preprocess(const Image& img, const PreprocessSpec& spec) {
  if (img.channels != spec.channels()) {
    return preprocess(convert_channels(img, spec.channels()), spec);
  }
  const int h = spec.height(), w = spec.width();
  const auto [nw, nh] = resized_size(img.width, img.height, spec.resize_size);
  // The fused path computes only what the crop keeps (the same pixels); nearest, a crop larger than the
  // resized image (zero padding) and no resize at all take the plain steps.
  const bool fused = spec.interpolation != Interpolation::Nearest && nw >= w && nh >= h && (nw != img.width || nh != img.height);
  const Image cropped = fused ? resize_crop(img, nw, nh, crop_offset(nw, w), crop_offset(nh, h), w, h, spec.interpolation)
                              : center_crop(resize_shorter(img, spec.resize_size, spec.interpolation), h, w);
  std::vector<float> out(spec.tensor_size());
  to_tensor(cropped, spec, out.data());
  return out;
}

std::vector<float> preprocess_file(const std::filesystem::path& path, const PreprocessSpec& spec) {
  return preprocess(load_image(path, spec.channels()), spec);
}

}  // namespace clsx
