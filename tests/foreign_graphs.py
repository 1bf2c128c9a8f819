"""ONNX graphs made the way users make them elsewhere, each differently (issue: any ONNX in).

- ``plain``: ``torch.onnx.export`` (dynamo) of torchvision's resnet18, static batch 1, input ``x``,
  weights in an external data file;
- ``timm``: ``timm.utils.onnx.onnx_export`` (TorchScript exporter) of tf_efficientnet_lite0 with its
  real ImageNet weights (dynamic batch, TF "same" padding);
- ``nhwc``: resnet18 behind a channels-last input, float, dynamic batch (TorchScript exporter);
- ``uint8``: resnet18 behind a uint8 NHWC input that scales and normalizes inside, fixed batch 4 (dynamo).

The resnet18 graphs share one set of random weights, also saved as ``r18.pth`` so that clsx can
export the same network itself (:func:`clsx_export`) for parity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 64  # the resnet18 graphs' input side
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet18():
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


class ChannelsLast:
    """Factories for wrappers (torch imported lazily)."""

    @staticmethod
    def float(net):
        import torch

        class NHWC(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net(x.permute(0, 3, 1, 2))

        return NHWC().eval()

    @staticmethod
    def uint8(net):
        import torch

        class Pixels(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net
                self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
                self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)

            def forward(self, x):
                x = x.float().permute(0, 3, 1, 2)  # cast first: TensorRT transposes no uint8 tensor
                return self.net((x - self.mean) / self.std)

        return Pixels().eval()


def make_plain(folder: Path, net) -> Path:
    import torch

    out = folder / "plain" / "resnet18_static.onnx"
    out.parent.mkdir(parents=True)
    torch.onnx.export(net, (torch.zeros(1, 3, SIZE, SIZE),), str(out), input_names=["x"], output_names=["y"],
                      dynamo=True, external_data=True, verbose=False)
    return out


def make_timm(folder: Path, module) -> Path:
    from timm.utils.onnx import onnx_export

    out = folder / "timm" / "lite0_timm.onnx"
    out.parent.mkdir(parents=True)
    onnx_export(module, str(out), input_size=(3, 224, 224), batch_size=2, opset=17, check=True)
    return out


def make_nhwc(folder: Path, net) -> Path:
    import torch

    out = folder / "nhwc" / "resnet18_nhwc.onnx"
    out.parent.mkdir(parents=True)
    torch.onnx.export(ChannelsLast.float(net), (torch.zeros(2, SIZE, SIZE, 3),), str(out), input_names=["image"],
                      output_names=["scores"], dynamic_axes={"image": {0: "n"}, "scores": {0: "n"}}, dynamo=False,
                      opset_version=17)
    return out


def make_uint8(folder: Path, net) -> Path:
    import torch

    out = folder / "uint8" / "resnet18_uint8.onnx"
    out.parent.mkdir(parents=True)
    torch.onnx.export(ChannelsLast.uint8(net), (torch.zeros(4, SIZE, SIZE, 3, dtype=torch.uint8),), str(out),
                      input_names=["pixels"], dynamo=True, external_data=False, verbose=False)
    return out


def clsx_export(folder: Path, ckpt: Path) -> Path:
    """clsx's own export of the same resnet18 weights (the parity reference)."""
    from clsx import zoo
    from clsx.core.spec import PreprocessOverrides
    from clsx.exporter import export_onnx

    loaded = zoo.build("tv:resnet18", weights=ckpt, preprocess=PreprocessOverrides(input_size=(3, SIZE, SIZE)))
    return export_onnx(loaded, folder / "clsx" / "resnet18.onnx", verify=False).path


def make_all(folder: Path, lite0_module) -> dict[str, Path]:
    import torch

    net = resnet18()
    ckpt = folder / "r18.pth"
    torch.save(net.state_dict(), ckpt)
    return {
        "plain": make_plain(folder, net),
        "timm": make_timm(folder, lite0_module),
        "nhwc": make_nhwc(folder, net),
        "uint8": make_uint8(folder, net),
        "r18_clsx": clsx_export(folder, ckpt),
        "r18_ckpt": ckpt,
    }


# ---------------------------------------------------------------------------------------------
# Tiny graphs made with onnx.helper (milliseconds each), for the general reading rules

def tiny_graph(path: Path, shape, *, dtype="float32", classes=10, extra_input=False, out_shape=None, external=False) -> Path:
    """input -> (Cast) -> Transpose to NCHW when channels-last -> GlobalAveragePool -> Flatten -> MatMul(C x classes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "uint8": TensorProto.UINT8, "int64": TensorProto.INT64}
    layout = "NHWC" if isinstance(shape[3], int) and shape[3] in (1, 3) and shape[1] not in (1, 3) else "NCHW"
    c = shape[3] if layout == "NHWC" else shape[1]
    c = c if isinstance(c, int) else 3
    nodes, x = [], "image"
    if dtype != "float32":
        nodes.append(helper.make_node("Cast", [x], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["xt"], perm=[0, 3, 1, 2]))
        x = "xt"
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
              helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((c, classes)).astype(np.float32), "w")
    inputs = [helper.make_tensor_value_info("image", _TYPES[dtype], list(shape))]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1]))
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape or [shape[0], classes])
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [out], [w]), producer_name="elsewhere",
                              opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".bin", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


