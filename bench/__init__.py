"""Benchmarks for the reservation server (see the README section "Benchmarks")."""
