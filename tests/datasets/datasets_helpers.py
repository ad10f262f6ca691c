"""Writers for fixture files in the exact release formats, and a snapshot helper."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED_MNIST = REPO / ".." / "shared" / "data" / "mnist"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 00 00 08 ndim, big-endian uint32 dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def small_idx_set(seed: int = 0, n_train: int = 30, n_test: int = 10):
    rng = np.random.default_rng(seed)
    return {"train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                      np.arange(n_train, dtype=np.uint8) % 10),
            "test": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                     np.arange(n_test, dtype=np.uint8)[::-1] % 10)}


def write_idx_set(folder: Path, data, gz: bool = True) -> dict[str, Path]:
    """Write the four IDX files under their official names; return stem -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, (img_stem, lab_stem) in IDX_STEMS.items():
        X, y = data[split]
        for stem, arr in ((img_stem, X), (lab_stem, y)):
            raw = idx_bytes(arr)
            path = folder / (stem + (".gz" if gz else ""))
            path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
            paths[stem] = path
    return paths


def cifar_records(n: int, label_bytes: int, seed: int = 0, n_classes=(10,)):
    """Random CIFAR records; returns (bytes, images (n,32,32,3), labels per label byte)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = [rng.integers(0, k, n).astype(np.uint8) for k in n_classes]
    planes = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # channel-major R, G, B
    rows = np.concatenate([np.stack(labels, axis=1), planes], axis=1)
    assert rows.shape == (n, label_bytes + 3072)
    return rows.tobytes(), images, labels


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- Python-2-style pickles, opcode by opcode, as cPickle protocol 2 wrote them ---

def _str(s: bytes) -> bytes:  # a Python 2 str: SHORT_BINSTRING / BINSTRING
    return (b"U" + bytes([len(s)]) + s) if len(s) < 256 else (b"T" + struct.pack("<I", len(s)) + s)


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def _list(items: list[bytes]) -> bytes:
    return b"]" + b"(" + b"".join(items) + b"e"


def _ndarray_u1(arr: np.ndarray) -> bytes:
    """numpy's ndarray pickle (py2, protocol 2): _reconstruct + BUILD with raw data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    shape = b"(" + b"".join(_int(d) for d in arr.shape) + b"t"
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _int(0) + b"\x85"
            + _str(b"b") + b"\x87R"
            + b"(" + _int(1) + shape
            + b"cnumpy\ndtype\n" + _str(b"u1") + _int(0) + _int(1) + b"\x87R"
            + b"(" + _int(3) + _str(b"|") + b"NNN" + b"J\xff\xff\xff\xff" + b"J\xff\xff\xff\xff"
            + _int(0) + b"tb"
            + b"\x89" + _str(arr.tobytes()) + b"tb")


def py2_pickle(entries: dict[bytes, object]) -> bytes:
    """A dict pickled like the CIFAR python release (values: ndarray, list of int/str, str, int)."""
    body = b""
    for key, value in entries.items():
        body += _str(key)
        if isinstance(value, np.ndarray):
            body += _ndarray_u1(value)
        elif isinstance(value, list):
            body += _list([_str(v) if isinstance(v, bytes) else _int(int(v)) for v in value])
        elif isinstance(value, bytes):
            body += _str(value)
        else:
            body += _int(int(value))
    return b"\x80\x02}(" + body + b"u."


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder`` with its size and SHA-256 (to prove nothing changed)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, sha256(p.read_bytes()))
            for p in sorted(folder.rglob("*")) if p.is_file()}


def no_partial_files(folder: Path) -> bool:
    return not any(p.name.endswith(".part") or p.name.startswith(".extracting-")
                   for p in folder.rglob("*")) if folder.exists() else True


# --- .npy / .npz files written field by field, so that headers can lie ---

def npy_bytes(descr: str, shape, data: bytes = b"", fortran: bool = False,
              version: tuple[int, int] = (1, 0), header: str | None = None) -> bytes:
    """A .npy file: magic, version, little-endian header length, header text, data.

    ``header`` replaces the dict text when given (for malformed headers); the
    header is padded with spaces and a newline to a multiple of 64 bytes, as
    numpy writes it.
    """
    text = header if header is not None else (
        f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {tuple(shape)!r}, }}")
    prefix_len = 10 if version[0] == 1 else 12
    encoded = text.encode("utf-8") if version[0] >= 3 else text.encode("latin-1", "replace")
    body = encoded + b" " * (-(prefix_len + len(encoded) + 1) % 64) + b"\n"
    length = struct.pack("<H" if version[0] == 1 else "<I", len(body))
    return b"\x93NUMPY" + bytes(version) + length + body + data


def npz_bytes(members: dict[str, bytes], deflate: bool = False) -> bytes:
    """A zip archive of ``members`` (name -> bytes), stored or deflated."""
    import zipfile

    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
