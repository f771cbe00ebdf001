"""bench.cpu: /proc accounting on fake /proc trees (no real processes measured)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cpu import (
    CLOCK_TICKS,
    CpuMeter,
    ProcessGone,
    ProcStat,
    machine_busy_ticks,
    parse_stat,
    per_million,
    read_all,
    run_with_cpu,
    tree_ticks,
    wait_with_cpu,
)


def stat_line(pid: int, ppid: int, ticks: tuple[int, int, int, int], comm: str = "python") -> str:
    utime, stime, cutime, cstime = ticks
    fields_3_to_13 = f"S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0"
    return f"{pid} ({comm}) {fields_3_to_13} {utime} {stime} {cutime} {cstime} 20 0 1 0 5 0 0\n"


def fake_proc(root: Path, entries: dict[int, str]) -> Path:
    for pid, line in entries.items():
        (root / str(pid)).mkdir(parents=True, exist_ok=True)
        (root / str(pid) / "stat").write_text(line)
    (root / "self").mkdir(exist_ok=True)  # not a pid: ignored
    (root / "meminfo").write_text("MemTotal: 1 kB\n")
    set_busy(root, 0)
    return root


def set_busy(root: Path, busy: int) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    (root / "stat").write_text(f"cpu  {busy} 0 0 5000 7 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")


def test_parse_stat_reads_times_and_parent() -> None:
    stat = parse_stat(stat_line(42, 7, (100, 20, 3, 4)))
    assert stat == ProcStat(pid=42, ppid=7, utime=100, stime=20, cutime=3, cstime=4)
    assert stat.ticks == 127


def test_parse_stat_survives_spaces_and_parentheses_in_the_name() -> None:
    stat = parse_stat(stat_line(9, 1, (5, 6, 0, 0), comm="postgres: (x) idle"))
    assert (stat.pid, stat.ppid, stat.utime, stat.stime) == (9, 1, 5, 6)


def test_tree_sums_the_root_and_every_live_descendant_only() -> None:
    stats = {
        10: ProcStat(10, 1, 100, 10, 50, 5),  # postmaster; 55 ticks of reaped backends
        11: ProcStat(11, 10, 7, 3, 0, 0),  # backend
        12: ProcStat(12, 11, 1, 1, 0, 0),  # grandchild
        20: ProcStat(20, 1, 999, 999, 0, 0),  # unrelated
    }
    assert tree_ticks(10, stats) == 165 + 10 + 2
    assert tree_ticks(11, stats) == 12


def test_tree_of_a_missing_process_raises() -> None:
    with pytest.raises(ProcessGone):
        tree_ticks(5, {})


def test_read_all_skips_non_pids_and_broken_entries(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {3: stat_line(3, 1, (1, 2, 3, 4)), 4: "garbage"})
    assert set(read_all(proc)) == {3}


def test_meter_reports_seconds_per_group_including_reaped_children(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {
            10: stat_line(10, 1, (100, 0, 0, 0)),
            11: stat_line(11, 10, (50, 0, 0, 0)),
            30: stat_line(30, 1, (10, 10, 0, 0)),
        },
    )
    meter = CpuMeter({"postgres": [10], "kafka": [30]}, proc=proc)
    meter.start()
    # The backend 11 exits and is reaped: its 80 ticks move into the postmaster's cutime.
    (proc / "11" / "stat").unlink()
    (proc / "11").rmdir()
    fake_proc(
        proc,
        {10: stat_line(10, 1, (100 + CLOCK_TICKS, 0, 80, 0)), 30: stat_line(30, 1, (10, 10, 0, 0))},
    )
    set_busy(proc, 3 * CLOCK_TICKS + 30)  # the machine was busy 3 s + 30 ticks in all
    seconds = meter.stop()
    assert seconds["kafka"] == 0
    assert seconds["postgres"] == pytest.approx((CLOCK_TICKS + 30) / CLOCK_TICKS)
    assert seconds["other"] == pytest.approx(2.0)


def test_machine_busy_leaves_out_idle_and_iowait(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  10 1 5 1000 50 2 3 4 9 9\n")
    assert machine_busy_ticks(tmp_path) == 10 + 1 + 5 + 2 + 3 + 4


def test_meter_stop_before_start_is_a_bug(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        CpuMeter({}, proc=tmp_path).stop()


def test_per_million() -> None:
    assert per_million(3.0, 500_000) == 6.0
    assert per_million(1.0, 0) != per_million(1.0, 0)  # nan


def test_wait_with_cpu_reaps_the_child_and_returns_its_status() -> None:
    # A local child process, no network: exit status and a non-negative CPU time.
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    code, cpu = wait_with_cpu(proc, timeout_s=60)
    assert code == 3
    assert proc.returncode == 3
    assert cpu >= 0


def test_run_with_cpu_writes_the_output_and_kills_what_runs_too_long(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w+b") as out:
        code, cpu = run_with_cpu([sys.executable, "-c", "print('done')"], out, timeout_s=60)
        out.seek(0)
        assert (code, out.read().strip()) == (0, b"done")
        assert cpu >= 0
        with pytest.raises(subprocess.TimeoutExpired):
            run_with_cpu([sys.executable, "-c", "import time; time.sleep(60)"], out, timeout_s=0.2)
