"""Compute threads that fit the machine: llama.cpp's ``threads: auto``.

llama-cpp-python is built with OpenMP, so every graph node of a decode ends in a barrier where
the compute threads spin for each other. When another program takes the core of one of them,
each barrier waits for the scheduler to give it back, and a decode that takes 15 ms on a quiet
2-core machine takes most of a second (65 -> 1.2 tokens/s measured). One thread fewer than the
free cores avoids that: with one thread ggml has no barrier at all.

So the engine asks a :class:`ThreadGovernor` before each step. At most every
:data:`SAMPLE_EVERY_S` it reads ``/proc/stat`` for the CPUs this process may use and subtracts
its own compute time, which leaves the CPU taken by everything else ("others": other processes,
and the other threads of this process: the event loop, another model's engine); a smoothed
value of that goes into :func:`choose_threads`, which keeps the thread count at the usable
cores minus what the others take, with hysteresis. A change takes effect at the next
``llama_decode`` (``llama_set_n_threads``) and never changes the output: ggml splits each
matrix product by rows, and each row is summed by one thread in the same order whatever the
count (logits checked bit-identical at 1 and 2 threads).

OpenMP's wait policy (``OMP_WAIT_POLICY=PASSIVE``) would avoid the collapse too, but it is read
once when libgomp loads and halves the quiet speed (27.9 against 63.7 tokens/s measured), so it
is left alone; the thread count is the lever that can move while running.

Pure Python (no llama_cpp import); the files read are injectable for tests.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("llmserver.backends.llamacpp")

#: the load is sampled at most this often (seconds), before a step
SAMPLE_EVERY_S = 0.25
#: time constant (seconds) of the exponential average of the others' load
SMOOTHING_S = 0.5
#: a thread is dropped when the others take at least this much (cores) of the cores the
#: current threads would use. Below the 0.5 a single pinned busy loop can be measured at on
#: two cores (where it shares one core with a compute thread), so that case still drops.
DROP_AT = 0.4
#: threads are added back only while the others would take less than this of the cores the
#: new count would use: the gap to DROP_AT keeps the choice from flapping
RISE_BELOW = 0.2
#: seconds between two changes at least (the load measured after a change settles first)
HOLD_S = 1.0

#: ``/proc/stat`` per-CPU fields (user nice system idle iowait irq softirq steal ...) that
#: count as busy; guest time is already inside user. Steal is busy: a vCPU the hypervisor
#: takes away stalls a barrier as surely as another process does.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True, slots=True)
class CpuFiles:
    """Where the kernel says what the CPUs are doing (replaced by temporary files in tests)."""

    proc_stat: Path = Path("/proc/stat")
    cgroup_root: Path = Path("/sys/fs/cgroup")
    self_cgroup: Path = Path("/proc/self/cgroup")


def allowed_cpus() -> frozenset[int]:
    """The CPUs this process may run on (its affinity mask)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def _cgroup_dirs(files: CpuFiles) -> list[Path]:
    """The cgroup directories whose CPU quota applies to this process, innermost first: its
    own cgroup and each parent (v2 under the root, v1 under the ``cpu`` controller's mount),
    then the mount roots themselves (inside a container the path may name the host's view)."""
    dirs: list[Path] = []
    roots = [files.cgroup_root, files.cgroup_root / "cpu", files.cgroup_root / "cpu,cpuacct"]
    for line in (_read(files.self_cgroup) or "").splitlines():
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controllers and "cpu" not in controllers.split(","):
            continue
        mounts = roots[:1] if not controllers else roots[1:]
        parts = [p for p in path.split("/") if p]
        for mount in mounts:
            dirs += [mount.joinpath(*parts[:n]) for n in range(len(parts), 0, -1)]
    return [*dirs, *roots]


def _quota(directory: Path) -> float | None:
    """The CPU quota set in one cgroup directory, in cores; None when there is none."""
    text = _read(directory / "cpu.max")
    if text is not None:  # cgroup v2: "max 100000" or "150000 100000"
        fields = text.split()
        if len(fields) == 2 and fields[0] != "max":
            try:
                return int(fields[0]) / int(fields[1])
            except (ValueError, ZeroDivisionError):
                return None
        return None
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    if quota is None or period is None:  # cgroup v1: -1 means no quota
        return None
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_quota(files: CpuFiles | None = None) -> float | None:
    """The smallest CPU quota (cores) over this process's cgroups; None: no quota anywhere."""
    quotas = [q for d in _cgroup_dirs(files or CpuFiles()) if (q := _quota(d)) is not None]
    return min(quotas) if quotas else None


def usable_cpus(files: CpuFiles | None = None, allowed: Collection[int] | None = None) -> int:
    """The cores this process may use: its affinity mask, capped by a cgroup CPU quota
    (rounded down: a thread on a fraction of a core is the one every barrier waits for),
    one at least."""
    count = len(allowed if allowed is not None else allowed_cpus())
    quota = cgroup_quota(files)
    if quota is not None:
        count = min(count, math.floor(quota))
    return max(1, count)


def busy_and_idle(text: str, cpus: Collection[int]) -> tuple[int, int]:
    """Busy and idle clock ticks, summed over the ``cpuN`` lines of ``/proc/stat`` for
    ``cpus`` (busy: user nice system irq softirq steal; idle: idle iowait)."""
    busy = idle = 0
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *values = line.split()
        try:
            cpu = int(name[3:])
            ticks = [int(v) for v in values]
        except ValueError:
            continue
        if cpu not in cpus or len(ticks) < 5:
            continue
        busy += sum(ticks[i] for i in _BUSY_FIELDS if i < len(ticks))
        idle += ticks[3] + ticks[4]
    return busy, idle


def choose_threads(usable: int, others: float, current: int) -> int:
    """The compute thread count for ``usable`` cores of which others take ``others`` (cores,
    smoothed), starting from ``current``.

    With ``t`` threads the others take ``others - (usable - t)`` of the cores the threads
    would use. When that reaches :data:`DROP_AT`, drop to the most threads for which it stays
    below; add threads only up to the most for which it stays below :data:`RISE_BELOW`;
    otherwise keep ``current``. Always between 1 and ``usable``.
    """
    current = min(max(current, 1), usable)

    def overlap(threads: int) -> float:
        return others - (usable - threads)

    if current > 1 and overlap(current) >= DROP_AT:
        return max(1, math.ceil(usable - others + DROP_AT) - 1)
    if current < usable and overlap(current + 1) < RISE_BELOW:
        return min(usable, math.ceil(usable - others + RISE_BELOW) - 1)
    return current


@dataclass
class LoadSampler:
    """The load of everything but this engine's compute threads on the CPUs it may use.

    ``sample(own)`` reads ``/proc/stat`` and returns the cores the others took since the last
    call, counted only where they eat into the ``usable`` cores (with a quota smaller than the
    affinity mask, the CPUs beyond it are free for them); ``own`` is the CPU time (seconds)
    this engine's compute threads used in that time.
    """

    cpus: frozenset[int]
    usable: int
    files: CpuFiles = field(default_factory=CpuFiles)
    clock: Callable[[], float] = time.monotonic
    ticks_per_s: float = field(default_factory=lambda: float(os.sysconf("SC_CLK_TCK")))
    _last: tuple[float, int] | None = field(default=None, init=False)

    def sample(self, own: float) -> float | None:
        """Others' load (cores) since the previous call; None at the first call, when
        ``/proc/stat`` cannot be read, or when no time has passed."""
        text = _read(self.files.proc_stat)
        if text is None:
            return None
        now = self.clock()
        busy, _ = busy_and_idle(text, self.cpus)
        last, self._last = self._last, (now, busy)
        if last is None or now <= last[0]:
            return None
        elapsed = now - last[0]
        others = ((busy - last[1]) / self.ticks_per_s - own) / elapsed
        spare = len(self.cpus) - self.usable  # cores beyond the quota: theirs to take
        return max(0.0, others - spare)


class ThreadGovernor:
    """Chooses an engine's compute thread count while it runs (``threads: auto``).

    Call :meth:`tick` on the engine thread before each step: it is a clock read unless a
    sample is due. ``apply`` sets the count for the next decode (``llama_set_n_threads``).
    """

    def __init__(
        self,
        usable: int,
        apply: Callable[[int], None],
        name: str = "",
        sampler: LoadSampler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.usable = usable
        #: the compute threads the engine uses now
        self.threads = usable
        #: others' load, exponentially averaged (cores); None until the first sample
        self.others: float | None = None
        #: changes since the engine started
        self.changes = 0
        self._apply = apply
        self._name = name
        self._sampler = sampler or LoadSampler(allowed_cpus(), usable)
        self._clock = clock
        self._due = 0.0
        self._changed_at = -math.inf
        self._cpu: tuple[float, float] | None = None  # (engine thread, process) CPU seconds
        self._sampled_at = 0.0
        self._pinned: int | None = None
        self._lock = threading.Lock()

    def pin(self, threads: int | None) -> None:
        """Use exactly ``threads`` from the next step on (None: adapt again). For tests."""
        with self._lock:
            self._pinned = threads

    def tick(self) -> None:
        """Before a step, on the engine thread: sample the load when due, change the thread
        count when the policy says so."""
        with self._lock:
            pinned = self._pinned
        if pinned is not None:
            self._set(min(max(pinned, 1), self.usable), "pinned")
            return
        now = self._clock()
        if now < self._due:
            return
        self._due = now + SAMPLE_EVERY_S
        others = self._sample(now)
        if others is None or now - self._changed_at < HOLD_S:
            return
        chosen = choose_threads(self.usable, others, self.threads)
        if chosen != self.threads:
            self._changed_at = now
            self._set(chosen, f"others use {others:.2f} of {self.usable} usable cores")

    def _sample(self, now: float) -> float | None:
        """Fold one load sample into the average; the average (None before the first)."""
        cpu = (time.thread_time(), time.process_time())
        last, self._cpu = self._cpu, cpu
        # the compute threads mirror the engine thread (the OpenMP master): they spin at the
        # barriers while it computes; never more than the whole process used
        own = 0.0 if last is None else min((cpu[0] - last[0]) * self.threads, cpu[1] - last[1])
        elapsed, self._sampled_at = now - self._sampled_at, now
        load = self._sampler.sample(max(own, 0.0))
        if load is None:
            return self.others
        weight = 1.0 - math.exp(-elapsed / SMOOTHING_S) if self.others is not None else 1.0
        previous = self.others if self.others is not None else load
        self.others = previous + weight * (load - previous)
        return self.others

    def _set(self, threads: int, why: str) -> None:
        if threads == self.threads:
            return
        logger.info(
            "model %s: %d -> %d compute threads (%s)", self._name, self.threads, threads, why
        )
        self._apply(threads)
        self.threads = threads
        self.changes += 1
