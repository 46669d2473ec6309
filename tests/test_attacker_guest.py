"""The adversarial test guest (tests/guests/attacker/): it builds, and its
honest run (attack=none), the baseline neighbour of every attack, prints its
script, makes no violation and ends alive but idle."""

from __future__ import annotations

import json


def test_honest_run_prints_its_script_and_ends_idle(osvemu, attacker_elf, tmp_path):
    report = tmp_path / "report.json"
    run = osvemu("boot", attacker_elf, "--sockets", "1", "--cores-per-socket", "2", "--memory", "128M",
                 "--kernels", "1", "--cmdline", "attack=none", "--report", report, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "[k0] attacker: attack=none",
        "[k0] attacker: kernel 0 of 1, 2 cores (APIC 0 1), RAM 0x100000-0x8000000, foreign 0x40001000",
        "[k0] attacker: none: honest work, 100000 iterations",
        "[k0] attacker: none: checksum 0x847c2350",
        "[k0] attacker: done",
    ]
    data = json.loads(report.read_text())
    assert data["violations"] == []
    # The boot CPU idles in `sti; hlt`; the AP was never started.
    assert [core["final_state"] for core in data["cores"]] == ["halted", "wait-for-sipi"]
