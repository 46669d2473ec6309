"""``osvemu verify``: the OSV interface's properties, proved on the real
functions, model-checked in SPIN and attacked by generated kernels
(docs/verification.md)."""
