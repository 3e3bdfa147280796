"""Benchmarks: `python -m bench` and its modules measure speed, memory, energy and detection (README,
"Benchmarks"); they use the development tools (rimba.dev), never the tests."""
