"""``imgcls embed``: a data set's features, written as a ``features:DIR`` folder.

    imgcls embed --dataset folder:cifar --features hog+color --out cifar-hog
    imgcls embed --dataset folder:pets --onnx resnet18.onnx --out pets-resnet
    imgcls run --dataset features:cifar-hog          # the kNN tools read it too

The transformer is fitted on the whole training split (an export: a later
``imgcls run --dataset features:DIR`` selects on rows these features were
fitted on; ``imgcls run --features`` keeps its validation rows out of the fit
instead); both splits are transformed and written in the layout of
:mod:`imgcls.datasets.features`
(``X_train.npy``, ``y_train.npy``, ``X_test.npy``, ``y_test.npy`` float32 /
int64, ``classes.txt``), plus ``embedding.json`` saying how they were made.
The folder appears whole or not at all: everything is written into a hidden
temporary folder beside it, read back with the ``features:`` loader, and only
then renamed to ``DIR``; an existing non-empty ``DIR`` is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["register", "write_features_dir"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "embed", help="compute a data set's features (HOG, colour, k-means, ONNX) into a "
                      "features:DIR folder",
        description="Fit a feature transformer on the training split of a data set, transform "
                    "both splits and write them as a features:DIR folder that imgcls run, "
                    "imgcls knn-eval and load_dataset('features:DIR') read.")
    p.add_argument("--dataset", default="digits", metavar="NAME",
                   help="an image data set: digits, mnist, cifar10, folder:PATH, ...")
    p.add_argument("--root", default=None, metavar="DIR", help="where the data set's files lie")
    p.add_argument("--download", action="store_true", help="download the data set if missing")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--features", metavar="NAME",
                      help="one feature set: pixels, hog, color, kmeans, or several joined "
                           "with '+' (hog+color)")
    what.add_argument("--onnx", metavar="MODEL", help="an ONNX image model (OnnxEmbedder; pip "
                                                      "install 'imgcls[onnx]')")
    p.add_argument("--input-size", default="224,224", metavar="H,W",
                   help="with --onnx: the model's input height and width (default 224,224)")
    p.add_argument("--layout", default="nchw", choices=("nchw", "nhwc"),
                   help="with --onnx: the model's input layout")
    p.add_argument("--output-name", default=None, metavar="NAME",
                   help="with --onnx: the output to use (default: the first)")
    p.add_argument("--seed", type=int, default=0, help="seed of k-means features")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to create")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=_embed)


def _feature_set(args):
    from ..pipeline.features import FeatureSet, parse_feature_sets

    if args.features is not None:
        if "," in args.features:
            raise ConfigError(f"--features {args.features!r}: embed writes one feature set; "
                              "join names with '+' to concatenate them")
        return parse_feature_sets(args.features)[0]
    from ..features.onnx import OnnxEmbedder

    try:
        size = tuple(int(v) for v in args.input_size.split(","))
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"--input-size {args.input_size!r}: expected H,W, e.g. 224,224")
    return FeatureSet("onnx", OnnxEmbedder(str(args.onnx), input_size=size, layout=args.layout,
                                           output_name=args.output_name))


def _check_out(out: Path) -> None:
    from ..pipeline.study import check_out_dir

    if os.path.lexists(out) and not (out.is_dir() and not any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty directory; choose a new "
                          "folder (embed never mixes its files with others)")
    check_out_dir(out.parent)


def write_features_dir(out: Path, ds, info: dict) -> Path:
    """Write ``ds`` (feature rows) as a ``features:`` folder at ``out``, all or nothing.

    Raises
    ------
    ConfigError
        ``out`` exists and is not an empty directory, or a class name holds a
        line break (``classes.txt`` is one name per line).
    OSError
        The folder cannot be written; nothing is left behind.
    """
    from ..datasets.features import load_features

    out = Path(out)
    _check_out(out)
    for name in ds.classes:
        if "\n" in name or "\r" in name or not name.strip():
            raise ConfigError(f"class name {name[:80]!r} cannot be written to classes.txt "
                              "(one non-empty name per line)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for split in ("train", "test"):
            np.save(tmp / f"X_{split}.npy",
                    np.ascontiguousarray(getattr(ds, f"X_{split}"), dtype=np.float32),
                    allow_pickle=False)
            np.save(tmp / f"y_{split}.npy", np.asarray(getattr(ds, f"y_{split}"), np.int64),
                    allow_pickle=False)
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in ds.classes),
                                         encoding="utf-8")
        (tmp / "embedding.json").write_text(json.dumps(info, indent=2, allow_nan=False) + "\n",
                                            encoding="utf-8")
        back = load_features(tmp)  # what a reader will see, checked before it can see it
        if back.X_train.shape != ds.X_train.shape or back.classes != list(ds.classes):
            raise OSError(f"{tmp}: the written features do not read back as written")
        del back
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if out.is_dir():
            out.rmdir()  # empty (checked above); os.rename cannot replace a directory
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _embed(args) -> int:
    from ..datasets import load_dataset
    from ..pipeline.features import extract_features, feature_params
    from ..pipeline.study import jsonable
    from .._progress import progress_enabled
    from .run import stage_logger

    log = stage_logger(progress_enabled(), time.perf_counter())
    fset = _feature_set(args)  # unknown names fail here, before any data is read
    out = Path(args.out)
    _check_out(out)
    ds = load_dataset(args.dataset, root=args.root, download=args.download)
    log(f"{ds.name}: {len(ds.y_train)} training / {len(ds.y_test)} test samples")
    feats, transformer, secs = extract_features(ds, fset, args.seed, log)
    info = jsonable({"dataset": ds.name, "source": ds.source, "features": fset.name,
                     "params": feature_params(transformer, fset.name),
                     "fitted_on": "the training split only",
                     "n_features": int(feats.X_train.shape[1]), "seconds": secs,
                     "seed": args.seed,
                     "model_sha256": getattr(transformer, "model_sha256_", None)})
    write_features_dir(out, feats, info)
    log(f"wrote {out}")
    summary = {"out": str(out), "n_train": int(len(ds.y_train)), "n_test": int(len(ds.y_test)),
               **{k: info[k] for k in ("features", "n_features", "seconds")}}
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{fset.name}: {summary['n_features']} features for {summary['n_train']} "
              f"training and {summary['n_test']} test samples; read it with "
              f"--dataset features:{out}")
    return 0
