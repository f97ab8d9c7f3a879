"""Benchmarks of what finrelease exists for: backup throughput and release orchestration.

`python -m bench [--quick] [backup|orchestration]` (or `./dev bench`) prints the tables;
the numbers measured on the reference machine live in `bench/RESULTS.md`.
"""
