/* clsx.core._resample: the Python binding of clsx's native image kernels (cpp/src/resample.c, shared with the
 * C++ library; what they compute and why it is exact is said there). Buffers in, buffers out, arguments
 * checked here, the GIL released while the kernels run so decode workers resize in parallel. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "clsx/resample.h"

PyDoc_STRVAR(resize_crop_doc,
             "resize_crop(src, width, height, channels, new_width, new_height, left, top, crop_width, crop_height, filter, "
             "out, scratch) -> int\n\n"
             "Write into ``out`` (crop_height x crop_width x channels uint8, C order) the crop at (left, top) of src "
             "(height x width x channels uint8, C order) resized to new_width x new_height with Pillow's filter number "
             "``filter`` (1..5), exactly as Pillow 13 computes it. ``scratch``: a writable buffer it may use. Returns 0 "
             "when done, or the scratch size in bytes it needs when ``scratch`` is smaller (then nothing is written).");

static PyObject *resize_crop(PyObject *self, PyObject *args) {
    Py_buffer src, out, scratch;
    int w, h, ch, nw, nh, left, top, cw, crop_h, filter;
    ptrdiff_t rc = -2;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iiiiiiiiiiw*w*", &src, &w, &h, &ch, &nw, &nh, &left, &top, &cw, &crop_h, &filter, &out, &scratch))
        return NULL;
    if (w < 1 || h < 1 || ch < 1 || ch > 4 || cw < 1 || crop_h < 1 || src.len != (Py_ssize_t)w * h * ch ||
        out.len != (Py_ssize_t)cw * crop_h * ch) {
        PyErr_SetString(PyExc_ValueError, "resize_crop: buffer sizes do not match the shapes");
    } else {
        Py_BEGIN_ALLOW_THREADS rc = clsx_resize_crop(src.buf, w, h, ch, nw, nh, left, top, cw, crop_h, filter, out.buf, scratch.buf,
                                                     (size_t)scratch.len);
        Py_END_ALLOW_THREADS if (rc == -1) PyErr_NoMemory();
        else if (rc == -2) PyErr_SetString(PyExc_ValueError, "resize_crop: sizes, crop or filter out of range");
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    PyBuffer_Release(&scratch);
    return rc < 0 ? NULL : PyLong_FromSsize_t(rc);
}

PyDoc_STRVAR(normalize_doc,
             "normalize(pixels, channels, scale, offset, bgr, out)\n\n"
             "Write into ``out`` (channels planes of float32) ``pixel * scale[c] + offset[c]`` for the uint8 HWC "
             "``pixels`` (scale, offset: float32 per output channel; ``bgr``: output channel 0 reads the last "
             "input channel), in one pass and bit for bit numpy's multiply-then-add.");

static PyObject *normalize(PyObject *self, PyObject *args) {
    Py_buffer px, scale, offset, out;
    int ch, bgr, ok;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iy*y*pw*", &px, &ch, &scale, &offset, &bgr, &out)) return NULL;
    ok = ch >= 1 && ch <= 4 && px.len % ch == 0 && scale.len == (Py_ssize_t)(ch * sizeof(float)) && offset.len == scale.len &&
         out.len == px.len * (Py_ssize_t)sizeof(float);
    if (ok) {
        float sc[4], of[4];
        memcpy(sc, scale.buf, (size_t)scale.len);
        memcpy(of, offset.buf, (size_t)offset.len);
        Py_BEGIN_ALLOW_THREADS clsx_normalize(px.buf, px.len / ch, ch, sc, of, bgr, out.buf);
        Py_END_ALLOW_THREADS
    } else {
        PyErr_SetString(PyExc_ValueError, "normalize: channels, constants or buffer sizes do not match");
    }
    PyBuffer_Release(&px);
    PyBuffer_Release(&scale);
    PyBuffer_Release(&offset);
    PyBuffer_Release(&out);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(orient_doc,
             "orient(src, width, height, channels, orientation, out)\n\n"
             "Write into ``out`` the image src (height x width x channels uint8, C order) turned as EXIF orientation "
             "2..8 says, as Pillow's ImageOps.exif_transpose does (5..8 swap width and height).");

static PyObject *orient(PyObject *self, PyObject *args) {
    Py_buffer src, out;
    int w, h, ch, o, rc = -1;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iiiiw*", &src, &w, &h, &ch, &o, &out)) return NULL;
    if (w >= 1 && h >= 1 && ch >= 1 && ch <= 4 && o >= 2 && o <= 8 && src.len == (Py_ssize_t)w * h * ch && out.len == src.len) {
        Py_BEGIN_ALLOW_THREADS rc = clsx_orient(src.buf, w, h, ch, o, out.buf);
        Py_END_ALLOW_THREADS
    }
    if (rc != 0) PyErr_SetString(PyExc_ValueError, "orient: sizes, orientation or buffer sizes out of range");
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    if (rc != 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *vertical_first(PyObject *self, PyObject *args) {
    int w, h, nw, nh;
    (void)self;
    if (!PyArg_ParseTuple(args, "iiii", &w, &h, &nw, &nh)) return NULL;
    return PyBool_FromLong(clsx_vertical_first(w, h, nw, nh));
}

static PyMethodDef methods[] = {
    {"resize_crop", resize_crop, METH_VARARGS, resize_crop_doc},
    {"normalize", normalize, METH_VARARGS, normalize_doc},
    {"orient", orient, METH_VARARGS, orient_doc},
    {"vertical_first", vertical_first, METH_VARARGS,
     "vertical_first(width, height, new_width, new_height) -> bool: Pillow 13's pass order, as the native resize follows it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_resample", "clsx's native image kernels (cpp/src/resample.c): Pillow's resampling cut to a crop, "
    "normalization, EXIF turns; bit for bit.", -1, methods,
};

PyMODINIT_FUNC PyInit__resample(void) { return PyModule_Create(&module); }
