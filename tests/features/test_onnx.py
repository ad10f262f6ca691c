"""OnnxEmbedder against the same computation in NumPy, on tiny graphs built here."""

from __future__ import annotations

import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from imgcls.errors import ConfigError, FormatError  # noqa: E402
from imgcls.features.onnx import OnnxEmbedder  # noqa: E402

RNG = np.random.default_rng(0)
W = RNG.standard_normal((3, 5)).astype(np.float32)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _save(model, path):
    model.opset_import[0].version = 13
    model.ir_version = 7  # old enough for every supported onnxruntime
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return str(path)


def pool_matmul_model(path, shape=("N", 3, 8, 8), weight=W, extra=None):
    """x (N, 3, H, W) -> GlobalAveragePool -> Flatten -> MatMul(W) -> y (N, 5)."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "W"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", weight.shape[1]])]
    if extra is not None:
        nodes.append(extra)
        outputs.append(helper.make_tensor_value_info(extra.output[0], TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(shape))], outputs,
        initializer=[numpy_helper.from_array(weight, "W")])
    return _save(helper.make_model(graph), path)


def oracle(X, size=(8, 8), mean=MEAN, std=STD, bgr=False, weight=W):
    from PIL import Image

    if X.shape[1:3] != size:
        X = np.stack([np.asarray(Image.fromarray(x).resize(size[::-1], Image.Resampling.BILINEAR))
                      for x in X])
    x = X.astype(np.float32) / np.float32(255)
    if bgr:
        x = x[..., ::-1]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.mean(axis=(1, 2)) @ weight


@pytest.fixture
def images():
    return RNG.integers(0, 256, (11, 8, 8, 3), dtype=np.uint8)


def test_matches_numpy(tmp_path, images):
    path = pool_matmul_model(tmp_path / "m.onnx")
    emb = OnnxEmbedder(path, input_size=(8, 8), batch_size=4).fit(images)
    assert emb.n_features_out_ == 5 and len(emb.model_sha256_) == 64
    out = emb.transform(images)
    assert out.dtype == np.float32 and out.shape == (11, 5)
    np.testing.assert_allclose(out, oracle(images), rtol=1e-5, atol=1e-5)


def test_resize_bgr_and_grey(tmp_path):
    path = pool_matmul_model(tmp_path / "m.onnx")
    X = RNG.integers(0, 256, (3, 13, 10, 3), dtype=np.uint8)
    out = OnnxEmbedder(path, input_size=(8, 8), channel_order="bgr").fit_transform(X)
    np.testing.assert_allclose(out, oracle(X, bgr=True), rtol=1e-5, atol=1e-5)
    G = RNG.integers(0, 256, (2, 8, 8), dtype=np.uint8)
    out = OnnxEmbedder(path, input_size=8).fit_transform(G)
    np.testing.assert_allclose(out, oracle(np.repeat(G[..., None], 3, axis=3)),
                               rtol=1e-5, atol=1e-5)


def test_nhwc_and_named_output(tmp_path, images):
    # NHWC input: transpose to NCHW inside the graph, and a second output to pick
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("GlobalAveragePool", ["t"], ["p"]),
             helper.make_node("Flatten", ["p"], ["y"]),
             helper.make_node("Neg", ["y"], ["z"])]
    graph = helper.make_graph(nodes, "nhwc", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 8, 8, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3])])
    path = _save(helper.make_model(graph), tmp_path / "nhwc.onnx")
    out = OnnxEmbedder(path, input_size=8, layout="nhwc", output_name="z").fit_transform(images)
    np.testing.assert_allclose(out, -oracle(images, weight=np.eye(3, dtype=np.float32)),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="output_name 'q'.*outputs are"):
        OnnxEmbedder(path, input_size=8, layout="nhwc", output_name="q").fit(images)


def test_input_shape_mismatch_names_both(tmp_path, images):
    path = pool_matmul_model(tmp_path / "m.onnx", shape=("N", 3, 16, 16))
    with pytest.raises(ValueError, match=r"shape \['\?', 3, 16, 16\].*\['N', 3, 8, 8\]"):
        OnnxEmbedder(path, input_size=(8, 8)).fit(images)
    with pytest.raises(ValueError, match="has shape"):  # NHWC asked of an NCHW model
        OnnxEmbedder(path, input_size=(16, 16), layout="nhwc").fit(images)


def test_missing_onnxruntime(tmp_path, images, monkeypatch):
    path = pool_matmul_model(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match=r"pip install imgcls\[onnx\]"):
        OnnxEmbedder(path, input_size=8).fit(images)


def test_nan_output_names_model(tmp_path, images):
    path = pool_matmul_model(tmp_path / "nan.onnx",
                             weight=np.full((3, 5), np.nan, dtype=np.float32))
    with pytest.raises(FormatError, match="nan.onnx.*NaN or infinite"):
        OnnxEmbedder(path, input_size=8).fit(images)


def test_bad_files(tmp_path, images):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(FormatError, match="junk.onnx: not an ONNX model"):
        OnnxEmbedder(str(junk), input_size=8).fit(images)
    with pytest.raises(FormatError, match="no such ONNX model file"):
        OnnxEmbedder(str(tmp_path / "absent.onnx"), input_size=8).fit(images)
    with pytest.raises(FormatError, match="not a regular file|regular"):
        OnnxEmbedder(str(tmp_path), input_size=8).fit(images)


def test_replaced_file_is_refused(tmp_path, images):
    path = pool_matmul_model(tmp_path / "m.onnx")
    emb = OnnxEmbedder(path, input_size=8).fit(images)
    fresh = OnnxEmbedder(**emb.get_params())
    fresh.__dict__.update({k: v for k, v in vars(emb).items() if k.endswith("_")})
    pool_matmul_model(tmp_path / "m.onnx", weight=W * 2)
    with pytest.raises(FormatError, match="not the one the embedder was fitted with"):
        fresh.transform(images)


def test_bad_params_and_images(tmp_path, images):
    path = pool_matmul_model(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="layout"):
        OnnxEmbedder(path, layout="chw").fit(images)
    with pytest.raises(ValueError, match="mean must be one finite number or 3"):
        OnnxEmbedder(path, input_size=8, mean=(0.5, 0.5)).fit(images)
    with pytest.raises(ValueError, match="uint8"):
        OnnxEmbedder(path, input_size=8).fit(images.astype(np.float32))
    emb = OnnxEmbedder(path, input_size=8).fit(images)
    with pytest.raises(ValueError, match="fitted on images of shape"):
        emb.transform(images[:, :4])
