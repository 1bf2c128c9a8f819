// AOTInductor backend: model.pt2 (torch._inductor.aoti_compile_and_package) through libtorch's
// AOTIModelPackageLoader, using the headers and libraries that ship inside the torch wheel.
// The only translation unit that includes torch headers (they are heavy to compile).
#include <dlfcn.h>

#include <ATen/Parallel.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include "clsx/backend.hpp"
#include "clsx/error.hpp"

namespace clsx {
namespace {

std::string first_line(const std::string& text) {
  const auto nl = text.find('\n');
  return nl == std::string::npos ? text : text.substr(0, nl);
}

/// The compiled model's .so lists libtorch.so as a dependency, and the dynamic loader does not
/// search the program's rpath for the dependencies of a dlopen()ed library. Loading libtorch.so
/// (globally) from the folder libtorch_cpu.so was found in satisfies it by soname, whatever rpath
/// or LD_LIBRARY_PATH the application uses. Returns "" or the loader's complaint.
std::string preload_libtorch() {
  static const std::string problem = [] {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&at::get_num_threads), &info) == 0 || info.dli_fname == nullptr) {
      return std::string("cannot locate libtorch_cpu.so");
    }
    const auto lib = std::filesystem::path(info.dli_fname).parent_path() / "libtorch.so";
    if (dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      const char* why = dlerror();
      return std::string(why != nullptr ? why : ("cannot load " + lib.string()).c_str());
    }
    return std::string();
  }();
  return problem;
}

class AotiBackend final : public Backend {
 public:
  AotiBackend(const std::filesystem::path& package, const Metadata& meta, const OpenOptions& options) : meta_(meta) {
    if (meta.artifact != "aoti") {
      throw Error(package.string() + ": its sidecar describes a '" + meta.artifact + "' artifact, not an AOTInductor package");
    }
    if (options.threads > 0) at::set_num_threads(options.threads);
    const std::string preload = preload_libtorch();
    try {
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(package.string());
    } catch (const std::exception& exc) {
      throw Error(package.string() + ": cannot load the AOTInductor package (" + first_line(exc.what()) +
                  (preload.empty() ? std::string() : "; " + preload) + ")");
    }
    name_ = package.filename().string();
    check_against_package(package);
  }

  /// The package records the input size and class count it was compiled for (clsx.exporter.aoti
  /// package_metadata). Its compiled code does not check shapes, so a sidecar that disagrees would
  /// make it read out of bounds: refuse it here.
  void check_against_package(const std::filesystem::path& package) {
    const auto& s = meta_.preprocess;
    const std::string want = std::to_string(s.channels()) + "x" + std::to_string(s.height()) + "x" + std::to_string(s.width());
    const auto recorded = loader_->get_metadata();
    const auto size = recorded.find("clsx_input_size");
    if (size != recorded.end() && size->second != want) {
      throw Error("wrong input size: " + package.string() + " was compiled for " + size->second + " inputs, but its sidecar says " +
                  want + "; export the model again (clsx export --aoti)");
    }
    const auto classes = recorded.find("clsx_num_classes");
    if (classes != recorded.end() && classes->second != std::to_string(meta_.num_classes)) {
      throw Error(package.string() + ": compiled for " + classes->second + " classes, but its sidecar says " +
                  std::to_string(meta_.num_classes) + "; export the model again (clsx export --aoti)");
    }
  }

  std::vector<float> run(const float* batch, int n) override {
    const auto& s = meta_.preprocess;
    c10::InferenceMode guard;
    at::Tensor x = at::from_blob(const_cast<float*>(batch), {n, s.channels(), s.height(), s.width()}, at::kFloat);
    std::vector<at::Tensor> outputs;
    try {
      outputs = loader_->run({x});
    } catch (const std::exception& exc) {
      throw Error(name_ + ": the AOTInductor model failed on a batch of " + std::to_string(n) + " (" + first_line(exc.what()) + ")");
    }
    if (outputs.empty()) throw Error(name_ + ": the AOTInductor model returned no output");
    at::Tensor y = outputs.front().to(at::kFloat).contiguous();
    const float* p = y.data_ptr<float>();
    return std::vector<float>(p, p + y.numel());
  }

  int max_batch() const override {
    if (meta_.fixed_batch) return *meta_.fixed_batch;
    return meta_.max_batch.value_or(0);
  }

  std::string describe() const override { return "aoti (AOTInductor, libtorch CPU) " + name_; }

 private:
  Metadata meta_;
  std::string name_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
};

}  // namespace

std::unique_ptr<Backend> make_aoti_backend(const std::filesystem::path& package, const Metadata& meta, const OpenOptions& options) {
  return std::make_unique<AotiBackend>(package, meta, options);
}

}  // namespace clsx
