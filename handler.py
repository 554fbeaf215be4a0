"""RunPod entry point (`python -u handler.py`): the volcache worker.

All the work is in `volcache.worker`; this file exists because RunPod Hub looks for a handler.py.
It imports nothing from Hugging Face: the worker pins the caches on the volume first.
"""

from volcache.worker import main

if __name__ == "__main__":
    main()
