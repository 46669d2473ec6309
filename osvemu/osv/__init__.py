"""OSV: the thin monitor that partitions the machine among several kernels.

At boot it gives each kernel its own firmware tables, memory map and address
space (``layout.py``, ``partition.py``); afterwards it intercepts only ICR
writes (``ipi_policy.py``) and ``vmmcall`` hypercalls (``hypercalls.py``).
"""
