"""Minimal hand-written clients, one per protocol library, as the yardstick for labkit's harness.

``python -m benchmarks.minimal.run`` runs them all; benchmarks/MINIMAL.md says what each does.
"""
