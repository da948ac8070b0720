"""`python -m tokenrefresh` runs the CLI."""

from tokenrefresh.cli import main

main()
