// Decoded images: 8-bit, 1 (L) or 3 (RGB) interleaved channels, upright (EXIF orientation applied).
//
// The twin of clsx.preprocess.load_image: JPEG through libjpeg (libjpeg-turbo; the decoder
// defaults Pillow uses: islow IDCT, fancy upsampling), PNG through libpng, EXIF orientation from the
// JPEG APP1 segment or the PNG eXIf chunk, and Pillow's mode conversions (RGBA/LA drop alpha,
// palette expanded, L replicated to RGB, RGB to L with Pillow's ITU-R 601-2 weights).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace clsx {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;               ///< 1 (L) or 3 (RGB)
  std::vector<std::uint8_t> data; ///< row-major, interleaved, width * height * channels bytes

  std::uint8_t* row(int y) { return data.data() + static_cast<std::size_t>(y) * width * channels; }
  const std::uint8_t* row(int y) const { return data.data() + static_cast<std::size_t>(y) * width * channels; }
};

/// Largest image decoded (Pillow's MAX_IMAGE_PIXELS, about 89 Mpx, the limit clsx.preprocess applies).
inline constexpr std::int64_t kMaxImagePixels = 89478485;

/// Decode a JPEG or PNG file, apply its EXIF orientation and convert to `channels` (1 or 3).
/// Throws clsx::Error naming the file for missing, unreadable, corrupt or unsupported files.
Image load_image(const std::filesystem::path& path, int channels = 3);

/// The same from bytes in memory; `name` is used in error messages.
Image decode_image(std::span<const std::uint8_t> bytes, int channels = 3, const std::string& name = "<memory>");

/// An interleaved uint8 buffer (1, 3 or 4 channels; 4 = RGBA, alpha dropped) as an Image of `channels`.
Image image_from_buffer(const std::uint8_t* pixels, int width, int height, int buffer_channels, int channels = 3);

/// Convert between L (1) and RGB (3) as Pillow's Image.convert does.
Image convert_channels(Image img, int channels);

/// Apply an EXIF orientation value (1..8) the way PIL.ImageOps.exif_transpose does.
Image apply_orientation(Image img, int orientation);

/// The EXIF orientation (1..8) in a TIFF-structured EXIF block ("Exif\0\0" prefix optional), or 1.
int exif_orientation(std::span<const std::uint8_t> exif);

}  // namespace clsx
