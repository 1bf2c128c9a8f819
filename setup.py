"""Build settings beyond pyproject.toml: the optional native image kernels, clsx.core._resample.

Its binding (clsx/core/_resample.c) wraps cpp/src/resample.c, the one implementation of the resampling,
normalization and EXIF turns that the C++ library compiles too. Optional: where no C compiler is present
the install still succeeds and clsx uses Pillow and numpy, which give the same pixels, only slower
(``clsx doctor`` says which runs). Built without fused multiply-add contraction so its filter weights and
normalized values are Pillow's and numpy's to the bit.
"""

import sys

from setuptools import Extension, setup

flags = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off", "-fno-fast-math", "-std=c11"]

setup(ext_modules=[Extension("clsx.core._resample", ["clsx/core/_resample.c", "cpp/src/resample.c"], include_dirs=["cpp/include"],
                             depends=["cpp/include/clsx/resample.h"], extra_compile_args=flags, optional=True)])
