"""Progress bars (tqdm, on stderr) for the stages that take a while: loading, sampling, decoding.

Each stage reports through a plain callback, so callers who want no bar, or their own (ComfyUI's
progress bar, a GUI), pass theirs; `bar(...)` is what the CLI and `pipe(..., progress=True)` use.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager


@contextmanager
def bar(enabled: bool, total: int | None, desc: str, unit: str):
    """Yield `advance(done=None, by=1)`: `by` more units, or `done` in all. A no-op unless `enabled`.

    `total` None counts without an end (loading: bytes read); unit "B" shows kB, MB, GB.
    """
    if not enabled:
        yield lambda done=None, by=1: None
        return
    from tqdm.auto import tqdm  # comes with huggingface_hub (diffusers, transformers)

    with tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", file=sys.stderr, leave=False,
              dynamic_ncols=True) as shown:
        def advance(done: int | None = None, by: int = 1) -> None:
            shown.update(by if done is None else done - shown.n)

        yield advance
        shown.refresh()  # the final count, even when the last update came sooner than tqdm redraws
