"""Seeing inside the machine: the trace tool, the debug engine, the
gdb-style console and the GDB remote serial protocol stub."""
