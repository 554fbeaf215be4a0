"""Operating a volume: `doctor` probes, `du` measurement, `verify`/repair, and safe `prune`/`rm`.

Each module plans or measures with plain functions over `Settings` and returns frozen
dataclasses; the click commands in `volcache.cli._ops` only parse options and print.
"""
