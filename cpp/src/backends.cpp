// Backend registry: which backends this build has (CMake defines CLSX_WITH_<NAME> for each SDK it
// found) and the factory that opens one.
#include <algorithm>
#include <cctype>

#include "clsx/backend.hpp"
#include "clsx/error.hpp"

namespace clsx {

#ifdef CLSX_WITH_AOTI
std::unique_ptr<Backend> make_aoti_backend(const std::filesystem::path&, const Metadata&, const OpenOptions&);
#endif
#ifdef CLSX_WITH_ONNXRUNTIME
std::unique_ptr<Backend> make_onnxrt_backend(const std::filesystem::path&, const Metadata&, const OpenOptions&);
#endif
#ifdef CLSX_WITH_TENSORRT
std::unique_ptr<Backend> make_tensorrt_backend(const std::filesystem::path&, const Metadata&, const OpenOptions&);
#endif

std::vector<std::string> backends_built() {
  std::vector<std::string> names;
#ifdef CLSX_WITH_AOTI
  names.emplace_back("aoti");
#endif
#ifdef CLSX_WITH_ONNXRUNTIME
  names.emplace_back("onnxrt");
#endif
#ifdef CLSX_WITH_TENSORRT
  names.emplace_back("tensorrt");
#endif
  return names;
}

std::string backend_for(const std::filesystem::path& artifact) {
  std::string ext = artifact.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (ext == ".pt2") return "aoti";
  if (ext == ".onnx") return "onnxrt";
  if (ext == ".plan" || ext == ".engine") return "tensorrt";
  throw Error(artifact.string() + ": unknown artifact type '" + ext + "' (the C++ library opens .pt2, .onnx and .plan files)");
}

std::unique_ptr<Backend> make_backend(const std::string& name, const std::filesystem::path& artifact, const Metadata& meta,
                                      const OpenOptions& options) {
#ifdef CLSX_WITH_AOTI
  if (name == "aoti") return make_aoti_backend(artifact, meta, options);
#endif
#ifdef CLSX_WITH_ONNXRUNTIME
  if (name == "onnxrt") return make_onnxrt_backend(artifact, meta, options);
#endif
#ifdef CLSX_WITH_TENSORRT
  if (name == "tensorrt") return make_tensorrt_backend(artifact, meta, options);
#endif
  (void)artifact;
  (void)meta;
  (void)options;
  if (name != "aoti" && name != "onnxrt" && name != "tensorrt") {
    throw Error("unknown backend '" + name + "': use aoti, onnxrt or tensorrt");
  }
  std::string built;
  for (const auto& b : backends_built()) built += (built.empty() ? "" : ", ") + b;
  throw Error("the " + name + " backend is not compiled into this build of the clsx C++ library (built: " +
              (built.empty() ? std::string("none") : built) + "); reconfigure with its SDK installed");
}

}  // namespace clsx
