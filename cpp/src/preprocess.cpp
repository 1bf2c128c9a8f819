// Resize, crop and normalize exactly as clsx.preprocess does with Pillow.
//
// The resampling is a port of Pillow's libImaging/Resample.c (8 bits per channel): per output
// pixel, a filter window centred on the source position, widened by the downscale factor
// (antialiasing); coefficients normalized to sum 1 and stored in 22-bit fixed point; a horizontal
// pass over the rows the vertical pass needs, rounded and clipped to uint8, then a vertical pass
// (vertical first where Pillow 13 does: see resize). A pass whose size does not change is skipped.
// NEAREST is Pillow's affine scale (Geometry.c).
#include "clsx/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "clsx/error.hpp"

namespace clsx {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double box_filter(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

double hamming_filter(double x) {
  if (x < 0.0) x = -x;
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x = x * std::numbers::pi;
  return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));
}

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc_filter(double x) {
  if (x == 0.0) return 1.0;
  x = x * std::numbers::pi;
  return std::sin(x) / x;
}

double lanczos_filter(double x) {
  if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
  return 0.0;
}

struct Filter {
  double (*fn)(double);
  double support;
};

Filter filter_of(Interpolation f) {
  switch (f) {
    case Interpolation::Box: return {box_filter, 0.5};
    case Interpolation::Bilinear: return {bilinear_filter, 1.0};
    case Interpolation::Hamming: return {hamming_filter, 1.0};
    case Interpolation::Bicubic: return {bicubic_filter, 2.0};
    case Interpolation::Lanczos: return {lanczos_filter, 3.0};
    case Interpolation::Nearest: break;
  }
  throw Error("internal: no convolution filter for nearest");
}

/// Pillow's precompute_coeffs + normalize_coeffs_8bpc: for each output index, the first source
/// index, the window length and `ksize` fixed-point weights.
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // (xmin, xmax) pairs
  std::vector<std::int32_t> k;
};

Coeffs precompute(int in_size, int out_size, const Filter& filter) {
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filter.support * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<std::size_t>(out_size) * 2);
  c.k.assign(static_cast<std::size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; ++x) {
      w[x] = filter.fn((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    std::int32_t* k = &c.k[static_cast<std::size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      k[x] = v < 0 ? static_cast<std::int32_t>(-0.5 + v * (1 << kPrecisionBits))
                   : static_cast<std::int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

inline std::uint8_t clip8(int v) { return static_cast<std::uint8_t>(std::clamp(v >> kPrecisionBits, 0, 255)); }

/// Horizontal pass over source rows [row0, row0 + rows); CH channels accumulated in one sweep.
template <int CH>
void horizontal_rows(const Image& in, Image& out, int row0, const Coeffs& c) {
  for (int yy = 0; yy < out.height; ++yy) {
    const std::uint8_t* src = in.row(yy + row0);
    std::uint8_t* dst = out.row(yy);
    for (int xx = 0; xx < out.width; ++xx) {
      const int xmin = c.bounds[xx * 2], xmax = c.bounds[xx * 2 + 1];
      const std::int32_t* k = &c.k[static_cast<std::size_t>(xx) * c.ksize];
      int ss[CH];
      for (int b = 0; b < CH; ++b) ss[b] = 1 << (kPrecisionBits - 1);
      const std::uint8_t* p = src + static_cast<std::size_t>(xmin) * CH;
      for (int x = 0; x < xmax; ++x) {
        for (int b = 0; b < CH; ++b) ss[b] += p[x * CH + b] * k[x];
      }
      for (int b = 0; b < CH; ++b) dst[xx * CH + b] = clip8(ss[b]);
    }
  }
}

Image resample_horizontal(const Image& in, int out_w, int row0, int rows, const Coeffs& c) {
  Image out{out_w, rows, in.channels, std::vector<std::uint8_t>(static_cast<std::size_t>(out_w) * rows * in.channels)};
  if (in.channels == 3) {
    horizontal_rows<3>(in, out, row0, c);
  } else {
    horizontal_rows<1>(in, out, row0, c);
  }
  return out;
}

/// Vertical pass; `shift` is subtracted from the coefficient bounds (rows already cut off). Each
/// output row accumulates whole source rows (integer sums: the order does not change the result).
Image resample_vertical(const Image& in, int out_h, const Coeffs& c, int shift) {
  const int ch = in.channels, w = in.width;
  const std::size_t n = static_cast<std::size_t>(w) * ch;
  Image out{w, out_h, ch, std::vector<std::uint8_t>(n * out_h)};
  std::vector<std::int32_t> ss(n);
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[yy * 2] - shift, ymax = c.bounds[yy * 2 + 1];
    const std::int32_t* k = &c.k[static_cast<std::size_t>(yy) * c.ksize];
    std::fill(ss.begin(), ss.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < ymax; ++y) {
      const std::uint8_t* src = in.row(y + ymin);
      const std::int32_t ky = k[y];
      for (std::size_t i = 0; i < n; ++i) ss[i] += src[i] * ky;
    }
    std::uint8_t* dst = out.row(yy);
    for (std::size_t i = 0; i < n; ++i) dst[i] = clip8(ss[i]);
  }
  return out;
}

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
  const Filter f = filter_of(filter);
  const bool need_h = width != img.width, need_v = height != img.height;
  const Coeffs vert = precompute(img.height, height, f);
  const int first = vert.bounds[0];
  const int last = vert.bounds[height * 2 - 2] + vert.bounds[height * 2 - 1];
  if (!need_h) return resample_vertical(img, height, vert, 0);
  const Coeffs horiz = precompute(img.width, width, f);
  if (!need_v) return resample_horizontal(img, width, 0, img.height, horiz);
  // Pillow 13's pass order: vertical first when the height shrinks by more than twice what the width
  // does (each pass rounds to uint8, so the order changes pixels by a level or more)
  const int dy = img.height - height, dx = img.width - width;
  if (dy > 0 && dy > dx * 2) {
    const Image tmp = resample_vertical(img, height, vert, 0);
    return resample_horizontal(tmp, width, 0, height, horiz);
  }
  const Image tmp = resample_horizontal(img, width, first, last - first, horiz);
  return resample_vertical(tmp, height, vert, first);
}

Image resize_shorter(const Image& img, int size, Interpolation filter) {
  const int w = img.width, h = img.height;
  const int shorter = std::min(w, h), longer = std::max(w, h);
  if (shorter == size) return img;
  // Python: int(size * long / short): true division of exact integers, then truncation
  const int new_long = static_cast<int>(static_cast<double>(static_cast<std::int64_t>(size) * longer) / shorter);
  return w <= h ? resize(img, size, new_long, filter) : resize(img, new_long, size, filter);
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
  // Python's round(): half to even, which nearbyint does in the default rounding mode
  const int top = static_cast<int>(std::nearbyint((src->height - height) / 2.0));
  const int left = static_cast<int>(std::nearbyint((src->width - width) / 2.0));
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
  const std::size_t plane = static_cast<std::size_t>(h) * w;
  // x * scale + offset with per-channel constants computed in double and rounded to float once, then a
  // float multiply and a float add: what clsx.core.preprocess.to_tensor does (numpy), bit for bit
  // (the build turns off fused multiply-add contraction).
  const double range = spec.input_range == 1.0f ? 255.0 : 255.0 / static_cast<double>(spec.input_range);
  for (int oc = 0; oc < c; ++oc) {
    const int ic = spec.bgr && c == 3 ? 2 - oc : oc;  // BGR: output channel 0 is the image's blue
    const double mean = spec.mean[oc], sd = spec.std[oc];
    const float scale = static_cast<float>(1.0 / (range * sd)), offset = static_cast<float>(-mean / sd);
    float* dst = out + oc * plane;
    for (std::size_t i = 0; i < plane; ++i) {
      const float v = static_cast<float>(img.data[i * c + ic]) * scale;
      dst[i] = v + offset;
    }
  }
}

std::vector<float> preprocess(const Image& img, const PreprocessSpec& spec) {
  if (img.channels != spec.channels()) {
    return preprocess(convert_channels(img, spec.channels()), spec);
  }
  const Image resized = resize_shorter(img, spec.resize_size, spec.interpolation);
  const Image cropped = center_crop(resized, spec.height(), spec.width());
  std::vector<float> out(spec.tensor_size());
  to_tensor(cropped, spec, out.data());
  return out;
}

std::vector<float> preprocess_file(const std::filesystem::path& path, const PreprocessSpec& spec) {
  return preprocess(load_image(path, spec.channels()), spec);
}

}  // namespace clsx
