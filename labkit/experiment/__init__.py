"""The measurement engine: workloads, open-loop pacing, records, histograms, results and the runner.

See docs/measurement.md for the design contract.
"""
