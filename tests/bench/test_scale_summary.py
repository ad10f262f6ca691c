"""The scale benchmark's verdicts: best repetition, targets met or not, from stored rows."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: bench/

from bench import scale  # noqa: E402

ENV = "as given"


def _exact(row, time_s, rep, anon=300.0):
    return {"row": row, "environment": ENV, "time_s": time_s, "rep": rep, "n_query": 100,
            "n_train": 1000, "top1": 0.70, "anon_peak_MiB": anon}


def test_the_best_repetition_decides_the_exact_target():
    rows = [_exact("imgcls_exact", 12.0, 1), _exact("faiss_flat", 10.0, 1),
            _exact("imgcls_exact", 9.0, 2), _exact("faiss_flat", 11.0, 2)]
    line = next(x for x in scale._summary({"exact": rows}) if x.startswith("- exact"))
    assert "imgcls search 9.0 s = 0.90 x faiss IndexFlatIP search 10.0 s" in line
    assert "best of 2; target <= 1.0: met" in line
    rows[2]["time_s"] = 10.5
    line = next(x for x in scale._summary({"exact": rows}) if x.startswith("- exact"))
    assert "1.05 x" in line and "NOT met" in line.split(";")[1]


def test_ann_rows_are_judged_against_the_best_exact_search():
    exact = [_exact("imgcls_exact", 20.0, 1), _exact("imgcls_exact", 16.0, 2)]
    ivf = {"row": "ivf", "environment": ENV, "time_s": 1.0, "n_query": 100, "n_train": 1000,
           "top1": 0.698, "recall@20": 0.97, "setting": "nprobe=4"}
    stored = {"exact": exact, "ann": [ivf]}
    scale._ivf_against_best_exact(stored)
    assert ivf["speed-up vs exact"] == 16.0
    assert abs(ivf["top1 - exact top1 (points)"] + 0.2) < 1e-9
    line = next(x for x in scale._summary(stored) if x.startswith("- ivf"))
    assert line.endswith("met)") and "NOT" not in line
    ivf["top1"] = 0.69  # one point worse: the target is missed
    scale._ivf_against_best_exact(stored)
    assert "NOT met" in next(x for x in scale._summary(stored) if x.startswith("- ivf"))


def test_the_21k_verdict_compares_growth_after_fit_with_the_budget():
    r = {"row": "predict_topk", "time_s": 1.0, "n_query": 50_000, "n_classes": 21_843,
         "cache_memory_MiB": 0, "working_memory_MiB": 256, "anon_base_MiB": 100.0,
         "predict_anon_peak_MiB": 350.0, "peak - base (MiB)": 250.0, "budget (MiB)": 286.5}
    assert "(met)" in next(x for x in scale._summary({"21k": [r]}) if x.startswith("- 21k"))
    r["peak - base (MiB)"] = 300.0
    assert "(NOT met)" in next(x for x in scale._summary({"21k": [r]})
                               if x.startswith("- 21k"))


def test_the_mnist_verdicts():
    rows = [{"environment": ENV, "tool": "imgcls (uint8)", "metric": "l2", "time_s": 6.0},
            {"environment": ENV, "tool": "faiss IndexFlatL2", "metric": "l2", "time_s": 5.0},
            {"environment": ENV, "tool": "imgcls single query, k=3, uint8", "metric": "l1",
             "p50_ms": 5.5},
            {"environment": ENV, "tool": "imgcls per-call overhead (16 training rows), k=3",
             "metric": "l2", "p50_ms": 0.4}]
    lines = scale._mnist_summary(rows)
    assert "1.20 x faiss" in lines[0] and "NOT met" in lines[0]
    assert "L1" in lines[1] and "5.50 ms (target <= 5: NOT met)" in lines[1]
    assert "0.40 ms" in lines[2] and lines[2].endswith("met)") and "NOT" not in lines[2]
