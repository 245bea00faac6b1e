"""A simulated Coupa tenant (with an identity provider) for the demo, tests and benchmarks."""
