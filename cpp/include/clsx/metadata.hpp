// The artifact metadata document (clsx/metadata.py), read from the sidecar `<artifact>.json`.
//
// Every clsx artifact (ONNX graph, TensorRT plan, AOTInductor package) has the same JSON document
// next to it. The C++ library takes the model's preprocessing, labels and I/O from there, and
// refuses documents whose schema_version is newer than it understands.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "clsx/preprocess.hpp"

namespace clsx {

/// The newest metadata schema this library reads (clsx.metadata.SCHEMA_VERSION).
inline constexpr int kSchemaVersion = 1;

/// The `tensorrt` section of an engine's sidecar: what the compatibility check needs.
struct TensorrtSection {
  std::string flavour;  ///< "tensorrt" | "tensorrt_rtx"
  std::string version;  ///< e.g. "10.13.2.6"
  std::vector<std::string> compute_capabilities;  ///< e.g. {"sm89"}
  std::string hardware_compat = "none";           ///< "none" | "ampere+" | "same-cc"
  bool version_compatible = false;
};

struct Metadata {
  int schema_version = 0;
  std::string clsx_version;
  std::string artifact;   ///< "onnx" | "tensorrt" | "aoti"
  std::string precision;  ///< "fp32" | "fp16" | "int8"
  std::string model_name, model_ref, weights;
  int num_classes = 0;
  PreprocessSpec preprocess;
  std::vector<std::string> labels;  ///< empty when the model has none
  std::string input_name = "input", output_name = "logits";
  std::optional<int> fixed_batch;   ///< set when the input's batch axis is a number
  std::optional<int> max_batch;     ///< the largest batch the artifact serves, when recorded
  std::optional<TensorrtSection> tensorrt;  ///< engines only
  std::string json;                 ///< the whole document, for sections this struct does not model
  std::filesystem::path sidecar;    ///< where it was read from

  /// "" when the model has no label for `index`.
  std::string label(int index) const;
};

/// `<artifact>.json` (clsx.metadata.sidecar_path).
std::filesystem::path sidecar_path(const std::filesystem::path& artifact);

/// Parse a document; `where` names it in error messages. Throws clsx::Error for invalid JSON, a
/// document that is not clsx metadata, a newer schema, or an invalid preprocessing section.
Metadata parse_metadata(const std::string& json_text, const std::string& where);

/// The sidecar of `artifact`; throws clsx::Error when the artifact or its sidecar is missing.
Metadata read_metadata(const std::filesystem::path& artifact);

}  // namespace clsx
