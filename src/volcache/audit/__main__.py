"""`python -m volcache.audit`: the same as `volcache audit`."""

from __future__ import annotations

from .cli import audit

if __name__ == "__main__":
    audit(prog_name="python -m volcache.audit")
