// clsx_classify ARTIFACT PATH... [--topk K] [--batch-size N] [--backend B] [--threads T]
//
// The C++ twin of `clsx infer`: classifies every image under PATH (files as given, folders
// searched recursively for image extensions, all in sorted path order) and prints the same CSV:
//   path,top1_index,top1_label,top1_prob,...,topK_prob,error
// Rows go to stdout, a summary to stderr. Unreadable images get a row with the reason in the
// error column. A clsx::Error (missing sidecar, newer schema, ...) prints one line, exit status 1.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "clsx/clsx.hpp"

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kImageExtensions = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"};

bool has_image_extension(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::any_of(kImageExtensions.begin(), kImageExtensions.end(), [&](const std::string& ext) {
    return lower.size() >= ext.size() && lower.compare(lower.size() - ext.size(), ext.size(), ext) == 0;
  });
}

/// A path spelled as Python's pathlib spells it: empty and "." components dropped.
std::vector<std::string> parts_of(const std::string& text) {
  std::vector<std::string> parts;
  if (!text.empty() && text[0] == '/') parts.emplace_back("/");
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t slash = text.find('/', start);
    if (slash == std::string::npos) slash = text.size();
    const std::string piece = text.substr(start, slash - start);
    if (!piece.empty() && piece != ".") parts.push_back(piece);
    start = slash + 1;
  }
  return parts;
}

std::string join(const std::vector<std::string>& parts) {
  if (parts.empty()) return ".";
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0 && !(i == 1 && parts[0] == "/")) out += '/';
    out += parts[i];
  }
  return out;
}

/// Depth first, each folder's entries sorted by name; symlinked folders that lead back to a folder
/// on the current walk are skipped (clsx.infer.iter_image_paths).
void walk(const std::vector<std::string>& folder, std::set<std::pair<dev_t, ino_t>> ancestors,
          std::vector<std::vector<std::string>>& found) {
  std::error_code ec;
  const fs::path dir = join(folder);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return;
  if (!ancestors.insert({st.st_dev, st.st_ino}).second) {
    std::cerr << "clsx_classify: warning: " << dir.string() << ": symlink loop; skipped\n";
    return;
  }
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) names.push_back(it->path().filename().string());
  if (ec) {
    std::cerr << "clsx_classify: warning: " << dir.string() << ": cannot list folder (" << ec.message() << "); skipped\n";
    return;
  }
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    std::vector<std::string> child = folder;
    child.push_back(name);
    std::error_code e2;
    if (fs::is_directory(join(child), e2)) {
      walk(child, ancestors, found);
    } else if (has_image_extension(name)) {
      found.push_back(child);
    }
  }
}

std::vector<fs::path> list_images(const std::vector<std::string>& roots) {
  std::vector<std::vector<std::string>> found;
  for (const auto& root : roots) {
    std::vector<std::string> parts = parts_of(root);
    std::error_code ec;
    if (fs::is_directory(join(parts), ec)) {
      walk(parts, {}, found);
    } else {
      found.push_back(parts);
    }
  }
  std::stable_sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end()), found.end());
  std::vector<fs::path> out;
  for (const auto& p : found) out.emplace_back(join(p));
  return out;
}

/// Python csv.writer's QUOTE_MINIMAL.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

void write_row(const clsx::Prediction& p, int k) {
  std::string row = csv_field(p.source);
  char prob[32];
  for (int i = 0; i < k; ++i) {
    if (i < static_cast<int>(p.indices.size())) {
      std::snprintf(prob, sizeof prob, "%.6f", p.probs[i]);
      row += ',';
      row += std::to_string(p.indices[i]);
      row += ',';
      row += csv_field(p.labels[i]);
      row += ',';
      row += prob;
    } else {
      row += ",,,";
    }
  }
  row += ',';
  row += csv_field(p.error);
  row += '\n';
  std::fwrite(row.data(), 1, row.size(), stdout);
}

constexpr const char* kUsage =
    "usage: clsx_classify ARTIFACT PATH... [--topk K] [--batch-size N] [--backend aoti|onnxrt|tensorrt] [--threads T] [--device N]\n";

int usage() {
  std::cerr << kUsage;
  return 2;
}

int help() {
  std::cout << kUsage << "\n"
            << "Classify images with a clsx artifact and print the CSV `clsx infer` prints: one row per image\n"
            << "(path, top-k index/label/probability, error), in sorted path order. Preprocessing, labels and\n"
            << "input size come from the artifact's sidecar (ARTIFACT.json).\n\n"
            << "  ARTIFACT            model.pt2 (AOTInductor; its sidecar model.pt2.json), model.onnx or model.plan\n"
            << "                      (when this build has that backend)\n"
            << "  PATH...             image files or folders (searched recursively)\n"
            << "  -k, --topk K        classes per row (default 5)\n"
            << "  -b, --batch-size N  images per inference call (default 32)\n"
            << "  --backend NAME      aoti, onnxrt or tensorrt (default: from the file's suffix)\n"
            << "  --threads T         CPU threads of the backend (default: the backend's own)\n"
            << "  --device N          CUDA device index (tensorrt)\n"
            << "  -h, --help          this help\n\n"
            << "Rows go to stdout; warnings, errors and the summary line (images, failures, seconds, img/s, what ran)\n"
            << "to stderr. Exit status: 0 ok, 1 error (one line), 2 usage.\n"
            << "A .pt2 package and a TensorRT plan contain code that is loaded and run: use only trusted files.\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  int topk = 5, batch_size = 32;
  clsx::OpenOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--topk" || a == "-k") {
        topk = std::stoi(value());
      } else if (a == "--batch-size" || a == "-b") {
        batch_size = std::stoi(value());
      } else if (a == "--backend") {
        options.backend = value();
      } else if (a == "--threads") {
        options.threads = std::stoi(value());
      } else if (a == "--device") {
        options.device = std::stoi(value());
      } else if (a == "-h" || a == "--help") {
        return help();
      } else if (a.size() > 1 && a[0] == '-') {
        std::cerr << "clsx_classify: unknown option " << a << "\n";
        return usage();
      } else {
        positional.push_back(a);
      }
    } catch (const std::exception& exc) {
      std::cerr << "clsx_classify: bad option " << a << " (" << exc.what() << ")\n";
      return usage();
    }
  }
  if (positional.size() < 2) return usage();
  try {
    const std::vector<std::string> roots(positional.begin() + 1, positional.end());
    for (const auto& r : roots) {
      std::error_code ec;
      if (!fs::exists(fs::symlink_status(r, ec))) throw clsx::Error(r + ": no such file or directory");
    }
    const auto start = std::chrono::steady_clock::now();
    clsx::Classifier clf = clsx::Classifier::open(positional[0], options);
    const int k = clf.effective_topk(topk);
    if (k < topk) std::cerr << "clsx_classify: warning: topk " << topk << " is more than the model's " << k << " classes; using " << k << "\n";
    const std::vector<fs::path> images = list_images(roots);
    std::string header = "path";
    for (int i = 1; i <= k; ++i) {
      for (const char* column : {"_index", "_label", "_prob"}) {
        header += ",top";
        header += std::to_string(i);
        header += column;
      }
    }
    header += ",error\n";
    std::fwrite(header.data(), 1, header.size(), stdout);
    int failed = 0;
    for (std::size_t s = 0; s < images.size(); s += batch_size) {
      const std::vector<fs::path> chunk(images.begin() + s, images.begin() + std::min(images.size(), s + batch_size));
      for (const auto& p : clf.predict(chunk, k, batch_size)) {
        write_row(p, k);
        if (!p.ok()) {
          ++failed;
          std::cerr << "clsx_classify: warning: " << p.error << "\n";
        }
      }
      std::fflush(stdout);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (images.empty()) std::cerr << "clsx_classify: warning: no images found\n";
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.1f s, %.1f img/s", secs, secs > 0 ? images.size() / secs : 0.0);
    std::cerr << "clsx_classify: " << images.size() << " images, " << failed << " failed, " << rate << " [" << clf.describe() << "]\n";
  } catch (const clsx::Error& exc) {
    std::cerr << "clsx_classify: error: " << exc.what() << "\n";
    return 1;
  }
  return 0;
}
