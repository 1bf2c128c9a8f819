import pytest
from tiny_models import tiny_model, tiny_onnx_once


@pytest.fixture(scope="session")
def tiny():
    """A LoadedModel: 32x32 input, 10 labelled classes, spread-out logits."""
    return tiny_model()


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny):
    """``tiny`` as a dynamic-batch ONNX file with clsx metadata."""
    return tiny_onnx_once(tmp_path_factory)
