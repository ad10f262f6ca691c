"""The ``imgcls`` command.

Each sub-command lives in its own module under ``imgcls.cli`` and exposes
``register(subparsers)``, which adds its parser(s) and sets ``func`` — a handler
``func(args) -> int`` returning the exit code.

User mistakes (an :class:`~imgcls.errors.ImgclsError`, a ``ValueError`` from
validation, an ``OSError`` such as an unwritable directory) are printed as one
line ``imgcls: error: ...`` with exit code 1, never as a traceback; set
``IMGCLS_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .._version import __version__

# Sub-command modules, in the order they appear in --help.
_COMMANDS = ("imgcls.cli.run", "imgcls.cli.models", "imgcls.cli.knn_eval",
             "imgcls.cli.datasets",
             "imgcls.cli.serve", "imgcls.cli.embed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgcls",
        description="Data-driven image classification: kNN, linear SVM and softmax baselines, "
                    "honest hyperparameter choice, and a report.")
    parser.add_argument("--version", action="version", version=f"imgcls {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..errors import ImgclsError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("imgcls: interrupted", file=sys.stderr)
        return 130
    except (ImgclsError, ValueError, OSError) as exc:
        if os.environ.get("IMGCLS_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"imgcls: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
