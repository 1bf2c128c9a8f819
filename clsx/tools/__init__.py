"""The commands' library functions: infer, parity, bench, doctor, demo, info.

Each ``clsx`` command is a thin shim over one function here (or in :mod:`clsx.exporter`,
:mod:`clsx.calib`, :mod:`clsx.scale`).
"""
