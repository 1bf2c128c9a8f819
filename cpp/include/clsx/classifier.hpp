// clsx::Classifier: an artifact clsx wrote (model.pt2 / model.onnx / model.plan + its sidecar),
// its preprocessing and labels -> top-k predictions. The C++ twin of clsx.Classifier.
//
//   auto clf = clsx::Classifier::open("lite0.pt2");
//   clsx::Prediction p = clf.predict("cat.jpg", 5);   // p.indices, p.labels, p.probs
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "clsx/backend.hpp"
#include "clsx/metadata.hpp"

namespace clsx {

/// Top-k for one image, best first; or why the image could not be classified (`error`).
struct Prediction {
  std::string source;
  std::vector<int> indices;
  std::vector<std::string> labels;
  std::vector<double> probs;
  std::string error;
  bool ok() const { return error.empty(); }
};

/// Row-wise softmax (float64, max subtracted) and top-k, best first, ties to the lower index
/// (clsx.classifier.top_k). Returns (indices, probabilities) per row.
void top_k(const float* logits, int rows, int classes, int k, std::vector<std::vector<int>>& indices,
           std::vector<std::vector<double>>& probs);

class Classifier {
 public:
  /// Read `artifact`'s sidecar and open the backend its extension names (.pt2 -> aoti,
  /// .onnx -> onnxrt, .plan/.engine -> tensorrt) or the one in `options.backend`.
  /// Throws clsx::Error for a missing file or sidecar, a newer schema, a backend not built in.
  static Classifier open(const std::filesystem::path& artifact, const OpenOptions& options = {});

  /// A Classifier over a backend of your own (any runtime that maps NCHW batches to logits).
  static Classifier from_backend(Metadata meta, std::unique_ptr<Backend> backend, const std::filesystem::path& artifact = {});

  Classifier(Classifier&&) noexcept;
  Classifier& operator=(Classifier&&) noexcept;
  ~Classifier();

  const Metadata& metadata() const;
  const PreprocessSpec& preprocess_spec() const { return metadata().preprocess; }
  int num_classes() const { return metadata().num_classes; }
  std::string describe() const;

  /// `topk` capped at the number of classes; throws for topk < 1.
  int effective_topk(int topk) const;

  /// One image file / interleaved uint8 buffer (1, 3 or 4 = RGBA channels) -> CHW float32 tensor.
  std::vector<float> load(const std::filesystem::path& image) const;
  std::vector<float> load(const std::uint8_t* pixels, int width, int height, int channels) const;

  /// An NCHW float32 batch of `shape` [N, C, H, W] -> [N, num_classes] logits. Throws clsx::Error when
  /// the shape is not the model's input size (or the data has the wrong number of values).
  std::vector<float> logits(const std::vector<float>& batch, const std::vector<std::int64_t>& shape);

  /// Logits of a batch -> one Prediction per row, named by `sources`.
  std::vector<Prediction> classify(const std::vector<float>& batch, const std::vector<std::string>& sources, int topk);

  /// One image; throws clsx::Error when it cannot be read.
  Prediction predict(const std::filesystem::path& image, int topk = 5);
  Prediction predict(const std::uint8_t* pixels, int width, int height, int channels, int topk = 5);

  /// Many images in batches of `batch_size`; unreadable images get a Prediction with `error` set.
  std::vector<Prediction> predict(const std::vector<std::filesystem::path>& images, int topk = 5, int batch_size = 32);

 private:
  struct Impl;
  explicit Classifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clsx
