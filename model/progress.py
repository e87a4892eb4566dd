"""Progress bars (tqdm, on stderr) for the stages that take a while: loading, sampling, decoding.

Each stage reports through a plain callback, so callers who want no bar, or their own (ComfyUI's
progress bar, a GUI), pass theirs; `bar(...)` is what the CLI and `pipe(..., progress=True)` use.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager


@contextmanager
def bar(enabled: bool, total: int, desc: str, unit: str):
    """Yield `advance(done=None)`: one more unit, or `done` units in all. A no-op unless `enabled`."""
    if not enabled:
        yield lambda done=None: None
        return
    from tqdm.auto import tqdm  # comes with huggingface_hub (diffusers, transformers)

    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True) as shown:
        def advance(done: int | None = None) -> None:
            shown.update(1 if done is None else done - shown.n)

        yield advance
