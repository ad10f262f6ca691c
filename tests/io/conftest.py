"""Fixtures for the model-file tests (helpers live in io_helpers.py)."""

from __future__ import annotations

import pytest
from io_helpers import REGISTRY, Centroid, data


@pytest.fixture
def fitted():
    X, y = data()
    return Centroid(shrink=0.25).fit(X, y), X


@pytest.fixture
def model_file(tmp_path, fitted):
    from imgcls.io import save

    model, X = fitted
    path = save(model, tmp_path / "model.safetensors", classes=["zero", "one", "two"],
                registry=REGISTRY)
    return path


