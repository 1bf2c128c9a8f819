"""Prediction: from images to top-k, the same way for every caller.

- :mod:`~clsx.predict.prediction`: :class:`Prediction` and logits -> top-k;
- :mod:`~clsx.predict.listing`: the lazy, sorted walk of image folders;
- :mod:`~clsx.predict.pipeline`: the one bounded decode-ahead pipeline;
- :mod:`~clsx.predict.sinks`: CSV / JSONL rows;
- :mod:`~clsx.predict.classifier`: :class:`Classifier` = a Runtime + its preprocessing + labels.
"""
