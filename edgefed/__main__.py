"""``python -m edgefed``: the command line."""
from edgefed.simulator.cli import main

main()
