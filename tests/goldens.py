"""The reference calls of pipeline_golden.json and cond_golden.json as pipeline settings."""


def settings_of(case: dict, **changes) -> dict:
    """A golden entry's generation settings as `pipe(...)` keyword arguments, with `changes` on top."""
    settings = dict(width=case["width"], height=case["height"], steps=case["steps"], frames=case["video_length"],
                    seed=case["seed"], guidance=case["guidance_scale"], original_size=tuple(case["og"]),
                    target_size=tuple(case["target"]), scheduler=case["scheduler"])
    return {**settings, **changes}
