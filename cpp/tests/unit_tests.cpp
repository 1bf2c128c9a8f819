// Unit tests of the clsx C++ library that need no model and no photo: error cases (missing
// sidecar, newer schema, corrupt image, wrong input size, engine for another GPU), resize/crop
// arithmetic, EXIF orientation, top-k. The real-photo and real-model checks live in tests/cpp
// (pytest), which compare against the Python implementation.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "clsx/clsx.hpp"

namespace fs = std::filesystem;

namespace {

int failures = 0;
int checks = 0;

void check(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::cerr << "FAIL: " << what << "\n";
  }
}

/// `fn` must throw clsx::Error whose message contains `needle`.
void expect_error(const std::function<void()>& fn, const std::string& needle, const std::string& what) {
  try {
    fn();
  } catch (const clsx::Error& exc) {
    const std::string msg = exc.what();
    check(msg.find(needle) != std::string::npos, what + ": message '" + msg + "' lacks '" + needle + "'");
    return;
  } catch (const std::exception& exc) {
    check(false, what + ": threw a non-clsx exception: " + exc.what());
    return;
  }
  check(false, what + ": did not throw");
}

nlohmann::json document(int schema = 1) {
  return {
      {"schema_version", schema},
      {"clsx_version", "0.1.0"},
      {"artifact", "aoti"},
      {"precision", "fp32"},
      {"model",
       {{"name", "tiny"},
        {"source", "custom"},
        {"ref", "tiny"},
        {"num_classes", 4},
        {"weights", "random"},
        {"preprocess",
         {{"input_size", {3, 8, 8}},
          {"resize_size", 10},
          {"interpolation", "bilinear"},
          {"mean", {0.5, 0.5, 0.5}},
          {"std", {0.25, 0.25, 0.25}},
          {"channel_order", "RGB"},
          {"input_range", 1.0}}},
        {"labels", {"a", "b", "c", "d"}}}},
      {"inputs", {{{"name", "input"}, {"shape", {"batch", 3, 8, 8}}, {"dtype", "float32"}}}},
      {"outputs", {{{"name", "logits"}, {"shape", {"batch", 4}}, {"dtype", "float32"}}}},
  };
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f << bytes;
}

clsx::Image constant_image(int w, int h, int c, std::uint8_t v) {
  return clsx::Image{w, h, c, std::vector<std::uint8_t>(static_cast<std::size_t>(w) * h * c, v)};
}

/// Returns fixed logits: class scores = {0, 2, 2, 1} for every image (a tie between 1 and 2).
class FakeBackend : public clsx::Backend {
 public:
  int calls = 0;
  int largest = 0;
  int smallest = 1 << 30;
  std::vector<float> run(const float*, int n) override {
    ++calls;
    largest = std::max(largest, n);
    smallest = std::min(smallest, n);
    std::vector<float> out;
    for (int i = 0; i < n; ++i) out.insert(out.end(), {0.f, 2.f, 2.f, 1.f});
    return out;
  }
  int max_batch() const override { return 3; }
  std::string describe() const override { return "fake"; }
};

void test_metadata(const fs::path& dir) {
  const auto m = clsx::parse_metadata(document().dump(), "doc");
  check(m.num_classes == 4 && m.labels.size() == 4 && m.preprocess.resize_size == 10, "parse a valid document");
  check(m.preprocess.interpolation == clsx::Interpolation::Bilinear && m.preprocess.height() == 8, "preprocess section");

  auto d = document();
  d["model"]["preprocess"].erase("resize_size");
  d["model"]["preprocess"]["crop_pct"] = 0.875;
  check(clsx::parse_metadata(d.dump(), "doc").preprocess.resize_size == 9, "crop_pct fallback floor(8 / 0.875) = 9");

  expect_error([] { clsx::parse_metadata(document(2).dump(), "doc"); }, "newer", "newer schema is refused");
  expect_error([] { clsx::parse_metadata("{not json", "doc"); }, "invalid JSON", "invalid JSON");
  expect_error([] { clsx::parse_metadata("{\"a\": 1}", "doc"); }, "not a clsx metadata document", "foreign JSON");
  auto bad = document();
  bad["model"]["preprocess"]["interpolation"] = "cubic";
  expect_error([&] { clsx::parse_metadata(bad.dump(), "doc"); }, "unknown interpolation", "bad interpolation");
  bad = document();
  bad["model"]["preprocess"]["mean"] = {0.5};
  expect_error([&] { clsx::parse_metadata(bad.dump(), "doc"); }, "mean and std", "mean of the wrong length");
  bad = document();
  bad["inputs"] = nlohmann::json::array({{{"name", "input"}, {"shape", {"batch", 8, 8, 3}}, {"dtype", "uint8"}, {"layout", "NHWC"}}});
  expect_error([&] { clsx::parse_metadata(bad.dump(), "doc"); }, "feeds NCHW float32 only", "a uint8 NHWC input is refused");

  const fs::path model = dir / "model.pt2";
  write_file(model, "not really a package");
  expect_error([&] { clsx::read_metadata(dir / "absent.pt2"); }, "no such file", "missing artifact");
  expect_error([&] { clsx::read_metadata(model); }, "sidecar", "missing sidecar");
  expect_error([&] { clsx::Classifier::open(model); }, "sidecar", "Classifier::open without sidecar");
  write_file(clsx::sidecar_path(model), document(7).dump());
  expect_error([&] { clsx::Classifier::open(model); }, "schema 7 is newer", "Classifier::open with a newer schema");

  const fs::path weird = dir / "model.bin";
  write_file(weird, "x");
  write_file(clsx::sidecar_path(weird), document().dump());
  expect_error([&] { clsx::Classifier::open(weird); }, "unknown artifact type", "unknown extension");
}

void test_backends_not_built(const fs::path& dir) {
  const auto built = clsx::backends_built();
  for (const std::string name : {"aoti", "onnxrt", "tensorrt"}) {
    if (std::find(built.begin(), built.end(), name) != built.end()) continue;
    const fs::path p = dir / ("m." + std::string(name == "aoti" ? "pt2" : name == "onnxrt" ? "onnx" : "plan"));
    write_file(p, "x");
    write_file(clsx::sidecar_path(p), document().dump());
    expect_error([&] { clsx::Classifier::open(p); }, "not compiled into this build", name + " backend absent");
  }
#ifdef CLSX_TEST_EXPECT_AOTI
  check(std::find(built.begin(), built.end(), "aoti") != built.end(), "aoti backend built");
#endif
  if (std::find(built.begin(), built.end(), "aoti") != built.end()) {
    const fs::path p = dir / "garbage.pt2";
    write_file(p, "this is not a zip archive");
    write_file(clsx::sidecar_path(p), document().dump());
    expect_error([&] { clsx::Classifier::open(p); }, "cannot load the AOTInductor package", "corrupt .pt2");
  }
}

void test_images(const fs::path& dir) {
  expect_error([&] { clsx::load_image(dir / "nope.jpg"); }, "no such file", "missing image");
  expect_error([&] { clsx::load_image(dir); }, "is a directory", "directory as image");
  write_file(dir / "text.jpg", "hello, I am not an image");
  expect_error([&] { clsx::load_image(dir / "text.jpg"); }, "not a recognised image file", "text file");
  std::string jpeg = "\xFF\xD8\xFF\xE0";
  jpeg += std::string(200, '\x11');
  write_file(dir / "corrupt.jpg", jpeg);
  expect_error([&] { clsx::load_image(dir / "corrupt.jpg"); }, "cannot decode image", "corrupt JPEG");
  std::string png = "\x89PNG\r\n\x1a\n";
  png += std::string("\0\0\0\x0dIHDR\0\0\0\x10\0\0\0\x10\x08\x02\0\0\0", 21);
  write_file(dir / "truncated.png", png);
  expect_error([&] { clsx::load_image(dir / "truncated.png"); }, "cannot decode image", "truncated PNG");
  const std::uint8_t rgba[8] = {10, 20, 30, 0, 40, 50, 60, 255};
  const clsx::Image img = clsx::image_from_buffer(rgba, 2, 1, 4, 3);
  check(img.channels == 3 && img.data == std::vector<std::uint8_t>({10, 20, 30, 40, 50, 60}), "RGBA drops alpha");
  const std::uint8_t rgb[3] = {255, 0, 0};
  check(clsx::image_from_buffer(rgb, 1, 1, 3, 1).data[0] == 76, "RGB -> L with Pillow's weights (red = 76)");
}

void test_exif() {
  // little-endian TIFF, one IFD entry: Orientation (0x0112), SHORT, count 1, value 6
  const std::vector<std::uint8_t> le = {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0,
                                        0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0};
  check(clsx::exif_orientation(le) == 6, "EXIF orientation, little endian");
  const std::vector<std::uint8_t> be = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0};
  check(clsx::exif_orientation(be) == 8, "EXIF orientation, big endian");
  check(clsx::exif_orientation(std::vector<std::uint8_t>{'I', 'I', 42, 0, 200, 0, 0, 0}) == 1, "EXIF with a bad offset -> 1");
  // 3x2 image with pixel values 0..5; orientation 6 rotates 90 degrees clockwise -> 2x3
  clsx::Image img{3, 2, 1, {0, 1, 2, 3, 4, 5}};
  const clsx::Image r = clsx::apply_orientation(img, 6);
  check(r.width == 2 && r.height == 3 && r.data == std::vector<std::uint8_t>({3, 0, 4, 1, 5, 2}), "orientation 6 = 90 degrees clockwise");
  const clsx::Image l = clsx::apply_orientation(img, 8);
  check(l.data == std::vector<std::uint8_t>({2, 5, 1, 4, 0, 3}), "orientation 8 = 90 degrees counter-clockwise");
}

void test_resize_and_crop() {
  for (auto f : {clsx::Interpolation::Nearest, clsx::Interpolation::Bilinear, clsx::Interpolation::Bicubic,
                 clsx::Interpolation::Lanczos, clsx::Interpolation::Box, clsx::Interpolation::Hamming}) {
    const clsx::Image out = clsx::resize(constant_image(37, 23, 3, 200), 16, 11, f);
    bool flat = out.width == 16 && out.height == 11;
    for (auto v : out.data) flat = flat && v == 200;
    check(flat, "a constant image stays constant under every filter");
  }
  const clsx::Image shorter = clsx::resize_shorter(constant_image(300, 200, 3, 1), 100, clsx::Interpolation::Bilinear);
  check(shorter.width == 150 && shorter.height == 100, "shorter side -> 100, longer 150");
  const clsx::Image odd = clsx::resize_shorter(constant_image(201, 301, 1, 1), 64, clsx::Interpolation::Bilinear);
  check(odd.width == 64 && odd.height == 95, "int(64 * 301 / 201) = 95 (truncated)");
  clsx::Image ramp{5, 1, 1, {0, 1, 2, 3, 4}};
  const clsx::Image cropped = clsx::center_crop(ramp, 1, 2);
  check(cropped.data == std::vector<std::uint8_t>({2, 3}), "crop offset round(1.5) = 2 (half to even)");
  clsx::Image ramp7{7, 1, 1, {0, 1, 2, 3, 4, 5, 6}};
  check(clsx::center_crop(ramp7, 1, 2).data == std::vector<std::uint8_t>({2, 3}), "crop offset round(2.5) = 2 (half to even)");
  const clsx::Image padded = clsx::center_crop(constant_image(2, 2, 1, 9), 4, 4);
  check(padded.data[0] == 0 && padded.data[5] == 9 && padded.data[10] == 9 && padded.data[15] == 0, "zero padding when smaller");
}

void test_classifier() {
  auto meta = clsx::parse_metadata(document().dump(), "doc");
  auto backend = std::make_unique<FakeBackend>();
  FakeBackend* fake = backend.get();
  clsx::Classifier clf = clsx::Classifier::from_backend(meta, std::move(backend));
  std::vector<float> seven(7 * 3 * 8 * 8, 0.f);
  const auto z = clf.logits(seven, {7, 3, 8, 8});
  check(z.size() == 28 && fake->largest == 3 && fake->calls == 3, "a batch of 7 runs as 3 + 3 + 1 (max_batch 3)");
  expect_error([&] { clf.logits(std::vector<float>(3 * 9 * 9), {1, 3, 9, 9}); }, "wrong input size", "wrong H, W");

  auto fixed_doc = document();
  fixed_doc["inputs"][0]["shape"] = {3, 3, 8, 8};  // a batch fixed at 3 (FakeBackend's max_batch)
  auto fixed_backend = std::make_unique<FakeBackend>();
  FakeBackend* fixed_fake = fixed_backend.get();
  clsx::Classifier fixed = clsx::Classifier::from_backend(clsx::parse_metadata(fixed_doc.dump(), "doc"), std::move(fixed_backend));
  const auto z4 = fixed.logits(std::vector<float>(4 * 3 * 8 * 8), {4, 3, 8, 8});
  check(z4.size() == 16 && fixed_fake->calls == 2 && fixed_fake->smallest == 3, "a fixed batch of 3 pads the last chunk of 1");
  expect_error([&] { clf.logits(std::vector<float>(10), {1, 3, 8, 8}); }, "wrong input size", "wrong number of values");
  expect_error([&] { clf.logits(std::vector<float>(64), {1, 1, 8, 8}); }, "wrong input size", "wrong channel count");
  const std::uint8_t px[4 * 4 * 3] = {};
  const clsx::Prediction p = clf.predict(px, 4, 4, 3, 3);
  check(p.ok() && p.indices == std::vector<int>({1, 2, 3}), "top-k ties go to the lower index");
  check(p.labels == std::vector<std::string>({"b", "c", "d"}), "labels from the sidecar");
  const double e2 = std::exp(2.0), total = 1 + 2 * e2 + std::exp(1.0);
  check(std::abs(p.probs[0] - e2 / total) < 1e-12, "softmax probabilities");
  check(clf.effective_topk(10) == 4, "topk capped at the number of classes");
  expect_error([&] { clf.effective_topk(0); }, "topk", "topk 0");
  const auto preds = clf.predict(std::vector<fs::path>{"/nonexistent/a.jpg"}, 2);
  check(preds.size() == 1 && !preds[0].ok() && preds[0].error.find("no such file") != std::string::npos,
        "an unreadable image becomes an error row");
}

void test_engine_compat() {
  auto d = document();
  d["artifact"] = "tensorrt";
  d["tensorrt"] = {{"flavour", "tensorrt"}, {"version", "10.13.2.6"}, {"compute_capabilities", {"sm89"}}, {"hardware_compat", "none"}};
  auto meta = clsx::parse_metadata(d.dump(), "plan.json");
  clsx::check_engine_compatible(meta, "tensorrt", "10.13.2.6", "sm89");
  check(true, "a matching engine passes");
  expect_error([&] { clsx::check_engine_compatible(meta, "tensorrt", "10.13.2.6", "sm80"); }, "this GPU is sm80", "another GPU");
  expect_error([&] { clsx::check_engine_compatible(meta, "tensorrt", "10.12.0.36", "8.9"); }, "cannot run on tensorrt 10.12",
               "another TensorRT version");
  expect_error([&] { clsx::check_engine_compatible(meta, "tensorrt_rtx", "1.7.1", "sm89"); }, "engine built with tensorrt",
               "another flavour");
  expect_error([&] { clsx::check_engine_compatible(meta, "tensorrt", "10.13.2.6", ""); }, "sees none", "no GPU");
  d["tensorrt"]["hardware_compat"] = "ampere+";
  meta = clsx::parse_metadata(d.dump(), "plan.json");
  clsx::check_engine_compatible(meta, "tensorrt", "10.13.2.6", "sm86");
  expect_error([&] { clsx::check_engine_compatible(meta, "tensorrt", "10.13.2.6", "sm75"); }, "Ampere", "ampere+ on Turing");
  d["artifact"] = "aoti";
  meta = clsx::parse_metadata(d.dump(), "x.json");
  expect_error([&] { clsx::check_engine_compatible(meta, "tensorrt", "10.13.2.6", "sm89"); }, "not a TensorRT engine", "not an engine");
}

}  // namespace

int main() {
  const fs::path dir = fs::temp_directory_path() / ("clsx_unit_tests_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::vector<std::pair<std::string, std::function<void()>>> tests = {
      {"metadata", [&] { test_metadata(dir); }},
      {"backends", [&] { test_backends_not_built(dir); }},
      {"images", [&] { test_images(dir); }},
      {"exif", test_exif},
      {"resize_and_crop", test_resize_and_crop},
      {"classifier", test_classifier},
      {"engine_compat", test_engine_compat},
  };
  for (const auto& [name, fn] : tests) {
    try {
      fn();
    } catch (const std::exception& exc) {
      check(false, name + ": unexpected exception: " + exc.what());
    }
  }
  fs::remove_all(dir);
  std::cout << checks - failures << "/" << checks << " checks passed\n";
  return failures == 0 ? 0 : 1;
}
