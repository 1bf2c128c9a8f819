// ONNX Runtime backend: model.onnx through the ONNX Runtime C++ API (CPU execution provider).
// Compiled only when CMake finds onnxruntime_cxx_api.h and libonnxruntime (CLSX_WITH_ONNXRUNTIME).
// The metadata comes from the sidecar model.onnx.json that clsx writes beside every ONNX file.
#include <onnxruntime_cxx_api.h>

#include <array>

#include "clsx/backend.hpp"
#include "clsx/error.hpp"

namespace clsx {
namespace {

class OnnxrtBackend final : public Backend {
 public:
  OnnxrtBackend(const std::filesystem::path& model, const Metadata& meta, const OpenOptions& options)
      : meta_(meta), name_(model.filename().string()), env_(ORT_LOGGING_LEVEL_WARNING, "clsx") {
    if (meta.artifact != "onnx") {
      throw Error(model.string() + ": its sidecar describes a '" + meta.artifact + "' artifact, not an ONNX graph");
    }
    try {
      Ort::SessionOptions so;
      so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
      if (options.threads > 0) so.SetIntraOpNumThreads(options.threads);
      session_ = std::make_unique<Ort::Session>(env_, model.c_str(), so);
    } catch (const Ort::Exception& exc) {
      throw Error(model.string() + ": ONNX Runtime cannot load the graph (" + exc.what() + ")");
    }
    if (session_->GetInputCount() != 1 || session_->GetOutputCount() < 1) {
      throw Error(model.string() + ": expected one image input and a logits output");
    }
    Ort::AllocatorWithDefaultOptions alloc;
    input_name_ = session_->GetInputNameAllocated(0, alloc).get();
    output_name_ = session_->GetOutputNameAllocated(0, alloc).get();
  }

  std::vector<float> run(const float* batch, int n) override {
    const auto& s = meta_.preprocess;
    const std::array<std::int64_t, 4> shape{n, s.channels(), s.height(), s.width()};
    const std::size_t count = static_cast<std::size_t>(n) * s.tensor_size();
    const Ort::MemoryInfo mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    try {
      Ort::Value input = Ort::Value::CreateTensor<float>(mem, const_cast<float*>(batch), count, shape.data(), shape.size());
      const char* in_names[] = {input_name_.c_str()};
      const char* out_names[] = {output_name_.c_str()};
      std::vector<Ort::Value> outputs = session_->Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 1);
      const float* y = outputs.front().GetTensorData<float>();
      const std::size_t size = outputs.front().GetTensorTypeAndShapeInfo().GetElementCount();
      return std::vector<float>(y, y + size);
    } catch (const Ort::Exception& exc) {
      throw Error(name_ + ": ONNX Runtime failed on a batch of " + std::to_string(n) + " (" + exc.what() + ")");
    }
  }

  int max_batch() const override { return meta_.fixed_batch.value_or(0); }

  std::string describe() const override { return "onnxrt (ONNX Runtime " + Ort::GetVersionString() + ", CPU) " + name_; }

 private:
  Metadata meta_;
  std::string name_;
  Ort::Env env_;
  std::unique_ptr<Ort::Session> session_;
  std::string input_name_, output_name_;
};

}  // namespace

std::unique_ptr<Backend> make_onnxrt_backend(const std::filesystem::path& model, const Metadata& meta, const OpenOptions& options) {
  return std::make_unique<OnnxrtBackend>(model, meta, options);
}

}  // namespace clsx
