"""imgcls train / evaluate / predict, in-process, and each bad input."""

import json
import os
import re
import threading

import numpy as np
import pytest
from PIL import Image

import imgcls
from imgcls.cli import main


@pytest.fixture(scope="module")
def knn_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "knn.safetensors"
    assert main(["train", "--dataset", "digits", "--model", "knn", "--param", "k=3",
                 "--param", "metric=l2", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    ds = imgcls.load_dataset("digits")
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(3):
        # upscaled to 32x32 RGB: predict must convert and resize back to 8x8 grey
        img = Image.fromarray(ds.X_test[i, :, :, 0]).resize((32, 32), Image.Resampling.NEAREST)
        path = folder / f"digit{i}_{ds.y_test[i]}.png"
        img.convert("RGB").save(path)
        paths.append(path)
    return paths, ds.y_test[:3]


def test_train_saves_a_loadable_model(knn_file, capsys):
    model = imgcls.load(knn_file)
    assert (model.k, model.metric) == (3, "l2")
    assert model.class_names_ == [str(i) for i in range(10)]


def test_train_json_and_linear(tmp_path, capsys):
    path = tmp_path / "sm.safetensors"
    assert main(["train", "--model", "softmax", "--param", "epochs=3", "--param",
                 "learning_rate=0.05", "--seed", "1", "--out", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimator"] == "Softmax" and out["params"]["epochs"] == 3
    assert out["params"]["random_state"] == 1 and out["n_train"] == 1437
    assert imgcls.load(path).epochs == 3


def test_evaluate(knn_file, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(knn_file), "--dataset", "digits", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_test"] == 360 and 0.95 < out["test_top1"] <= out["test_top5"] <= 1.0
    assert main(["evaluate", str(knn_file)]) == 0
    assert "top-1 0.9" in capsys.readouterr().out


def test_predict_json(knn_file, digit_png, capsys):
    paths, labels = digit_png
    capsys.readouterr()
    assert main(["predict", str(knn_file), *map(str, paths), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    preds = out["predictions"]
    assert [p["image"] for p in preds] == [str(p) for p in paths]
    assert all(len(p["top"]) == 5 for p in preds)
    assert [p["top"][0]["label"] for p in preds] == labels.tolist()
    assert [p["top"][0]["class"] for p in preds] == [str(v) for v in labels]
    scores = [e[out["score"]] for e in preds[0]["top"]]
    assert scores == sorted(scores, reverse=True)


def test_predict_text_and_top(knn_file, digit_png, capsys):
    paths, labels = digit_png
    capsys.readouterr()
    assert main(["predict", str(knn_file), str(paths[0]), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(paths[0]) and len(lines) == 3
    assert lines[1].split()[1] == str(labels[0])


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("imgcls: error: "), err
    return err[0]


def test_predict_bad_image_named_and_nothing_printed(knn_file, digit_png, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    paths, _ = digit_png
    capsys.readouterr()
    code = main(["predict", str(knn_file), str(paths[0]), str(bad)])
    captured = capsys.readouterr()
    assert code == 1 and "broken.png" in captured.err and captured.out == ""
    assert "no such file" in _error(capsys, ["predict", str(knn_file), str(tmp_path / "nope.png")])


def test_predict_unconvertible_channels(tmp_path, capsys):
    # a model on 2-channel images: no image file converts to it unambiguously
    X = np.random.default_rng(0).integers(0, 255, (20, 4, 4, 2), dtype=np.uint8)
    model = imgcls.KNearestNeighbor(k=1).fit(X, np.arange(20) % 2)
    path = imgcls.save(model, tmp_path / "two.safetensors")
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    msg = _error(capsys, ["predict", str(path), str(tmp_path / "rgb.png")])
    assert "rgb.png" in msg and "2 channels" in msg


@pytest.mark.parametrize("argv, match", [
    (["train", "--model", "forest", "--out", "{tmp}/m.safetensors"], "unknown model name 'forest'"),
    (["train", "--model", "knn", "--param", "kk=3", "--out", "{tmp}/m.safetensors"],
     r"unknown parameter\(s\) kk for model 'knn'"),
    (["train", "--model", "knn", "--param", "k", "--out", "{tmp}/m.safetensors"],
     "expected KEY=VALUE"),
    (["train", "--model", "knn", "--param", "k=-2", "--out", "{tmp}/m.safetensors"], "k"),
    (["train", "--model", "svm", "--param", "reg=-1", "--out", "{tmp}/m.safetensors"], "reg"),
    (["train", "--model", "knn", "--dataset", "nosuch", "--out", "{tmp}/m.safetensors"], "nosuch"),
    (["train", "--model", "knn", "--out", "{tmp}/blocker/m.safetensors"], "not a directory"),
    (["train", "--model", "knn", "--out", "{tmp}"], "is a directory"),
    (["evaluate", "{tmp}/missing.safetensors"], "missing.safetensors"),
    (["evaluate", "{tmp}/blocker"], "blocker"),
    (["predict", "{tmp}/blocker", "x.png"], "blocker"),
    (["predict", "{tmp}/blocker", "x.png", "--top", "0"], "--top must be >= 1"),
])
def test_bad_input_one_line_nothing_written(tmp_path, capsys, argv, match):
    (tmp_path / "blocker").write_text("not a model")
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert _error(capsys, argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "blocker").read_text() == "not a model"


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_corrupt_model_file(knn_file, digit_png, tmp_path, capsys, damage):
    data = bytearray(knn_file.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-10] ^= 0xFF
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    msg = _error(capsys, ["predict", str(bad), str(digit_png[0][0])])
    assert "bad.safetensors" in msg
    assert "bad.safetensors" in _error(capsys, ["evaluate", str(bad)])


def test_evaluate_shape_mismatch(tmp_path, capsys):
    X = np.zeros((4, 5, 5, 1), np.uint8)
    X[1:] = 200
    path = imgcls.save(imgcls.KNearestNeighbor().fit(X, [0, 1, 1, 0]), tmp_path / "m.safetensors")
    msg = _error(capsys, ["evaluate", str(path), "--dataset", "digits"])
    assert "(5, 5, 1)" in msg and "(8, 8, 1)" in msg


def test_parse_param_values():
    from imgcls.cli.models import parse_param

    assert parse_param("k=3") == ("k", 3)
    assert parse_param("reg=1e-4") == ("reg", 1e-4)
    assert parse_param("metric=l2") == ("metric", "l2")
    assert parse_param("center=False") == ("center", False)
    assert parse_param("working_memory=none") == ("working_memory", None)


# ------------------------------------------------------------ signatures and odd files

@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "model.key"
    path.write_text("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n")
    return path


@pytest.fixture(scope="module")
def signed_knn(tmp_path_factory, key_file):
    path = tmp_path_factory.mktemp("signed") / "knn.safetensors"
    assert main(["train", "--model", "knn", "--param", "k=3", "--out", str(path),
                 "--key-file", str(key_file)]) == 0
    return path


def test_signed_model_predicts_with_its_key(signed_knn, key_file, digit_png, capsys):
    paths, labels = digit_png
    capsys.readouterr()
    assert main(["predict", str(signed_knn), str(paths[0]), "--key-file", str(key_file),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["predictions"][0]["top"][0]["label"] == labels[0]
    # the key file's trailing newline is not part of the key
    key = key_file.read_bytes().rstrip(b"\n")
    assert imgcls.load(signed_knn, key=key).k == 3
    assert main(["evaluate", str(signed_knn), "--key-file", str(key_file)]) == 0


def test_key_file_refuses_unsigned_and_other_keys(knn_file, signed_knn, tmp_path, capsys,
                                                  digit_png):
    other = tmp_path / "other.key"
    other.write_bytes(b"another key, 32 bytes long......")
    image = str(digit_png[0][0])
    msg = _error(capsys, ["predict", str(knn_file), image, "--key-file", str(other)])
    assert "knn.safetensors" in msg and "not signed" in msg
    msg = _error(capsys, ["evaluate", str(signed_knn), "--key-file", str(other)])
    assert "signature does not match" in msg
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("content, match", [
    (b"short\n", "holds 5 bytes; a key needs at least 16"),
    (b"k" * 5000, "larger than 4096 bytes"),
])
def test_bad_key_files(tmp_path, knn_file, capsys, content, match):
    bad = tmp_path / "bad.key"
    bad.write_bytes(content)
    out = tmp_path / "m.safetensors"
    msg = _error(capsys, ["train", "--model", "knn", "--out", str(out), "--key-file", str(bad)])
    assert "bad.key" in msg and re.search(match, msg)
    assert not out.exists()
    assert "bad.key" in _error(capsys, ["evaluate", str(knn_file), "--key-file", str(bad)])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_model_and_key_file_do_not_hang(tmp_path, knn_file, digit_png, capsys):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    image = str(digit_png[0][0])
    result = {}
    t = threading.Thread(target=lambda: result.update(
        model=_error(capsys, ["predict", str(fifo), image]),
        key=_error(capsys, ["predict", str(knn_file), image, "--key-file", str(fifo)])),
        daemon=True)
    t.start()
    t.join(20)
    if t.is_alive():  # release the blocked reader, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(5)
        pytest.fail("imgcls predict blocked on a FIFO")
    assert "FIFO" in result["model"] and "model.safetensors" in result["model"]
    assert "FIFO" in result["key"]
