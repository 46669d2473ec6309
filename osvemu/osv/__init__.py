"""OSV: the thin monitor that partitions the machine among several kernels.

At boot it gives each kernel its own firmware tables, memory map and address
space (``config.py`` says which cores and memory, ``plan.py`` builds the
machine plan); afterwards the machine routes every ICR write through OSV's
policy (``ipi_policy.py``) and hands the monitor (``monitor.py``) only the
``vmmcall`` hypercalls (``hypercalls.py``) and the violations.
"""
