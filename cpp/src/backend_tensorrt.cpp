// TensorRT backend: model.plan + model.plan.json through the TensorRT C++ API (10.x / TensorRT-RTX).
// Compiled only when CMake finds NvInfer.h, the TensorRT library and the CUDA runtime
// (CLSX_WITH_TENSORRT; CLSX_TENSORRT_FLAVOUR says which library). Before deserializing, the
// sidecar's flavour, version and compute capabilities are checked against this library and GPU
// (check_engine_compatible), so a plan for another GPU is a clear clsx::Error, not TensorRT's
// "magic tag" failure.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <fstream>
#include <iterator>
#include <utility>

#include "clsx/backend.hpp"
#include "clsx/error.hpp"

#ifndef CLSX_TENSORRT_FLAVOUR
#define CLSX_TENSORRT_FLAVOUR "tensorrt"
#endif

namespace clsx {
namespace {

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kERROR) last_error = msg;
  }
  std::string last_error;
};

std::string cuda_check(cudaError_t rc, const std::string& what) {
  return rc == cudaSuccess ? std::string() : what + ": " + cudaGetErrorString(rc);
}

/// "10.13.2" from getInferLibVersion() (major * 10000 + minor * 100 + patch since TensorRT 10).
std::string library_version() {
  const int v = getInferLibVersion();
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

/// "sm89" for CUDA device `index`, or "" when CUDA sees no such device.
std::string device_compute_capability(int index) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || index < 0 || index >= count) return "";
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) return "";
  return "sm" + std::to_string(prop.major) + std::to_string(prop.minor);
}

struct DeviceBuffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr(std::exchange(other.ptr, nullptr)), bytes(std::exchange(other.bytes, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  void reserve(std::size_t n) {
    if (n <= bytes) return;
    if (ptr != nullptr) cudaFree(ptr);
    ptr = nullptr;
    bytes = 0;
    const std::string problem = cuda_check(cudaMalloc(&ptr, n), "cudaMalloc");
    if (!problem.empty()) throw Error(problem);
    bytes = n;
  }
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
};

class TensorrtBackend final : public Backend {
 public:
  TensorrtBackend(const std::filesystem::path& plan, const Metadata& meta, const OpenOptions& options)
      : meta_(meta), name_(plan.filename().string()), device_(options.device) {
    check_engine_compatible(meta, CLSX_TENSORRT_FLAVOUR, library_version(), device_compute_capability(device_));
    std::string problem = cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    if (!problem.empty()) throw Error(name_ + ": " + problem);
    std::ifstream f(plan, std::ios::binary);
    if (!f) throw Error(plan.string() + ": cannot read the plan");
    const std::vector<char> blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error(name_ + ": cannot create the TensorRT runtime (" + logger_.last_error + ")");
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) {
      throw Error(name_ + ": " CLSX_TENSORRT_FLAVOUR " could not deserialize the engine (" + logger_.last_error +
                  "); rebuild it here with clsx build");
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(name_ + ": cannot create an execution context (" + logger_.last_error + ")");
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputs_ : outputs_).emplace_back(name);
    }
    if (inputs_.size() != 1 || outputs_.empty()) throw Error(name_ + ": expected one image input and a logits output");
    if (engine_->getTensorDataType(inputs_[0].c_str()) != nvinfer1::DataType::kFLOAT ||
        engine_->getTensorDataType(outputs_[0].c_str()) != nvinfer1::DataType::kFLOAT) {
      throw Error(name_ + ": clsx engines take and return float32 tensors; this one does not");
    }
    const nvinfer1::Dims in_shape = engine_->getTensorShape(inputs_[0].c_str());
    max_batch_ = in_shape.d[0] >= 0 ? static_cast<int>(in_shape.d[0])
                                    : static_cast<int>(engine_->getProfileShape(inputs_[0].c_str(), 0, nvinfer1::OptProfileSelector::kMAX).d[0]);
    problem = cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    if (!problem.empty()) throw Error(name_ + ": " + problem);
    extra_.resize(outputs_.size());
  }

  ~TensorrtBackend() override {
    context_.reset();
    engine_.reset();
    runtime_.reset();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  std::vector<float> run(const float* batch, int n) override {
    const auto& s = meta_.preprocess;
    nvinfer1::Dims shape{};
    shape.nbDims = 4;
    shape.d[0] = n;
    shape.d[1] = s.channels();
    shape.d[2] = s.height();
    shape.d[3] = s.width();
    if (!context_->setInputShape(inputs_[0].c_str(), shape)) {
      throw Error(name_ + ": the engine rejects a batch of " + std::to_string(n) + " (profile maximum " + std::to_string(max_batch_) + ")");
    }
    const std::size_t in_bytes = static_cast<std::size_t>(n) * s.tensor_size() * sizeof(float);
    input_.reserve(in_bytes);
    context_->setTensorAddress(inputs_[0].c_str(), input_.ptr);
    std::size_t out_count = 0;
    for (std::size_t i = 0; i < outputs_.size(); ++i) {  // unread outputs still need memory
      const nvinfer1::Dims d = context_->getTensorShape(outputs_[i].c_str());
      std::size_t count = 1;
      for (int k = 0; k < d.nbDims; ++k) count *= static_cast<std::size_t>(d.d[k]);
      extra_[i].reserve(count * 8);  // room for any element type (logits are float32)
      context_->setTensorAddress(outputs_[i].c_str(), extra_[i].ptr);
      if (i == 0) out_count = count;
    }
    std::vector<float> out(out_count);
    std::string problem = cuda_check(cudaMemcpyAsync(input_.ptr, batch, in_bytes, cudaMemcpyHostToDevice, stream_), "copy to GPU");
    if (problem.empty() && !context_->enqueueV3(stream_)) problem = "enqueueV3 failed (" + logger_.last_error + ")";
    if (problem.empty()) {
      problem = cuda_check(cudaMemcpyAsync(out.data(), extra_[0].ptr, out_count * sizeof(float), cudaMemcpyDeviceToHost, stream_), "copy from GPU");
    }
    const std::string sync = cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    if (!problem.empty() || !sync.empty()) throw Error(name_ + ": TensorRT failed to run the batch (" + problem + sync + ")");
    return out;
  }

  int max_batch() const override { return max_batch_; }

  std::string describe() const override {
    return CLSX_TENSORRT_FLAVOUR " " + library_version() + ", cuda:" + std::to_string(device_) + " (" +
           device_compute_capability(device_) + ") " + name_;
  }

 private:
  Metadata meta_;
  std::string name_;
  int device_ = 0;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::vector<std::string> inputs_, outputs_;
  int max_batch_ = 0;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer input_;
  std::vector<DeviceBuffer> extra_;
};

}  // namespace

std::unique_ptr<Backend> make_tensorrt_backend(const std::filesystem::path& plan, const Metadata& meta, const OpenOptions& options) {
  return std::make_unique<TensorrtBackend>(plan, meta, options);
}

}  // namespace clsx
