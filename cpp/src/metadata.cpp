// Reading the metadata document with nlohmann-json (mirrors clsx.metadata.check_document and
// clsx.spec.PreprocessSpec.from_dict, including the crop_pct fallback for resize_size).
#include "clsx/metadata.hpp"

#include <cmath>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "clsx/error.hpp"

namespace clsx {
namespace {

using nlohmann::json;

std::vector<float> floats(const json& v, const std::string& what, const std::string& where) {
  if (!v.is_array()) throw Error(where + ": model.preprocess." + what + " must be a list of numbers");
  std::vector<float> out;
  for (const auto& x : v) out.push_back(static_cast<float>(x.get<double>()));  // Python: np.float32(value)
  return out;
}

PreprocessSpec parse_preprocess(const json& d, const std::string& where) {
  PreprocessSpec s;
  if (d.contains("input_size")) {
    const auto& v = d.at("input_size");
    if (!v.is_array() || v.size() != 3) throw Error(where + ": model.preprocess.input_size must be [C, H, W]");
    s.input_size = {v[0].get<int>(), v[1].get<int>(), v[2].get<int>()};
  }
  if (d.contains("resize_size") && !d.at("resize_size").is_null()) {
    s.resize_size = d.at("resize_size").get<int>();
  } else if (d.contains("crop_pct") && !d.at("crop_pct").is_null()) {  // timm's rule, clsx.spec.resize_for_crop_pct
    const double pct = d.at("crop_pct").get<double>();
    if (!(pct > 0 && pct <= 2)) throw Error(where + ": model.preprocess.crop_pct must be in (0, 2]");
    s.resize_size = static_cast<int>(std::floor(std::min(s.input_size[1], s.input_size[2]) / pct));
  }
  if (d.contains("interpolation")) s.interpolation = parse_interpolation(d.at("interpolation").get<std::string>());
  if (d.contains("mean")) s.mean = floats(d.at("mean"), "mean", where);
  if (d.contains("std")) s.std = floats(d.at("std"), "std", where);
  if (d.contains("channel_order")) {
    const auto order = d.at("channel_order").get<std::string>();
    if (order != "RGB" && order != "BGR") throw Error(where + ": channel_order must be RGB or BGR; got " + order);
    s.bgr = order == "BGR";
  }
  if (d.contains("input_range")) s.input_range = static_cast<float>(d.at("input_range").get<double>());
  const int c = s.channels();
  if ((c != 1 && c != 3) || s.height() < 1 || s.width() < 1) {
    throw Error(where + ": input size must be 1xHxW or 3xHxW with positive H, W");
  }
  if (static_cast<int>(s.mean.size()) != c || static_cast<int>(s.std.size()) != c) {
    throw Error(where + ": mean and std need " + std::to_string(c) + " values each");
  }
  for (float v : s.std) {
    if (!(v > 0)) throw Error(where + ": std values must be positive");
  }
  if (s.resize_size < 1) throw Error(where + ": resize size must be positive");
  if (s.input_range != 1.0f && s.input_range != 255.0f) throw Error(where + ": input range must be 1 or 255");
  return s;
}

}  // namespace

std::string Metadata::label(int index) const {
  return index >= 0 && index < static_cast<int>(labels.size()) ? labels[index] : std::string();
}

std::filesystem::path sidecar_path(const std::filesystem::path& artifact) {
  std::filesystem::path p = artifact;
  p += ".json";
  return p;
}

Metadata parse_metadata(const std::string& json_text, const std::string& where) {
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::parse_error& exc) {
    throw Error(where + ": invalid JSON (" + exc.what() + ")");
  }
  if (!doc.is_object() || !doc.contains("schema_version") || !doc.contains("model")) {
    throw Error(where + ": not a clsx metadata document");
  }
  Metadata m;
  try {
    m.schema_version = doc.at("schema_version").get<int>();
    if (m.schema_version > kSchemaVersion) {
      throw Error(where + ": metadata schema " + std::to_string(m.schema_version) +
                  " is newer than this clsx C++ library understands (" + std::to_string(kSchemaVersion) +
                  "); upgrade the library");
    }
    m.clsx_version = doc.value("clsx_version", "");
    m.artifact = doc.value("artifact", "");
    m.precision = doc.value("precision", "fp32");
    const json& model = doc.at("model");
    m.model_name = model.value("name", "");
    m.model_ref = model.value("ref", m.model_name);
    m.weights = model.value("weights", "random");
    m.num_classes = model.at("num_classes").get<int>();
    if (m.num_classes < 1) throw Error(where + ": model.num_classes must be positive");
    m.preprocess = parse_preprocess(model.value("preprocess", json::object()), where);
    if (model.contains("labels") && model.at("labels").is_array()) {
      m.labels = model.at("labels").get<std::vector<std::string>>();
    }
    if (doc.contains("inputs") && doc.at("inputs").is_array() && !doc.at("inputs").empty()) {
      const json& in = doc.at("inputs")[0];
      m.input_name = in.value("name", m.input_name);
      const std::string dtype = in.contains("dtype") && in.at("dtype").is_string() ? in.at("dtype").get<std::string>() : "float32";
      const std::string layout = in.contains("layout") && in.at("layout").is_string() ? in.at("layout").get<std::string>() : "NCHW";
      if (dtype != "float32" || layout != "NCHW") {
        throw Error(where + ": inputs[0] takes " + dtype + " " + layout + " (clsx export --input uint8?); the C++ library feeds " +
                    "NCHW float32 only: export without --input uint8 for C++");
      }
      if (in.contains("shape") && in.at("shape").is_array() && !in.at("shape").empty() && in.at("shape")[0].is_number_integer()) {
        m.fixed_batch = in.at("shape")[0].get<int>();
      }
      if (in.contains("max_batch") && in.at("max_batch").is_number_integer()) m.max_batch = in.at("max_batch").get<int>();
    }
    if (doc.contains("outputs") && doc.at("outputs").is_array() && !doc.at("outputs").empty()) {
      m.output_name = doc.at("outputs")[0].value("name", m.output_name);
    }
    if (doc.contains("tensorrt") && doc.at("tensorrt").is_object()) {
      const json& t = doc.at("tensorrt");
      TensorrtSection trt;
      trt.flavour = t.value("flavour", "");
      if (t.contains("version")) trt.version = t.at("version").is_string() ? t.at("version").get<std::string>() : t.at("version").dump();
      if (t.contains("compute_capabilities") && t.at("compute_capabilities").is_array()) {
        for (const auto& c : t.at("compute_capabilities")) trt.compute_capabilities.push_back(c.is_string() ? c.get<std::string>() : c.dump());
      }
      if (t.contains("hardware_compat") && t.at("hardware_compat").is_string()) trt.hardware_compat = t.at("hardware_compat").get<std::string>();
      trt.version_compatible = t.contains("version_compatible") && t.at("version_compatible").is_boolean() && t.at("version_compatible").get<bool>();
      m.tensorrt = trt;
    }
  } catch (const json::exception& exc) {
    throw Error(where + ": malformed clsx metadata (" + exc.what() + ")");
  }
  m.json = json_text;
  return m;
}

Metadata read_metadata(const std::filesystem::path& artifact) {
  std::error_code ec;
  if (!std::filesystem::exists(artifact, ec)) throw Error(artifact.string() + ": no such file");
  const auto side = sidecar_path(artifact);
  if (!std::filesystem::exists(side, ec)) {
    throw Error(artifact.string() + ": no clsx metadata sidecar " + side.filename().string() +
                " next to it (clsx writes one beside every artifact; copy it along with the model)");
  }
  std::ifstream f(side, std::ios::binary);
  if (!f) throw Error(side.string() + ": cannot read the metadata sidecar");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Metadata m = parse_metadata(text, side.string());
  m.sidecar = side;
  return m;
}

}  // namespace clsx
