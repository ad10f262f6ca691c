"""imgcls embed: features written as a features:DIR folder, whole or not at all."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from imgcls.cli import main
from imgcls.datasets import load_dataset
from imgcls.features import make_features


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """16x16 colour images in 3 class folders (folder: split 80/20 by the loader)."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir()
        for i in range(10):
            img = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
            img[..., c] += 150
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def test_embed_writes_features_dir(image_folder, tmp_path, capsys):
    out = tmp_path / "emb"
    assert main(["embed", "--dataset", f"folder:{image_folder}", "--features", "hog+color",
                 "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_features"] == 36 + 10  # one 2x2-cell block of 9 bins, 10 hue bins
    assert sorted(p.name for p in out.iterdir()) == [
        "X_test.npy", "X_train.npy", "classes.txt", "embedding.json", "y_test.npy",
        "y_train.npy"]
    # what the loaders read equals the transformer fitted on the training images
    images = load_dataset(f"folder:{image_folder}")
    feats = load_dataset(f"features:{out}")
    assert feats.classes == images.classes
    np.testing.assert_array_equal(feats.y_train, images.y_train)
    np.testing.assert_array_equal(feats.y_test, images.y_test)
    t = make_features("hog+color").fit(images.X_train)
    np.testing.assert_array_equal(feats.X_train, t.transform(images.X_train))
    np.testing.assert_array_equal(feats.X_test, t.transform(images.X_test))
    info = json.loads((out / "embedding.json").read_text())
    assert info["features"] == "hog+color" and info["fitted_on"] == "the training split only"
    # and the kNN tools read it
    assert main(["knn-eval", "--dataset", f"features:{out}", "--k", "1", "--json",
                 "--out", str(tmp_path / "knn-eval")]) == 0


def test_embed_refuses_existing_folder(image_folder, tmp_path, capsys):
    out = tmp_path / "emb"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["embed", "--dataset", f"folder:{image_folder}", "--features", "color",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("imgcls: error:") and "not an empty" in err[-1]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("argv, match", [
    (["--features", "sift"], "unknown feature set 'sift'"),
    (["--features", "hog,color"], "embed writes one feature set"),
    (["--features", "hog", "--dataset", "digits"], "HOG needs images of at least 16x16"),
])
def test_embed_errors_leave_nothing(image_folder, tmp_path, capsys, argv, match):
    argv = ["--dataset", f"folder:{image_folder}", *argv] if "--dataset" not in argv else argv
    code = main(["embed", *argv, "--out", str(tmp_path / "emb")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("imgcls: error:") and match in err[-1], err
    assert list(tmp_path.iterdir()) == []  # no folder, no temporary folder


def test_embed_failure_while_writing_leaves_nothing(image_folder, tmp_path, monkeypatch,
                                                    capsys):
    import imgcls.datasets.features as features_mod

    def broken(path, *a, **kw):  # fails after every file was written
        raise OSError("disk full")

    monkeypatch.setattr(features_mod, "load_features", broken)
    code = main(["embed", "--dataset", f"folder:{image_folder}", "--features", "color",
                 "--out", str(tmp_path / "emb")])
    assert code == 1 and "disk full" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_embed_with_onnx_model(image_folder, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
         helper.make_node("Flatten", ["p"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    out = tmp_path / "emb"
    assert main(["embed", "--dataset", f"folder:{image_folder}", "--onnx", str(path),
                 "--input-size", "8,8", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_features"] == 3
    feats = load_dataset(f"features:{out}")
    # the mean of each normalised channel: the class colour stands out
    channel = np.array([{"red": 0, "green": 1, "blue": 2}[c] for c in feats.classes])
    assert np.all(feats.X_train.argmax(axis=1) == channel[feats.y_train])
    info = json.loads((out / "embedding.json").read_text())
    assert len(info["model_sha256"]) == 64
    # a model that does not take 8x8 images: one error line, no folder
    code = main(["embed", "--dataset", f"folder:{image_folder}", "--onnx", str(path),
                 "--input-size", "16,16", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "has shape ['?', 3, 8, 8]" in err[-1]
    assert not (tmp_path / "bad").exists()
