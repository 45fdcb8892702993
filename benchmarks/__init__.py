"""labkit's benchmarks: ``make bench`` runs them and appends to benchmarks/RESULTS.md."""
