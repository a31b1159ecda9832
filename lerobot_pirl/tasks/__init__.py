"""Embedded tasks: each task's evaluation protocol, SFT data and checkpoint builder, and the
settings its demo and benchmarks share."""
