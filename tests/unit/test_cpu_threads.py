"""``threads: auto``: the usable cores (affinity, cgroup quota), the load of other programs read
from ``/proc/stat``, and the policy that picks the compute thread count from them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llmserver.backends.cpu_threads import (
    DROP_AT,
    HOLD_S,
    RISE_BELOW,
    SAMPLE_EVERY_S,
    CpuFiles,
    LoadSampler,
    ThreadGovernor,
    busy_and_idle,
    cgroup_quota,
    choose_threads,
    usable_cpus,
)

# ---- the policy ----


@pytest.mark.parametrize(
    ("usable", "others", "current", "chosen"),
    [
        (2, 0.0, 2, 2),  # quiet: every usable core
        (2, 0.67, 2, 1),  # one busy loop sharing two cores with two spinning threads
        (2, 0.5, 2, 1),  # the same loop pinned to the core one compute thread sits on
        (2, 1.0, 1, 1),  # at one thread the loop has a whole core: stay
        (2, 0.05, 1, 2),  # the loop stopped: back to both cores
        (2, 0.3, 2, 2),  # in the band between the thresholds: keep what runs...
        (2, 0.3, 1, 1),  # ...from either side
        (2, 2.0, 2, 1),  # never fewer than one
        (1, 0.9, 1, 1),  # one core: one thread whatever the load
        (4, 1.0, 4, 3),  # four cores, one busy: three threads
        (4, 2.1, 4, 2),
        (4, 0.1, 2, 4),  # rise straight to what fits
        (4, 1.1, 2, 3),
        (8, 0.15, 8, 8),  # an event loop's fifth of a core is no reason to drop
    ],
)
def test_policy_table(usable: int, others: float, current: int, chosen: int) -> None:
    assert choose_threads(usable, others, current) == chosen


def test_policy_thresholds_are_a_band() -> None:
    assert 0 < RISE_BELOW < DROP_AT < 0.5


@pytest.mark.parametrize("usable", [1, 2, 3, 4, 8, 16])
def test_policy_is_stable_at_a_steady_load(usable: int) -> None:
    """Whatever the load, asking again at the same load keeps the answer: no flapping."""
    for step in range(0, 40 * usable + 1):
        others = step / 20
        for current in range(1, usable + 1):
            chosen = choose_threads(usable, others, current)
            assert 1 <= chosen <= usable
            assert choose_threads(usable, others, chosen) == chosen, (others, current)


def test_policy_does_not_flap_around_the_drop_threshold() -> None:
    """A load wobbling just around the drop threshold changes the count once, not each time."""
    current, changes = 2, 0
    for i in range(40):
        others = DROP_AT + (0.05 if i % 2 else -0.05)
        chosen = choose_threads(2, others, current)
        changes += chosen != current
        current = chosen
    assert (current, changes) == (1, 1)


# ---- usable cores ----


def files(tmp_path: Path, self_cgroup: str, quotas: dict[str, str]) -> CpuFiles:
    """A fake cgroup tree: ``quotas`` maps file paths under the root to their contents."""
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    for rel, text in quotas.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "self_cgroup").write_text(self_cgroup)
    return CpuFiles(tmp_path / "stat", root, tmp_path / "self_cgroup")


@pytest.mark.parametrize(
    ("self_cgroup", "quotas", "usable"),
    [
        ("0::/app\n", {"app/cpu.max": "max 100000\n"}, 4),
        ("0::/app\n", {"app/cpu.max": "150000 100000\n"}, 1),  # 1.5 cores: rounded down
        ("0::/app\n", {"app/cpu.max": "250000 100000\n"}, 2),
        ("0::/app\n", {"app/cpu.max": "50000 100000\n"}, 1),  # half a core: one at least
        ("0::/app\n", {"app/cpu.max": "800000 100000\n"}, 4),  # quota above the mask
        # a parent's quota applies to its children
        ("0::/a/b\n", {"a/cpu.max": "200000 100000\n", "a/b/cpu.max": "max 100000\n"}, 2),
        # in a container the root of the namespace holds the quota
        ("0::/\n", {"cpu.max": "300000 100000\n"}, 3),
        # cgroup v1, the cpu controller mounted with cpuacct
        (
            "4:cpu,cpuacct:/docker/x\n3:memory:/docker/x\n",
            {
                "cpu,cpuacct/docker/x/cpu.cfs_quota_us": "200000\n",
                "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n",
            },
            2,
        ),
        # cgroup v1 without a quota
        (
            "1:cpu:/\n",
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            4,
        ),
        # the host's path does not exist inside the container: its mount root holds the quota
        (
            "1:cpu:/kubepods/pod1\n",
            {"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"},
            1,
        ),
        ("", {}, 4),  # nothing readable: the affinity mask
    ],
)
def test_usable_cpus_is_the_affinity_mask_capped_by_the_cgroup_quota(
    tmp_path: Path, self_cgroup: str, quotas: dict[str, str], usable: int
) -> None:
    assert usable_cpus(files(tmp_path, self_cgroup, quotas), allowed={0, 1, 2, 3}) == usable


def test_cgroup_quota_in_cores(tmp_path: Path) -> None:
    fake = files(tmp_path, "0::/app\n", {"app/cpu.max": "150000 100000\n"})
    assert cgroup_quota(fake) == 1.5
    assert cgroup_quota(files(tmp_path / "b", "0::/\n", {})) is None


def test_usable_cpus_on_this_machine_is_at_least_one() -> None:
    assert usable_cpus() >= 1


# ---- /proc/stat ----

STAT = """\
cpu  300 10 60 900 40 0 3 7 0 0
cpu0 100 5 20 300 10 0 1 2 0 0
cpu1 200 5 40 600 30 0 2 5 0 0
cpu2 9999 0 0 0 0 0 0 0 0 0
intr 123 0 1
ctxt 456
"""


def test_busy_and_idle_counts_the_usable_cpus_only() -> None:
    # busy: user nice system irq softirq steal; idle: idle iowait
    assert busy_and_idle(STAT, {0}) == (100 + 5 + 20 + 1 + 2, 310)
    assert busy_and_idle(STAT, {0, 1}) == (128 + 252, 310 + 630)
    assert busy_and_idle("garbage\ncpuX 1 2 3\n", {0}) == (0, 0)


def stat_line(cpu: int, user: int, steal: int = 0, idle: int = 0) -> str:
    return f"cpu{cpu} {user} 0 0 {idle} 0 0 0 {steal} 0 0\n"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sampler_subtracts_the_engines_own_time(tmp_path: Path) -> None:
    stat, clock = tmp_path / "stat", Clock()
    sampler = LoadSampler(
        frozenset({0, 1}), 2, CpuFiles(proc_stat=stat), clock=clock, ticks_per_s=100
    )
    stat.write_text(stat_line(0, 1000) + stat_line(1, 1000) + stat_line(2, 0))
    assert sampler.sample(own=0.0) is None  # the first call only sets the baseline
    # one second later: both cores fully busy, cpu2 (not ours) too; the engine used 1.33 s
    clock.now += 1.0
    stat.write_text(stat_line(0, 1100) + stat_line(1, 1100) + stat_line(2, 100))
    assert sampler.sample(own=4 / 3) == pytest.approx(2 / 3)
    # steal is load too (a vCPU taken away by the hypervisor)
    clock.now += 1.0
    stat.write_text(stat_line(0, 1150, steal=50) + stat_line(1, 1100, idle=100))
    assert sampler.sample(own=0.0) == pytest.approx(1.0)
    # more than the engine's own time is never negative
    clock.now += 1.0
    assert sampler.sample(own=1.0) == 0.0


def test_sampler_leaves_the_cores_beyond_a_quota_to_the_others(tmp_path: Path) -> None:
    stat, clock = tmp_path / "stat", Clock()
    sampler = LoadSampler(
        frozenset(range(4)), 2, CpuFiles(proc_stat=stat), clock=clock, ticks_per_s=100
    )
    stat.write_text("".join(stat_line(c, 0) for c in range(4)))
    sampler.sample(0.0)
    clock.now += 1.0
    stat.write_text("".join(stat_line(c, 100 if c < 3 else 50) for c in range(4)))
    # 3.5 cores busy, none of it ours: 2 of them fit beside our quota of 2
    assert sampler.sample(0.0) == pytest.approx(1.5)


def test_sampler_without_proc_stat_says_nothing(tmp_path: Path) -> None:
    sampler = LoadSampler(frozenset({0}), 1, CpuFiles(proc_stat=tmp_path / "none"))
    assert sampler.sample(0.0) is None


# ---- the governor ----


class FakeSampler(LoadSampler):
    """Returns whatever load the test sets."""

    def __init__(self) -> None:
        super().__init__(frozenset({0, 1}), 2)
        self.load: float | None = 0.0

    def sample(self, own: float) -> float | None:
        return self.load


def test_governor_drops_under_load_and_returns_when_it_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, sampler, applied = Clock(), FakeSampler(), list[int]()
    governor = ThreadGovernor(2, applied.append, "m", sampler, clock)

    def run(load: float, seconds: float) -> None:
        sampler.load = load
        for _ in range(int(seconds / SAMPLE_EVERY_S) + 1):
            governor.tick()
            clock.now += SAMPLE_EVERY_S

    caplog.set_level(logging.INFO, "llmserver.backends.llamacpp")
    run(0.0, 2)
    assert (governor.threads, applied) == (2, [])
    run(0.67, 3)  # a busy loop beside two spinning threads
    assert (governor.threads, applied) == (1, [1])
    run(1.0, 5)  # at one thread it has a whole core: stay
    assert (governor.threads, applied) == (1, [1])
    run(0.0, 3)  # it stopped
    assert (governor.threads, applied) == (2, [1, 2])
    changes = [r.getMessage() for r in caplog.records if "compute threads" in r.getMessage()]
    assert len(changes) == 2
    assert "model m: 2 -> 1 compute threads" in changes[0]
    assert "model m: 1 -> 2 compute threads" in changes[1]


def test_governor_waits_between_changes() -> None:
    clock, sampler, applied = Clock(), FakeSampler(), list[int]()
    governor = ThreadGovernor(2, applied.append, "m", sampler, clock)
    sampler.load = 1.0
    governor.tick()  # first sample: the average starts at the load
    clock.now += SAMPLE_EVERY_S
    governor.tick()
    assert applied == [1]
    sampler.load = 0.0
    # the average falls below the rise threshold within about a second, but a change waits
    # HOLD_S after the last one
    elapsed = 0.0
    while applied == [1]:
        clock.now += SAMPLE_EVERY_S
        elapsed += SAMPLE_EVERY_S
        governor.tick()
        assert elapsed < 10
    assert elapsed >= HOLD_S
    assert applied == [1, 2]


def test_governor_samples_at_most_every_interval() -> None:
    clock = Clock()
    calls: list[float] = []

    class Counting(FakeSampler):
        def sample(self, own: float) -> float | None:
            calls.append(own)
            return 0.0

    governor = ThreadGovernor(2, lambda n: None, "m", Counting(), clock)
    for _ in range(100):  # a hundred quick steps in 0.1 s
        governor.tick()
        clock.now += 0.001
    assert len(calls) == 1


def test_pinned_threads_apply_at_the_next_step_and_ignore_the_load() -> None:
    clock, sampler, applied = Clock(), FakeSampler(), list[int]()
    governor = ThreadGovernor(2, applied.append, "m", sampler, clock)
    governor.pin(1)
    governor.tick()
    assert (governor.threads, applied) == (1, [1])
    for _ in range(20):
        clock.now += SAMPLE_EVERY_S
        governor.tick()
    assert applied == [1]
    governor.pin(5)  # clamped to the usable cores
    governor.tick()
    assert applied == [1, 2]
    governor.pin(None)
    sampler.load = 2.0
    for _ in range(20):
        clock.now += SAMPLE_EVERY_S
        governor.tick()
    assert applied == [1, 2, 1]
