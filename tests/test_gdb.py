"""The GDB remote stub, driven by a real GNU gdb in batch mode and by a raw
protocol client."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time

MACHINE = ["--sockets", "1", "--cores-per-socket", "4", "--memory", "256M"]


def start_stub(image, *args: str, native: bool = True) -> tuple[subprocess.Popen, int]:
    machine = ["--native", str(image)] if native else []
    process = subprocess.Popen([sys.executable, "-m", "osvemu", "boot", *machine, *args, "--gdb", "127.0.0.1:0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stderr.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert match, line
    return process, int(match.group(1))


def gdb_batch(image, port: int, commands: list[str]) -> str:
    gdb = shutil.which("gdb")
    assert gdb, "GNU gdb is missing: .ci/run installs the Debian package gdb"
    argv = [gdb, "-batch", "-nx", "-ex", "set pagination off", "-ex", f"file {image}",
            "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        argv += ["-ex", command]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    return run.stdout + run.stderr


def test_gdb_debugs_every_core(smp_hello_elf):
    process, port = start_stub(smp_hello_elf, *MACHINE, "--gdb-wait")
    output = gdb_batch(smp_hello_elf, port, [
        "info threads",
        "break ap_main", "continue",
        "info threads",
        "thread 3", "info registers rip",
        "thread 2", "info registers rip", "stepi", "info registers rip",
        "x/4gx &online_count",
        "info registers cr0 efer",
        "delete", "watch online_count", "continue", "print online_count",
        "delete", "set var success_status = 7", "print success_status",
        "detach",
    ])
    stdout, stderr = process.communicate(timeout=120)
    print(output, stderr)  # shown when the test fails
    # Before the first instruction: core 0 at the PVH entry, the APs waiting for SIPI.
    assert re.search(r"\* 1\s+Thread 1 \(CPU#0 \[APIC 0, running\]\)\s+pvh_start", output)
    assert "Thread 4 (CPU#3 [APIC 3, wait-for-SIPI])" in output
    assert re.search(r"Thread 2 hit Breakpoint 1, ap_main \(\)", output)
    # All-stop: at the breakpoint every core is listed, core 1 is current.
    assert re.search(r"\* 2\s+Thread 2 \(CPU#1 \[APIC 1, running\]\)\s+ap_main", output)
    rips = re.findall(r"^rip\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+ <[^>]+>)?", output, re.MULTILINE)
    assert rips[0][0] == "0x0"  # core 2 still waits for its SIPI
    assert rips[1][1].endswith("<ap_main>") and rips[2][1].endswith("<ap_main+5>")
    assert re.search(r"<online_count>:\s+0x0000000000000001\s+0x0000000000000000", output)
    # CD and NW stay set from the AP's reset value 0x60000010 (Intel SDM Vol. 3A 9.1.1 Table 9-1).
    assert re.search(r"^cr0\s+0xe0000011", output, re.MULTILINE) and re.search(r"^efer\s+0x500", output, re.MULTILINE)
    assert "Hardware watchpoint 2: online_count" in output
    assert "Old value = 1\nNew value = 2" in output
    assert "$2 = 7 '\\a'" in output or "$2 = 7" in output
    assert "detached" in output
    # After detach the machine runs on to its normal end, with the value gdb wrote.
    assert process.returncode == 7, stderr
    assert stdout.splitlines()[-1] == "smp_hello: 4 of 4 cores online"


def test_gdb_threads_are_named_with_their_kernels(tmp_path, smp_hello_elf, attacker_elf):
    """Under OSV each thread names its kernel, machine core and APIC ID:
    `k2 CPU#16 [APIC 16, running]`; the state follows the core."""
    config = tmp_path / "two.toml"
    config.write_text('[machine]\nsockets = 1\ncores_per_socket = 4\nmemory = "256M"\n'
                      f'[[kernel]]\nname = "hello"\nimage = "{smp_hello_elf}"\ncores = [0, 1]\n'
                      'memory = { size = "64M" }\n'
                      f'[[kernel]]\nname = "attacker"\nimage = "{attacker_elf}"\ncmdline = "attack=halt"\n'
                      'cores = [3, 2]\nmemory = { size = "64M" }\n')
    process, port = start_stub(None, "--config", str(config), "--gdb-wait", native=False)
    output = gdb_batch(smp_hello_elf, port, ["info threads", "break ap_main", "continue", "info threads", "detach"])
    stdout, stderr = process.communicate(timeout=120)
    print(output, stderr)  # shown when the test fails
    first, second = output.split("Thread 2 hit Breakpoint 1")
    for name in ("hello CPU#0 [APIC 0, running]", "hello CPU#1 [APIC 1, wait-for-SIPI]",
                 "attacker CPU#2 [APIC 2, wait-for-SIPI]", "attacker CPU#3 [APIC 3, running]"):
        assert name in first
    assert re.search(r"\* 2\s+Thread 2 \(hello CPU#1 \[APIC 1, running\]\)", second)
    assert "Thread 3 (attacker CPU#2 [APIC 2, wait-for-SIPI])" in second  # the attacker's BSP is still busy
    assert "Thread 4 (attacker CPU#3 [APIC 3, running])" in second
    assert process.returncode == 0, stderr
    assert "[hello] smp_hello: 2 of 2 cores online" in stdout


class Client:
    """A minimal RSP client for what gdb's batch mode cannot do (Ctrl-C, k)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""

    def send(self, payload: str) -> None:
        data = payload.encode()
        self.sock.sendall(b"$" + data + b"#" + f"{sum(data) & 0xFF:02x}".encode())

    def receive(self) -> str:
        while True:
            start = self.buffer.find(b"$")
            end = self.buffer.find(b"#", start)
            if start >= 0 and end >= 0 and len(self.buffer) >= end + 3:
                payload = self.buffer[start + 1:end]
                self.buffer = self.buffer[end + 3:]
                self.sock.sendall(b"+")
                return payload.decode()
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("stub closed the connection")
            self.buffer += chunk

    def ask(self, payload: str) -> str:
        self.send(payload)
        return self.receive()


def test_interrupt_registers_memory_and_kill(spinning_image):
    process, port = start_stub(spinning_image, "--sockets", "1", "--cores-per-socket", "2", "--memory", "16M")
    client = Client(port)
    assert "PacketSize=" in client.ask("qSupported:multiprocess+;xmlRegisters=i386")
    # Connecting stops the running machine (all-stop), like QEMU.
    assert client.ask("?").startswith("T")
    assert client.ask("qfThreadInfo") == "m1,2" and client.ask("qsThreadInfo") == "l"
    assert bytes.fromhex(client.ask("qThreadExtraInfo,2")).decode() == "CPU#1 [APIC 1, wait-for-SIPI]"
    xml = client.ask("qXfer:features:read:target.xml:0,3fff")
    assert xml[0] in "lm" and "<architecture>i386:x86-64</architecture>" in xml and 'name="efer"' in xml
    assert client.ask("Hg1") == "OK"
    registers = client.ask("g")
    assert len(registers) == 2 * 600
    rip = int.from_bytes(bytes.fromhex(client.ask("p10")), "little")
    assert 0x200000 <= rip < 0x200010
    assert client.ask("m200000,3") == "40ebfd"  # inc eax; jmp spin
    assert client.ask("Mfff0,4:2a000000") == "OK" and client.ask("mfff0,4") == "2a000000"
    assert client.ask("m40000000,4") == "E14"  # beyond RAM
    # Continue, then Ctrl-C: the reply names the thread with SIGINT.
    client.send("vCont;c")
    time.sleep(0.5)
    client.sock.sendall(b"\x03")
    assert re.fullmatch(r"T02thread:1;", client.receive())
    # Single-step thread 1 with vCont: one instruction further.
    before = int.from_bytes(bytes.fromhex(client.ask("p10")), "little")
    assert re.fullmatch(r"T05thread:1;", client.ask("vCont;s:1"))
    after = int.from_bytes(bytes.fromhex(client.ask("p10")), "little")
    assert after != before and 0x200000 <= after < 0x200004
    client.send("k")
    process.wait(timeout=30)
    assert process.returncode == 137
