"""`python -m volcache.cli`: the same as the `volcache` command."""

from . import main

main()
