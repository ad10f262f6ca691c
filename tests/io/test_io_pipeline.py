"""Whole pipelines (feature transformers + classifier) in model files, without pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler

from imgcls.errors import ModelFileError
from imgcls.features import HOG, ColorHistogram, KMeansFeatures, Pixels, make_features
from imgcls.io import load, save
from imgcls.io.codec import tensor_sha256
from imgcls.linear import LinearSVM, Softmax
from imgcls.neighbors import KNearestNeighbor
from imgcls.pipeline.features import ImagePipeline

from io_helpers import edit_metadata, read_parts, write_parts

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (48, 16, 16, 3), dtype=np.uint8)
Y = np.arange(48) % 3
NAMES = ["cat", "dog", "ship"]


def fitted(features, clf):
    return Pipeline([("features", features), ("classifier", clf)]).fit(X, Y)


@pytest.mark.parametrize("features, clf", [
    (make_features("hog+color"), LinearSVM(random_state=1)),
    (HOG(), KNearestNeighbor(k=3, metric="l2")),
    (Pixels(), Softmax(random_state=2)),
    (KMeansFeatures(n_centroids=6, n_patches=500, patch_size=4, random_state=0),
     Softmax(random_state=0)),
], ids=["hog+color-svm", "hog-knn", "pixels-softmax", "kmeans-softmax"])
def test_round_trip_bit_identical(tmp_path, features, clf):
    pipe = fitted(features, clf)
    path = save(pipe, tmp_path / "p.safetensors", classes=NAMES)
    back = load(path)
    assert isinstance(back, ImagePipeline)
    assert [n for n, _ in back.steps] == ["features", "classifier"]
    assert back.get_params(deep=True).keys() == pipe.get_params(deep=True).keys()
    np.testing.assert_array_equal(back.predict(X), pipe.predict(X))
    F = pipe[:-1].transform(X)
    np.testing.assert_array_equal(back[:-1].transform(X), F)  # features bit-identical
    final = pipe[-1]
    if hasattr(final, "class_scores"):
        np.testing.assert_array_equal(back.class_scores(X), final.class_scores(F))
    else:
        np.testing.assert_array_equal(back.predict_topk(X, n=2), final.predict_topk(F, n=2))
        np.testing.assert_array_equal(back.predict_proba(X), final.predict_proba(F))
    assert back.image_shape_ == (16, 16, 3)
    assert back.class_names_ == NAMES


def test_signed_pipeline(tmp_path):
    key = b"k" * 32
    path = save(fitted(ColorHistogram(), LinearSVM()), tmp_path / "p.safetensors", key=key)
    assert isinstance(load(path, key=key), ImagePipeline)
    with pytest.raises(ModelFileError, match="signature"):
        load(path, key=b"x" * 32)


def test_save_refuses_foreign_steps(tmp_path):
    pipe = Pipeline([("px", Pixels()), ("scale", StandardScaler()),
                     ("clf", LinearSVM())]).fit(X, Y)
    with pytest.raises(ValueError, match="step 'scale' is a sklearn.*StandardScaler"):
        save(pipe, tmp_path / "p.safetensors")
    assert not (tmp_path / "p.safetensors").exists()
    union = FeatureUnion([("hog", HOG()), ("color", ColorHistogram())], transformer_weights={
        "hog": 2.0})
    with pytest.raises(ValueError, match="transformer_weights"):
        save(fitted(union, LinearSVM()), tmp_path / "p.safetensors")


@pytest.fixture
def saved(tmp_path):
    return save(fitted(make_features("hog+color"), LinearSVM()), tmp_path / "p.safetensors",
                classes=NAMES)


def _step(doc, *names):
    node = doc["steps"]
    for name in names:
        node = dict(node.get("pipeline") or node["union"])[name]
    return node


def test_unknown_step_class(saved):
    edit_metadata(saved, lambda d: _step(d, "features", "hog").update(estimator="Popen"))
    with pytest.raises(ModelFileError, match="unknown estimator class 'Popen'"):
        load(saved)


def test_step_with_bad_params(saved):
    def change(d):
        _step(d, "features", "hog")["params"]["orientations"] = -3
    edit_metadata(saved, change)
    with pytest.raises(ModelFileError, match="parameters rejected by HOG.*orientations"):
        load(saved)


def test_step_with_inconsistent_attribute(saved):
    def change(d):  # would make transform write past its output rows
        _step(d, "features", "hog")["attributes"]["n_features_out_"]["json"] = 7
    edit_metadata(saved, change)
    with pytest.raises(ModelFileError, match="step 'features/hog'.*n_features_out_"):
        load(saved)


def _tamper_tensor(path, name, change, rehash=True):
    """Rewrite tensor ``name``'s values with ``change(array)`` and, as an attacker
    would, recompute the payload and metadata hashes."""
    from imgcls.io.modelfile import _metadata_hash

    header, body = read_parts(path)
    tensors = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        a, b = entry["data_offsets"]
        dtype = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4"}[entry["dtype"]]
        tensors[key] = np.frombuffer(body[a:b], dtype=dtype).reshape(entry["shape"]).copy()
    tensors[name] = change(tensors[name])
    body = bytearray(body)
    a, b = header[name]["data_offsets"]
    body[a:b] = tensors[name].tobytes()
    doc = json.loads(header["__metadata__"]["imgcls"])
    if rehash:
        doc["payload_sha256"] = tensor_sha256(tensors)
        doc["metadata_sha256"] = _metadata_hash(doc)
    header["__metadata__"]["imgcls"] = json.dumps(doc)
    write_parts(path, header, bytes(body))


def test_tampered_arrays(saved):
    header, _ = read_parts(saved)
    assert "classifier/W_" in header
    _tamper_tensor(saved, "classifier/W_", lambda w: w + 1, rehash=False)
    with pytest.raises(ModelFileError, match="tensor data was modified"):
        load(saved)


def test_tampered_arrays_rehashed_still_checked(saved):
    _tamper_tensor(saved, "classifier/W_", lambda w: np.full_like(w, np.nan))
    with pytest.raises(ModelFileError, match="step 'classifier'.*W_"):
        load(saved)


def test_stray_tensor_and_bad_tree(saved, tmp_path):
    def nest(d):
        d["steps"] = {"union": d["steps"]["pipeline"]}
    edit_metadata(saved, nest)
    with pytest.raises(ModelFileError, match="the top is not a pipeline|corrupt"):
        load(saved)
    other = save(fitted(ColorHistogram(), LinearSVM()), tmp_path / "q.safetensors")

    def rename(d):
        d["steps"]["pipeline"][1][0] = "renamed"
    edit_metadata(other, rename)
    with pytest.raises(ModelFileError, match="tensor 'W_' is missing"):
        load(other)


def test_deep_nesting_refused(saved):
    def deepen(d):
        node = d["steps"]
        for _ in range(12):
            node = {"pipeline": [["p", node]]}
        d["steps"] = node
    edit_metadata(saved, deepen)
    with pytest.raises(ModelFileError, match="nested deeper"):
        load(saved)


def test_onnx_step_refers_to_its_file_by_hash(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from imgcls.features.onnx import OnnxEmbedder

    def write(scale):
        graph = helper.make_graph(
            [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Mul", ["f", "s"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
            initializer=[helper.make_tensor("s", TensorProto.FLOAT, [1], [scale])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 7
        (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
        return str(tmp_path / "m.onnx")

    pipe = fitted(OnnxEmbedder(write(2.0), input_size=16), Softmax())
    path = save(pipe, tmp_path / "p.safetensors")
    header, _ = read_parts(path)
    assert b"GlobalAveragePool" not in path.read_bytes()  # the ONNX bytes are not copied in
    np.testing.assert_array_equal(load(path).predict(X), pipe.predict(X))
    write(3.0)  # the file the step names is replaced
    with pytest.raises(ModelFileError, match="step 'features'.*not the one the embedder was "
                                             "fitted with"):
        load(path)
