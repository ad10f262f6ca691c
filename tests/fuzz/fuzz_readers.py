"""The readers under fuzz: for each, how to make an input and how to feed it.

A reader is a :class:`Reader`: ``generate(src) -> Case`` builds one input (files
plus call arguments) from a source of choices, ``run(case, folder)`` calls the
imgcls entry point on the files written into ``folder``, ``errors`` are the
documented exception types, and ``check(case, folder, output)`` adds checks on a
successful call (what a correct result must look like).

Entry points are looked up when called, not imported at module level, so the
harness keeps working while the readers are reorganised; a reader whose entry
point is missing fails loudly (an untyped ``AttributeError`` finding).

Each generator mixes three kinds of input: valid files (the reader must load
them), structured attacks that know the format (valid headers with crafted
sizes, pickle memo loops, tar links, ...), and byte-level mutations of valid
files (bit flips, truncation, insertion, splicing, length fields overwritten
with extreme values).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import fuzz_formats as F
from fuzz_source import Blob, mutate

# ----------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Special:
    """A file-system entry that is not a regular file: "fifo", "dir" or "symlink"."""

    kind: str
    target: str = ""  # symlink target; "{dir}" is replaced by the case folder


@dataclass
class Case:
    reader: str
    entry: str
    files: dict[str, Any]  # relative path -> bytes or Special
    args: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def input_bytes(self) -> int:
        n = sum(len(v) for v in self.files.values() if isinstance(v, (bytes, bytearray)))
        return n + len(json.dumps(self.args, default=str))


@dataclass
class Refused:
    """A documented refusal returned instead of raised (e.g. a reason string)."""

    reason: str


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@dataclass
class Reader:
    name: str
    generate: Callable[[Any], Case]
    run: Callable[[Case, Path], Any]
    errors: tuple[type, ...]
    check: Callable[[Case, Path, Any], list[str]] | None = None
    #: the typed error's message must name the input (the case folder)
    names_file: bool = True
    #: memory that is legitimate besides the output: for images, the pixels of the
    #: valid images the case holds (see :func:`image_allowance`)
    allowance: Callable[[Case], int] | None = None


#: bytes per pixel a decoder may legitimately hold: Pillow keeps RGB and RGBA as 4
#: bytes per pixel, and a conversion (to RGB or L, after compositing) makes a second
#: image of the same size
BYTES_PER_DECODED_PIXEL = 8


def image_allowance(case: Case) -> int:
    """A valid image must be decoded in full before it is resized: its pixels are
    legitimate data even when the output is small (``max_pixels`` bounds them)."""
    return BYTES_PER_DECODED_PIXEL * int(case.args.get("pixels", 0))


def write_case(case: Case, folder: Path) -> None:
    """Create the case's files under ``folder`` (which exists and is empty)."""
    for rel, value in sorted(case.files.items(), key=lambda kv: (isinstance(kv[1], Special)
                                                                  and kv[1].kind == "symlink", kv[0])):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, Special):
            if value.kind == "fifo":
                os.mkfifo(path)
            elif value.kind == "dir":
                path.mkdir(exist_ok=True)
            elif value.kind == "symlink":
                os.symlink(value.target.replace("{dir}", str(folder)), path)
        else:
            path.write_bytes(value)


def _errors():
    from imgcls import errors

    return errors


# ----------------------------------------------------------------------------- IDX

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def gen_idx(src) -> Case:
    ndim = src.choice([None, 1, 3])
    r = src.int(0, 99)
    if r < 25:
        blob = F.idx_valid(src, ndim if src.bool(0.8) else None)
    elif r < 55:
        blob = F.idx_crafted(src, ndim)
    else:
        blob = Blob(mutate(src, F.idx_valid(src, ndim), splice=F.idx_valid(src).data))
    name = "train-images-idx3-ubyte"
    data = blob.data
    if src.bool(0.2):
        name += ".gz"
        data = F.gzip_member(src, data).data
    return Case("idx", "read_idx", {name: data}, {"ndim": ndim, "file": name}, blob.note)


def run_idx(case: Case, folder: Path):
    from imgcls.datasets.idx import read_idx

    return read_idx(folder / case.args["file"], ndim=case.args["ndim"])


def check_idx(case: Case, folder: Path, out) -> list[str]:
    if not isinstance(out, np.ndarray):
        return [f"read_idx returned a {type(out).__name__}, not an array"]
    if case.args["ndim"] is not None and out.ndim != case.args["ndim"]:
        return [f"read_idx returned ndim {out.ndim}, asked for {case.args['ndim']}"]
    return []


# ----------------------------------------------------------------------------- gz (MNIST)

def _mnist_idx(src, stem: str, n: int) -> bytes:
    if "images" in stem:
        payload = src.payload(n * 28 * 28)
        return F.idx_file(0x08, [n, 28, 28], payload).data
    return F.idx_file(0x08, [n], bytes(src.int(0, 9) for _ in range(n))).data


def gen_gz(src) -> Case:
    counts = {"train": src.int(0, 3), "t10k": src.int(0, 3)}
    victim = src.choice(IDX_STEMS)
    files = {}
    note = ""
    for stem in IDX_STEMS:
        raw = _mnist_idx(src, stem, counts[stem.split("-")[0]])
        plain = src.bool(0.1)
        data = raw if plain else F.gzip_member(src, raw).data
        name = stem if plain else stem + ".gz"
        if stem == victim:
            r = src.int(0, 199)
            if r < 3:
                ndim = 3 if "images" in stem else 1
                header = (F.idx_file(0x08, [F.BOMB_BYTES // 784, 28, 28], b"").data if ndim == 3
                          else F.idx_file(0x08, [F.BOMB_BYTES], b"").data)
                blob = F.gzip_bomb(src, header if src.bool() else b"")
                data, name, note = blob.data, stem + ".gz", blob.note
            elif r < 60:
                blob = F.gzip_crafted(src, raw)
                data, name, note = blob.data, stem + ".gz", "crafted gzip"
            elif r < 100:
                crafted = F.idx_crafted(src, 3 if "images" in stem else 1)
                data, name, note = F.gzip_member(src, crafted.data).data, stem + ".gz", \
                    "crafted IDX in gzip"
            elif r < 180:
                blob = F.gzip_member(src, raw)
                data, note = mutate(src, blob), "mutated gzip"
                name = stem + ".gz"
            else:
                note = "valid"
        files[name] = data
    return Case("gz", "load_dataset", files,
                {"name": src.choice(["mnist", "fashion-mnist"]), "verify": src.bool()}, note)


def run_gz(case: Case, folder: Path):
    import warnings

    from imgcls.datasets import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(case.args["name"], root=folder, verify=case.args["verify"])


def check_dataset(case: Case, folder: Path, ds) -> list[str]:
    """A loaded Dataset must honour the documented contract."""
    bad = []
    for split in ("train", "test"):
        X, y = getattr(ds, f"X_{split}"), getattr(ds, f"y_{split}")
        if len(X) != len(y):
            bad.append(f"{split}: {len(X)} samples but {len(y)} labels")
        if y.dtype != np.int64:
            bad.append(f"y_{split} has dtype {y.dtype}, not int64")
        elif y.size and (y.min() < 0 or y.max() >= len(ds.classes)):
            bad.append(f"y_{split} outside 0..{len(ds.classes) - 1}")
    return bad


# ----------------------------------------------------------------------------- CIFAR binary

CIFAR_KINDS = {"cifar10": (1, {"fine": 10}), "cifar100": (2, {"fine": 100, "coarse": 20})}


def gen_cifar_bin(src) -> Case:
    name = src.choice(list(CIFAR_KINDS))
    label_bytes, classes = CIFAR_KINDS[name]
    label = src.choice(list(classes))
    n_classes = classes[label]
    index = 1 if (label_bytes == 2 and label == "fine") else 0
    r = src.int(0, 99)
    if r < 10:
        return _cifar_folder_case(src, name, label, "binary")
    if r < 20:
        blob = Blob(F.class_names_text(src, n_classes))
        entry = "parse_names"
    else:
        entry = "parse_binary"
        blob = F.cifar_binary(src, label_bytes, n_classes)
        if r >= 45:
            blob = Blob(mutate(src, blob, splice=F.cifar_binary(src, label_bytes, n_classes).data))
    return Case("cifar-bin", entry, {"data_batch_1.bin": blob.data},
                {"label_bytes": label_bytes, "index": index, "n_classes": n_classes}, blob.note)


def _cifar_folder_case(src, name: str, label: str, release: str) -> Case:
    """A small extracted CIFAR release for the whole loader, one file damaged."""
    from_layout = {
        ("cifar10", "binary"): ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)]
                                + ["test_batch.bin"], "batches.meta.txt"),
        ("cifar100", "binary"): ("cifar-100-binary", ["train.bin", "test.bin"],
                                 "fine_label_names.txt" if label == "fine" else "coarse_label_names.txt"),
        ("cifar10", "python"): ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]
                                + ["test_batch"], "batches.meta"),
        ("cifar100", "python"): ("cifar-100-python", ["train", "test"], "meta"),
    }
    folder, batches, meta = from_layout[(name, release)]
    label_bytes, classes = CIFAR_KINDS[name]
    n_classes = classes[label]
    files = {}
    for b in batches:
        if release == "binary":
            files[f"{folder}/{b}"] = F.cifar_binary(src, label_bytes, n_classes, n_max=2).data
        else:
            key = "labels" if name == "cifar10" else f"{label}_labels"
            files[f"{folder}/{b}"] = F.cifar_batch_pickle(src, key, n_classes, n_max=2).data
    if release == "binary":
        files[f"{folder}/{meta}"] = F.class_names_text(src, n_classes)
    else:
        key = "label_names" if name == "cifar10" else f"{label}_label_names"
        files[f"{folder}/{meta}"] = F.cifar_meta_pickle(src, key, n_classes).data
    victim = src.choice(sorted(files))
    if src.bool(0.8):
        files[victim] = mutate(src, Blob(files[victim]))
    return Case("cifar-bin" if release == "binary" else "cifar-py", "load_dataset", files,
                {"name": name, "label": label}, f"extracted {release} release, {victim} mutated")


def run_cifar_bin(case: Case, folder: Path):
    from imgcls.datasets import cifar

    if case.entry == "load_dataset":
        return _load_cifar(case, folder)
    path = folder / "data_batch_1.bin"
    data = path.read_bytes()
    if case.entry == "parse_names":
        return cifar.parse_names(data, str(path), case.args["n_classes"])
    return cifar.parse_binary(data, str(path), case.args["label_bytes"], case.args["index"],
                              case.args["n_classes"])


def _load_cifar(case: Case, folder: Path):
    from imgcls.datasets import load_dataset

    return load_dataset(case.args["name"], root=folder, label=case.args["label"])


def check_cifar(case: Case, folder: Path, out) -> list[str]:
    if case.entry == "load_dataset":
        return check_dataset(case, folder, out)
    if case.entry in ("parse_binary", "parse_python_batch"):
        X, y = out
        if X.dtype != np.uint8 or X.shape[1:] != (32, 32, 3) or len(X) != len(y):
            return [f"images {X.dtype} {X.shape} with {len(y)} labels"]
        if y.size and (y.min() < 0 or y.max() >= case.args["n_classes"]):
            return ["labels out of range"]
    if case.entry in ("parse_names", "parse_python_meta"):
        if not (isinstance(out, list) and len(out) == case.args["n_classes"]
                and all(isinstance(s, str) for s in out)):
            return ["class names are not n_classes strings"]
    return []


# ----------------------------------------------------------------------------- CIFAR python

def gen_cifar_py(src) -> Case:
    name = src.choice(list(CIFAR_KINDS))
    _, classes = CIFAR_KINDS[name]
    label = src.choice(list(classes))
    n_classes = classes[label]
    label_key = "labels" if name == "cifar10" else f"{label}_labels"
    meta_key = "label_names" if name == "cifar10" else f"{label}_label_names"
    r = src.int(0, 99)
    if r < 8:
        return _cifar_folder_case(src, name, label, "python")
    entry = src.choice(["parse_python_batch", "parse_python_batch", "parse_python_meta", "load"])
    valid = (F.cifar_meta_pickle(src, meta_key, n_classes) if entry == "parse_python_meta"
             else F.cifar_batch_pickle(src, label_key, n_classes))
    if r < 25:
        blob = valid
    elif r < 40:
        blob = F.pickle_memo_bomb(src)
    elif r < 60:
        blob = F.pickle_random_program(src)
    else:
        other = F.cifar_batch_pickle(src, label_key, n_classes)
        blob = Blob(mutate(src, valid, splice=other.data), note="mutated pickle")
    return Case("cifar-py", entry, {"data_batch_1": blob.data},
                {"key": meta_key if entry == "parse_python_meta" else label_key,
                 "n_classes": n_classes}, blob.note)


def run_cifar_py(case: Case, folder: Path):
    if case.entry == "load_dataset":
        return _load_cifar(case, folder)
    path = folder / "data_batch_1"
    data = path.read_bytes()
    if case.entry == "load":
        from imgcls.datasets.restricted_pickle import load

        return load(data, str(path))
    from imgcls.datasets import cifar

    if case.entry == "parse_python_meta":
        return cifar.parse_python_meta(data, str(path), case.args["key"], case.args["n_classes"])
    return cifar.parse_python_batch(data, str(path), case.args["key"], case.args["n_classes"])


# ----------------------------------------------------------------------------- npz

def _npz_valid(src, compress: bool) -> tuple[Blob, dict[str, bytes]]:
    arrays = F.dataset_arrays(src)
    members = {f"{k}.npy": F.npy_bytes(v).data for k, v in arrays.items()}
    return F.zip_bytes(members, compress), members


def gen_npz(src) -> Case:
    r = src.int(0, 99)
    compress = src.bool()
    blob, members = _npz_valid(src, compress)
    note = "valid npz"
    if r < 25:
        pass
    elif r < 50:
        victim = src.choice(sorted(members))
        crafted = F.npy_crafted(src)
        members[victim] = crafted.data
        blob, note = F.zip_bytes(members, compress), f"{victim}: {crafted.note}"
    elif r < 60:
        victim = src.choice(sorted(members))
        members[victim] = mutate(src, F.npy_bytes(np.zeros(src.int(0, 9), np.float64)))
        blob, note = F.zip_bytes(members, compress), f"{victim}: mutated npy"
    elif r < 80:
        other, _ = _npz_valid(src, not compress)
        blob, note = Blob(mutate(src, blob, splice=other.data)), "mutated zip"
    else:
        # a folder of .npy files
        files = {f"arrays/{k}": v for k, v in members.items()}
        victim = src.choice(sorted(files))
        if src.bool():
            files[victim] = F.npy_crafted(src).data
        else:
            files[victim] = mutate(src, Blob(files[victim], [F.Field(8, 2, "little")]))
        return Case("npz", "load_dataset", files, {"path": "arrays"}, f"npy folder, {victim} damaged")
    return Case("npz", "load_dataset", {"features.npz": blob.data}, {"path": "features.npz"}, note)


def run_npz(case: Case, folder: Path):
    from imgcls.datasets import load_dataset

    return load_dataset(f"npz:{folder / case.args['path']}")


def check_npz(case: Case, folder: Path, ds) -> list[str]:
    bad = check_dataset(case, folder, ds)
    for X in (ds.X_train, ds.X_test):
        if X.dtype.kind == "f" and X.size and not np.isfinite(X).all():
            bad.append("features hold NaN/inf")
    return bad


# ----------------------------------------------------------------------------- features

def gen_features(src) -> Case:
    """A features:DIR folder (maybe sharded), valid or with one file crafted or mutated."""
    d, dtype = src.int(1, 5), src.choice(["<f4", "<f2", "|u1", "<f8"])

    def X(n):
        arr = (np.frombuffer(src.payload(n * d), np.uint8) / 7).reshape(n, d).astype(dtype)
        if src.bool(0.05) and arr.dtype.kind == "f" and arr.size:
            arr.flat[-1] = np.inf
        return arr

    def y(n):
        return np.array([src.int(0, 2) for _ in range(n)], dtype=src.choice(["<i8", "|u1"]))

    sizes = [src.int(1, 4)] + [src.int(0, 4) for _ in range(src.int(0, 2))]
    arrays = {f"X_train-{i:05d}.npy": X(n) for i, n in enumerate(sizes)} if len(sizes) > 1 \
        else {"X_train.npy": X(sizes[0])}
    n_test = src.int(0, 3)
    arrays.update({"y_train.npy": y(sum(sizes)), "X_test.npy": X(n_test), "y_test.npy": y(n_test)})
    files = {f"set/{k}": F.npy_bytes(v).data for k, v in arrays.items()}
    if src.bool(0.3):
        files["set/classes.txt"] = src.choice([b"a\nb\nc\n", b"a\n\nb\n", b"\xff\n", b"a\nb\n"])
    r, note = src.int(0, 99), "valid features"
    if r >= 30:
        victim = src.choice(sorted(files))
        if r < 60 and victim.endswith(".npy"):
            files[victim], note = F.npy_crafted(src).data, f"{victim}: crafted npy"
        else:
            files[victim] = mutate(src, Blob(files[victim], [F.Field(8, 2, "little")]))
            note = f"{victim}: mutated"
    return Case("features", "load_dataset", files, {"path": "set"}, note)


def run_features(case: Case, folder: Path):
    from imgcls.datasets import load_dataset

    return load_dataset(f"features:{folder / case.args['path']}")


def check_features(case: Case, folder: Path, ds) -> list[str]:
    bad = check_dataset(case, folder, ds)
    for X in (ds.X_train, ds.X_test):
        if X.dtype.kind == "f" and X.size and not np.isfinite(np.asarray(X)).all():
            bad.append("features hold NaN/inf")
    return bad


# ----------------------------------------------------------------------------- images

def gen_image(src) -> Case:
    blob, ext = F.image_any(src)
    entry = src.choice(["decode", "decode", "predict_read"])
    args = {"file": "img" + ext, "pixels": blob.pixels, "mode": src.choice(["RGB", "L"]),
            "size": src.choice([None, None, [8, 8], [3, 17], [40, 1]]),
            "max_pixels": src.choice([None, None, 64 * 64, 10 ** 6]),
            "image_shape": src.choice([[8, 8, 1], [8, 8, 3], [5, 3, 3], [1, 1, 1]])}
    files = {args["file"]: blob.data}
    if src.bool(0.04):
        files = {args["file"]: src.choice([Special("fifo"), Special("dir"),
                                            Special("symlink", "/dev/zero"),
                                            Special("symlink", "{dir}/missing.png")])}
    return Case("image", entry, files, args, blob.note)


def run_image(case: Case, folder: Path):
    a = case.args
    path = folder / a["file"]
    if case.entry == "predict_read":
        from imgcls.pipeline.images import read_image_for_model

        return read_image_for_model(path, tuple(a["image_shape"]))
    from imgcls.datasets import _decode

    size = tuple(a["size"]) if a["size"] else None
    # decode_file raises ImageError; the older decode_one returned the reason
    fn = getattr(_decode, "decode_file", None) or getattr(_decode, "decode_one")
    out = fn(str(path), a["mode"], size, a["max_pixels"])
    if isinstance(out, str):
        return Refused(out)
    return out


def check_image(case: Case, folder: Path, out) -> list[str]:
    if isinstance(out, Refused):
        return []
    a = case.args
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8:
        return [f"decoded to {type(out).__name__} {getattr(out, 'dtype', '')}"]
    if case.entry == "predict_read":
        want = (1, *a["image_shape"])
    else:
        c = 3 if a["mode"] == "RGB" else 1
        want = (*a["size"], c) if a["size"] else (out.shape[0], out.shape[1], c)
    if tuple(out.shape) != tuple(want):
        return [f"decoded shape {out.shape}, expected {tuple(want)}"]
    if case.entry == "decode" and a["max_pixels"] is not None and a["size"] is None \
            and out.shape[0] * out.shape[1] > a["max_pixels"]:
        return [f"{out.shape[1]}x{out.shape[0]} image accepted over max_pixels={a['max_pixels']}"]
    return []


@functools.lru_cache(maxsize=2)
def _large_png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (200, 10, 10)).save(buf, "PNG", optimize=False)
    return buf.getvalue()


def gen_folder(src) -> Case:
    split = src.bool(0.5)
    n_classes = src.int(1, 2)
    w, h = src.int(1, 12), src.int(1, 12)
    mode = src.choice(["RGB", "L"])
    files = {}
    pixels = w * h
    for part in (["train", "test"] if split else [""]):
        for c in range(n_classes):
            for i in range(src.int(1, 2) if split else src.int(2, 3)):
                blob, ext = F.image_file(src, size=(w, h), fmt=src.choice(F.CHEAP_FORMATS))
                files[f"tree/{part + '/' if part else ''}c{c}/{i:03d}{ext}"] = blob.data
    names = sorted(files)
    specials = False
    note = "valid tree"
    r = src.int(0, 99)
    if r < 5:
        # the first file in sort order is large, the others small: an allocation of
        # (n, H_first, W_first, C) before the sizes are compared is a bomb
        # (20 x 1500 x 1500 x 3 bytes = 129 MiB)
        side = 1500
        first = names[0]
        files[first[: first.rfind(".")] + ".png"] = _large_png(side)
        pixels = side * side
        if not first.endswith(".png"):
            del files[first]
        for i in range(src.int(20, 30)):
            blob, ext = F.image_file(src, size=(w, h), fmt="BMP")
            files[f"{first.rsplit('/', 1)[0]}/z{i:03d}.png"] = blob.data
        note = f"first image {side}x{side}, the rest {w}x{h}"
    elif r < 72:
        for _ in range(src.int(1, 2)):
            victim = src.choice(sorted(k for k, v in files.items() if isinstance(v, bytes) and v))
            if src.bool(0.1):
                files[victim] = src.choice([Special("fifo"), Special("dir"),
                                            Special("symlink", "/dev/zero"), b""])
                specials = True
                note = f"{victim}: special entry"
            else:
                blob, ext = F.image_any(src)
                del files[victim]
                files[victim[: victim.rfind(".")] + ext] = blob.data
                pixels = max(pixels, blob.pixels)
                note = f"{victim}: {blob.note}"
    elif r < 80:
        files[src.choice(names)] = b""
        note = "an empty image file"
    args = {"mode": mode, "image_size": src.choice([None, None, [6, 6], [2, 9]]),
            "on_error": src.choice(["raise", "skip"]),
            "max_pixels": src.choice([None, None, 2000, 10 ** 7]),
            # threads only without special files: a FIFO opened in a worker thread
            # could not be interrupted by the watchdog
            "n_jobs": 1 if specials or src.bool(0.85) else 2}
    if args["n_jobs"] == 2:
        args["backend"] = "threads"
    return Case("folder", "load_dataset", files, {**args, "pixels": pixels * args["n_jobs"]}, note)


def run_folder(case: Case, folder: Path):
    import warnings

    from imgcls.datasets import load_dataset

    opts = {k: v for k, v in case.args.items() if k != "pixels"}
    if opts["image_size"] is not None:
        opts["image_size"] = tuple(opts["image_size"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(f"folder:{folder / 'tree'}", progress=False, **opts)


def check_folder(case: Case, folder: Path, ds) -> list[str]:
    bad = check_dataset(case, folder, ds)
    c = 3 if case.args["mode"] == "RGB" else 1
    for X in (ds.X_train, ds.X_test):
        if X.dtype != np.uint8 or X.ndim != 4 or X.shape[3] != c:
            bad.append(f"images {X.dtype} {X.shape}, mode {case.args['mode']}")
        elif case.args["image_size"] and X.shape[1:3] != tuple(case.args["image_size"]):
            bad.append(f"images {X.shape[1:3]}, asked for {case.args['image_size']}")
    return bad


# ----------------------------------------------------------------------------- tar

def gen_tar(src) -> Case:
    blob, specs = F.tar_archive(src)
    data = blob.data
    r = src.int(0, 99)
    note = blob.note
    if r < 20:
        data = F.tar_header_mutate(src, data)
        note += ", header field edited"
    elif r < 35:
        data = mutate(src, blob)
        note += ", mutated"
    pristine = r >= 35
    data, ext = F.compress_tar(src, data)
    files = {"archive" + ext: data}
    # what the destination folder already holds (collisions with the archive's names)
    if src.bool(0.6):
        for rel, value in (("dest/data", b"a file where the archive has a folder"),
                           ("dest/data/old.bin", b"old"), ("dest/other.txt", b"keep me"),
                           ("dest/a.bin/x", b"a folder where the archive has a file")):
            if src.bool(0.4) and not any(r.startswith(rel + "/") or rel.startswith(r + "/")
                                         for r in files if r.startswith("dest/")):
                files[rel] = value
    entry = src.choice(["safe_extract", "safe_extract", "read_members"])
    wanted = sorted({s["name"] for s in specs} | {"data/f1.bin", "missing.bin"})
    # read_members may be told the most bytes each member may have
    max_sizes = ({n: src.choice([0, 10, 100, 1000]) for n in wanted[:src.int(1, 3)]}
                 if entry == "read_members" and src.bool(0.4) else None)
    return Case("tar", entry, files, {"archive": "archive" + ext, "names": wanted,
                                      "pristine": pristine, "max_sizes": max_sizes,
                                      "members": [{k: (v.hex() if isinstance(v, bytes) else v)
                                                   for k, v in s.items()} for s in specs]}, note)


def run_tar(case: Case, folder: Path):
    from imgcls.datasets import archive

    path = folder / case.args["archive"]
    if case.entry == "read_members":
        if case.args.get("max_sizes") is not None:
            return archive.read_members(path, case.args["names"], case.args["max_sizes"])
        return archive.read_members(path, case.args["names"])
    dest = folder / "dest"
    return archive.safe_extract(path, dest)


def check_tar(case: Case, folder: Path, out) -> list[str]:
    members = case.args["members"] if case.args["pristine"] else []
    counts: dict[str, int] = {}
    for m in members:
        counts[m["name"].rstrip("/")] = counts.get(m["name"].rstrip("/"), 0) + 1
    # regular members named once (a repeated name's outcome depends on the order)
    regular = {m["name"]: bytes.fromhex(m["data"]) for m in members
               if m["type"] in ("0", "\x00", "7") and counts[m["name"].rstrip("/")] == 1
               # tar headers end names at a NUL; a name ending in "/" is a folder
               and "\x00" not in m["name"] and not m["name"].endswith("/")}
    if case.entry == "read_members":
        bad = []
        for name, data in out.items():
            if name not in case.args["names"]:
                bad.append(f"read_members returned unrequested {name!r}")
            elif name in regular and data != regular[name]:
                bad.append(f"read_members returned wrong bytes for {name!r}")
            elif (case.args.get("max_sizes") or {}).get(name, len(data)) < len(data):
                bad.append(f"read_members returned {len(data)} bytes of {name!r}, over "
                           f"its max_sizes entry")
        return bad
    dest = folder / "dest"
    bad = []
    for p in dest.iterdir():
        if p.name.startswith(".extracting") or p.name.startswith(".tmp"):
            bad.append(f"temporary entry {p.name} left in the destination")
    for name, data in regular.items():
        target = dest / name
        if os.path.islink(target) or not target.is_file():
            bad.append(f"member {name!r} not extracted as a regular file")
        elif target.read_bytes() != data:
            bad.append(f"member {name!r} extracted with other content")
    for p in out:
        if Path(p).resolve().parent != dest.resolve():
            bad.append(f"created entry {p} outside the destination's top level")
    kept = [r for r in case.files if r.startswith("dest/")]
    top_created = {Path(p).name for p in out}
    for rel in kept:
        parts = Path(rel).parts
        if parts[1] not in top_created and not (folder / rel).exists():
            bad.append(f"existing {rel} removed though the archive does not replace it")
    return bad


# ----------------------------------------------------------------------------- model files

@functools.lru_cache(maxsize=1)
def model_seeds() -> tuple[tuple[str, bytes], ...]:
    """Small fitted models of every built-in estimator, saved with imgcls.io.save."""
    import tempfile
    import warnings

    import imgcls
    from imgcls import io as imgcls_io

    rng = np.random.default_rng(0)
    Xf = rng.normal(size=(12, 4)).astype(np.float32)
    Xi = rng.integers(0, 256, (12, 3, 2, 1), dtype=np.uint8)
    Xc = rng.integers(0, 256, (12, 2, 2, 3), dtype=np.uint8)
    y = np.arange(12) % 3
    ys = np.array(["cat", "dog", "eel"])[y]
    models = [
        ("knn-feat", imgcls.KNearestNeighbor(k=3, metric="l2"), Xf, y),
        ("knn-img", imgcls.KNearestNeighbor(k=2, weights="distance"), Xi, ys),
        ("nn-img", imgcls.NearestNeighbor(), Xc, y),
        ("svm-feat", imgcls.LinearSVM(epochs=2, random_state=0), Xf, y),
        ("softmax-img", imgcls.Softmax(epochs=2, random_state=0), Xc, ys),
    ]
    out = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, model, X, labels in models:
            try:
                model.fit(X, labels)
            except TypeError:  # an estimator without random_state
                model = type(model)(epochs=2).fit(X, labels)
            path = Path(tmp) / f"{name}.safetensors"
            imgcls_io.save(model, path, classes=[f"class {c}" for c in model.classes_])
            out.append((name, path.read_bytes()))
            if name == "knn-feat" and _has_keys():
                imgcls_io.save(model, path, key=MODEL_KEY)
                out.append((name + "-signed", path.read_bytes()))
    return tuple(out)


#: the HMAC key of the signed seed models (and of the ``load_key`` entry)
MODEL_KEY = b"imgcls fuzzing key, 32 bytes ok"


def _has_keys() -> bool:
    import inspect

    from imgcls import io as imgcls_io

    return "key" in inspect.signature(imgcls_io.load).parameters


def _metadata_hash(doc: dict) -> str | None:
    try:
        from imgcls.io import modelfile

        fn = getattr(modelfile, "_metadata_hash", None)
        if fn is not None:
            return fn(doc)
    except (ValueError, TypeError, RecursionError):
        return None
    import hashlib

    body = {k: v for k, v in doc.items() if k != "metadata_sha256"}
    try:
        canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                           allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return None
    return hashlib.sha256(canon.encode("ascii")).hexdigest()


def _payload_hash(tensors: dict) -> str | None:
    try:
        from imgcls.io.codec import tensor_sha256

        return tensor_sha256(tensors)
    except Exception:  # noqa: BLE001  (a generator must not die on the code under test)
        return None


def _sign(doc: dict) -> str | None:
    """The signature imgcls.save(..., key=MODEL_KEY) would write for ``doc``, if known."""
    try:
        from imgcls.io import signature

        return signature.SIGNATURE_PREFIX + signature.sign(
            MODEL_KEY, doc["metadata_sha256"], doc["payload_sha256"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def seal(doc: dict, tensors: dict[str, np.ndarray], raw: dict[str, str] | None = None,
         signed: bool = False) -> bytes:
    """A model file from ``doc`` and ``tensors`` with both hashes recomputed, so that a
    crafted document passes the integrity checks and reaches the validation behind them.

    ``raw`` maps placeholder strings in ``doc`` to raw JSON text (NaN, 1e999,
    5000-digit integers, deep nesting) that Python's json would not write.
    """
    from safetensors.numpy import save as st_save

    ph = _payload_hash(tensors)
    if ph is not None:
        doc["payload_sha256"] = ph
    mh = _metadata_hash(doc)
    if mh is not None:
        doc["metadata_sha256"] = mh
    text = json.dumps(doc)
    for key, value in (raw or {}).items():
        text = text.replace(json.dumps(key), value)
    metadata = {"imgcls": text}
    signature = _sign(doc) if signed else None
    if signature is not None:
        metadata["imgcls_signature"] = signature
    return st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata)


def _open_seed(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors.numpy import load as st_load

    header, _ = F.safetensors_split(data)
    return json.loads(header["__metadata__"]["imgcls"]), st_load(data)


_WEIRD_VALUES = [-5, 0, -1, 1, 2**31, 2**63, 10**30, 0.5, -0.0, 1e308, "nonsense", "", None, True,
                 False, [], {}, [1, 2], {"a": 1}, {"$tuple": [1, 2]}, {"$float": "nan"},
                 {"$float": "inf"}, {"$scalar": ["int64", 3]}, {"$scalar": ["object", 3]},
                 {"$array": ["float64", [2], [1.0, 2.0]]}, {"$array": ["<U1000000000", [1], ["a"]]},
                 {"$array": ["int64", [2147483648, 2147483648], []]},
                 {"$array": ["float64", [0, 4294967296, 4294967296], []]},
                 {"$array": ["object", [3], [1, [2], {"a": 1}]]}, {"$dict": [[[1], 2]]},
                 {"$dict": [[1, 2], [1, 3]]}, {"$bogus": 1}, {"$tuple": 5}, "x" * 10000]
_RAW_VALUES = ["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, "-" + "9" * 5000]


def _weird(src, raw: dict[str, str]) -> Any:
    r = src.int(0, 9)
    if r < 6:
        return src.choice(_WEIRD_VALUES)
    key = f"@@raw{len(raw)}@@"
    if r < 8:
        raw[key] = src.choice(_RAW_VALUES)
    else:
        depth = src.choice([200, 900, 1100, 3000, 20000, 100000])
        raw[key] = F.deep_json(depth, tagged=src.bool())
    return key


def _mutate_doc(src, doc: dict, tensors: dict[str, np.ndarray], raw: dict[str, str]) -> str:
    """One structured change to a model's metadata or arrays; returns what it did."""
    table = doc.get("attributes", {})
    kind = src.choice(["param", "param", "attr_json", "attr_tensor", "attr_add", "attr_drop",
                       "estimator", "version", "classes", "class_names", "swap"])
    if kind == "param" and isinstance(doc.get("params"), dict) and doc["params"]:
        key = src.choice(sorted(doc["params"]))
        doc["params"][key] = _weird(src, raw)
        return f"param {key} = {str(doc['params'][key])[:40]}"
    if kind == "attr_json":
        names = sorted(k for k, v in table.items() if isinstance(v, dict) and "json" in v) or \
            ["n_features_in_"]
        name = src.choice(names)
        table[name] = {"json": src.choice([
            _weird(src, raw), {"$tuple": [2**31, 2**31, 1]}, {"$tuple": [0, 4, 1]},
            {"$tuple": [1, 1, 1, 1]}, {"$tuple": [-1, 3, 1]}, 2**40, -3, 5])}
        return f"attribute {name} = {str(table[name])[:60]}"
    if kind == "attr_tensor" and tensors:
        name = src.choice(sorted(tensors))
        arr = tensors[name]
        how = src.choice(["shorter", "longer", "0d", "transpose", "dtype", "nan", "empty", "3d"])
        if how == "shorter" and arr.ndim and len(arr) > 1:
            arr = arr[: len(arr) // 2]
        elif how == "longer" and arr.ndim:
            arr = np.concatenate([arr, arr])
        elif how == "0d":
            arr = np.asarray(arr.reshape(-1)[0] if arr.size else 0, dtype=arr.dtype)
        elif how == "transpose" and arr.ndim == 2:
            arr = np.ascontiguousarray(arr.T)
        elif how == "dtype":
            arr = arr.astype(src.choice([np.int8, np.float16, np.uint64, np.bool_, np.float64]))
        elif how == "nan" and arr.dtype.kind == "f" and arr.size:
            arr = arr.copy()
            arr.flat[0] = src.choice([np.nan, np.inf, -np.inf, 1e30])
        elif how == "empty":
            arr = arr.reshape(-1)[:0] if arr.ndim == 0 else arr[:0]
        elif how == "3d":
            arr = arr.reshape(1, 1, -1)
        tensors[name] = arr
        table[name] = {"tensor": {"dtype": arr.dtype.name, "shape": list(arr.shape)}}
        return f"tensor {name} {how} -> {arr.dtype} {arr.shape}"
    if kind == "attr_add":
        name = src.choice(["templates_", "classes_", "y_fit_", "W_", "image_shape_", "n_iter_",
                           "class_names_", "coef_", "X_fit_", "fit_", "_private_", "a b_",
                           "__class__", "history_", "n_features_in_"])
        if src.bool() and name not in ("image_shape_", "history_", "n_features_in_"):
            arr = np.zeros(src.choice([(0,), (3,), (2, 2), ()]), np.float64)
            tensors[name] = arr
            table[name] = {"tensor": {"dtype": "float64", "shape": list(arr.shape)}}
        else:
            table[name] = {"json": _weird(src, raw)}
        return f"attribute {name} added"
    if kind == "attr_drop" and table:
        name = src.choice(sorted(table))
        del table[name]
        tensors.pop(name, None)
        return f"attribute {name} dropped"
    if kind == "estimator":
        doc["estimator"] = src.choice(["LinearSVM", "Softmax", "KNearestNeighbor",
                                       "NearestNeighbor", "os.system", "builtins.eval", 5, None,
                                       "Centroid", ""])
        return f"estimator {doc['estimator']!r}"
    if kind == "version":
        doc["format_version"] = src.choice([True, 0, 2, 1.0, "1", 10**30, None, -1])
        return f"format_version {doc['format_version']!r}"
    if kind == "classes":
        doc["classes"] = src.choice([None, {"dtype": "<U1000000000", "values": ["a"]},
                                     {"dtype": "int64", "values": [[1], 2]},
                                     {"dtype": "int64", "values": []}, 5,
                                     {"dtype": "object", "values": [1]}])
        return f"classes {str(doc['classes'])[:40]}"
    if kind == "class_names":
        doc["class_names"] = src.choice([["a"], [["a"], "b", "c"], [1, 2, 3], "abc", [],
                                         ["a"] * 1000, {"a": 1}, _weird(src, raw)])
        return f"class_names {str(doc['class_names'])[:40]}"
    # swap: the tensors of one seed under another estimator's name
    doc["estimator"] = src.choice(["LinearSVM", "Softmax", "KNearestNeighbor", "NearestNeighbor"])
    return f"estimator swapped to {doc['estimator']}"


def _mutate_header(src, data: bytes) -> bytes:
    """Edit the safetensors header itself: tensor entries, metadata type, length field."""
    header, body = F.safetensors_split(data)
    keys = [k for k in header if k != "__metadata__"]
    kind = src.choice(["dtype", "shape", "offsets", "offsets", "meta", "deep", "len", "utf8", "dup"])
    if kind in ("dtype", "shape", "offsets") and keys:
        entry = header[src.choice(keys)]
        if kind == "dtype":
            entry["dtype"] = src.choice(["F64", "I8", "BF16", "F8_E4M3", "X", "BOOL", "U64", 5])
        elif kind == "shape":
            entry["shape"] = src.choice([[2**31, 2**31], [-1], [], ["a"], [0], [2**62, 4],
                                         [1] * 100])
        else:
            n = len(body)
            entry["data_offsets"] = src.choice([[0, 2**63], [5, 3], [0, n + 1], [0, 0],
                                                [-1, 4], [0, 2**64], [n, n], "x", [0]])
        return F.safetensors_join(header, body).data
    if kind == "meta":
        meta = header.get("__metadata__") if isinstance(header.get("__metadata__"), dict) else {}
        header["__metadata__"] = src.choice([
            None, [], {"imgcls": 5}, {"imgcls": "{"}, {"other": "x"}, "str",
            {**meta, "imgcls_signature": src.choice(["hmac-sha256:" + "0" * 64, "hmac-sha256:",
                                                     "md5:00", "", "hmac-sha256:" + "g" * 64])},
            {**meta, "imgcls_signature": 5}])
        return F.safetensors_join(header, body).data
    if kind == "deep":
        depth = src.choice([1000, 5000, 100000])
        text = json.dumps(header)
        text = text[:-1] + ', "deep": ' + F.deep_json(depth) + "}"
        return F.safetensors_join(text, body).data
    if kind == "len":
        n = src.choice([0, 1, 7, 8, 2**63, 2**64 - 1, 100 * 1024 * 1024 + 1, len(data)])
        return struct.pack("<Q", n) + data[8:]
    if kind == "utf8":
        raw = json.dumps(header).encode()
        return struct.pack("<Q", len(raw) + 2) + raw[:-1] + b'\xff\xfe}' + body
    text = json.dumps(header)
    return F.safetensors_join(text[:-1] + ', "__metadata__": {"imgcls": "{}"}}', body).data


def gen_model(src) -> Case:
    seeds = model_seeds()
    name, data = src.choice(seeds)
    r = src.int(0, 99)
    note = f"{name} valid"
    if r < 10:
        pass
    elif r < 65:
        doc, tensors = _open_seed(data)
        raw: dict[str, str] = {}
        notes = [_mutate_doc(src, doc, tensors, raw) for _ in range(src.int(1, 2))]
        data = seal(doc, tensors, raw, signed=name.endswith("-signed") and src.bool(0.8))
        note = f"{name}: " + "; ".join(notes) + " (hashes recomputed)"
    elif r < 80:
        data = _mutate_header(src, data)
        note = f"{name}: safetensors header edited"
    else:
        other = src.choice(seeds)[1]
        data = mutate(src, Blob(data, [F.Field(0, 8, "little")]), splice=other)
        note = f"{name}: bytes mutated"
    entry = src.choice(["load"] * 7 + ["load_key"] * 2 + ["read_metadata"])
    if entry == "load_key" and not _has_keys():
        entry = "load"
    return Case("model", entry, {"model.safetensors": data}, {"file": "model.safetensors"}, note)


class ProbeError(Exception):
    """A model that loaded cannot predict (the file's attributes disagree)."""


def probe_model(model, file_size: int) -> Any:
    """Predict two samples of the loaded model's declared input shape.

    The input size is checked against the file first: every feature needs at
    least one stored number (a row of ``X_fit_`` or a column of ``W_``), so a
    model declaring more features than its file has bytes is inconsistent, and
    is reported without allocating its input.
    """
    shape = getattr(model, "image_shape_", None)
    if shape is not None:
        n_feat = int(np.prod([int(s) for s in shape], dtype=object))
        dims = tuple(int(s) for s in shape)
    else:
        n_feat = int(getattr(model, "n_features_in_", 0) or 0)
        dims = (n_feat,)
    if n_feat > file_size:
        raise ProbeError(f"the model declares {n_feat} input features but the file holds "
                         f"{file_size} bytes")
    X = np.zeros((2, *dims), np.uint8 if shape is not None else np.float32)
    return model.predict(X)


def warm_models(folder: Path) -> None:
    """Load and probe every seed model once: the first predict of each kind compiles
    numba kernels (seconds), which is start-up cost, not a property of an input."""
    from imgcls import io as imgcls_io

    for name, data in model_seeds():
        path = folder / f"{name}.safetensors"
        path.write_bytes(data)
        probe_model(imgcls_io.load(path), len(data))
        path.unlink()


def run_model(case: Case, folder: Path):
    import warnings

    from imgcls import io as imgcls_io

    path = folder / case.args["file"]
    if case.entry == "read_metadata":
        return imgcls_io.read_metadata(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = (imgcls_io.load(path, key=MODEL_KEY) if case.entry == "load_key"
                 else imgcls_io.load(path))
        try:
            pred = probe_model(model, path.stat().st_size)
        except Exception as exc:  # noqa: BLE001  (any failure here is the finding)
            raise ProbeError(f"loaded, but predict fails: {type(exc).__name__}: "
                             f"{str(exc)[:200]}") from exc
    return (model, pred)


def check_model(case: Case, folder: Path, out) -> list[str]:
    if case.entry not in ("load", "load_key"):
        return [] if isinstance(out, dict) else [f"read_metadata returned {type(out).__name__}"]
    model, pred = out
    classes = getattr(model, "classes_", None)
    if classes is None or len(pred) != 2:
        return ["predict returned the wrong number of labels"]
    known = set(np.asarray(classes).tolist())
    if not set(np.asarray(pred).tolist()) <= known:
        return ["predict returned labels outside classes_"]
    return []


# ----------------------------------------------------------------------------- CLI

_PARAMS = ["k=-5", "k=0", "k=3", "k=1e999", "k=nan", "k=99999999999999999999", "k=3.5", "k=true",
           "k=", "=3", "k", "metric=nonsense", "metric=l2", "weights=distance", "reg=-1",
           "reg=inf", "learning_rate=-1", "learning_rate=0", "epochs=0", "epochs=-3",
           "n_jobs=0", "working_memory=-1", "temperature=0", "batch_size=0", "optimizer=sgd",
           "nonsense=1", "k=" + "9" * 5000, "\x00=1", "k=\u00e9", "k=[1,2]", "k={}"]
_JUNK = ["", "-", "--", "---x", "--json", "--help-me", "\x00", "\u2028", "x" * 5000, "-h x",
         "--root", "--dataset=", "--top=-1", "--top", "1e99", "nan", "--seed", "abc"]


def gen_cli(src) -> Case:
    files: dict[str, Any] = {}
    cmd = src.choice(["predict", "predict", "predict", "evaluate", "train", "train", "run",
                      "info", "verify", "junk"])
    model = "{dir}/model.safetensors"
    if cmd in ("predict", "evaluate"):
        kind = src.int(0, 99)
        if kind < 85:
            files["model.safetensors"] = gen_model(src).files["model.safetensors"]
        elif kind < 90:
            files["model.safetensors"] = Special("fifo")
        elif kind < 95:
            files["model.safetensors"] = Special("symlink", "/dev/zero")
        else:
            model = src.choice(["{dir}/missing.safetensors", "{dir}", "/dev/null"])
    pixels = 0
    if cmd == "predict":
        argv = ["predict", model]
        for i in range(src.int(1, 3)):
            if src.bool(0.85):
                blob, ext = F.image_any(src) if src.bool(0.5) else F.image_valid(src)
                files[f"img{i}{ext}"] = blob.data
                pixels = max(pixels, blob.pixels)
                argv.append(f"{{dir}}/img{i}{ext}")
            else:
                special = src.choice(["fifo", "missing", "dir", "devzero"])
                if special == "fifo":
                    files[f"img{i}.png"] = Special("fifo")
                    argv.append(f"{{dir}}/img{i}.png")
                elif special == "devzero":
                    argv.append("/dev/zero")
                else:
                    argv.append("{dir}/missing.png" if special == "missing" else "{dir}")
        if src.bool(0.3):
            argv += ["--top", src.choice(["0", "-1", "1", "5", "1000000", "x"])]
    elif cmd == "evaluate":
        files["tiny.npz"] = F.zip_bytes({f"{k}.npy": F.npy_bytes(v).data
                                         for k, v in F.dataset_arrays(src).items()},
                                        src.bool()).data
        argv = ["evaluate", model, "--dataset",
                src.choice(["npz:{dir}/tiny.npz", "npz:{dir}/missing.npz", "folder:{dir}/none",
                            "nonsense", "mnist"])]
        if argv[-1] == "mnist":
            argv += ["--root", "{dir}"]
    elif cmd == "train":
        params = [src.choice(_PARAMS) for _ in range(src.int(0, 3))]
        argv = ["train", "--model", src.choice(["knn", "svm", "softmax", "nope", "knn,svm", ""]),
                "--dataset", src.choice(["npz:{dir}/missing.npz", "folder:{dir}/none",
                                         "nonsense", "mnist"]),
                "--root", "{dir}/nothing-here",
                "--out", src.choice(["{dir}/out.safetensors", "{dir}/no/such/dir/m.safetensors",
                                     "{dir}", "/proc/m.safetensors"])]
        for p in params:
            argv += ["--param", p]
        if src.bool(0.2):
            argv += ["--seed", src.choice(["1", "x", "-1", "1e3"])]
    elif cmd == "run":
        argv = ["run", "--dataset", src.choice(["npz:{dir}/missing.npz", "folder:{dir}/none",
                                                "nonsense"]),
                "--out", "{dir}/report",
                "--models", src.choice(["knn", "svm,softmax", "nope", "", ",,"]),
                "--folds", src.choice(["5", "0", "1", "-2", "x", "1000000"])]
    elif cmd in ("info", "verify"):
        # the dataset readers' files, through the CLI
        sub = gen_gz(src) if src.bool() else gen_npz(src)
        for k, v in sub.files.items():
            files[f"data/{k}"] = v
        if sub.reader == "gz":
            name = sub.args["name"]
        else:
            name = "npz:{dir}/data/" + sub.args["path"]
        argv = ["datasets", cmd, name, "--root", "{dir}/data"]
        if cmd == "info" and src.bool(0.3):
            argv += src.choice([["--image-size", src.choice(["0x5", "axb", "5", "-1x-1", "3x3"])],
                                ["--label", "fine"], ["--mode", "X"], ["--skip-bad"]])
    else:
        # a bare command; not "run", which runs the whole study on digits by default
        argv = [src.choice(["predict", "train", "datasets", "evaluate", "fly", "datasets list"])]
    for _ in range(src.int(0, 2) if src.bool(0.3) else 0):
        argv.insert(src.int(0, len(argv)), src.choice(_JUNK))
    if src.bool(0.1):
        argv.append("--json")
    return Case("cli", cmd, files, {"argv": argv, "pixels": pixels})


def run_cli(case: Case, folder: Path) -> CliResult:
    import warnings

    from imgcls.cli import main

    argv = [a.replace("{dir}", str(folder)) for a in case.args["argv"]]
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.chdir(cwd)
    return CliResult(int(code), out.getvalue(), err.getvalue())


def check_cli(case: Case, folder: Path, res: CliResult) -> list[str]:
    # split on newlines only: an argument may hold U+2028, which str.splitlines splits on
    lines = [ln for ln in res.stderr.split("\n") if ln.strip()]
    bad = []
    if "Traceback" in res.stderr or "Traceback" in res.stdout:
        bad.append("a traceback was printed")
    if res.code == 0:
        if case.entry in ("train", "run"):
            bad.append(f"{case.entry} succeeded on an input meant to fail")
        return bad
    if res.code == 1:
        if len(lines) != 1 or not lines[0].startswith("imgcls: error: "):
            bad.append(f"exit 1 with {len(lines)} stderr lines: {res.stderr[:300]!r}")
        # predict reads every file before printing (documented); verify prints its
        # table of files and then fails
        if case.entry == "predict" and res.stdout.strip():
            bad.append(f"exit 1 after printing to stdout: {res.stdout[:200]!r}")
    elif res.code == 2:
        if not lines or ": error: " not in lines[-1] or not lines[-1].startswith("imgcls"):
            bad.append(f"exit 2 without an argparse error line: {res.stderr[:300]!r}")
    else:
        bad.append(f"exit code {res.code}")
    return bad


# ----------------------------------------------------------------------------- registry

def readers() -> dict[str, Reader]:
    E = _errors()
    data_errors = (E.DatasetError,)
    return {r.name: r for r in [
        Reader("idx", gen_idx, run_idx, data_errors, check_idx),
        Reader("gz", gen_gz, run_gz, data_errors, check_dataset),
        Reader("cifar-bin", gen_cifar_bin, run_cifar_bin, data_errors, check_cifar),
        Reader("cifar-py", gen_cifar_py, run_cifar_py, data_errors, check_cifar),
        Reader("npz", gen_npz, run_npz, data_errors, check_npz),
        Reader("features", gen_features, run_features, data_errors, check_features),
        Reader("image", gen_image, run_image, (E.ImageError, E.ConfigError), check_image,
               allowance=image_allowance),
        Reader("folder", gen_folder, run_folder, data_errors, check_folder,
               allowance=image_allowance),
        Reader("tar", gen_tar, run_tar, data_errors, check_tar),
        Reader("model", gen_model, run_model, (E.ModelFileError,), check_model),
        Reader("cli", gen_cli, run_cli, (), check_cli, names_file=False,
               allowance=image_allowance),
    ]}


#: modules the readers import lazily; imported before any input is judged, since an
#: import interrupted by a bound (watchdog, address-space cap) would leave a broken
#: module behind for every later input
WARM_IMPORTS = ("sklearn.model_selection", "sklearn.utils.validation", "scipy.stats",
                "scipy.optimize", "safetensors.numpy", "PIL.Image", "PIL.PngImagePlugin",
                "PIL.JpegImagePlugin", "PIL.BmpImagePlugin", "PIL.GifImagePlugin",
                "PIL.WebpImagePlugin", "PIL.ImageOps", "gzip", "tarfile", "zipfile", "lzma", "bz2",
                "rich.console", "rich.table", "imgcls", "imgcls.io", "imgcls.cli",
                "imgcls.cli.models", "imgcls.cli.datasets", "imgcls.cli.run", "imgcls.pipeline",
                "imgcls.pipeline.images", "imgcls.datasets", "imgcls.datasets.folder",
                "imgcls.datasets.arrays", "imgcls.datasets.cifar", "imgcls.datasets.mnist",
                "imgcls.datasets.idx", "imgcls.datasets.archive", "imgcls.datasets._decode",
                "imgcls.datasets.restricted_pickle", "imgcls.datasets.features", "imgcls.neighbors",
                "imgcls.linear")

READER_NAMES = ("idx", "gz", "cifar-bin", "cifar-py", "npz", "features", "image", "folder", "tar",
                "model", "cli")

