"""`python -m volcache.worker [RUNPOD FLAGS]`: start the RunPod worker (the same as `volcache serve`)."""

from . import main

main()
