"""OSV's kernels in parallel host processes: the same run for every --jobs."""

from __future__ import annotations

import json

import pytest
from conftest import attacker_pair, run_osvemu

from osvemu.cpu.memory import Mapping, MemoryBank, MemoryView
from osvemu.parallel import assign
from osvemu.platform.channels import EpochChannels

CHANNEL = 0xE0000000


def _run(tmp_path, jobs: int, *args) -> tuple[int, str, str, dict]:
    report = tmp_path / f"report-{jobs}.json"
    result = run_osvemu("boot", "--quiet", "--jobs", jobs, *args, "--report", report, timeout=300)  # the summary has host times
    data = json.loads(report.read_text())
    data.pop("host_seconds")
    data.pop("argv")  # --jobs 1 or 2
    for kernel in data.get("kernels", []):
        kernel.pop("host_seconds")  # each kernel's own host time, like the run's
    return result.returncode, result.stdout, result.stderr, data


@pytest.mark.slow
def test_the_default_osv_run_is_the_same_on_one_process_and_on_two(tmp_path, minilinux):
    """Console, exit status, stderr and the whole report (host time aside)."""
    one, two = (_run(tmp_path, jobs, minilinux) for jobs in (1, 2))
    assert one == two
    assert one[0] == 0 and "OSV: combined result of 4 kernels: 32 CPUs, primes=38368, pingpong=1600: OK" in one[1]


@pytest.mark.slow
def test_four_processes_and_eight_kernels_change_nothing(tmp_path, minilinux):
    runs = [_run(tmp_path, jobs, "--kernels", "8", minilinux) for jobs in (1, 4)]
    assert runs[0] == runs[1] and runs[0][0] == 0
    assert "combined result of 8 kernels" in runs[0][1]


@pytest.mark.parametrize("sender, receiver, restart", [
    ("attack=notify target=0 count=300", "attack=none", None),   # NOTIFYs across processes, rate-limited
    pytest.param("attack=all", "attack=none", None, marks=pytest.mark.slow),  # every violation, from the other process
    ("attack=spin", "attack=halt", 2),                            # hung kernels, restarted
], ids=["notify-flood", "attacks", "restarts"])
def test_two_kernels_across_processes_run_as_in_one(tmp_path, attacker_elf, sender, receiver, restart):
    config = tmp_path / "pair.toml"
    config.write_text(attacker_pair(attacker_elf, receiver=receiver, sender=sender, channel=restart is None,
                                    restart=restart))
    one, two = (_run(tmp_path, jobs, "--config", config) for jobs in (1, 2))
    assert one == two
    assert one[3]["cores"] and one[0] == two[0]


def test_gdb_runs_in_one_process(minilinux):
    result = run_osvemu("boot", "--jobs", "2", "--gdb", "0", minilinux)
    assert result.returncode == 2
    assert result.stderr.strip() == "osvemu: --gdb debugs the machine in one process: no --jobs"


def test_kernels_go_to_workers_round_robin():
    assert assign(4, 2) == [frozenset({0, 2}), frozenset({1, 3})]
    assert assign(3, 8) == [frozenset({0}), frozenset({1}), frozenset({2})]
    assert assign(5, 1) == [frozenset(range(5))]


# ---------------------------------------------------------------- channels
def _two_members() -> tuple[EpochChannels, MemoryBank]:
    channel = MemoryBank(2 * 4096, "channel", shared=True)
    views = {kernel: MemoryView([Mapping(CHANNEL, 2 * 4096, channel, 0)]) for kernel in (0, 1)}
    shared = {kernel: ((CHANNEL, 2 * 4096),) for kernel in (0, 1)}
    return EpochChannels(shared, views), channel


def test_a_member_sees_its_own_writes_at_once_and_the_others_at_the_boundary():
    channels, channel = _two_members()
    zero, one = channels.views[0], channels.views[1]
    zero.write(CHANNEL + 8, b"kernel 0")
    assert zero.read(CHANNEL + 8, 8) == b"kernel 0" and one.read(CHANNEL + 8, 8) == bytes(8)
    assert bytes(channel.view[8:16]) == bytes(8)
    channels.synchronize({0, 1})
    assert one.read(CHANNEL + 8, 8) == b"kernel 0" and bytes(channel.view[8:16]) == b"kernel 0"


def test_changes_in_one_epoch_merge_byte_by_byte_in_kernel_order():
    channels, channel = _two_members()
    zero, one = channels.views[0], channels.views[1]
    zero.write(CHANNEL, b"AAAA")            # bytes 0-3
    one.write(CHANNEL + 2, b"bbbb")         # bytes 2-5: 2 and 3 written by both
    one.write(CHANNEL + 4096 + 100, b"!")   # the second page
    changes = channels.changes({0, 1})
    assert changes == [(0, 0, [(0, b"AAAA")]), (0, 1, [(2, b"bbbb"), (4196, b"!")])]
    channels.apply(list(reversed(changes)))  # the order they come in does not matter
    channels.refresh({0, 1})
    assert zero.read(CHANNEL, 6) == one.read(CHANNEL, 6) == b"AAbbbb"  # kernel 1 is later: its bytes stand
    assert bytes(channel.view[4196:4197]) == b"!"
    assert channels.changes({0, 1}) == []


@pytest.mark.parametrize("command", ["trace", "debug"])
def test_the_tools_follow_the_machine_in_one_process(command, minilinux):
    """trace and debug have no --jobs (nor --fast or --exact: they count exactly, in one process)."""
    for option in ("--jobs", "--fast", "--exact"):
        result = run_osvemu(command, option, *(["2"] if option == "--jobs" else []), minilinux)
        assert result.returncode == 2
        assert result.stderr.startswith(f"osvemu: unrecognized arguments: {option}")
