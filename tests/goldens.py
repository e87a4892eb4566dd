"""The reference calls of pipeline_golden.json and cond_golden.json as pipeline settings, and the allclose-style
comparison every golden test uses."""

# 8-bit PNG frames read back: two steps of rounding, relative to the frames' largest value (1).
PNG_TOLERANCE = 2 / 255


def settings_of(case: dict, **changes) -> dict:
    """A golden entry's generation settings as `pipe(...)` keyword arguments, with `changes` on top."""
    settings = dict(width=case["width"], height=case["height"], steps=case["steps"], frames=case["video_length"],
                    seed=case["seed"], guidance=case["guidance_scale"], original_size=tuple(case["og"]),
                    target_size=tuple(case["target"]), scheduler=case["scheduler"])
    return {**settings, **changes}


def cli_flags_of(case: dict, model_dir, out, *extra) -> list[str]:
    """The same call as `python -m model.sample` flags (fp32 on the CPU, as the goldens were made)."""
    return ["--model", str(model_dir), "--prompt", case["prompt"], "--negative-prompt", case["negative_prompt"],
            "--width", str(case["width"]), "--height", str(case["height"]), "--frames", str(case["video_length"]),
            "--steps", str(case["steps"]), "--seed", str(case["seed"]), "--guidance", str(case["guidance_scale"]),
            "--scheduler", case["scheduler"], "--original-size", *map(str, case["og"]),
            "--target-size", *map(str, case["target"]), "--dtype", "fp32", "--device", "cpu", "--out", str(out),
            *extra]


def png_frames(folder):
    """The PNG frames the CLI wrote into `folder`, as (frames, height, width, 3) float32 in 0..1."""
    import numpy as np

    from model.media.video import read_video

    return np.stack([read_video(f)[0][0].numpy() for f in sorted(folder.glob("frame_*.png"))]).astype(np.float32) / 255


def control_flags_of(case: dict, fixtures_dir, frames) -> list[str]:
    """A ControlNet golden's `--controlnet` group of flags, with the control frames read from `frames`."""
    return ["--controlnet", str(fixtures_dir / "controlnet-tiny"), "--control-frames", str(frames),
            "--control-strength", str(case["controlnet_conditioning_scale"]),
            "--control-start", str(case["control_guidance_start"]),
            "--control-end", str(case["control_guidance_end"])]


def golden_bound(expected, rtol: float, floor: float, scale: float) -> float:
    """How far a result may be from the golden tensor `expected`, allclose-style: `rtol` of the golden's
    largest magnitude plus an absolute floor of `floor` times `scale`, the largest magnitude in the golden's
    whole set. The floor is what lets values that are zero in exact arithmetic (a bias whose gradient a
    following GroupNorm removes) pass: on both sides they are float noise, whose size depends on the CPU's
    kernels, not on the model."""
    return rtol * float(abs(expected).max()) + floor * scale


def set_scale(tensors) -> float:
    """The largest magnitude in a golden set (every tensor of one golden file, or the ones compared)."""
    return max(float(abs(t).max()) for t in tensors)


def golden_mismatches(actual: dict, reference: dict, rtol: float, floor: float) -> list[str]:
    """Names in `reference` whose tensor in `actual` is not within `golden_bound` of it (the set: `reference`)."""
    scale = set_scale(reference.values())
    failed = []
    for name, expected in reference.items():
        bound = golden_bound(expected, rtol, floor, scale)
        if not float((actual[name].to(expected.dtype) - expected).abs().max()) <= bound:  # NaN fails too
            failed.append(name)
    return failed


def assert_close_to_golden(actual, expected, rtol: float, floor: float, whole_set=None):
    """`actual` (a tensor or array) has `expected`'s shape and lies within `golden_bound` of it; the floor's
    scale is the largest magnitude in `whole_set` (the golden file's tensors), `expected`'s own if not given."""
    import numpy as np

    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape}, golden {expected.shape}"
    scale = set_scale([expected] if whole_set is None else [np.asarray(t, dtype=np.float64) for t in whole_set])
    bound = golden_bound(expected, rtol, floor, scale)
    error = float(np.abs(actual - expected).max())
    assert error <= bound, f"off the golden by {error:.3g}, more than {bound:.3g}"  # NaN fails too
