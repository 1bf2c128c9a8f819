import pytest

from clsx.zoo import samples


@pytest.fixture(scope="session")
def photo_split(tmp_path_factory, photos):
    """Calibration and evaluation folders built from DISJOINT source photos (several JPEG views each)."""
    root = tmp_path_factory.mktemp("calib-photos")
    calib_src = photos[0::2]
    eval_src = photos[1::2]
    calib = root / "calib"
    evalf = root / "eval"
    samples.write_photo_variants(calib, calib_src, per_photo=4, seed=1)
    samples.write_photo_variants(evalf, eval_src, per_photo=4, seed=2)
    return calib, evalf


@pytest.fixture(scope="session")
def small_onnx(tmp_path_factory):
    """A random-weight resnet18 at 64 px: fast for graph-structure tests."""
    from clsx import zoo
    from clsx.exporter import export_onnx
    from clsx.core.spec import PreprocessOverrides

    m = zoo.build("resnet18", num_classes=10, preprocess=PreprocessOverrides(input_size=(3, 64, 64)))
    out = tmp_path_factory.mktemp("r18") / "r18.onnx"
    return export_onnx(m, out, verify=False).path
