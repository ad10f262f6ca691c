"""The oracle must catch each kind of defect: fake readers that break the property."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import pytest
from fuzz_harness import Harness, nbytes
from fuzz_readers import Case, Reader

from imgcls.errors import FormatError


def _reader(run, errors=(FormatError,)):
    return Reader("fake", lambda src: None, run, errors)


def _outcome(run, errors=(FormatError,), files=None, **kw):
    kw.setdefault("tune_malloc", False)  # other tests share this process
    h = Harness({"fake": _reader(run, errors)}, **kw)
    try:
        return h.run(Case("fake", "call", files or {"input.bin": b"abc"}))
    finally:
        h.close()


def test_clean_reader_has_no_finding():
    out = _outcome(lambda case, folder: (folder / "input.bin").read_bytes())
    assert out.status == "ok" and out.findings == []


def test_documented_error_naming_the_input_is_typed():
    def run(case, folder):
        raise FormatError(f"{folder / 'input.bin'}: bad magic")

    out = _outcome(run)
    assert out.status == "typed" and out.findings == []


def test_untyped_exception_is_a_finding():
    def run(case, folder):
        return {}["missing"]

    out = _outcome(run)
    assert out.status == "untyped"
    assert out.kinds == {"untyped"} and "KeyError" in out.findings[0]
    assert "KeyError" in out.traceback


def test_message_that_does_not_name_the_input_or_spans_lines():
    def anonymous(case, folder):
        raise FormatError("bad magic")

    def two_lines(case, folder):
        raise FormatError(f"{folder}: bad\nmagic")

    assert _outcome(anonymous).kinds == {"message"}
    assert _outcome(two_lines).kinds == {"message"}


def test_memory_over_the_bound_is_a_finding():
    def run(case, folder):
        a = np.ones(100 << 20, np.uint8)  # touched: seen by both measurements
        return int(a[-1])

    out = _outcome(run, trace_python=False)
    assert out.kinds == {"memory"}, out.findings
    assert _outcome(run, trace_python=True).kinds == {"memory"}


def test_untouched_numpy_buffer_is_seen_by_tracemalloc():
    def run(case, folder):
        a = np.empty(100 << 20, np.uint8)
        return a.shape

    assert _outcome(run, trace_python=True).kinds == {"memory"}


def test_legitimate_output_is_not_counted():
    def run(case, folder):
        return np.ones(100 << 20, np.uint8)

    out = _outcome(run, trace_python=True)
    assert out.findings == [] and out.output_bytes == 100 << 20


def test_allocation_past_the_safety_net_is_a_finding_even_when_converted():
    def run(case, folder):
        try:
            np.empty(8 << 30, np.uint8).fill(0)
        except MemoryError:
            raise FormatError(f"{folder}: too big") from None

    out = _outcome(run, trace_python=False)
    assert "memory" in out.kinds, out.findings


def test_slow_and_hanging_inputs_are_findings(tmp_path):
    def slow(case, folder):
        time.sleep(0.3)

    out = _outcome(slow, time_bound=0.1, hard_limit=5.0)
    assert out.kinds == {"hang"}

    def fifo(case, folder):
        with open(folder / "pipe", "rb") as f:  # blocks: no writer
            return f.read()

    t0 = time.perf_counter()
    from fuzz_readers import Special

    out = _outcome(fifo, files={"pipe": Special("fifo")}, time_bound=0.1, hard_limit=0.5)
    assert out.kinds == {"hang"} and "interrupted" in out.findings[0]
    assert time.perf_counter() - t0 < 5


def test_files_left_behind_are_findings():
    def in_folder(case, folder):
        (folder / "partial.out").write_bytes(b"x")
        raise FormatError(f"{folder}: failed half way")

    def in_tmp(case, folder):
        fd, _ = tempfile.mkstemp()
        os.close(fd)
        return None

    def changed(case, folder):
        (folder / "input.bin").write_bytes(b"overwritten")

    assert _outcome(in_folder).kinds == {"leftover"}
    assert _outcome(in_tmp).kinds == {"leftover"}
    assert _outcome(changed).kinds == {"leftover"}


def test_nbytes_counts_arrays_in_containers():
    a = np.zeros(10, np.float64)
    assert nbytes({"a": a, "b": [a[:5].copy()]}) >= 80 + 40


def test_generators_do_not_fail():
    """A generator that raises would stop a long-run worker; try a few hundred each."""
    from fuzz_readers import readers
    from fuzz_source import RandomSource

    for name, reader in readers().items():
        for i in range(150):
            reader.generate(RandomSource(f"gen:{name}:{i}"))


@pytest.mark.parametrize("seed", [0])
def test_generators_are_reproducible(seed):
    """Input i of a reader is rebuilt exactly from (seed, reader, i): the long run's
    reproducers depend on it."""
    from fuzz_readers import readers
    from fuzz_source import RandomSource

    for name, reader in readers().items():
        a = reader.generate(RandomSource(f"{seed}:{name}:7"))
        b = reader.generate(RandomSource(f"{seed}:{name}:7"))
        assert a == b, name


def test_close_stops_the_tracing_it_started():
    import tracemalloc

    assert not tracemalloc.is_tracing()
    _outcome(lambda case, folder: None, trace_python=True)
    assert not tracemalloc.is_tracing()
