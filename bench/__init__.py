"""
Benchmarks of fmtp: C{python -m bench} runs the harness (see
doc/performance.md); the C{bench_*.py} scripts measure one thing each.
"""
