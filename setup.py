"""Build settings beyond pyproject.toml: the optional native resampler (clsx/core/_resample.c).

It is optional: where no C compiler is present the install still succeeds and clsx resizes with Pillow,
which gives the same pixels, only slower (``clsx doctor`` says which is in use). Built without fused
multiply-add contraction so its filter weights are Pillow's to the bit.
"""

import sys

from setuptools import Extension, setup

flags = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off", "-fno-fast-math", "-std=c11"]

setup(ext_modules=[Extension("clsx.core._resample", ["clsx/core/_resample.c"], extra_compile_args=flags, optional=True)])
