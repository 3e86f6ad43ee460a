"""The performance benchmark (issue 6): `python -m bench.run [--quick]`; see docs/performance.md."""
