"""Where a data set's files live: ``root=``, else ``$IMGCLS_DATA``, else the user cache.

The one owner of this rule, shared by the loaders (``mnist``, ``cifar``), the
downloader and ``imgcls datasets verify``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "cache_dir", "resolve_root", "find_file"]

#: Environment variable naming the folder that holds one sub-folder per data set.
ENV_VAR = "IMGCLS_DATA"


def cache_dir(name: str | None = None) -> Path:
    """Where downloaded data live: ``$IMGCLS_DATA``, else the user cache dir.

    Parameters
    ----------
    name : str, optional
        A data set name; its sub-folder is returned.

    Returns
    -------
    Path
        ``$IMGCLS_DATA[/name]`` if set, else ``$XDG_CACHE_HOME/imgcls[/name]``
        or ``~/.cache/imgcls[/name]``.  Not created here.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "imgcls"
    return base / name if name else base


def resolve_root(name: str, root: str | os.PathLike | None) -> Path:
    """The folder holding data set ``name``'s files.

    Parameters
    ----------
    name : str
        The data set name (its sub-folder of the cache dir).
    root : str or path-like, optional
        The folder given by the user (``~`` is expanded).

    Returns
    -------
    Path
        ``root`` if given, else ``cache_dir(name)``.
    """
    return Path(root).expanduser() if root is not None else cache_dir(name)


def find_file(folder: Path, stem: str) -> Path | None:
    """The first existing spelling of an IDX file in ``folder``, gzipped first.

    Parameters
    ----------
    folder : Path
    stem : str
        The official name without ``.gz``, e.g. ``"train-images-idx3-ubyte"``.

    Returns
    -------
    Path or None
        ``folder / name`` for the first of ``stem.gz``, ``stem`` and the dotted
        spelling of unpacked copies (``train-images.idx3-ubyte[.gz]``) that is a
        regular file (a FIFO or folder of that name does not count); None when
        there is none.
    """
    dotted = stem.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        if (folder / name).is_file():
            return folder / name
    return None
