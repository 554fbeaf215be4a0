"""volcache's benchmarks and reports (see bench/reliability.py for the fault-injection report)."""
