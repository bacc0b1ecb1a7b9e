"""The run layer: jobs, the runner, executors, provenance and device choice."""
