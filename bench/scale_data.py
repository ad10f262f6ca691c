"""Deterministic synthetic ImageNet-like embeddings for the ``scale`` section, as features:DIR.

Real self-supervised embeddings (DINO, iBOT, MAE) are clustered at several
scales (ImageNet's 120 dog breeds sit together, far from vehicles) and have an
intrinsic dimension far below their 384-1024 coordinates; approximate search
depends on both.  So the vectors here are built in a ``subspace``-dimensional
subspace (random orthonormal basis ``B``) of R^dim, in three levels::

    x = (S[g] + O[y] + (a[y] * e) @ D[y] + within * u) @ B + noise * n

* ``n_super`` superclusters, centres ``S ~ N(0, I_subspace)``: well separated,
  so a query's exact neighbours lie in its own supercluster (what lets IVF with
  a moderate ``nprobe`` find them);
* ``n_classes`` classes, ``n_classes / n_super`` siblings per supercluster
  (``g = y * n_super // n_classes``), offsets ``O ~ sibling * N(0, I)``: siblings
  overlap, so kNN confuses them and top-1 lands between 50% and 85%;
* per supercluster, ``local_rank`` strong directions ``D[y] = D'[g]`` (random
  unit vectors, shared by the siblings, like pose or lighting shared by dog
  breeds), with per-class amplitudes ``a[y] = spread * exp(N(0, spread_jitter^2))`` (some classes
  tight, some diffuse): a low-dimensional local structure; ``e ~ N(0, I_rank)``;
* a weak isotropic spread ``within * u``, ``u ~ N(0, I_subspace)``, and
  isotropic noise ``noise * n``, ``n ~ N(0, I_dim)``, in all coordinates.

Labels are balanced and shuffled.  ``sibling`` is tuned per variant so that
exact 20-NN cosine top-1 with DINO's softmax votes (T = 0.07) lies between 50%
and 85% (``--check N`` measures it on N test vectors with plain NumPy and
appends the figures to ``bench/results/scale_data.md``).

Variants (:data:`VARIANTS`): ``in1k`` (1,281,167 x 768 float16 training
vectors, 1,000 classes, 10,000 test vectors: ImageNet-1k's size) and
``in21k`` (21,843 classes, 218,430 training vectors, 10 a class, 50,000 test
vectors); ``quick=True`` gives small sets of the same construction.

Every row chunk has its own generator seeded by ``(seed, split, chunk)``, so the
content depends only on the parameters, and memory stays bounded (one chunk of
:data:`CHUNK_ROWS` rows at a time).  A set is written once into the cache
(``$IMGCLS_BENCH_CACHE`` or ``~/.cache/imgcls-bench/``) under a temporary
name and renamed into place when complete, with ``params.json`` recording the
parameters, the file sizes and their SHA-256; :func:`ensure_scale_data`
reuses a set whose recorded parameters and file sizes match (``verify=True``
re-hashes the files).

Usage::

    python -m bench.scale_data --variant in1k [--quick] [--check 1000] [--verify]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

#: Bump when the construction changes: it is part of the cache key.
GENERATOR_VERSION = 2
#: Rows generated (and written) at a time: 16,384 x 768 float32 temporaries are
#: ~50 MB each.
CHUNK_ROWS = 16_384

# Scales relative to the supercluster centres (N(0, I) in the subspace, so two
# centres lie ~sqrt(2 * subspace) = 11 apart): a class's own spread (local
# directions 0.6 each, weak spread 0.12 x 8, noise 0.03 x sqrt(768) = 0.8) stays
# well inside its supercluster, and ``sibling`` (tuned per variant on sets of the
# same density, see bench/results/scale_data.md) sets how far apart the
# siblings' centres are: 0.05 gives exact top-1 ~0.73 at 1,281 rows a class,
# 0.11 gives ~0.7 at 10 rows a class.
_COMMON = {"dim": 768, "subspace": 64, "local_rank": 4, "spread": 0.6, "spread_jitter": 0.25,
           "within": 0.12, "noise": 0.03, "dtype": "float16", "chunk_rows": CHUNK_ROWS,
           "version": GENERATOR_VERSION}

#: name -> (full parameters, quick parameters).  The quick sets keep the full
#: sets' rows per class and classes per supercluster (their density), on fewer
#: superclusters.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "in1k": ({**_COMMON, "n_train": 1_281_167, "n_test": 10_000, "n_classes": 1000,
              "n_super": 100, "sibling": 0.05, "seed": 1_000},
             {**_COMMON, "n_train": 25_620, "n_test": 1_000, "n_classes": 20,
              "n_super": 2, "sibling": 0.05, "seed": 1_001}),
    "in21k": ({**_COMMON, "n_train": 218_430, "n_test": 50_000, "n_classes": 21_843,
               "n_super": 2_184, "sibling": 0.11, "seed": 21_000},
              {**_COMMON, "n_train": 20_000, "n_test": 2_000, "n_classes": 2_000,
               "n_super": 200, "sibling": 0.11, "seed": 21_001}),
}

_FILES = ("X_train.npy", "y_train.npy", "X_test.npy", "y_test.npy")
_SPLITS = {"train": 0, "test": 1}


def cache_root() -> Path:
    """``$IMGCLS_BENCH_CACHE``, else ``~/.cache/imgcls-bench``."""
    env = os.environ.get("IMGCLS_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "imgcls-bench"


def variant_params(variant: str, quick: bool) -> dict:
    """The parameters of one variant (a copy)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: unknown {variant!r}; known: {', '.join(VARIANTS)}")
    return dict(VARIANTS[variant][1 if quick else 0])


# ----------------------------------------------------------------- generation

def _structure(p: dict) -> dict[str, np.ndarray]:
    """The fixed parts of the construction: basis, centres, local directions, amplitudes."""
    rng = np.random.default_rng([p["seed"], 0])
    sub, rank = p["subspace"], p["local_rank"]
    q, _ = np.linalg.qr(rng.standard_normal((p["dim"], sub)))
    supers = rng.standard_normal((p["n_super"], sub))
    group = np.arange(p["n_classes"]) * p["n_super"] // p["n_classes"]
    centres = supers[group] + p["sibling"] * rng.standard_normal((p["n_classes"], sub))
    directions = rng.standard_normal((p["n_super"], rank, sub))[group]
    directions /= np.linalg.norm(directions, axis=2, keepdims=True)
    amplitudes = p["spread"] * np.exp(rng.normal(0.0, p["spread_jitter"],
                                                 (p["n_classes"], rank)))
    return {"basis": q.T.astype(np.float32), "centres": centres.astype(np.float32),
            "directions": directions.astype(np.float32),
            "amplitudes": amplitudes.astype(np.float32)}


def _labels(p: dict, split: str) -> np.ndarray:
    n = p[f"n_{split}"]
    rng = np.random.default_rng([p["seed"], 1, _SPLITS[split]])
    return rng.permutation(np.arange(n, dtype=np.int64) % p["n_classes"])


def _chunk(p: dict, split: str, index: int, y: np.ndarray, structure: dict) -> np.ndarray:
    rng = np.random.default_rng([p["seed"], 2, _SPLITS[split], index])
    e = rng.standard_normal((len(y), p["local_rank"]), dtype=np.float32)
    e *= structure["amplitudes"][y]
    z = np.einsum("nr,nrs->ns", e, structure["directions"][y])
    z += structure["centres"][y]
    z += p["within"] * rng.standard_normal(z.shape, dtype=np.float32)
    x = z @ structure["basis"]
    x += p["noise"] * rng.standard_normal(x.shape, dtype=np.float32)
    return x.astype(p["dtype"])


def _write_split(folder: Path, p: dict, split: str, structure) -> None:
    y = _labels(p, split)
    np.save(folder / f"y_{split}.npy", y)
    X = np.lib.format.open_memmap(folder / f"X_{split}.npy", mode="w+", dtype=p["dtype"],
                                  shape=(len(y), p["dim"]))
    for index, start in enumerate(range(0, len(y), p["chunk_rows"])):
        stop = min(start + p["chunk_rows"], len(y))
        X[start:stop] = _chunk(p, split, index, y[start:stop], structure)
    X.flush()
    del X


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _record(folder: Path, p: dict) -> dict:
    return {"params": p, "files": {name: {"bytes": (folder / name).stat().st_size,
                                          "sha256": _sha256(folder / name)}
                                   for name in _FILES}}


def _matches(folder: Path, p: dict, verify: bool) -> bool:
    try:
        record = json.loads((folder / "params.json").read_text())
    except (OSError, ValueError):
        return False
    if record.get("params") != p:
        return False
    for name in _FILES:
        entry = record.get("files", {}).get(name, {})
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry.get("bytes"):
            return False
        if verify and _sha256(path) != entry.get("sha256"):
            return False
    return True


def generate(folder: Path, p: dict) -> Path:
    """Write one set into ``folder`` (replaced atomically by rename when complete)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        structure = _structure(p)
        for split in _SPLITS:
            _write_split(tmp, p, split, structure)
        (tmp / "params.json").write_text(json.dumps(_record(tmp, p), indent=1))
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        if folder.exists():
            folder.rename(old)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: keep its set
            if not folder.exists():
                raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def ensure_scale_data(variant: str, quick: bool, *, verify: bool = False,
                      root: Path | None = None) -> Path:
    """The features:DIR folder of a variant, generated once into the cache.

    Parameters
    ----------
    variant : {"in1k", "in21k"}
    quick : bool
        The small set of the same construction.
    verify : bool
        Re-hash the files against ``params.json`` (else parameters and sizes).
    root : Path, optional
        Cache folder (default :func:`cache_root`).

    Returns
    -------
    Path
        Load it with ``imgcls.load_dataset(f"features:{path}")``.
    """
    p = variant_params(variant, quick)
    folder = (root or cache_root()) / f"scale-{variant}{'-quick' if quick else ''}-v{p['version']}"
    if not _matches(folder, p, verify):
        generate(folder, p)
    return folder


# ------------------------------------------------------------------ the check

def dino_knn_accuracy(folder: Path, n_queries: int = 1000, k: int = 20,
                      temperature: float = 0.07, block_rows: int = 65_536) -> tuple[float, float]:
    """Exact cosine k-NN top-1/top-5 with DINO's votes, plain NumPy, on the first queries.

    The training set is read in blocks (float16 -> float32, L2-normalised); the
    running top-k keeps the largest similarities.  Votes: ``exp(sim / T)``
    summed per class.
    """
    X = np.load(folder / "X_train.npy", mmap_mode="r")
    y = np.load(folder / "y_train.npy")
    Q = np.asarray(np.load(folder / "X_test.npy", mmap_mode="r")[:n_queries], np.float32)
    yq = np.load(folder / "y_test.npy")[:n_queries]
    Q /= np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
    best_sim = np.full((len(Q), k), -np.inf, np.float32)
    best_idx = np.zeros((len(Q), k), np.int64)
    for s in range(0, len(X), block_rows):
        T = np.asarray(X[s:s + block_rows], np.float32)
        T /= np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
        sim = Q @ T.T
        kk = min(k, sim.shape[1])
        part = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        cand_sim = np.concatenate([best_sim, np.take_along_axis(sim, part, 1)], axis=1)
        cand_idx = np.concatenate([best_idx, part + s], axis=1)
        keep = np.argsort(-cand_sim, axis=1, kind="stable")[:, :k]
        best_sim = np.take_along_axis(cand_sim, keep, 1)
        best_idx = np.take_along_axis(cand_idx, keep, 1)
    n_classes = int(max(y.max(), yq.max())) + 1
    scores = np.zeros((len(Q), n_classes))
    np.add.at(scores, (np.arange(len(Q))[:, None], y[best_idx]),
              np.exp(best_sim.astype(np.float64) / temperature))
    top5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    return float(np.mean(top5[:, 0] == yq)), float(np.mean((top5 == yq[:, None]).any(axis=1)))


def _append_result(line: str) -> None:
    from .common import RESULTS

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "scale_data.md"
    if not path.exists():
        path.write_text("| when | variant | sibling | queries | top-1 | top-5 | check time |\n"
                        "|---|---|---|---|---|---|---|\n")
    with open(path, "a") as f:
        f.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_data", description=__doc__
                                     .split("\n")[0])
    parser.add_argument("--variant", choices=[*VARIANTS, "all"], default="all")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--verify", action="store_true", help="re-hash cached files")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="measure exact 20-NN cosine top-1/top-5 on N test vectors")
    args = parser.parse_args(argv)
    for variant in (VARIANTS if args.variant == "all" else [args.variant]):
        t0 = time.perf_counter()
        folder = ensure_scale_data(variant, args.quick, verify=args.verify)
        print(f"{variant}{' (quick)' if args.quick else ''}: {folder} "
              f"({time.perf_counter() - t0:.1f} s)")
        if args.check:
            t0 = time.perf_counter()
            top1, top5 = dino_knn_accuracy(folder, args.check)
            line = (f"| {time.strftime('%Y-%m-%d %H:%M')} | {variant}"
                    f"{' (quick)' if args.quick else ''} | "
                    f"{variant_params(variant, args.quick)['sibling']} | {args.check} | "
                    f"{top1:.3f} | {top5:.3f} | {time.perf_counter() - t0:.0f} s |")
            print(f"  exact 20-NN cosine, T=0.07, {args.check} queries: top-1 {top1:.3f}, "
                  f"top-5 {top5:.3f}")
            _append_result(line)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
