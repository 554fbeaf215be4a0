"""`python -m volcache`: the same as the `volcache` command."""

from .cli import main

main()
