"""Fixed inputs for the attacks of issue 8, through the same oracle as the fuzzing.

Random inputs find these classes with some probability; these probes make sure
every CI run sends each one at least once (a bomb of every kind, each hang, each
traceback class), whatever hypothesis draws.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from fuzz_formats import (BOMB_BYTES, Pickler, deep_json, gzip_bomb, gzip_member, idx_file,
                          npy_header, zip_bytes)
from fuzz_harness import Harness
from fuzz_readers import (IDX_STEMS, Case, Special, _large_png, _mnist_idx, _open_seed,
                          model_seeds, readers, seal)
from fuzz_source import RandomSource


@pytest.fixture(scope="module")
def harness():
    h = Harness(readers(), trace_python=True, tune_malloc=False)
    h.warm_up(["idx", "gz", "cifar-py", "npz", "folder", "tar", "model", "cli", "image"], n=3)
    yield h
    h.close()


def check(harness, case):
    out = harness.run(case)
    assert not out.findings, (f"{case.reader} probe {case.note}: {out.findings}; {out.error}\n"
                              f"{out.traceback}")
    return out


def _mnist_files(src, victim: str, data: bytes) -> dict:
    files = {s + ".gz": gzip_member(src, _mnist_idx(src, s, 2)).data for s in IDX_STEMS}
    files[victim + ".gz"] = data
    return files


def test_idx_dims_whose_product_wraps_int64(harness):
    data = idx_file(0x08, [1 << 16] * 4, b"").data
    out = check(harness, Case("idx", "read_idx", {"f-idx3-ubyte": data},
                              {"ndim": None, "file": "f-idx3-ubyte"}, "dims 2**16 x 4, no data"))
    assert out.status == "typed"


def test_idx_huge_dims_short_payload(harness):
    data = idx_file(0x0E, [(1 << 32) - 1, 1 << 31, 7], b"\0" * 16).data
    check(harness, Case("idx", "read_idx", {"f": data}, {"ndim": 3, "file": "f"}, "huge dims"))


@pytest.mark.parametrize("verify", [True, False])
def test_gzip_bomb_with_a_valid_idx_header(harness, verify):
    src = RandomSource("probe-gz")
    header = idx_file(0x08, [BOMB_BYTES], b"").data
    files = _mnist_files(src, "train-labels-idx1-ubyte", gzip_bomb(src, header).data)
    out = check(harness, Case("gz", "load_dataset", files, {"name": "mnist", "verify": verify},
                              f"128 MiB labels file, verify={verify}"))
    assert out.status == "typed"


@pytest.mark.parametrize("verify", [True, False])
def test_gzip_bomb_without_an_idx_header(harness, verify):
    """128 MiB of zeros: no valid IDX header, so nothing of it is legitimate data; the
    reader must stop long before the official size (47 MB for the training images)."""
    src = RandomSource("probe-gz-zeros")
    files = _mnist_files(src, "train-images-idx3-ubyte", gzip_bomb(src).data)
    out = check(harness, Case("gz", "load_dataset", files, {"name": "mnist", "verify": verify},
                              f"128 MiB of zeros as the training images, verify={verify}"))
    assert out.status == "typed"


def _memo_bomb(k: int, depth: int) -> bytes:
    p = Pickler(RandomSource("probe-pickle"), proto=2)
    p.op(b"}").put()
    p.op(b"(")
    p.text("labels", py2=False).op(b"]")
    prev = p.put()
    p.int(1).op(b"a")
    for level in range(depth):
        p.text(f"k{level}", py2=False).op(b"]")
        cur = p.put()
        p.op(b"(")
        for _ in range(k):
            p.get(prev)
        p.op(b"e")
        prev = cur
    p.op(b"u")
    return p.stop()


@pytest.mark.parametrize("entry", ["load", "parse_python_batch"])
def test_pickle_memo_references_do_not_expand(harness, entry):
    data = _memo_bomb(400, 4)  # 400**4 = 2.6e10 nodes if each reference were copied
    assert len(data) < 8000
    check(harness, Case("cifar-py", entry, {"data_batch_1": data},
                        {"key": "labels", "n_classes": 10}, "memo bomb 400^4"))


def test_npz_header_claiming_a_huge_shape(harness):
    head, _ = npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }")
    npz = zip_bytes({"X.npy": head + b"\0" * 64, "y.npy": head}, compress=True).data
    out = check(harness, Case("npz", "load_dataset", {"f.npz": npz}, {"path": "f.npz"},
                              "npy shape 2**40"))
    assert out.status == "typed"


def test_folder_first_image_large_then_small(harness):
    from fuzz_formats import image_file

    src = RandomSource("probe-folder")
    files = {"tree/c0/000.png": _large_png(1500)}
    for i in range(1, 25):
        files[f"tree/c{i % 2}/{i:03d}.bmp"] = image_file(src, size=(4, 4), fmt="BMP")[0].data
    out = check(harness, Case("folder", "load_dataset", files,
                              {"mode": "RGB", "image_size": None, "on_error": "raise",
                               "max_pixels": None, "n_jobs": 1},
                              "1500x1500 first, 24 images of 4x4"))
    assert out.status == "typed"


def _png(width: int, height: int) -> bytes:
    import zlib

    from fuzz_formats import png_chunk

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_folder_decompression_bomb_header(harness, on_error):
    from fuzz_formats import image_file

    src = RandomSource("probe-bomb")
    files = {f"tree/c{i % 2}/{i}.png": image_file(src, size=(4, 4), fmt="PNG")[0].data
             for i in range(6)}
    files["tree/c0/9.png"] = _png(20000, 20000)  # 400 M pixels: over Pillow's bomb limit
    check(harness, Case("folder", "load_dataset", files,
                        {"mode": "L", "image_size": None, "on_error": on_error,
                         "max_pixels": None, "n_jobs": 1}, "20000x20000 PNG header"))


def _gif_with_a_huge_canvas() -> bytes:
    """A valid 30x38 GIF whose logical screen says 65535 x 2230 (146 M pixels, under
    Pillow's 179 M bomb limit): 1.5 KB that Pillow decodes into a full-size canvas."""
    import io

    from PIL import Image

    im = Image.fromarray((np.arange(30 * 38) % 251).astype(np.uint8).reshape(38, 30), "L")
    buf = io.BytesIO()
    im.save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", 65535, 2230)  # logical screen width, height
    return bytes(data)


@pytest.mark.parametrize("reader,entry", [("folder", "load_dataset"), ("image", "decode"),
                                          ("image", "predict_read")])
def test_tiny_gif_with_a_huge_canvas(harness, reader, entry):
    from fuzz_formats import image_file

    src = RandomSource("probe-canvas")
    if reader == "folder":
        files = {f"tree/c{i % 2}/{i}.png": image_file(src, size=(4, 4), fmt="PNG")[0].data
                 for i in range(4)}
        files["tree/c1/5.gif"] = _gif_with_a_huge_canvas()
        args = {"mode": "RGB", "image_size": [4, 4], "on_error": "skip", "max_pixels": None,
                "n_jobs": 1}
    else:
        files = {"img.gif": _gif_with_a_huge_canvas()}
        args = {"file": "img.gif", "mode": "RGB", "size": [8, 8], "max_pixels": None,
                "image_shape": [8, 8, 3]}
    check(harness, Case(reader, entry, files, args, "1.5 KB GIF, 65535 x 2230 canvas"))


@pytest.mark.parametrize("reader,entry", [("folder", "load_dataset"), ("image", "decode"),
                                          ("image", "predict_read")])
def test_fifo_is_refused_without_hanging(harness, reader, entry):
    from fuzz_formats import image_file

    src = RandomSource("probe-fifo")
    if reader == "folder":
        files = {f"tree/c{i % 2}/{i}.png": image_file(src, size=(4, 4), fmt="PNG")[0].data
                 for i in range(4)}
        files["tree/c1/5.png"] = Special("fifo")
        args = {"mode": "RGB", "image_size": None, "on_error": "raise", "max_pixels": None,
                "n_jobs": 1}
    else:
        files = {"img.png": Special("fifo")}
        args = {"file": "img.png", "mode": "RGB", "size": None, "max_pixels": None,
                "image_shape": [4, 4, 3]}
    out = check(harness, Case(reader, entry, files, args, "a FIFO named like an image"))
    assert out.status == "typed"


def test_tar_destination_entry_in_the_way_is_all_or_nothing(harness):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("data/a.bin", "data/b.bin"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"new"))
        info = tarfile.TarInfo("zz.bin")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"new"))
    files = {"archive.tar": buf.getvalue(), "dest/zz.bin/inner": b"a folder where a file goes",
             "dest/data/old.bin": b"old"}
    check(harness, Case("tar", "safe_extract", files,
                        {"archive": "archive.tar", "names": [], "pristine": False, "members": []},
                        "destination holds a folder where the archive has a file"))


def _model_case(mutate, note: str) -> Case:
    name, data = model_seeds()[0]
    doc, tensors = _open_seed(data)
    raw: dict[str, str] = {}
    mutate(doc, tensors, raw)
    return Case("model", "load", {"m.safetensors": seal(doc, tensors, raw)},
                {"file": "m.safetensors"}, f"{name}: {note}")


@pytest.mark.parametrize("note,mutate", [
    ("params nested 100000 deep", lambda d, t, r: (d["params"].update(k="@@deep@@"),
                                                   r.update({"@@deep@@": deep_json(100000)}))),
    ("NaN parameter", lambda d, t, r: (d["params"].update(k="@@nan@@"),
                                       r.update({"@@nan@@": "NaN"}))),
    ("1e999 parameter", lambda d, t, r: (d["params"].update(k="@@inf@@"),
                                         r.update({"@@inf@@": "1e999"}))),
    ("5000-digit parameter", lambda d, t, r: (d["params"].update(k="@@big@@"),
                                              r.update({"@@big@@": "9" * 5000}))),
    ("k=-5", lambda d, t, r: d["params"].update(k=-5)),
    ("metric nonsense", lambda d, t, r: d["params"].update(metric="nonsense")),
    ("templates_ attribute", lambda d, t, r: d["attributes"].update(templates_={"json": 1})),
    ("image_shape_ 2**31 x 2**31", lambda d, t, r: d["attributes"].update(
        image_shape_={"json": {"$tuple": [2**31, 2**31, 1]}})),
    ("ragged class_names", lambda d, t, r: d.update(class_names=[["a"], "b", "c"])),
])
def test_model_metadata_attacks(harness, note, mutate):
    out = check(harness, _model_case(mutate, note))
    assert out.status == "typed"


def test_model_y_fit_shorter_than_x_fit(harness):
    def apply(doc, tensors, raw):
        tensors["y_fit_"] = tensors["y_fit_"][:3]
        doc["attributes"]["y_fit_"] = {"tensor": {"dtype": tensors["y_fit_"].dtype.name,
                                                  "shape": [3]}}

    out = check(harness, _model_case(apply, "y_fit_ shorter than X_fit_"))
    assert out.status == "typed"


def test_safetensors_header_length_zero(harness):
    data = model_seeds()[0][1]
    check(harness, Case("model", "load", {"m.safetensors": struct.pack("<Q", 0) + data[8:]},
                        {"file": "m.safetensors"}, "header length 0"))


@pytest.mark.parametrize("argv", [
    ["predict", "{dir}/pipe.safetensors", "{dir}/a.png"],
    ["train", "--model", "knn", "--param", "k=-5", "--dataset", "npz:{dir}/none.npz",
     "--out", "{dir}/m.safetensors"],
    ["evaluate", "{dir}/pipe.safetensors", "--dataset", "digits"],
])
def test_cli_fails_fast_in_one_line(harness, argv):
    files = {"pipe.safetensors": Special("fifo"), "a.png": _png(4, 4)}
    out = check(harness, Case("cli", argv[0], files, {"argv": argv}, " ".join(argv)))
    assert out.status == "typed"
