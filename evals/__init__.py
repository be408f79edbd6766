"""Benchmarks and evaluations of the project."""
