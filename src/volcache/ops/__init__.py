"""Operating a volume: `doctor` probes, `du` measurement, `verify`/repair, and safe `prune`/`rm`.

Each module plans or measures over the store's one scan (`volcache.store.scan_volume`) and
returns frozen dataclasses; destructive work is a plan first (`prune.plan_prune`, `plan_remove`),
then `prune.execute(plan)`, as huggingface_hub's `DeleteCacheStrategy`. The ops import only the
store's public surface; the click commands in `volcache.cli._ops` only parse options and print.
"""

from __future__ import annotations

from . import doctor, du, prune, verify

__all__ = ["doctor", "du", "prune", "verify"]
