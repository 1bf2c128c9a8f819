// clsx::Classifier: metadata + preprocessing + a backend -> top-k (clsx/classifier.py's twin).
#include "clsx/classifier.hpp"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>

#include "clsx/error.hpp"
#include "clsx/preprocess.hpp"

namespace clsx {

void top_k(const float* logits, int rows, int classes, int k, std::vector<std::vector<int>>& indices,
           std::vector<std::vector<double>>& probs) {
  indices.assign(rows, {});
  probs.assign(rows, {});
  std::vector<double> p(classes);
  std::vector<int> order(classes);
  for (int r = 0; r < rows; ++r) {
    const float* z = logits + static_cast<std::size_t>(r) * classes;
    const double mx = *std::max_element(z, z + classes);
    double sum = 0.0;
    for (int c = 0; c < classes; ++c) {
      p[c] = std::exp(static_cast<double>(z[c]) - mx);
      sum += p[c];
    }
    for (int c = 0; c < classes; ++c) p[c] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    for (int i = 0; i < k; ++i) {
      indices[r].push_back(order[i]);
      probs[r].push_back(p[order[i]]);
    }
  }
}

struct Classifier::Impl {
  std::filesystem::path artifact;
  Metadata meta;
  std::unique_ptr<Backend> backend;
};

Classifier::Classifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Classifier::Classifier(Classifier&&) noexcept = default;
Classifier& Classifier::operator=(Classifier&&) noexcept = default;
Classifier::~Classifier() = default;

Classifier Classifier::open(const std::filesystem::path& artifact, const OpenOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->artifact = artifact;
  impl->meta = read_metadata(artifact);
  const std::string name = options.backend == "auto" || options.backend.empty() ? backend_for(artifact) : options.backend;
  impl->backend = make_backend(name, artifact, impl->meta, options);
  return Classifier(std::move(impl));
}

Classifier Classifier::from_backend(Metadata meta, std::unique_ptr<Backend> backend, const std::filesystem::path& artifact) {
  if (!backend) throw Error("Classifier::from_backend needs a backend");
  auto impl = std::make_unique<Impl>();
  impl->artifact = artifact.empty() ? std::filesystem::path(meta.model_name) : artifact;
  impl->meta = std::move(meta);
  impl->backend = std::move(backend);
  return Classifier(std::move(impl));
}

const Metadata& Classifier::metadata() const { return impl_->meta; }

std::string Classifier::describe() const { return impl_->backend->describe(); }

int Classifier::effective_topk(int topk) const {
  if (topk < 1) throw Error("topk must be at least 1; got " + std::to_string(topk));
  return std::min(topk, num_classes());
}

std::vector<float> Classifier::load(const std::filesystem::path& image) const {
  return preprocess_file(image, preprocess_spec());
}

std::vector<float> Classifier::load(const std::uint8_t* pixels, int width, int height, int channels) const {
  return preprocess(image_from_buffer(pixels, width, height, channels, preprocess_spec().channels()), preprocess_spec());
}

std::vector<float> Classifier::logits(const std::vector<float>& batch, const std::vector<std::int64_t>& shape) {
  const PreprocessSpec& s = preprocess_spec();
  auto dims = [](const std::vector<std::int64_t>& v) {
    std::string t;
    for (auto d : v) t += (t.empty() ? "" : "x") + std::to_string(d);
    return t;
  };
  const std::string want = "Nx" + std::to_string(s.channels()) + "x" + std::to_string(s.height()) + "x" + std::to_string(s.width());
  if (shape.size() != 4 || shape[0] < 1 || shape[1] != s.channels() || shape[2] != s.height() || shape[3] != s.width()) {
    throw Error("wrong input size: got " + dims(shape) + ", the model takes " + want + " (see its sidecar's preprocess section)");
  }
  const std::size_t per = s.tensor_size();
  const auto n = static_cast<std::size_t>(shape[0]);
  if (batch.size() != n * per) {
    throw Error("wrong input size: " + std::to_string(batch.size()) + " values for a batch of shape " + dims(shape) + " (" +
                std::to_string(n * per) + " expected)");
  }
  const int limit = impl_->backend->max_batch();
  const std::size_t step = limit > 0 ? static_cast<std::size_t>(limit) : n;
  std::vector<float> out;
  out.reserve(n * num_classes());
  // an artifact with a fixed batch size takes exactly that many images: the last chunk is padded
  const bool fixed = metadata().fixed_batch.has_value() && limit > 0;
  std::vector<float> padded;
  for (std::size_t i = 0; i < n; i += step) {
    const int m = static_cast<int>(std::min(step, n - i));
    std::vector<float> part;
    if (fixed && static_cast<std::size_t>(m) < step) {
      padded.assign(step * per, 0.0f);
      std::copy_n(batch.data() + i * per, m * per, padded.begin());
      part = impl_->backend->run(padded.data(), static_cast<int>(step));
      part.resize(std::min(part.size(), static_cast<std::size_t>(m) * num_classes()));
    } else {
      part = impl_->backend->run(batch.data() + i * per, m);
    }
    if (part.size() != static_cast<std::size_t>(m) * num_classes()) {
      throw Error(impl_->artifact.string() + ": the model returned " + std::to_string(part.size()) + " values for " +
                  std::to_string(m) + " images; its sidecar says " + std::to_string(num_classes()) + " classes");
    }
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

std::vector<Prediction> Classifier::classify(const std::vector<float>& batch, const std::vector<std::string>& sources, int topk) {
  const PreprocessSpec& s = preprocess_spec();
  const int k = effective_topk(topk);
  const auto n = static_cast<std::int64_t>(sources.size());
  const std::vector<float> z = logits(batch, {n, s.channels(), s.height(), s.width()});
  std::vector<std::vector<int>> idx;
  std::vector<std::vector<double>> pr;
  top_k(z.data(), static_cast<int>(n), num_classes(), k, idx, pr);
  std::vector<Prediction> out(n);
  for (std::int64_t r = 0; r < n; ++r) {
    out[r].source = sources[r];
    out[r].indices = idx[r];
    out[r].probs = pr[r];
    for (int i : idx[r]) out[r].labels.push_back(metadata().label(i));
  }
  return out;
}

Prediction Classifier::predict(const std::filesystem::path& image, int topk) {
  return classify(load(image), {image.string()}, topk).front();
}

Prediction Classifier::predict(const std::uint8_t* pixels, int width, int height, int channels, int topk) {
  return classify(load(pixels, width, height, channels), {"<image 0>"}, topk).front();
}

std::vector<Prediction> Classifier::predict(const std::vector<std::filesystem::path>& images, int topk, int batch_size) {
  if (batch_size < 1) throw Error("batch size must be at least 1; got " + std::to_string(batch_size));
  const int k = effective_topk(topk);
  std::vector<Prediction> out;
  out.reserve(images.size());
  for (std::size_t start = 0; start < images.size(); start += batch_size) {
    const std::size_t end = std::min(images.size(), start + batch_size);
    std::vector<float> batch;
    std::vector<std::string> names;
    std::vector<Prediction> chunk(end - start);
    std::vector<std::size_t> good;
    for (std::size_t i = start; i < end; ++i) {
      chunk[i - start].source = images[i].string();
      try {
        std::vector<float> t = load(images[i]);
        batch.insert(batch.end(), t.begin(), t.end());
        names.push_back(images[i].string());
        good.push_back(i - start);
      } catch (const Error& exc) {
        chunk[i - start].error = exc.what();
      }
    }
    if (!good.empty()) {
      std::vector<Prediction> scored = classify(batch, names, k);
      for (std::size_t j = 0; j < good.size(); ++j) chunk[good[j]] = std::move(scored[j]);
    }
    for (auto& p : chunk) out.push_back(std::move(p));
  }
  return out;
}

}  // namespace clsx
