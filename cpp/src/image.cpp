// JPEG/PNG decoding, EXIF orientation and mode conversion, matching clsx.preprocess.load_image
// (Pillow). libjpeg and libpng report errors through longjmp: all state a decoder touches after
// setjmp lives on the heap behind a pointer that is never reassigned, so nothing is lost when it
// jumps back, and the failure becomes a clsx::Error.
#include <jerror.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

// jpeglib.h needs size_t and FILE declared first
#include <jpeglib.h>

#include "clsx/error.hpp"
#include "clsx/image.hpp"
#include "clsx/resample.h"

namespace clsx {
namespace {

// ---------------------------------------------------------------------------------------------
// Mode conversions (Pillow's Convert.c)

/// Pillow's rgb2l: ITU-R 601-2 luma in 16-bit fixed point.
inline std::uint8_t luma(const std::uint8_t* rgb) {
  return static_cast<std::uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

/// Interleaved pixels with `in_ch` channels -> Image with `channels` (1 or 3), the way Pillow
/// converts: 1 = L, 2 = LA, 3 = RGB, 4 = RGBA (alpha is dropped, never composited).
Image from_interleaved(const std::uint8_t* px, int width, int height, int in_ch, int channels) {
  Image out;
  out.width = width;
  out.height = height;
  out.channels = channels;
  const std::size_t n = static_cast<std::size_t>(width) * height;
  out.data.resize(n * channels);
  std::uint8_t* o = out.data.data();
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* p = px + i * in_ch;
    if (in_ch <= 2) {  // L, LA
      for (int c = 0; c < channels; ++c) o[i * channels + c] = p[0];
    } else if (channels == 3) {  // RGB, RGBA -> RGB
      o[i * 3] = p[0];
      o[i * 3 + 1] = p[1];
      o[i * 3 + 2] = p[2];
    } else {  // RGB(A) -> L
      o[i] = luma(p);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JPEG

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

/// Warnings are ignored (as Pillow does), except a premature end of data: Pillow refuses truncated
/// files ("image file is truncated"), so it is an error here too.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(cinfo);
}

struct JpegState {
  jpeg_decompress_struct cinfo{};
  JpegErrorManager err{};
  std::vector<std::uint8_t> pixels;
  std::vector<std::uint8_t> exif;
  bool created = false;
  ~JpegState() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

/// Pillow's cmyk2rgb on inverted (Adobe) CMYK, the convention Pillow assumes for CMYK JPEGs.
void cmyk_to_rgb(std::vector<std::uint8_t>& px, std::size_t n) {
  auto muldiv255 = [](int a, int b) {
    int tmp = a * b + 128;
    return ((tmp >> 8) + tmp) >> 8;
  };
  for (std::size_t i = 0; i < n; ++i) {
    std::uint8_t* p = px.data() + i * 4;
    int c = 255 - p[0], m = 255 - p[1], y = 255 - p[2], k = 255 - p[3];
    int nk = 255 - k;
    px[i * 3] = static_cast<std::uint8_t>(std::clamp(nk - muldiv255(c, nk), 0, 255));
    px[i * 3 + 1] = static_cast<std::uint8_t>(std::clamp(nk - muldiv255(m, nk), 0, 255));
    px[i * 3 + 2] = static_cast<std::uint8_t>(std::clamp(nk - muldiv255(y, nk), 0, 255));
  }
}

Image decode_jpeg(std::span<const std::uint8_t> bytes, int channels, const std::string& name) {
  auto st = std::make_unique<JpegState>();
  st->cinfo.err = jpeg_std_error(&st->err.pub);
  st->err.pub.error_exit = jpeg_fail;
  st->err.pub.emit_message = jpeg_message;
  if (setjmp(st->err.jump)) {
    throw Error(name + ": cannot decode image (" + st->err.message + ")");
  }
  jpeg_create_decompress(&st->cinfo);
  st->created = true;
  jpeg_mem_src(&st->cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_save_markers(&st->cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&st->cinfo, TRUE);
  for (jpeg_saved_marker_ptr m = st->cinfo.marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0) {
      st->exif.assign(m->data, m->data + m->data_length);  // the first Exif segment, as Pillow
      break;
    }
  }
  const J_COLOR_SPACE space = st->cinfo.jpeg_color_space;
  const bool cmyk = space == JCS_CMYK || space == JCS_YCCK;
  st->cinfo.out_color_space = space == JCS_GRAYSCALE ? JCS_GRAYSCALE : (cmyk ? JCS_CMYK : JCS_RGB);
  // Pillow's decoder settings are libjpeg's defaults: islow IDCT, fancy upsampling, no scaling.
  st->cinfo.dct_method = JDCT_ISLOW;
  st->cinfo.do_fancy_upsampling = TRUE;
  const std::int64_t pixels = static_cast<std::int64_t>(st->cinfo.image_width) * st->cinfo.image_height;
  if (pixels > kMaxImagePixels) {
    throw Error(name + ": refused, too many pixels for a safe decode (" + std::to_string(st->cinfo.image_width) + "x" +
                std::to_string(st->cinfo.image_height) + " > " + std::to_string(kMaxImagePixels) + " pixels)");
  }
  jpeg_start_decompress(&st->cinfo);
  const int w = static_cast<int>(st->cinfo.output_width), h = static_cast<int>(st->cinfo.output_height);
  const int comps = st->cinfo.output_components;
  st->pixels.resize(static_cast<std::size_t>(w) * h * comps);
  while (st->cinfo.output_scanline < st->cinfo.output_height) {
    JSAMPROW row = st->pixels.data() + static_cast<std::size_t>(st->cinfo.output_scanline) * w * comps;
    jpeg_read_scanlines(&st->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&st->cinfo);
  int in_ch = comps;
  if (cmyk) {
    cmyk_to_rgb(st->pixels, static_cast<std::size_t>(w) * h);
    in_ch = 3;
  }
  Image img = from_interleaved(st->pixels.data(), w, h, in_ch, in_ch == 1 ? 1 : 3);
  img = apply_orientation(std::move(img), exif_orientation(st->exif));
  return convert_channels(std::move(img), channels);
}

// ---------------------------------------------------------------------------------------------
// PNG

struct PngState {
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::span<const std::uint8_t> bytes;
  std::size_t pos = 0;
  std::string message;
  std::vector<std::uint8_t> pixels;
  std::vector<png_bytep> rows;
  ~PngState() {
    if (png != nullptr) png_destroy_read_struct(&png, info != nullptr ? &info : nullptr, nullptr);
  }
};

void png_fail(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  st->message = msg;
  png_longjmp(png, 1);
}

void png_warn(png_structp, png_const_charp) {}

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
  auto* st = static_cast<PngState*>(png_get_io_ptr(png));
  if (st->pos + n > st->bytes.size()) png_error(png, "image file is truncated");
  std::memcpy(out, st->bytes.data() + st->pos, n);
  st->pos += n;
}

Image decode_png(std::span<const std::uint8_t> bytes, int channels, const std::string& name) {
  auto st = std::make_unique<PngState>();
  st->bytes = bytes;
  st->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st.get(), png_fail, png_warn);
  if (st->png == nullptr) throw Error(name + ": cannot decode image (libpng initialisation failed)");
  st->info = png_create_info_struct(st->png);
  if (st->info == nullptr) throw Error(name + ": cannot decode image (libpng initialisation failed)");
  if (setjmp(png_jmpbuf(st->png))) {
    throw Error(name + ": cannot decode image (" + st->message + ")");
  }
  png_set_read_fn(st->png, st.get(), png_read_mem);
  png_set_crc_action(st->png, PNG_CRC_DEFAULT, PNG_CRC_WARN_DISCARD);
  png_read_info(st->png, st->info);
  const png_uint_32 w = png_get_image_width(st->png, st->info), h = png_get_image_height(st->png, st->info);
  if (static_cast<std::int64_t>(w) * h > kMaxImagePixels) {
    throw Error(name + ": refused, too many pixels for a safe decode (" + std::to_string(w) + "x" + std::to_string(h) +
                " > " + std::to_string(kMaxImagePixels) + " pixels)");
  }
  const int color = png_get_color_type(st->png, st->info);
  const int depth = png_get_bit_depth(st->png, st->info);
  // 16-bit greyscale is Pillow's I;16, which clsx rescales (v / 65535 * 255, rounded); other
  // 16-bit modes keep the high byte, as Pillow's RGB;16B / LA;16B unpackers do.
  const bool gray16 = depth == 16 && color == PNG_COLOR_TYPE_GRAY;
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(st->png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(st->png);
  if (depth == 16 && !gray16) png_set_strip_16(st->png);
  if (gray16) png_set_swap(st->png);  // native little-endian uint16 rows
  png_set_interlace_handling(st->png);
  png_read_update_info(st->png, st->info);
  const int comps = png_get_channels(st->png, st->info);
  const std::size_t rowbytes = png_get_rowbytes(st->png, st->info);
  st->pixels.resize(rowbytes * h);
  st->rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) st->rows[y] = st->pixels.data() + y * rowbytes;
  png_read_image(st->png, st->rows.data());
  png_read_end(st->png, st->info);  // an eXIf chunk may follow the image data
  std::vector<std::uint8_t> exif;
  png_uint_32 exif_len = 0;
  png_bytep exif_data = nullptr;
  if (png_get_eXIf_1(st->png, st->info, &exif_len, &exif_data) != 0 && exif_data != nullptr) {
    exif.assign(exif_data, exif_data + exif_len);
  }
  Image img;
  if (gray16) {
    std::vector<std::uint8_t> gray(static_cast<std::size_t>(w) * h);
    const auto* v = reinterpret_cast<const std::uint16_t*>(st->pixels.data());
    for (std::size_t i = 0; i < gray.size(); ++i) {
      gray[i] = static_cast<std::uint8_t>(std::clamp(std::nearbyint(v[i] / 65535.0 * 255.0), 0.0, 255.0));
    }
    img = from_interleaved(gray.data(), static_cast<int>(w), static_cast<int>(h), 1, 1);
  } else {
    img = from_interleaved(st->pixels.data(), static_cast<int>(w), static_cast<int>(h), comps, comps <= 2 ? 1 : 3);
  }
  img = apply_orientation(std::move(img), exif_orientation(exif));
  return convert_channels(std::move(img), channels);
}

std::uint32_t read_u32(const std::uint8_t* p, bool le) {
  return le ? (p[0] | p[1] << 8 | p[2] << 16 | static_cast<std::uint32_t>(p[3]) << 24)
            : (static_cast<std::uint32_t>(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3]);
}

std::uint16_t read_u16(const std::uint8_t* p, bool le) {
  return static_cast<std::uint16_t>(le ? (p[0] | p[1] << 8) : (p[0] << 8 | p[1]));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public functions

int exif_orientation(std::span<const std::uint8_t> exif) {
  if (exif.size() >= 6 && std::memcmp(exif.data(), "Exif\0\0", 6) == 0) exif = exif.subspan(6);
  if (exif.size() < 8) return 1;
  const std::uint8_t* t = exif.data();
  bool le;
  if (t[0] == 'I' && t[1] == 'I') {
    le = true;
  } else if (t[0] == 'M' && t[1] == 'M') {
    le = false;
  } else {
    return 1;
  }
  const std::uint32_t ifd = read_u32(t + 4, le);
  if (ifd + 2 > exif.size()) return 1;
  const std::uint16_t count = read_u16(t + ifd, le);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::size_t e = ifd + 2 + 12 * static_cast<std::size_t>(i);
    if (e + 12 > exif.size()) return 1;
    if (read_u16(t + e, le) != 0x0112) continue;
    const std::uint16_t type = read_u16(t + e + 2, le);
    const int value = type == 4 ? static_cast<int>(read_u32(t + e + 8, le)) : read_u16(t + e + 8, le);
    return value >= 1 && value <= 8 ? value : 1;
  }
  return 1;
}

Image apply_orientation(Image img, int orientation) {
  if (orientation < 2 || orientation > 8) return img;
  const bool swap = orientation >= 5;  // transpose, rotate 90/270, transverse swap width and height
  Image out{swap ? img.height : img.width, swap ? img.width : img.height, img.channels, std::vector<std::uint8_t>(img.data.size())};
  // clsx_orient: Pillow's exif_transpose, the same code the Python package runs (cpp/src/resample.c)
  if (clsx_orient(img.data.data(), img.width, img.height, img.channels, orientation, out.data.data()) != 0) {
    throw Error("internal: cannot turn a " + std::to_string(img.width) + "x" + std::to_string(img.height) + " image");
  }
  return out;
}

Image convert_channels(Image img, int channels) {
  if (channels != 1 && channels != 3) throw Error("images convert to 1 (L) or 3 (RGB) channels; asked for " + std::to_string(channels));
  if (img.channels == channels) return img;
  return from_interleaved(img.data.data(), img.width, img.height, img.channels, channels);
}

Image image_from_buffer(const std::uint8_t* pixels, int width, int height, int buffer_channels, int channels) {
  if (pixels == nullptr || width < 1 || height < 1) throw Error("image buffer is empty");
  if (buffer_channels != 1 && buffer_channels != 3 && buffer_channels != 4) {
    throw Error("image buffers must have 1 (L), 3 (RGB) or 4 (RGBA) channels; got " + std::to_string(buffer_channels));
  }
  Image img = from_interleaved(pixels, width, height, buffer_channels, buffer_channels == 1 ? 1 : 3);
  return convert_channels(std::move(img), channels);
}

Image decode_image(std::span<const std::uint8_t> bytes, int channels, const std::string& name) {
  if (channels != 1 && channels != 3) throw Error(name + ": models take 1 or 3 channels; asked for " + std::to_string(channels));
  if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) return decode_jpeg(bytes, channels, name);
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), "\x89PNG\r\n\x1a\n", 8) == 0) return decode_png(bytes, channels, name);
  throw Error(name + ": not a recognised image file (the C++ library reads JPEG and PNG)");
}

Image load_image(const std::filesystem::path& path, int channels) {
  const std::string name = path.string();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error(name + ": is a directory, not an image");
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    throw Error(name + (std::filesystem::exists(path, ec) ? ": permission denied or unreadable" : ": no such file"));
  }
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  f.seekg(0, std::ios::beg);
  std::vector<std::uint8_t> bytes(size > 0 ? static_cast<std::size_t>(size) : 0);
  if (size > 0 && !f.read(reinterpret_cast<char*>(bytes.data()), size)) throw Error(name + ": cannot read the file");
  return decode_image(bytes, channels, name);
}

}  // namespace clsx
