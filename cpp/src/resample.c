/* The resampling, normalization and EXIF turns clsx computes natively: one implementation, used by the
 * Python package (clsx/core/_resample.c, its binding) and the C++ library (cpp/src/preprocess.cpp).
 *
 * What clsx_resize_crop computes is exactly what `img.resize((nw, nh), filter).crop(box)` gives with Pillow 13
 * (its libImaging/Resample.c): per output pixel, a filter window centred on the source position, widened by
 * the downscale factor (antialiasing), weights normalized to sum 1 in double and stored as 22-bit fixed point
 * integers; each pass sums integer products (+ 1/2 for rounding), shifts and clips to uint8. Two passes,
 * horizontal then vertical, or vertical first when the height shrinks by more than twice what the width does
 * (Pillow 13's order: each pass rounds to uint8, so the order changes pixels). A pass whose size does not
 * change is skipped, as Pillow does.
 *
 * Why it is faster, and still exact:
 *  - Only what the crop keeps is computed: the second pass's crop rows (columns), and the first pass's
 *    crop columns (rows) over only the source lines the second pass reads. Every output value is still
 *    the same integer sum of the same products: a subset of Pillow's pixels, not an approximation.
 *  - Each pass is the same kernel: "output line = clip8(sum over taps of source line * weight)", over
 *    whole contiguous lines, which compilers vectorize (uint8 -> int32 multiply-add). The horizontal pass
 *    runs as that kernel on a transposed block. Integer addition is associative, so the order of the sum
 *    does not change the result (Pillow's sums never overflow 32 bits; neither do these, they are equal).
 *  - The weights are computed by the same double arithmetic as Pillow's, in code built without fused
 *    multiply-add contraction (setup.py, cpp/CMakeLists.txt), so they are the same integers.
 */
#include "clsx/resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

/* The integer kernels are built for the baseline CPU and for AVX2 / AVX-512 (chosen at load time); the
 * weights are computed once, in baseline code only. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8 && defined(__linux__)
#define KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- Pillow's filters (Resample.c), same expressions, same constants ---- */

static double box_filter(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_filter(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_filter(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x) {
    if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
    return 0.0;
}

struct filter {
    double (*fn)(double);
    double support;
};

/* Indexed by Pillow's Image.Resampling values: NEAREST 0 (not here), LANCZOS 1, BILINEAR 2, BICUBIC 3,
 * BOX 4, HAMMING 5. */
static const struct filter FILTERS[6] = {
    {NULL, 0.0}, {lanczos_filter, 3.0}, {bilinear_filter, 1.0}, {bicubic_filter, 2.0}, {box_filter, 0.5}, {hamming_filter, 1.0},
};

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for output indices [first, first + count) of a resize
 * from in_size to out_size: per output index, the first source index, the window length, and ksize weights. */
struct coeffs {
    int ksize;
    int *bounds; /* (xmin, xlen) pairs */
    int32_t *k;
};

static void coeffs_free(struct coeffs *c) {
    free(c->bounds);
    free(c->k);
    c->bounds = NULL;
    c->k = NULL;
}

static int coeffs_make(struct coeffs *c, int in_size, int out_size, int first, int count, const struct filter *f) {
    const double in0 = 0.0, in1 = (double)(float)in_size; /* Pillow passes the box as floats */
    const double scale = (in1 - in0) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = f->support * filterscale;
    const double ss = 1.0 / filterscale;
    double *w;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)count);
    c->k = calloc((size_t)count * (size_t)c->ksize, sizeof(int32_t));
    w = malloc(sizeof(double) * (size_t)c->ksize);
    if (c->bounds == NULL || c->k == NULL || w == NULL) {
        free(w);
        coeffs_free(c);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        const int xx = first + i;
        const double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5), xmax;
        int32_t *k = c->k + (size_t)i * (size_t)c->ksize;
        if (xmin < 0) xmin = 0;
        xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            const double v = f->fn((x + xmin - center + 0.5) * ss);
            w[x] = v;
            ww += v;
        }
        for (int x = 0; x < xmax; x++) {
            const double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[2 * i] = xmin;
        c->bounds[2 * i + 1] = xmax;
    }
    free(w);
    return 0;
}

/* ---- integer kernels ---- */

/* Output line yy (yy < lines) = clip8(1/2 + sum_t src line (bounds[2yy] - shift + t) * k[t]), n values per
 * line. acc: n int32 of scratch. */
KERNEL static void lines_pass(const uint8_t *restrict src, ptrdiff_t src_stride, ptrdiff_t n, int lines, const struct coeffs *c,
                              int shift, uint8_t *restrict dst, ptrdiff_t dst_stride, int32_t *restrict acc) {
    for (int yy = 0; yy < lines; yy++) {
        const int ymin = c->bounds[2 * yy] - shift, ylen = c->bounds[2 * yy + 1];
        const int32_t *k = c->k + (size_t)yy * (size_t)c->ksize;
        uint8_t *restrict d = dst + (ptrdiff_t)yy * dst_stride;
        for (ptrdiff_t i = 0; i < n; i++) acc[i] = 1 << (PRECISION_BITS - 1);
        for (int t = 0; t < ylen; t++) {
            const uint8_t *restrict s = src + (ptrdiff_t)(ymin + t) * src_stride;
            const int32_t kt = k[t];
            for (ptrdiff_t i = 0; i < n; i++) acc[i] += s[i] * kt;
        }
        for (ptrdiff_t i = 0; i < n; i++) {
            const int32_t v = acc[i] >> PRECISION_BITS;
            d[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

/* dst[x][y] = src[y][x] for pixels of ch bytes: rows x cols pixels in, cols x rows out (strides in bytes). */
static void transpose(const uint8_t *restrict src, ptrdiff_t src_stride, int rows, int cols, int ch, uint8_t *restrict dst,
                      ptrdiff_t dst_stride) {
    enum { TILE = 32 };
    for (int y0 = 0; y0 < rows; y0 += TILE) {
        const int y1 = y0 + TILE < rows ? y0 + TILE : rows;
        for (int x0 = 0; x0 < cols; x0 += TILE) {
            const int x1 = x0 + TILE < cols ? x0 + TILE : cols;
            if (ch == 3) {
                for (int y = y0; y < y1; y++) {
                    const uint8_t *s = src + (ptrdiff_t)y * src_stride + (ptrdiff_t)x0 * 3;
                    uint8_t *d = dst + (ptrdiff_t)x0 * dst_stride + (ptrdiff_t)y * 3;
                    for (int x = x0; x < x1; x++, s += 3, d += dst_stride) {
                        d[0] = s[0];
                        d[1] = s[1];
                        d[2] = s[2];
                    }
                }
            } else if (ch == 1) {
                for (int y = y0; y < y1; y++) {
                    const uint8_t *s = src + (ptrdiff_t)y * src_stride + x0;
                    uint8_t *d = dst + (ptrdiff_t)x0 * dst_stride + y;
                    for (int x = x0; x < x1; x++, s++, d += dst_stride) *d = *s;
                }
            } else {
                for (int y = y0; y < y1; y++) {
                    for (int x = x0; x < x1; x++) {
                        memcpy(dst + (ptrdiff_t)x * dst_stride + (ptrdiff_t)y * ch, src + (ptrdiff_t)y * src_stride + (ptrdiff_t)x * ch, (size_t)ch);
                    }
                }
            }
        }
    }
}

/* Scratch memory comes from the caller (a buffer kept per thread and reused: fresh pages for every image,
 * which malloc returns to the system and faults in again, cost more than the resize itself). A bump
 * allocator over it; a counting arena only counts, which is how the caller learns the size it needs. */
struct arena {
    uint8_t *base;
    size_t size, used;
    int counting; /* only count what would be taken; nothing is computed */
};

static void *take(struct arena *a, size_t bytes) {
    const size_t at = (a->used + 63) & ~(size_t)63;
    a->used = at + bytes;
    return a->counting || a->used > a->size ? NULL : a->base + at;
}

/* Horizontal pass: `rows` source lines from `src` (stride src_stride; src points at source column `shift`),
 * `count` output columns as `c` says (bounds in source pixels, `shift` subtracted), ch bytes per pixel, into
 * dst (rows x count pixels, stride dst_stride). Runs lines_pass on the transposed block of the `cols`
 * source columns from `shift`. */
static void horizontal_pass(const uint8_t *src, ptrdiff_t src_stride, int rows, int cols, int ch, const struct coeffs *c, int count,
                            int shift, uint8_t *dst, ptrdiff_t dst_stride, struct arena *a) {
    const ptrdiff_t line = (ptrdiff_t)rows * ch;
    uint8_t *t = take(a, (size_t)cols * (size_t)line), *u = take(a, (size_t)count * (size_t)line);
    int32_t *acc = take(a, sizeof(int32_t) * (size_t)line);
    if (t == NULL || u == NULL || acc == NULL) return;
    transpose(src, src_stride, rows, cols, ch, t, line);
    lines_pass(t, line, line, count, c, shift, u, line, acc);
    transpose(u, line, count, rows, ch, dst, dst_stride);
}

static void vertical_pass(const uint8_t *src, ptrdiff_t src_stride, ptrdiff_t n, const struct coeffs *c, int count, int shift, uint8_t *dst,
                          ptrdiff_t dst_stride, struct arena *a) {
    int32_t *acc = take(a, sizeof(int32_t) * (size_t)n);
    if (acc != NULL) lines_pass(src, src_stride, n, count, c, shift, dst, dst_stride, acc);
}

static int coeffs_end(const struct coeffs *c, int count) { return c->bounds[2 * (count - 1)] + c->bounds[2 * (count - 1) + 1]; }

/* The crop (left, top, cw x crop_h) of the resize of src (w x h x ch) to nw x nh, into out (crop_h x cw x ch),
 * with scratch from `a` (a counting arena: nothing is computed, the scratch taken is counted). */
static void run_passes(const uint8_t *src, int w, int h, int ch, int nw, int nh, int left, int top, int cw, int crop_h, const struct coeffs *hc,
                       const struct coeffs *vc, int vertical_first, uint8_t *out, struct arena *a) {
    const ptrdiff_t stride = (ptrdiff_t)w * ch, out_stride = (ptrdiff_t)cw * ch;
    const int need_h = nw != w, need_v = nh != h;
    if (!need_h && !need_v) {
        if (!a->counting)
            for (int y = 0; y < crop_h; y++)
                memcpy(out + y * out_stride, src + (ptrdiff_t)(top + y) * stride + (ptrdiff_t)left * ch, (size_t)out_stride);
    } else if (!need_v) {
        const int c0 = hc->bounds[0];
        horizontal_pass(src + (ptrdiff_t)top * stride + (ptrdiff_t)c0 * ch, stride, crop_h, coeffs_end(hc, cw) - c0, ch, hc, cw, c0, out,
                        out_stride, a);
    } else if (!need_h) {
        vertical_pass(src + (ptrdiff_t)left * ch, stride, out_stride, vc, crop_h, 0, out, out_stride, a);
    } else if (vertical_first) {
        /* vertical pass over the source columns the horizontal pass reads, then the horizontal pass */
        const int c0 = hc->bounds[0], cols = coeffs_end(hc, cw) - c0;
        const ptrdiff_t tstride = (ptrdiff_t)cols * ch;
        uint8_t *tmp = take(a, (size_t)crop_h * (size_t)tstride);
        vertical_pass(src + (ptrdiff_t)c0 * ch, stride, tstride, vc, crop_h, 0, tmp, tstride, a);
        horizontal_pass(tmp, tstride, crop_h, cols, ch, hc, cw, c0, out, out_stride, a);
    } else {
        /* horizontal pass over the source rows the vertical pass reads, then the vertical pass */
        const int r0 = vc->bounds[0], rows = coeffs_end(vc, crop_h) - r0, c0 = hc->bounds[0];
        uint8_t *tmp = take(a, (size_t)rows * (size_t)out_stride);
        horizontal_pass(src + (ptrdiff_t)r0 * stride + (ptrdiff_t)c0 * ch, stride, rows, coeffs_end(hc, cw) - c0, ch, hc, cw, c0, tmp, out_stride,
                        a);
        vertical_pass(tmp, out_stride, out_stride, vc, crop_h, r0, out, out_stride, a);
    }
}

/* ---- public API (clsx/resample.h) ---- */

static const struct filter *filter_of(int filter) { return filter >= 1 && filter <= 5 ? &FILTERS[filter] : NULL; }

int clsx_vertical_first(int width, int height, int new_width, int new_height) {
    const int dy = height - new_height, dx = width - new_width;
    return dy > 0 && dy > 2 * dx;
}

ptrdiff_t clsx_resize_crop(const uint8_t *src, int w, int h, int ch, int nw, int nh, int left, int top, int cw, int crop_h, int filter,
                           uint8_t *out, uint8_t *scratch, size_t scratch_size) {
    const struct filter *f = filter_of(filter);
    const int vertical_first = clsx_vertical_first(w, h, nw, nh);
    struct coeffs hc = {0, NULL, NULL}, vc = {0, NULL, NULL};
    struct arena counter = {NULL, 0, 0, 1}, a = {scratch, scratch_size, 0, 0};
    ptrdiff_t rc = -1;
    if (f == NULL || w < 1 || h < 1 || ch < 1 || ch > 4 || nw < 1 || nh < 1 || cw < 1 || crop_h < 1 || left < 0 || top < 0 ||
        left + cw > nw || top + crop_h > nh)
        return -2;
    if ((nw != w && coeffs_make(&hc, w, nw, left, cw, f) != 0) || (nh != h && coeffs_make(&vc, h, nh, top, crop_h, f) != 0)) goto done;
    run_passes(src, w, h, ch, nw, nh, left, top, cw, crop_h, &hc, &vc, vertical_first, out, &counter);
    if (counter.used > scratch_size) {
        rc = (ptrdiff_t)counter.used;
        goto done;
    }
    run_passes(src, w, h, ch, nw, nh, left, top, cw, crop_h, &hc, &vc, vertical_first, out, &a);
    rc = 0;
done:
    coeffs_free(&hc);
    coeffs_free(&vc);
    return rc;
}

/* ---- normalization ---- */

/* out[oc][i] = (float)pixels[i][ic] * scale[oc] + offset[oc], ic = oc or, for BGR, channels - 1 - oc: the float
 * product rounded, then the float sum rounded (this file is built without fused multiply-add contraction), which
 * is what numpy's np.multiply(plane, scale, out) followed by out += offset computes, to the bit. */
KERNEL void clsx_normalize(const uint8_t *restrict px, ptrdiff_t n, int ch, const float *scale, const float *offset, int bgr,
                           float *restrict out) {
    for (int oc = 0; oc < ch; oc++) {
        const int ic = bgr ? ch - 1 - oc : oc;
        const float sc = scale[oc], of = offset[oc];
        float *restrict o = out + (ptrdiff_t)oc * n;
        const uint8_t *restrict p = px + ic;
        for (ptrdiff_t i = 0; i < n; i++) {
            const float v = (float)p[i * ch] * sc;
            o[i] = v + of;
        }
    }
}

/* ---- EXIF orientation ---- */

/* dst (rows x cols pixels of ch bytes, contiguous) = the pixel at base + y * sy + x * sx for each (y, x): any
 * flip, rotation or transpose of a contiguous image, given signed byte strides. Tiled, like transpose. */
static void gather(const uint8_t *base, ptrdiff_t sy, ptrdiff_t sx, int rows, int cols, int ch, uint8_t *restrict dst) {
    enum { TILE = 64 };
    const ptrdiff_t dst_stride = (ptrdiff_t)cols * ch;
    for (int y0 = 0; y0 < rows; y0 += TILE) {
        const int y1 = y0 + TILE < rows ? y0 + TILE : rows;
        for (int x0 = 0; x0 < cols; x0 += TILE) {
            const int x1 = x0 + TILE < cols ? x0 + TILE : cols;
            for (int y = y0; y < y1; y++) {
                const uint8_t *s = base + (ptrdiff_t)y * sy + (ptrdiff_t)x0 * sx;
                uint8_t *d = dst + (ptrdiff_t)y * dst_stride + (ptrdiff_t)x0 * ch;
                if (ch == 3) {
                    for (int x = x0; x < x1; x++, s += sx, d += 3) {
                        d[0] = s[0];
                        d[1] = s[1];
                        d[2] = s[2];
                    }
                } else {
                    for (int x = x0; x < x1; x++, s += sx, d += ch) memcpy(d, s, (size_t)ch);
                }
            }
        }
    }
}


int clsx_orient(const uint8_t *src, int w, int h, int ch, int orientation, uint8_t *out) {
    const ptrdiff_t r = (ptrdiff_t)w * ch, p = ch, last_row = (ptrdiff_t)(h - 1) * r, last_col = (ptrdiff_t)(w - 1) * p;
    const uint8_t *base = src;
    ptrdiff_t sy = r, sx = p;
    int rows = h, cols = w;
    if (w < 1 || h < 1 || ch < 1 || ch > 4 || orientation < 2 || orientation > 8) return -1;
    switch (orientation) {
        case 2: base = src + last_col, sy = r, sx = -p; break;                                /* FLIP_LEFT_RIGHT */
        case 3: base = src + last_row + last_col, sy = -r, sx = -p; break;                    /* ROTATE_180 */
        case 4: base = src + last_row, sy = -r, sx = p; break;                                /* FLIP_TOP_BOTTOM */
        case 5: base = src, sy = p, sx = r, rows = w, cols = h; break;                        /* TRANSPOSE */
        case 6: base = src + last_row, sy = p, sx = -r, rows = w, cols = h; break;            /* ROTATE_270 */
        case 7: base = src + last_row + last_col, sy = -p, sx = -r, rows = w, cols = h; break; /* TRANSVERSE */
        case 8: base = src + last_col, sy = -p, sx = r, rows = w, cols = h; break;            /* ROTATE_90 */
    }
    gather(base, sy, sx, rows, cols, ch, out);
    return 0;
}
