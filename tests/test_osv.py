"""OSV end to end: partitioned boots of minilinux, each kernel's rewritten
tables, bad configurations, and an attacking kernel that harms nobody."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import run_osvemu

from osvemu.events import ViolationKind
from osvemu.osv.config import default_config, load_config
from osvemu.osv.monitor import CHANNEL_BASE
from osvemu.osv.plan import osv_plan
from osvemu.platform import acpi, layout, mptable
from osvemu.platform.machine import Machine
from osvemu.platform.memmap import E820Type
from osvemu.platform.pvh import StartInfo, unpack_memory_map
from osvemu.platform.topology import Topology
from osvemu.scheduler import Scheduler

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "guests" / "minilinux.elf"


def osvemu(*args: str) -> subprocess.CompletedProcess:
    return run_osvemu(*args, timeout=300)


def kernel_lines(output: str, name: str) -> list[str]:
    return [line[len(name) + 3:] for line in output.splitlines() if line.startswith(f"[{name}] ")]


def test_default_boot_is_four_kernels_of_eight_cores(tmp_path):
    report = tmp_path / "report.json"
    run = osvemu("boot", str(IMAGE), "--cmdline", "quiet", "--report", str(report))
    assert run.returncode == 0, run.stderr
    for name in ("k0", "k1", "k2", "k3"):
        lines = kernel_lines(run.stdout, name)
        assert re.search(r"minilinux: 8 CPUs online, primes=9592 checksum=0x1b158a79, pingpong=400 "
                         r"checksum=0x40888538: OK$", lines[0]), lines
    assert run.stdout.splitlines()[-1].endswith(
        "OSV: combined result of 4 kernels: 32 CPUs, primes=38368, pingpong=1600: OK")
    data = json.loads(report.read_text())
    assert data["mode"] == "osv" and [k["cores"] for k in data["kernels"]] == [list(range(8 * i, 8 * i + 8))
                                                                                for i in range(4)]
    assert all(k["exit_status"] == 0 and k["violations"] == 0 and k["hypercalls"] >= 3 for k in data["kernels"])
    assert data["violations"] == [] and data["monitor_exits"]["icr"] > 0


def test_each_kernel_sees_only_its_cores_and_memory():
    run = osvemu("boot", str(IMAGE), "--cmdline", "workload=primes primes=1000")
    assert run.returncode == 0, run.stderr
    for index in range(4):
        lines = "\n".join(kernel_lines(run.stdout, f"k{index}"))
        megabytes = 511 if index == 0 else 512  # node 0 also holds the machine's first MiB
        assert f"OSV: kernel {index} of 4, 8 cores, {megabytes} MB at 0x100000" in lines
        assert f"BIOS-e820: [mem 0x0000000000100000-0x{(megabytes + 1 << 20) - 1:016x}] usable" in lines
        assert f"BIOS-e820: [mem 0x00000000{CHANNEL_BASE:08x}-0x00000000e000ffff] reserved" in lines
        apics = [int(a, 16) for a in re.findall(r"SRAT: PXM 0 -> APIC 0x([0-9a-f]{2})", lines)]
        assert apics == list(range(8 * index, 8 * index + 8))
        assert "smp: Brought up 1 node, 8 CPUs" in lines and f"NUMA: Node 0: 8 CPUs, {megabytes} MB" in lines


@pytest.mark.slow
def test_eight_kernels_of_four_cores():
    run = osvemu("boot", str(IMAGE), "--kernels", "8", "--cmdline", "quiet workload=primes primes=1000")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].endswith("OSV: combined result of 8 kernels: 32 CPUs, primes=1344, "
                                                "pingpong=0: OK")
    assert sum("minilinux: 4 CPUs online" in line for line in run.stdout.splitlines()) == 8


@pytest.mark.parametrize("kernels", [4, 8])
def test_rewritten_tables_list_only_the_kernels_resources(kernels):
    machine = Machine(osv_plan(default_config(Topology(), str(IMAGE), "", kernels)))
    machine.boot()
    for kernel, partition in zip(machine.kernels, machine.monitor.partitions):
        read = kernel.view.read
        own = list(partition.plan.apic_ids)
        tables = acpi.read_tables(read, layout.RSDP_ADDRESS)
        assert all(acpi.checksum_ok(t) for t in tables.values())
        madt = acpi.parse_madt(tables[b"APIC"])
        assert [apic for _, apic, _ in madt.local_apics] == own
        # Its own IOAPIC, with the first APIC ID its cores leave free; no ISA override (nothing on IRQ 0 or the SCI).
        assert madt.io_apics == [(0 if own[0] else len(own), layout.IOAPIC_BASE, 0)] and madt.overrides == []
        srat = acpi.parse_srat(tables[b"SRAT"])
        assert [apic for _, apic, _ in srat.processors] == own
        ram = [(r.base, r.size) for r in partition.ram]
        assert [(b, s) for _, b, s, _ in srat.memory] == [(0, layout.CONVENTIONAL_END)] + ram
        assert len(acpi.parse_slit(tables[b"SLIT"])) == 1
        config = mptable.read_config(read)
        assert config.checksum_ok and [apic for apic, _, _ in config.processors] == own
        (ioapic_id, _, _, address), = config.io_apics
        assert (ioapic_id, address) == (madt.io_apics[0][0], layout.IOAPIC_BASE)
        assert config.io_interrupts == [(mptable.INT, 0, 0, layout.COM1_IRQ, ioapic_id, layout.COM1_IRQ)]
        assert [apic for apic, _, flags in config.processors if flags & mptable.CPU_BOOTSTRAP] == [own[0]]
        info = StartInfo.unpack(read(kernel.firmware.start_info_address, 56))
        entries = unpack_memory_map(read(info.memmap_paddr, 24 * info.memmap_entries), info.memmap_entries)
        usable = [(e.base, e.size) for e in entries if e.type == E820Type.RAM]
        assert usable == [(0, layout.BOOT_INFO_BASE)] + ram
        assert sum(s for _, s in ram) == partition.plan.ram_bytes


BAD_CONFIGS = [
    ("[[kernel]]\nname='a'\ncores=[0,0]\n", "listed twice"),
    ("[[kernel]]\nname='a'\ncores=[0]\n[[kernel]]\nname='b'\ncores=[0]\n", "already given"),
    ("[[kernel]]\nname='a'\ncores=[99]\n", "not an APIC ID"),
    ("[[kernel]]\nname='a'\ncores=[]\n", "no cores"),
    (("[[kernel]]\nname='a'\ncores=[0]\nmemory={ranges=[['0x100000','0x200000']]}\n"
      "[[kernel]]\nname='b'\ncores=[1]\nmemory={ranges=[['0x180000','0x1000000']]}\n"), "overlaps"),
    ("[[kernel]]\nname='a'\ncores=[0]\nmemory={ranges=[['0x100000000','0x200000000']]}\n", "outside the machine"),
    ("[[kernel]]\nname='a'\ncores=[0]\nmemory={size='64G'}\n", "not enough free memory"),
    ("[[kernel]]\nname='a'\ncores=[0]\ncolour='red'\n", "unknown key 'colour'"),
    ("[[kernel]]\nname='a'\ncores=[0]\nimage='/no/such.elf'\n", "not a readable file"),
    ("[[kernel]]\nname='a'\ncores=[0]\non_violation='shrug'\n", "log or stop"),
    ("[[kernel]]\nname='a'\ncores=[0]\n[[channel]]\nkernels=['a','z']\n", "no kernel named 'z'"),
    ("this is not toml\n", "not valid TOML"),
    ("[machine]\nsockets=0\n[[kernel]]\ncores=[0]\n", "sockets: expected an integer"),
]


@pytest.mark.parametrize("text, words", BAD_CONFIGS, ids=[w for _, w in BAD_CONFIGS])
def test_invalid_configs_give_one_line_and_status_2(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    run = osvemu("boot", str(IMAGE), "--config", str(path))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and words in run.stderr, run.stderr


def test_bad_kernel_counts():
    for args, words in ((["--kernels", "5"], "do not split evenly"), (["--native", "--kernels", "2"], "--native")):
        run = osvemu("boot", str(IMAGE), *args)
        assert run.returncode == 2 and words in run.stderr and len(run.stderr.strip().splitlines()) == 1


ATTACK = """
[machine]
sockets = 4
cores_per_socket = {per_kernel}
memory = "256M"
{kernels}
[[channel]]
name = "results"
kernels = ["k0", "k1", "k2", "k3"]
notify = [248]
"""
#: The smallest workloads that still run the result protocol between kernels.
KERNEL = ('[[kernel]]\nname = "k{i}"\nimage = "{image}"\ncmdline = "quiet primes=1000 rounds=5{extra}"\n'
          'cores = ["{lo}-{hi}"]\n{policy}\n')


#: Cores per kernel in the attack tests: enough for IPIs inside a partition.
PER_KERNEL = 2


def attack_config(tmp_path: Path, attacker: int | None, policy: str = "log", collect_ms: int = 3000) -> Path:
    """Four kernels of two cores, one of them attacking; ``collect_ms``
    bounds how long kernel 0 waits for a result that may never come."""
    kernels = "".join(KERNEL.format(i=i, image=IMAGE, extra=(" attack=all" if i == attacker else "") +
                                    f" collect_ms={collect_ms}", lo=PER_KERNEL * i,
                                    hi=PER_KERNEL * i + PER_KERNEL - 1, policy=f'on_violation = "{policy}"' if i == attacker else "")
                      for i in range(4))
    path = tmp_path / f"attack-{attacker}-{policy}.toml"
    path.write_text(ATTACK.format(kernels=kernels, per_kernel=PER_KERNEL))
    return path


def run_in_process(config_path: Path):
    lines: list[str] = []
    machine = Machine(osv_plan(load_config(config_path)), console=lines.append)
    machine.boot()
    result = Scheduler(machine).run()
    return machine, result, lines


def test_an_attacking_kernel_is_refused_and_harms_nobody(tmp_path):
    calm, calm_result, calm_lines = run_in_process(attack_config(tmp_path, None))
    hostile, result, lines = run_in_process(attack_config(tmp_path, 1))
    assert calm_result.status == 0 and result.status == 0
    # The other kernels print exactly the same (kernel 0's combined lines wait
    # for the attacker's result, so their timestamps may move).
    for name in ("k2", "k3"):
        assert [l for l in lines if l.startswith(f"[{name}]")] == [l for l in calm_lines if l.startswith(f"[{name}]")]
    strip = re.compile(r"^\[k0\] \[ *\d+\.\d+\] ")
    assert [strip.sub("", l) for l in lines if l.startswith("[k0]")] == \
        [strip.sub("", l) for l in calm_lines if l.startswith("[k0]")]
    # Their memory is byte-identical.
    for kernel, partition in zip(hostile.kernels, hostile.monitor.partitions):
        if kernel.name in ("k2", "k3"):
            for rng in partition.ram:
                assert kernel.view.read(rng.base, rng.size) == calm.kernels[kernel.index].view.read(rng.base, rng.size)
    # Every attack was refused, with a reason, and charged to the attacker.
    reasons = [(v.kernel, v.kind, v.reason) for v in hostile.monitor.violations]
    assert {kernel for kernel, _, _ in reasons} == {"k1"}
    text = "\n".join(reason for _, _, reason in reasons)
    for mode in ("fixed", "lowest_priority", "nmi", "init", "startup"):
        assert re.search(rf"{mode} vector 0x[0-9a-f]+ to physical 0x00: physical destination APIC 0 belongs to "
                         "another partition", text)
    assert "SMI IPIs are refused" in text
    # ExtINT is reserved in the ICR: the APIC refuses it as it would on the bare machine, so it is the
    # guest's own mistake, counted among its refused IPIs but not an OSV violation.
    assert "ExtINT" not in text and "extint" not in text
    assert hostile.bus.stats[PER_KERNEL].by_mode.get("extint") == 1  # from k1's first core
    past_ram = hostile.monitor.partitions[1].ram[-1].end + 0x10000  # where minilinux probes past its RAM
    for address in (f"{past_ram:#x}", "0x40000000", "0x100000000"):
        assert f"read of {address} (8 bytes) outside the kernel's memory" in text
        assert f"write to {address} (8 bytes) outside the kernel's memory" in text
    assert "0xfec00000" not in text  # the IOAPIC page is the kernel's own IOAPIC: no violation, no other kernel's
    for errno_reason in ("buffer 0x40000000+0x80 reaches guest-physical 0x40000000, not the caller's RAM", "outside 96..4096", "channel 99 does not exist",
                         "kernel 999 is not another kernel", "vector 2 is outside", "no hypercall 77"):
        assert errno_reason in text
    attacker = "\n".join(l for l in lines if l.startswith("[k1]"))
    assert "attack: memory at 1 GiB at 0x40000000: read 0xffffffffffffffff, read back 0xffffffffffffffff" in attacker
    # Its own IOAPIC's IOREGSEL: 0 after reset, then the low byte of what was written.
    assert "attack: the IOAPIC page at 0xfec00000: read 0x0, read back 0x5a after a write" in attacker
    assert "attack: hypercall DESCRIBE_SELF into foreign memory: result -14" in attacker


def test_a_kernel_with_the_stop_policy_is_stopped_at_its_first_violation(tmp_path):
    machine, result, lines = run_in_process(attack_config(tmp_path, 1, policy="stop", collect_ms=300))
    assert result.status == 42  # the run ends with the first failing kernel's status: k0 lacks a result
    k1 = machine.kernels[1]
    assert k1.status == 0xFF and not any(machine.may_run(core) for core in k1.cores)
    violations = machine.monitor.violations
    assert len(violations) == 1 and violations[0].kind is ViolationKind.IPI  # the first attack
    for name in ("k2", "k3"):
        assert any(f"minilinux: {PER_KERNEL} CPUs online" in l and l.endswith(": OK")
                   for l in lines if l.startswith(f"[{name}]"))
    assert "OSV: kernel 1 sent no result" in "\n".join(lines)


def test_tables_command_prints_and_writes_a_kernels_tables(tmp_path):
    run = osvemu("tables", str(IMAGE), "--kernel", "k3", "--raw", str(tmp_path / "raw"))
    assert run.returncode == 0, run.stderr
    assert "Kernel k3: cores [24, 25, 26, 27, 28, 29, 30, 31], 512 MiB of RAM" in run.stdout
    assert "Processor Local APIC: UID 0, APIC ID 24, enabled" in run.stdout
    assert "  Processor: APIC ID 24 (BSP)" in run.stdout and "APIC ID 23" not in run.stdout
    assert "[mem 0x0000000000100000-0x00000000200fffff] usable" in run.stdout
    raw = tmp_path / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["apic.dat", "dsdt.dat", "e820.dat", "facp.dat", "mptable.dat",
                                                    "rsdp.dat", "rsdt.dat", "slit.dat", "srat.dat", "xsdt.dat"]
    assert acpi.checksum_ok((raw / "apic.dat").read_bytes())
    wrong = osvemu("tables", str(IMAGE), "--kernel", "k9")
    assert wrong.returncode == 2 and "the kernels are k0, k1, k2, k3" in wrong.stderr


def test_partitioned_runs_are_deterministic():
    counts = []
    for _ in range(2):
        machine = Machine(osv_plan(default_config(Topology(2, 2, 256 * layout.MiB), str(IMAGE), "quiet primes=2000")),
                          console=lambda line: None)
        machine.boot()
        result = Scheduler(machine, quantum=997).run()
        assert result.status == 0, result.reason
        counts.append(([c.instructions for c in machine.cores], dict(machine.monitor.exits), result.virtual_ns))
    assert counts[0] == counts[1]
