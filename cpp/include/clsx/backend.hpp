// Backends: what runs an NCHW float32 batch. One implementation per runtime (aoti, onnxrt,
// tensorrt), each compiled only when CMake found its SDK (see backends_built()).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "clsx/metadata.hpp"

namespace clsx {

struct OpenOptions {
  std::string backend = "auto";  ///< auto (from the extension), aoti, onnxrt or tensorrt
  int device = 0;                ///< CUDA device index (tensorrt)
  int threads = 0;               ///< intra-op threads (onnxrt; 0 = the runtime's default)
};

class Backend {
 public:
  virtual ~Backend() = default;
  /// `n` images of the metadata's input size, contiguous NCHW -> n * num_classes logits.
  virtual std::vector<float> run(const float* batch, int n) = 0;
  /// Largest batch one run() takes (0: no limit); the Classifier splits bigger batches.
  virtual int max_batch() const { return 0; }
  virtual std::string describe() const = 0;
};

/// Names of the backends compiled into this build, e.g. {"aoti"}.
std::vector<std::string> backends_built();

/// The backend name for an artifact path: .pt2 -> aoti, .onnx -> onnxrt, .plan/.engine -> tensorrt.
std::string backend_for(const std::filesystem::path& artifact);

std::unique_ptr<Backend> make_backend(const std::string& name, const std::filesystem::path& artifact,
                                      const Metadata& meta, const OpenOptions& options);

/// The TensorRT compatibility check, separate from the SDK so it is testable anywhere: throws
/// clsx::Error when the sidecar's tensorrt section (flavour, version, compute capabilities,
/// hardware_compat) does not fit the TensorRT `flavour`/`version` and the GPU `compute_capability`
/// (e.g. "sm89") found at run time.
void check_engine_compatible(const Metadata& meta, const std::string& flavour, const std::string& version,
                             const std::string& compute_capability);

}  // namespace clsx
