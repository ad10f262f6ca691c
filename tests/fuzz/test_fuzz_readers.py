"""Fuzz every reader with a small hypothesis budget (the long run: ``python -m bench.fuzz``).

The property (see ``fuzz_harness``): each input loads, or raises the reader's
documented error in one line naming the input; within 5 s; within 64 MiB plus
10 times its size plus its output; leaving no file behind.  The generators know
the formats (``fuzz_formats``) and mix valid files, crafted attacks and
byte-level mutations; hypothesis shrinks a failure to a small input.

Examples are derandomized (the same inputs on every run: CI never fails on a
new random input; the long run explores).  ``IMGCLS_FUZZ_EXAMPLES=N`` runs N
examples per reader instead of the CI budget.  Inputs are not shrunk (see
below); ``python -m bench.fuzz --readers R --index I`` replays a long-run input.
"""

from __future__ import annotations

import os

import pytest
from fuzz_harness import Harness
from fuzz_readers import READER_NAMES, readers
from fuzz_source import HypothesisSource, RandomSource
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

# examples per reader in CI: the cheap readers get more (ms per input in brackets,
# measured on 2 busy cores with tracemalloc on)
BUDGET = {"idx": 60, "gz": 25, "cifar-bin": 40, "cifar-py": 50, "npz": 30, "features": 30,
          "image": 30, "folder": 15, "tar": 30, "model": 30, "cli": 20}
SCALE = int(os.environ.get("IMGCLS_FUZZ_EXAMPLES", "0"))


@pytest.fixture(scope="module")
def harness():
    h = Harness(readers(), trace_python=True, tune_malloc=False)
    yield h
    h.close()


def describe(case, out) -> str:
    return (f"{case.reader} input ({case.entry}, {case.note or 'no note'}; args "
            f"{str(case.args)[:300]}): {out.findings}; error: {out.error}\n{out.traceback}")


@pytest.mark.parametrize("name", READER_NAMES)
def test_reader_holds_the_property(harness, name):
    """Hypothesis-driven inputs of one reader: no untyped error, hang, bomb or leftover."""
    harness.warm_up([name], n=8)

    # no shrinking phase: shrinking an input that takes seconds (a bomb, a hang)
    # would take minutes; the failure message describes the input instead, and
    # the long run saves reproducers
    @settings(max_examples=SCALE or BUDGET[name], deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck), print_blob=True,
              phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False)
    @given(st.data())
    def prop(data):
        case = harness.readers[name].generate(HypothesisSource(data))
        out = harness.run(case)
        assert not out.findings, describe(case, out)

    prop()


@pytest.mark.parametrize("name", READER_NAMES)
def test_reader_first_inputs_of_the_long_run(harness, name):
    """The first inputs of ``python -m bench.fuzz`` (seed 0) pass, so that CI and the
    long run agree on what they share; and they reach both outcomes (some load, some
    are refused), so a generator that only makes garbage, or a reader that refuses
    everything, fails here."""
    harness.warm_up([name], n=2)
    statuses = []
    for i in range(30):
        case = harness.readers[name].generate(RandomSource(f"0:{name}:{i}"))
        out = harness.run(case)
        assert not out.findings, f"input {i}: " + describe(case, out)
        statuses.append(out.status)
    assert "typed" in statuses, f"{name}: no input was refused"
    if name != "cli":  # the CLI inputs are meant to fail, bar a few predict calls
        assert "ok" in statuses, f"{name}: no input loaded"


def test_resealed_model_files_reach_the_validation(harness):
    """The model generator recomputes both hashes after a change; if the file format's
    hashing changes, every crafted file would stop at the hash check and the fuzzing
    of the validation behind it would be void.  An unchanged, resealed file must load."""
    from fuzz_readers import Case, _open_seed, model_seeds, seal

    for name, data in model_seeds():
        doc, tensors = _open_seed(data)
        case = Case("model", "load", {"m.safetensors": seal(doc, tensors)},
                    {"file": "m.safetensors"}, f"{name} resealed")
        out = harness.run(case)
        assert out.status == "ok" and not out.findings, describe(case, out)
