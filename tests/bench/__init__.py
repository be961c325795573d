"""Benchmarks (`make bench`): each bench_*.py runs alone and prints one JSON line; run_all.py runs them all."""
