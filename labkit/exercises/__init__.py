"""Self-checks for the notebooks' exercises, one module per family of scenarios (``labkit.exercises.mqtt``...)."""
