/* clsx's native image kernels (C): Pillow 13's 8-bit resampling cut to a crop, the tensor normalization, EXIF
 * turns. One implementation, compiled into the Python package (clsx.core._resample) and the C++ library;
 * cpp/src/resample.c says how and why each is exact. Images are uint8, C order, height x width x channels
 * (1..4). */
#ifndef CLSX_RESAMPLE_H
#define CLSX_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Pillow's filter numbers (PIL.Image.Resampling): nearest (0) is not a convolution and is not here. */
enum { CLSX_LANCZOS = 1, CLSX_BILINEAR = 2, CLSX_BICUBIC = 3, CLSX_BOX = 4, CLSX_HAMMING = 5 };

/* Pillow 13's pass order for a resize from width x height to new_width x new_height: 1 when the vertical pass
 * runs first (the height shrinks by more than twice what the width does), else 0. */
int clsx_vertical_first(int width, int height, int new_width, int new_height);

/* Into `out` (crop_height x crop_width x channels): the crop at (left, top) of `src` (height x width x channels)
 * resized to new_width x new_height with `filter`, bit for bit Pillow 13's Image.resize then crop. `scratch`:
 * memory it may use (scratch_size bytes; NULL and 0 to ask). Returns 0 when done; the scratch bytes it needs
 * when scratch_size is smaller (nothing written); -1 when out of memory; -2 for arguments out of range. */
ptrdiff_t clsx_resize_crop(const uint8_t *src, int width, int height, int channels, int new_width, int new_height, int left, int top,
                           int crop_width, int crop_height, int filter, uint8_t *out, uint8_t *scratch, size_t scratch_size);

/* out[c][i] = (float)pixels[i][ic] * scale[c] + offset[c] for n pixels of `channels` bytes, ic = c, or
 * channels - 1 - c when `bgr`: a float product then a float sum (numpy's multiply-then-add, to the bit). */
void clsx_normalize(const uint8_t *pixels, ptrdiff_t n, int channels, const float *scale, const float *offset, int bgr, float *out);

/* Into `out` (same size as src): src (height x width x channels) turned as EXIF `orientation` 2..8 says, as
 * Pillow's ImageOps.exif_transpose does (5..8 swap width and height). Returns 0, or -1 for bad arguments. */
int clsx_orient(const uint8_t *src, int width, int height, int channels, int orientation, uint8_t *out);

#ifdef __cplusplus
}
#endif

#endif
