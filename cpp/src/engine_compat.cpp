// The TensorRT plan compatibility check (clsx.runtimes._trt.check_engine_compatible), kept free of
// the TensorRT SDK so it is compiled and unit-tested on every machine.
#include <algorithm>
#include <cctype>

#include "clsx/backend.hpp"
#include "clsx/error.hpp"

namespace clsx {
namespace {

std::vector<int> version_tuple(const std::string& version) {
  std::vector<int> parts;
  std::size_t start = 0;
  while (start <= version.size()) {
    const std::size_t dot = version.find('.', start);
    const std::string piece = version.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    std::size_t digits = 0;
    while (digits < piece.size() && std::isdigit(static_cast<unsigned char>(piece[digits]))) ++digits;
    if (digits == 0) break;
    parts.push_back(std::stoi(piece.substr(0, digits)));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::vector<int> head(std::vector<int> v, std::size_t n) {
  if (v.size() > n) v.resize(n);
  return v;
}

/// "sm86", "SM_86", "8.6", "86" -> "sm86" (clsx.runtimes._trt.normalize_compute_capability).
std::string normalize_cc(const std::string& text) {
  std::string t;
  for (char ch : text) {
    if (ch != '_' && !std::isspace(static_cast<unsigned char>(ch))) t += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  const std::string body = t.rfind("sm", 0) == 0 ? t.substr(2) : t;
  auto digits = [](const std::string& x) {
    return !x.empty() && std::all_of(x.begin(), x.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
  };
  const auto dot = body.find('.');
  if (dot != std::string::npos && digits(body.substr(0, dot)) && body.size() == dot + 2 && digits(body.substr(dot + 1))) {
    return "sm" + body.substr(0, dot) + body.substr(dot + 1);
  }
  if (digits(body) && body.size() >= 2 && body.size() <= 3) return "sm" + body;
  throw Error("not a compute capability: '" + text + "' (write sm86, 8.6 or 86)");
}

std::pair<int, int> cc_value(const std::string& cc) {
  const std::string digits = normalize_cc(cc).substr(2);
  return {std::stoi(digits.substr(0, digits.size() - 1)), digits.back() - '0'};
}

}  // namespace

void check_engine_compatible(const Metadata& meta, const std::string& flavour, const std::string& version,
                             const std::string& compute_capability) {
  const std::string where = meta.sidecar.empty() ? std::string("engine metadata") : meta.sidecar.string();
  if (meta.artifact != "tensorrt" || !meta.tensorrt) {
    throw Error(where + ": not a TensorRT engine's metadata (artifact '" + meta.artifact +
                "'); build one with: clsx build MODEL.onnx");
  }
  const TensorrtSection& trt = *meta.tensorrt;
  const std::string& built_flavour = trt.flavour;
  const std::string& built = trt.version;
  const std::string rebuild = "rebuild it here with: clsx build MODEL.onnx";
  if (built_flavour != "tensorrt" && built_flavour != "tensorrt_rtx") {
    throw Error(where + ": engine metadata names an unknown TensorRT flavour '" + built_flavour + "'");
  }
  if (built_flavour != flavour) {
    throw Error(where + ": engine built with " + built_flavour + " " + built + ", but this library was compiled against " +
                flavour + " " + version + "; " + rebuild);
  }
  const auto b = version_tuple(built), h = version_tuple(version);
  if (trt.version_compatible && flavour == "tensorrt") {
    if (!(head(h, 1) == head(b, 1) && h >= b)) {
      throw Error(where + ": engine built version-compatible with tensorrt " + built + " needs tensorrt " +
                  (b.empty() ? std::string("?") : std::to_string(b[0])) + ".x >= " + built + "; this machine has " + version +
                  "; " + rebuild);
    }
  } else if (head(h, 3) != head(b, 3)) {
    throw Error(where + ": engine built with " + flavour + " " + built + " cannot run on " + flavour + " " + version +
                " (TensorRT engines are tied to the release that built them); " + rebuild);
  }
  if (compute_capability.empty()) {
    throw Error(where + ": TensorRT engines run on an NVIDIA GPU, and CUDA sees none on this machine");
  }
  const std::string cc = normalize_cc(compute_capability);
  std::vector<std::string> targets;
  for (const auto& c : trt.compute_capabilities) targets.push_back(normalize_cc(c));
  if (trt.hardware_compat == "ampere+") {
    if (cc_value(cc) < std::pair<int, int>{8, 0}) {
      throw Error(where + ": engine built for Ampere and newer GPUs (sm80+); this GPU is " + cc + "; " + rebuild);
    }
    return;
  }
  if (!targets.empty() && std::find(targets.begin(), targets.end(), cc) == targets.end()) {
    std::string list;
    for (const auto& t : targets) list += (list.empty() ? "" : ", ") + t;
    throw Error(where + ": engine built for compute capabilities " + list + "; this GPU is " + cc + "; " + rebuild);
  }
}

}  // namespace clsx
