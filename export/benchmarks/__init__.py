"""Benchmarks: measured, never asserted. Each module times one thing and returns plain rows that
`phoenix bench ...` prints as a Markdown table (and can save as JSON).

    ranker   the ranker's one-pass form against its full-mask reference (docs/DESIGN.md §4.4)
    machine  a description of the machine, printed above every table

Modules import torch themselves; this package imports nothing, so future benchmarks that only talk
to a server need not load PyTorch.
"""
