// clsx_preprocess_dump DOC.json OUT.bin IMAGE...
//
// Preprocesses each image with the metadata document's preprocessing and writes the tensors, raw
// little-endian float32 NCHW, to OUT.bin. The Python guard test (tests/cpp) compares them with
// clsx.preprocess element by element. Exit status 1 with one line on stderr for any error.
#include <fstream>
#include <iostream>
#include <iterator>

#include "clsx/error.hpp"
#include "clsx/metadata.hpp"
#include "clsx/preprocess.hpp"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: clsx_preprocess_dump DOC.json OUT.bin IMAGE...\n";
    return 2;
  }
  try {
    std::ifstream doc(argv[1], std::ios::binary);
    if (!doc) throw clsx::Error(std::string(argv[1]) + ": no such file");
    const std::string text((std::istreambuf_iterator<char>(doc)), std::istreambuf_iterator<char>());
    const clsx::Metadata meta = clsx::parse_metadata(text, argv[1]);
    std::ofstream out(argv[2], std::ios::binary);
    if (!out) throw clsx::Error(std::string(argv[2]) + ": cannot write");
    for (int i = 3; i < argc; ++i) {
      const std::vector<float> t = clsx::preprocess_file(argv[i], meta.preprocess);
      out.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.size() * sizeof(float)));
    }
    if (!out.flush()) throw clsx::Error(std::string(argv[2]) + ": write failed");
  } catch (const clsx::Error& exc) {
    std::cerr << "clsx_preprocess_dump: error: " << exc.what() << "\n";
    return 1;
  }
  return 0;
}
