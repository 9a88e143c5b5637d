"""``python -m edgefed``: the command line."""
from edgefed.cli import main

main()
