"""The systems half of edgefed: SimPy engine, cost model, scenarios, results and the CLI."""
