"""Benchmark suite: every speed claim in the repo is a ratio measured side by side by these scripts.

``python -m benchmarks.run_all`` (``make bench``) runs every row and writes ``benchmarks/results/``.
HF ``transformers`` (the ``bench`` extra) is imported only here, never by ``ut`` or ``data_prep``.
"""
