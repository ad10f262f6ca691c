"""PNG output: bytes, atomic files, and no global matplotlib state."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from matplotlib.figure import Figure

from imgcls.plots import PNG_SIGNATURE, figure_png_bytes, plot_training_curves, save_figure

HISTORY = [{"epoch": e, "loss": 2.0 / (e + 1), "train_acc": 0.5 + 0.04 * e, "val_acc": 0.5 + 0.03 * e}
           for e in range(5)]


def _fig() -> Figure:
    return plot_training_curves(HISTORY)


def test_png_bytes_start_with_signature():
    data = figure_png_bytes(_fig())
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1000


def test_png_bytes_passthrough_and_rejects_other_bytes():
    data = figure_png_bytes(_fig())
    assert figure_png_bytes(data) == data
    with pytest.raises(ValueError, match="fig: .*not a PNG"):
        figure_png_bytes(b"<html>not an image</html>")
    with pytest.raises(TypeError, match="fig: expected a matplotlib Figure"):
        figure_png_bytes("plot.png")


def test_save_figure_writes_png_and_leaves_no_temp_file(tmp_path):
    out = save_figure(_fig(), tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]
    # permissions follow the umask like any new file, not mkstemp's 0600
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_save_figure_is_atomic_when_rendering_fails(tmp_path, monkeypatch):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old content")
    fig = _fig()

    def broken_savefig(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="renderer exploded"):
        save_figure(fig, target)
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_save_figure_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old content")

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        save_figure(_fig(), target)
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_save_figure_into_missing_directory_names_it(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file")
    with pytest.raises(OSError, match="not_a_dir"):
        save_figure(_fig(), blocker / "fig.png")
    with pytest.raises(OSError, match="does not exist"):
        save_figure(_fig(), tmp_path / "missing" / "fig.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_dir"]


def test_plots_do_not_import_pyplot_or_change_backend():
    # In a fresh interpreter: drawing and saving must not pull in pyplot (which
    # would register figures globally and may pick a GUI backend).
    code = (
        "import sys, matplotlib\n"
        "before = matplotlib.get_backend() if 'matplotlib.pyplot' in sys.modules else None\n"
        "from imgcls.plots import plot_cv_curve, figure_png_bytes\n"
        "fig = plot_cv_curve([{'metric': 'l2', 'k': 1, 'weights': 'uniform',"
        " 'fold_scores': [0.9, 0.8], 'mean': 0.85, 'std': 0.05}])\n"
        "assert figure_png_bytes(fig)[:4] == b'\\x89PNG'\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "print('ok')\n"
    )
    env = dict(os.environ, MPLBACKEND="")
    env.pop("MPLBACKEND")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_png_bytes_of_a_figure_without_agg_canvas():
    # e.g. a Figure made directly, or by pyplot with a GUI backend: rendered through
    # Agg for the bytes, and its own canvas given back afterwards
    fig = Figure()
    fig.add_subplot(1, 1, 1).plot([1, 2, 3])
    canvas = fig.canvas
    assert figure_png_bytes(fig).startswith(PNG_SIGNATURE)
    assert fig.canvas is canvas
