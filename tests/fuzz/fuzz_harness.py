"""The oracle: run one input through a reader and judge what happened.

The property, for every input of every reader:

1. the call returns, or raises one of the reader's documented error types
   (an :class:`~imgcls.errors.ImgclsError` subclass) whose message is one line
   and names the input; anything else (``ValueError``, ``MemoryError``,
   ``RecursionError`` ...) is an *untyped* finding;
2. it takes at most :data:`TIME_BOUND` seconds (a watchdog interrupts it at
   :data:`HARD_LIMIT`; a blocking ``open`` of a FIFO is interrupted too);
3. its peak memory stays within ``MEMORY_BASE + 10 x input size`` plus the
   bytes of what it returns (a valid input's output is legitimate data);
4. it leaves no file behind: the case folder is the same before and after
   (for ``safe_extract``: the same on failure, only the extracted entries added
   on success), and the temporary folder stays empty.

Peak memory is the larger of two measurements: the growth of the process's
resident peak (``VmHWM``, reset before each input through
``/proc/self/clear_refs``; it sees every allocation that is touched, Pillow's and
zlib's included) and, when ``trace_python`` is on, tracemalloc's peak (Python
objects and numpy buffers, even ``np.empty`` pages never touched).  tracemalloc
makes the readers 2-4x slower, so the CI tests use it and the long run does not
by default.  In the long run's workers glibc is told to return freed memory
to the system at once (``mallopt``), so that memory a reader reuses is counted
again.  As a safety net
the address space is capped during each call (``RLIMIT_AS`` at the current size
+ :data:`SAFETY_NET`): a bomb then fails with ``MemoryError`` instead of taking
the machine down, and that is reported as a memory finding even when the reader
converts the ``MemoryError`` into another error.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fuzz_readers import Case, CliResult, Reader, Refused, write_case

#: seconds an input may take (the issue's bound)
TIME_BOUND = 5.0
#: the watchdog interrupts a call after this many seconds
HARD_LIMIT = 6.0
#: memory any input may use, besides 10 x its size and its legitimate output
MEMORY_BASE = 64 << 20
#: address space a call may add before allocations fail (safety net, not the bound)
SAFETY_NET = 1 << 30

_PAGE = os.sysconf("SC_PAGE_SIZE")


class Watchdog(BaseException):
    """Raised in the main thread when a call runs past HARD_LIMIT (BaseException, so
    that a reader's ``except Exception`` cannot swallow it)."""


@dataclass
class Outcome:
    status: str  # "ok", "typed" or "untyped"
    error: str = ""  # "Type: first line of the message"
    findings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak: int = 0  # bytes
    bound: int = 0  # bytes
    input_bytes: int = 0
    output_bytes: int = 0
    error_type: str = ""
    traceback: str = ""

    @property
    def kinds(self) -> set[str]:
        return {f.split(":", 1)[0] for f in self.findings}


def nbytes(obj: Any, depth: int = 0, seen: set | None = None) -> int:
    """Bytes of the arrays, bytes and strings reachable from a result (its data)."""
    seen = set() if seen is None else seen
    if depth > 6 or id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, (bytes, bytearray, str)):
        return len(obj)
    if isinstance(obj, dict):
        return sum(nbytes(k, depth + 1, seen) + nbytes(v, depth + 1, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v, depth + 1, seen) for v in obj) + 8 * len(obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return sum(nbytes(v, depth + 1, seen) for v in vars(obj).values())
    return 0


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: type, size, mtime and link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            link = os.readlink(p) if os.path.islink(p) else ""
            if os.path.isdir(p) and not link:
                # a folder's size and mtime change when entries come and go; the
                # entries themselves are compared
                out[os.path.relpath(p, folder)] = (st.st_mode >> 12, 0, 0, "")
            else:
                out[os.path.relpath(p, folder)] = (st.st_mode >> 12, st.st_size, st.st_mtime_ns,
                                                   link)
    return out


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * _PAGE


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _tune_malloc() -> None:
    """Make glibc give freed memory back at once, so that resident peaks are per input.

    Fixed thresholds (values from mallopt(3)): blocks of 256 KiB and more are
    mmap'ed (and unmapped on free), the heap is trimmed above 1 MiB free, and at
    most two arenas are made (threads would otherwise each reserve 64 MiB).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
        libc.mallopt(M_MMAP_THRESHOLD, 256 << 10)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 20)
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


class Harness:
    """Runs inputs in this process, in a private scratch folder.

    Parameters
    ----------
    readers : dict name -> Reader
    scratch : Path, optional
        Where case folders are made (default: a new temporary folder).
    safety_net : bool
        Cap the address space during each call.
    trace_python : bool
        Measure with tracemalloc too (precise for Python and numpy; 2-4x slower).
    tune_malloc : bool
        Set glibc's thresholds for the rest of the process (see :func:`_tune_malloc`);
        off in a test session, where other tests run in the same process.
    """

    def __init__(self, readers: dict[str, Reader], scratch: Path | None = None,
                 safety_net: bool = True, trace_python: bool = True, tune_malloc: bool = True,
                 time_bound: float = TIME_BOUND, hard_limit: float = HARD_LIMIT,
                 memory_base: int = MEMORY_BASE):
        self.readers = readers
        self.own_scratch = scratch is None
        self.scratch = Path(tempfile.mkdtemp(prefix="imgcls-fuzz-", dir=_fast_tmp())) \
            if scratch is None else scratch
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.tmp = self.scratch / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.safety_net = safety_net
        self.time_bound, self.hard_limit, self.memory_base = time_bound, hard_limit, memory_base
        self.counter = 0
        self.trace_python = trace_python
        # started here, stopped by close(): tracing left on would slow every later
        # test in the session and fold their allocations into its peaks
        self.started_tracing = trace_python and not tracemalloc.is_tracing()
        if self.started_tracing:
            tracemalloc.start(1)
        if tune_malloc:
            _tune_malloc()

    def warm_up(self, names, n: int = 25) -> None:
        """Run a few inputs of each reader unjudged: first calls import modules and
        compile numba kernels, which must not count against the time bound."""
        import importlib

        from fuzz_readers import WARM_IMPORTS
        from fuzz_source import RandomSource

        for module in WARM_IMPORTS:
            try:
                importlib.import_module(module)
            except ImportError:  # a module a refactoring removed: its reader will say so
                pass
        if {"model", "cli"} & set(names):
            from fuzz_readers import warm_models

            warm = self.scratch / "warm-models"
            warm.mkdir(exist_ok=True)
            warm_models(warm)
            _force_rmtree(warm)
        for name in names:
            for i in range(n):
                case = self.readers[name].generate(RandomSource(f"warm-up:{name}:{i}"))
                folder = self.scratch / f"warm-{name}-{i}"
                folder.mkdir()
                try:
                    write_case(case, folder)
                    self._arm()
                    try:
                        self.readers[name].run(case, folder)
                    except BaseException as exc:  # noqa: BLE001
                        if isinstance(exc, KeyboardInterrupt):
                            raise
                    finally:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                finally:
                    _force_rmtree(folder)
                    for p in list(self.tmp.iterdir()):
                        _force_rmtree(p)

    def close(self) -> None:
        if self.started_tracing:
            tracemalloc.stop()
            self.started_tracing = False
        if self.own_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # -- one input -------------------------------------------------------------------------

    def run(self, case: Case) -> Outcome:
        reader = self.readers[case.reader]
        self.counter += 1
        folder = self.scratch / f"case-{os.getpid()}-{self.counter}"
        folder.mkdir()
        try:
            write_case(case, folder)
            return self._run_in(reader, case, folder)
        finally:
            _force_rmtree(folder)
            for p in list(self.tmp.iterdir()):
                _force_rmtree(p)

    def _run_in(self, reader: Reader, case: Case, folder: Path) -> Outcome:
        before = snapshot(folder)
        size = case.input_bytes()
        out = Outcome(status="ok", input_bytes=size)
        result: Any = None
        exc: BaseException | None = None
        old_tmp, old_env = tempfile.tempdir, os.environ.get("TMPDIR")
        tempfile.tempdir = str(self.tmp)
        os.environ["TMPDIR"] = str(self.tmp)
        limits = self._cap_memory(size)
        alarm = self._arm()
        tracing = self.trace_python and tracemalloc.is_tracing()
        if tracing:
            traced0 = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        hwm_ok = _reset_peak_rss()
        rss0 = _rss_bytes()
        start = time.perf_counter()
        try:
            result = reader.run(case, folder)
        except Watchdog as e:
            exc = e
        except BaseException as e:  # noqa: BLE001  (judged below)
            if isinstance(e, KeyboardInterrupt):
                raise
            exc = e
        finally:
            out.seconds = time.perf_counter() - start
            self._disarm(alarm)
            traced_peak = tracemalloc.get_traced_memory()[1] - traced0 if tracing else 0
            rss_peak = _peak_rss_bytes() - rss0 if hwm_ok else 0
            self._uncap_memory(limits)
            tempfile.tempdir = old_tmp
            if old_env is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = old_env
        out.peak = max(traced_peak, rss_peak, 0)
        out.output_bytes = nbytes(result) if exc is None else 0
        extra = reader.allowance(case) if reader.allowance is not None else 0
        out.bound = self.memory_base + 10 * size + out.output_bytes + extra
        if out.seconds > self.time_bound or isinstance(exc, Watchdog):
            out.findings.append(f"hang: {out.seconds:.1f} s"
                                + (" (interrupted)" if isinstance(exc, Watchdog) else ""))
        if out.peak > out.bound:
            out.findings.append(f"memory: peak {out.peak / 2**20:.1f} MiB > bound "
                                f"{out.bound / 2**20:.1f} MiB")
        if exc is not None and not isinstance(exc, Watchdog):
            self._judge_error(reader, case, folder, exc, out)
        elif exc is None:
            if isinstance(result, Refused):
                out.status = "typed"
                out.error = f"refused: {result.reason[:200]}"
            elif isinstance(result, CliResult) and result.code != 0:
                out.status = "typed"
                out.error = f"exit {result.code}: {result.stderr.strip()[-200:]}"
            if reader.check is not None:
                try:
                    out.findings += [f"wrong: {m}" for m in reader.check(case, folder, result)]
                except Exception as e:  # noqa: BLE001  (a result the check cannot read)
                    out.findings.append(f"wrong: result not as documented "
                                        f"({type(e).__name__}: {e})")
        else:
            out.status = "untyped"
            out.error = "Watchdog: interrupted"
        self._check_files(case, folder, before, exc is None, result, out)
        if out.findings and not out.traceback and exc is not None:
            out.traceback = "".join(traceback.format_exception(exc))[-6000:]
        return out

    def _judge_error(self, reader: Reader, case: Case, folder: Path, exc: BaseException,
                     out: Outcome) -> None:
        first = str(exc).splitlines()[0] if str(exc) else ""
        out.error = f"{type(exc).__name__}: {first[:300]}"
        out.error_type = type(exc).__name__
        if any(isinstance(e, MemoryError) for e in _chain(exc)):
            out.findings.append("memory: MemoryError under the address-space safety net")
        if reader.errors and isinstance(exc, reader.errors):
            out.status = "typed"
            message = str(exc)
            if "\n" in message.strip() or not message.strip():
                out.findings.append(f"message: not one line: {message[:200]!r}")
            elif reader.names_file and folder.name not in message:
                out.findings.append(f"message: does not name the input: {message[:200]!r}")
            return
        out.status = "untyped"
        out.findings.append(f"untyped: {type(exc).__module__}.{type(exc).__qualname__}")
        out.traceback = "".join(traceback.format_exception(exc))[-6000:]

    def _check_files(self, case: Case, folder: Path, before: dict, ok: bool, result: Any,
                     out: Outcome) -> None:
        leftovers = [p.name for p in self.tmp.iterdir()]
        if leftovers:
            out.findings.append(f"leftover: temporary files {leftovers[:5]}")
        after = snapshot(folder)
        if case.reader == "tar" and case.entry == "safe_extract" and ok:
            # a successful extraction adds/replaces the archive's top-level entries in dest
            created = {os.path.relpath(p, folder) for p in result} if result else set()
            before.setdefault("dest", after.get("dest"))  # the destination itself may be new
            before = {k: v for k, v in before.items()
                      if not any(k == c or k.startswith(c + os.sep) for c in created)}
            after = {k: v for k, v in after.items()
                     if not any(k == c or k.startswith(c + os.sep) for c in created)}
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        if added or removed or changed:
            out.findings.append(f"leftover: case folder changed: added {added[:5]}, removed "
                                f"{removed[:5]}, changed {changed[:5]}")

    # -- bounds ----------------------------------------------------------------------------

    def _cap_memory(self, size: int):
        if not self.safety_net:
            return None
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = _vm_bytes() + SAFETY_NET + 10 * size
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        return soft, hard

    def _uncap_memory(self, limits) -> None:
        if limits is not None:
            resource.setrlimit(resource.RLIMIT_AS, limits)

    def _arm(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def fire(signum, frame):
            raise Watchdog(f"interrupted after {self.hard_limit} s")

        old = signal.signal(signal.SIGALRM, fire)
        signal.setitimer(signal.ITIMER_REAL, self.hard_limit)
        return old

    def _disarm(self, old) -> None:
        if old is None:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _fast_tmp() -> str | None:
    """A memory-backed folder for the case files when there is one (/dev/shm).

    Cases make and remove a folder per input; on a disk file system mounted
    with ``discard`` each rmdir costs milliseconds, more than most inputs.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _force_rmtree(path: Path) -> None:
    """Remove a case folder even when a reader left read-only folders in it."""
    def unlock(func, p, exc_info):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        except OSError:
            pass
        try:
            func(p)
        except OSError:
            pass

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        if sys.version_info >= (3, 12):  # onerror is deprecated there
            shutil.rmtree(path, onexc=lambda func, p, exc: unlock(func, p, None))
        else:
            shutil.rmtree(path, onerror=unlock)
