"""A GDB remote serial protocol stub (GDB manual, appendix E "GDB Remote
Serial Protocol") so GNU gdb debugs an osvemu machine as it debugs
``qemu-system-x86_64 -gdb``: every core is a thread, the machine is
all-stop, and the registers follow :mod:`osvemu.debug.registers`.  A
thread's extra information (``qThreadExtraInfo``, shown by ``info
threads``) names the core's kernel under OSV: ``k2 CPU#16 [APIC 16,
running]``.

The machine runs in the calling thread; a reader thread turns the socket
into packets and turns Ctrl-C (0x03) into a pause request.
"""

from __future__ import annotations

import queue
import socket
import sys
import threading
from dataclasses import dataclass

from osvemu.cpu.core import Core
from osvemu.debug import registers
from osvemu.debug.engine import Debugger, DebugMemoryError, Stop, StopKind, thread_name
from osvemu.errors import ConfigError

PACKET_SIZE = 0x4000
INTERRUPT = 0x03
SIGINT, SIGTRAP = 2, 5
#: Exit status of a run the debugger killed (like a process killed by SIGKILL).
EXIT_KILLED = 137
_WATCH_PACKET = {2: "write", 3: "read", 4: "access"}
_WATCH_REPLY = {"write": "watch", "read": "rwatch", "access": "awatch"}


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (localhost by default)."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--gdb {text}: expected [HOST:]PORT") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"--gdb {text}: port must be 0-65535")
    return host or "127.0.0.1", number


def checksum(payload: bytes) -> int:
    return sum(payload) & 0xFF


def unescape_binary(data: bytes) -> bytes:
    out, escaped = bytearray(), False
    for byte in data:
        if escaped:
            out.append(byte ^ 0x20)
            escaped = False
        elif byte == 0x7D:
            escaped = True
        else:
            out.append(byte)
    return bytes(out)


class Connection:
    """Packet framing over one TCP connection (E.1 "Overview")."""

    def __init__(self, sock: socket.socket, on_interrupt) -> None:
        self.sock = sock
        self.packets: queue.Queue[bytes | None] = queue.Queue()
        self.ack = True
        self._on_interrupt = on_interrupt
        self._reader = threading.Thread(target=self._read_loop, name="osvemu-gdb-reader", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                buffer = self._parse(buffer)
        except OSError:
            pass
        self.packets.put(None)

    def _parse(self, buffer: bytes) -> bytes:
        while buffer:
            head = buffer[0]
            if head == INTERRUPT:
                self._on_interrupt()
                buffer = buffer[1:]
            elif head in b"+-":
                buffer = buffer[1:]
            elif head == ord("$"):
                end = buffer.find(b"#")
                if end < 0 or len(buffer) < end + 3:
                    return buffer
                payload, sent_sum = buffer[1:end], buffer[end + 1:end + 3]
                buffer = buffer[end + 3:]
                if self.ack:
                    good = int(sent_sum, 16) == checksum(payload)
                    self.sock.sendall(b"+" if good else b"-")
                    if not good:
                        continue
                self.packets.put(payload)
            else:
                buffer = buffer[1:]
        return buffer

    def send(self, payload: str | bytes) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        try:
            self.sock.sendall(b"$" + data + b"#" + f"{checksum(data):02x}".encode())
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@dataclass
class _Resume:
    step_core: Core | None  # None: continue every core


class GdbStub:
    def __init__(self, debugger: Debugger, host: str, port: int, wait: bool = False, log=sys.stderr) -> None:
        self.debugger = debugger
        self.machine = debugger.machine
        self.wait = wait
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((host, port))
        except OSError as error:
            raise ConfigError(f"--gdb {host}:{port}: cannot listen: {error.strerror}") from None
        self.listener.listen(1)
        self.address = self.listener.getsockname()
        self.connection: Connection | None = None
        self._register_thread = 0  # Hg
        self._resume_thread = -1  # Hc
        self._stop: Stop = Stop(StopKind.INTERRUPT, 0)
        self._killed = False
        waiting = "; the machine waits for the debugger" if wait else ""
        print(f"osvemu: gdb stub listening on {self.address[0]}:{self.address[1]}{waiting}", file=log, flush=True)

    # ------------------------------------------------------------ the run
    def serve(self) -> tuple[int, str]:
        """Run the machine under the debugger; return the run's status and reason."""
        if self.wait:
            self._accept()
            running = False
        else:
            threading.Thread(target=self._accept, name="osvemu-gdb-accept", daemon=True).start()
            running = True
        resume_pending = False
        while True:
            if running:
                stop = self.debugger.cont()
                self._stop = stop
                if stop.kind is StopKind.EXITED:
                    self._finish_connection(stop)
                    return stop.status, stop.reason
                if self.connection is None:
                    continue  # paused for nobody: a connection attempt that failed
                if resume_pending:
                    self.connection.send(self._stop_reply(stop))
                running = resume_pending = False
            packet = self.connection.packets.get()
            if packet is None:  # the debugger went away: run on to the end
                self._detach()
                running = True
                continue
            resume = self._handle(packet)
            if self._killed:
                self.connection.close()
                return EXIT_KILLED, "killed by the debugger"
            if self.connection is None:  # detached: run on to the end
                running = True
                continue
            if resume is None:
                continue
            if resume.step_core is not None:
                stop = self.debugger.step(resume.step_core)
                self._stop = stop
                if stop.kind is StopKind.EXITED:
                    self._finish_connection(stop)
                    return stop.status, stop.reason
                self.connection.send(self._stop_reply(stop))
            else:
                running = resume_pending = True

    def _accept(self) -> None:
        sock, _ = self.listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection = Connection(sock, self.debugger.interrupt)
        self.listener.close()
        if not self.wait:
            self.debugger.interrupt()  # all-stop: gdb finds the machine stopped

    def _finish_connection(self, stop: Stop) -> None:
        if self.connection is not None:
            self.connection.send(f"W{stop.status & 0xFF:02x}")
            self.connection.close()
            self.connection = None
        else:
            self.listener.close()

    def _detach(self) -> None:
        self.debugger.delete_all()
        if self.connection is not None:
            self.connection.close()
        self.connection = None

    # ------------------------------------------------------------ packets
    def _handle(self, packet: bytes) -> _Resume | None:
        text = packet.decode("latin-1")
        conn = self.connection
        command = text[:1]
        try:
            if text.startswith("vCont"):
                return self._vcont(text)
            if command in "cC":
                return _Resume(None)
            if command in "sS":
                return _Resume(self._thread_core(self._resume_thread))
            reply = self._query(text)
        except DebugMemoryError:
            reply = "E14"
        except (ValueError, IndexError, KeyError):
            reply = "E01"
        if reply is not None:
            conn.send(reply)
        return None

    def _query(self, text: str) -> str | bytes | None:
        command = text[:1]
        if text.startswith("qSupported"):
            return f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;QStartNoAckMode+;vContSupported+"
        if text == "QStartNoAckMode":
            self.connection.send("OK")
            self.connection.ack = False
            return None
        if text.startswith("qXfer:features:read:"):
            return self._xfer(text)
        if text == "?":
            return self._stop_reply(self._stop)
        if text == "qAttached":
            return "1"
        if text == "qC":
            return f"QC{self.debugger.selected + 1:x}"
        if text == "qfThreadInfo":
            return "m" + ",".join(f"{core.index + 1:x}" for core in self.machine.cores)
        if text == "qsThreadInfo":
            return "l"
        if text.startswith("qThreadExtraInfo,"):
            core = self._thread_core(int(text.split(",")[1], 16))
            return thread_name(self.machine, core).encode().hex()
        if command == "T":
            self._thread_core(int(text[1:], 16))
            return "OK"
        if command == "H":
            thread = -1 if text[2:] in ("-1", "") else int(text[2:], 16)  # noqa: FURB166 - gdb sends bare hex
            if thread > 0:
                self._thread_core(thread)
            if text[1] == "g":
                self._register_thread = thread
                if thread > 0:
                    self.debugger.selected = thread - 1
            else:
                self._resume_thread = thread
            return "OK"
        if command == "g":
            core = self._register_core()
            return "".join(registers.encode(reg, registers.read(core, reg)) for reg in registers.REGISTERS)
        if command == "G":
            core, data, offset = self._register_core(), text[1:], 0
            for reg in registers.REGISTERS:
                registers.write(core, reg, registers.decode(reg, data[offset:]))
                offset += 2 * reg.size
            return "OK"
        if command == "p":
            reg = registers.REGISTERS[int(text[1:], 16)]
            return registers.encode(reg, registers.read(self._register_core(), reg))
        if command == "P":
            number, value = text[1:].split("=")
            reg = registers.REGISTERS[int(number, 16)]
            registers.write(self._register_core(), reg, registers.decode(reg, value))
            return "OK"
        if command == "m":
            address, length = (int(x, 16) for x in text[1:].split(","))
            return self.debugger.read_memory(address, length, self._register_core()).hex()
        if command == "M":
            where, data = text[1:].split(":")
            address, _ = (int(x, 16) for x in where.split(","))
            self.debugger.write_memory(address, bytes.fromhex(data), self._register_core())
            return "OK"
        if command == "X":
            where, _, data = text[1:].partition(":")
            address, _ = (int(x, 16) for x in where.split(","))
            self.debugger.write_memory(address, unescape_binary(data.encode("latin-1")), self._register_core())
            return "OK"
        if command in "Zz":
            return self._breakpoint(text)
        if command == "k" or text.startswith("vKill"):
            self._killed = True
            return "OK" if text.startswith("vKill") else None
        if command == "D":
            self.connection.send("OK")
            self._detach()
            return None
        if text.startswith("qSymbol"):
            return "OK"
        return ""  # unsupported packets get an empty reply (E.1)

    def _xfer(self, text: str) -> str:
        annex, span = text[len("qXfer:features:read:"):].split(":")
        if annex != "target.xml":
            return "E00"
        offset, length = (int(x, 16) for x in span.split(","))
        document = registers.target_xml()
        chunk = document[offset:offset + length]
        return ("l" if offset + length >= len(document) else "m") + chunk

    def _breakpoint(self, text: str) -> str:
        insert = text[0] == "Z"
        kind, address, length = text[1:].split(",")[:3]
        kind, address, length = int(kind), int(address, 16), int(length.split(";")[0], 16)
        if kind in (0, 1):  # software and hardware breakpoints: both are exact code hooks
            if insert:
                self.debugger.add_breakpoint(address)
            else:
                self.debugger.remove_breakpoint_at(address)
            return "OK"
        if kind in _WATCH_PACKET:
            if insert:
                self.debugger.add_watchpoint(address, length, _WATCH_PACKET[kind])
            else:
                self.debugger.remove_watchpoint(address, length, _WATCH_PACKET[kind])
            return "OK"
        return ""

    def _vcont(self, text: str) -> _Resume | None:
        if text == "vCont?":
            self.connection.send("vCont;c;C;s;S")
            return None
        actions = text.split(";")[1:]
        for action in actions:
            verb, _, thread = action.partition(":")
            if verb[:1] in "sS":
                return _Resume(self._thread_core(int(thread, 16)) if thread else self._register_core())
        return _Resume(None)

    # ------------------------------------------------------------ helpers
    def _thread_core(self, thread: int) -> Core:
        if thread <= 0:
            return self.machine.cores[self.debugger.selected]
        if thread > len(self.machine.cores):
            raise KeyError(thread)
        return self.machine.cores[thread - 1]

    def _register_core(self) -> Core:
        return self._thread_core(max(0, self._register_thread))

    def _stop_reply(self, stop: Stop) -> str:
        if stop.kind is StopKind.EXITED:
            return f"W{(stop.status or 0) & 0xFF:02x}"
        self.debugger.selected = stop.core
        self._register_thread = stop.core + 1
        signal = SIGINT if stop.kind is StopKind.INTERRUPT else SIGTRAP
        reply = f"T{signal:02x}thread:{stop.core + 1:x};"
        if stop.kind is StopKind.WATCHPOINT:
            reply += f"{_WATCH_REPLY[stop.watch]}:{stop.address:x};"
        return reply


__all__ = ["EXIT_KILLED", "GdbStub", "parse_address"]
