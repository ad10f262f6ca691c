"""``imgcls train``, ``imgcls evaluate``, ``imgcls predict``: one model at a time.

    imgcls train --dataset digits --model knn --param k=3 --param metric=l2 --out knn.safetensors
    imgcls evaluate knn.safetensors --dataset digits --json
    imgcls predict knn.safetensors digit.png other.jpg --top 5

``train`` fits on the training split only and saves with :func:`imgcls.io.save`
(atomic: an interrupted or failed run leaves no file).  ``--key-file FILE``
signs the model (``train``) or demands a valid signature (``evaluate``,
``predict``): HMAC-SHA256 under the secret key held in FILE, see
:mod:`imgcls.io.modelfile` for what that protects against.  ``evaluate`` reports
top-1/top-5 accuracy on the test split.  ``predict`` reads each image with
Pillow and converts it to the model's input as documented in
:mod:`imgcls.pipeline.images` (channels converted where unambiguous, resized to
the model's H x W); every file is read before anything is printed, so a bad
file gives one error naming it and no partial output.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["register", "parse_param", "read_key_file"]

# A key file holds a secret of a few dozen bytes; anything much larger is the
# wrong file (4 KiB leaves room for any key format, and bounds the read).
_MAX_KEY_FILE = 4096
_KEY_HELP = ("file holding the secret key (at least 16 bytes; e.g. made with "
             "\"python -c 'import secrets; print(secrets.token_hex(32))' > key\"); "
             "trailing newlines are ignored")


def register(subparsers) -> None:
    t = subparsers.add_parser("train", help="fit one model on a data set's training split and save it",
                              description="Fit one model on the training split of a data set and "
                                          "save it (safetensors + JSON metadata, no pickle).")
    _dataset_args(t)
    t.add_argument("--model", required=True, metavar="NAME", help="knn, svm or softmax")
    t.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="an estimator parameter, e.g. k=3, metric=l2, reg=1e-4 (repeatable)")
    t.add_argument("--seed", type=int, default=None,
                   help="seed of the fit (linear models), default: the estimator's")
    t.add_argument("--out", required=True, metavar="MODEL", help="model file to write")
    t.add_argument("--key-file", metavar="FILE", default=None,
                   help="sign the model file with HMAC-SHA256 under this key: " + _KEY_HELP)
    t.add_argument("--json", action="store_true", help="print a JSON summary")
    t.set_defaults(func=_train)

    e = subparsers.add_parser("evaluate", help="top-1/top-5 accuracy of a saved model on a test split",
                              description="Evaluate a saved model on the test split of a data set.")
    e.add_argument("model", metavar="MODEL", help="a model file written by imgcls train/run")
    _dataset_args(e)
    e.add_argument("--key-file", metavar="FILE", default=None,
                   help="refuse the model unless it is signed with this key: " + _KEY_HELP)
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=_evaluate)

    p = subparsers.add_parser("predict", help="top classes of image files with a saved model",
                              description="Classify image files with a saved model, printing the "
                                          "top classes with their scores per image. Each file is "
                                          "converted to the model's input: transparency composited "
                                          "onto black, colour to grey (luma) for a 1-channel "
                                          "model or grey to RGB for a 3-channel one, then resized "
                                          "to the model's height x width (bilinear). A file that "
                                          "cannot be read or converted unambiguously is an error "
                                          "naming it.")
    p.add_argument("model", metavar="MODEL", help="a model file written by imgcls train/run")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top", type=int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--key-file", metavar="FILE", default=None,
                   help="refuse the model unless it is signed with this key: " + _KEY_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_predict)


def _dataset_args(p) -> None:
    p.add_argument("--dataset", default="digits", metavar="NAME",
                   help="digits (default), mnist, fashion-mnist, cifar10, cifar100, folder:PATH, "
                        "npz:PATH")
    p.add_argument("--root", default=None, metavar="DIR", help="where the data set's files lie")
    p.add_argument("--download", action="store_true", help="download the data set if missing")


def parse_param(text: str) -> tuple[str, object]:
    """``"k=3"`` -> ``("k", 3)``; values are JSON numbers/booleans/null or else strings."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--param {text!r}: expected KEY=VALUE, e.g. k=3")
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    if lowered in ("none", "null"):
        return key, None
    try:
        value = json.loads(raw)
    except ValueError:
        return key, raw
    if isinstance(value, (int, float)):
        return key, value
    return key, raw


def read_key_file(path: str | None) -> bytes | None:
    """The key held in a key file (its bytes, trailing CR/LF removed), or None for no file.

    Raises
    ------
    ConfigError
        The file is missing, not a regular file, larger than 4 KiB, or holds
        fewer than :data:`imgcls.io.MIN_KEY_BYTES` bytes; the message names it.
    """
    from ..io import MIN_KEY_BYTES
    from .._files import open_regular

    if path is None:
        return None
    with open_regular(path, error=ConfigError, what="key file") as f:
        data = f.read(_MAX_KEY_FILE + 1)
    if len(data) > _MAX_KEY_FILE:
        raise ConfigError(f"--key-file {path}: larger than {_MAX_KEY_FILE} bytes; not a key file")
    key = data.rstrip(b"\r\n")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"--key-file {path}: holds {len(key)} bytes; a key needs at least "
                          f"{MIN_KEY_BYTES} (e.g. 32 random bytes as 64 hex digits)")
    return key


def _check_model_out(path: Path) -> None:
    from ..pipeline.study import check_out_dir

    if path.is_dir():
        raise ConfigError(f"--out {path}: is a directory; give a model file path")
    check_out_dir(path.parent if str(path.parent) else Path("."))


def _train(args) -> int:
    from .. import io as imgcls_io
    from ..datasets import load_dataset
    from ..pipeline import make_estimator, parse_models

    (name,) = parse_models(args.model) if "," not in args.model else (None,)
    if name is None:
        raise ConfigError(f"--model takes one name, got {args.model!r}")
    params = dict(parse_param(p) for p in args.param)
    model = make_estimator(name, params)  # unknown keys fail here, before any data is read
    signing_key = read_key_file(args.key_file)
    if args.seed is not None:
        for key in ("random_state", "seed"):
            if key in model.get_params() and key not in params:
                model.set_params(**{key: args.seed})
    out = Path(args.out)
    _check_model_out(out)
    ds = load_dataset(args.dataset, root=args.root, download=args.download)
    t0 = time.perf_counter()
    model.fit(ds.X_train, ds.y_train)
    fit_time = time.perf_counter() - t0
    imgcls_io.save(model, out, classes=[ds.classes[int(c)] for c in model.classes_],
                   key=signing_key)
    summary = {"model": name, "estimator": type(model).__name__, "params": model.get_params(),
               "dataset": ds.name, "n_train": int(len(ds.y_train)), "fit_time": fit_time,
               "path": str(out), "signed": signing_key is not None}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"trained {type(model).__name__} on {len(ds.y_train)} training samples of "
              f"{ds.name} in {fit_time:.2f} s; saved{' and signed' if signing_key else ''}: {out}")
    return 0


def _class_names(model) -> list[str]:
    """Names per entry of ``classes_`` (saved with the model), else the labels as text."""
    names = getattr(model, "class_names_", None)
    if names is None:
        names = [str(c) for c in model.classes_]
    return [str(n) for n in names]


def _check_input(model, ds, model_path) -> None:
    want = getattr(model, "image_shape_", None)
    got = tuple(ds.X_test.shape[1:])
    if want is not None and tuple(want) != got:
        raise ConfigError(f"{model_path}: the model takes samples of shape {tuple(want)}, "
                          f"but {ds.name} has {got}")
    n_feat = getattr(model, "n_features_in_", None)
    if want is None and n_feat is not None and int(np.prod(got)) != int(n_feat):
        raise ConfigError(f"{model_path}: the model takes {n_feat} features per sample, "
                          f"but {ds.name} has {int(np.prod(got))}")


def _evaluate(args) -> int:
    from .. import io as imgcls_io
    from ..datasets import load_dataset
    from ..pipeline import evaluate_model

    model = imgcls_io.load(args.model, key=read_key_file(args.key_file))
    ds = load_dataset(args.dataset, root=args.root, download=args.download)
    _check_input(model, ds, args.model)
    n_classes = max(ds.n_classes, len(model.classes_))
    ev = evaluate_model(model, ds.X_test, ds.y_test, n_classes)
    result = {"model": str(args.model), "estimator": type(model).__name__, "dataset": ds.name,
              "n_test": int(len(ds.y_test)), "test_top1": ev["test_top1"],
              "test_top5": ev["test_top5"], "predict_time": ev["predict_time"]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{type(model).__name__} on the {len(ds.y_test)} test samples of {ds.name}: "
              f"top-1 {result['test_top1']:.4f}, top-5 {result['test_top5']:.4f} "
              f"({result['predict_time']:.2f} s)")
    return 0


def _predict(args) -> int:
    from .. import io as imgcls_io
    from ..pipeline import class_scores, rank_labels, read_image_for_model

    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    model = imgcls_io.load(args.model, key=read_key_file(args.key_file))
    shape = getattr(model, "image_shape_", None)
    # Read every file first: a bad one is reported before any output.
    X = np.concatenate([read_image_for_model(path, shape) for path in args.images])
    names = _class_names(model)
    classes = np.asarray(model.classes_)
    ranked = rank_labels(model, X, args.top)
    scores, kind = class_scores(model, X)
    results = []
    for path, row, sc in zip(args.images, ranked, scores):
        col = {c: i for i, c in enumerate(classes.tolist())}
        results.append({"image": str(path), "top": [
            {"class": names[col[c]], "label": c, kind: float(sc[col[c]])}
            for c in row.tolist()]})
    if args.json:
        print(json.dumps({"model": str(args.model), "score": kind, "predictions": results},
                         indent=2))
        return 0
    for res in results:
        print(res["image"])
        for rank, entry in enumerate(res["top"], 1):
            print(f"  {rank}. {entry['class']:<20} {kind} {entry[kind]:.4f}")
    return 0
