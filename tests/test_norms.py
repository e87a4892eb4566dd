"""FrameGroupNorm's statistics in half precision: accumulated in float32 without a float32 copy.

The float32 path is the goldens' (tests/test_unet.py); these tests hold the bf16/fp16 CPU path, whose
statistics come from ATen's batch norm (model/network/norms.py, `channel_moments`).
"""

import pytest
import torch

from model.files.loading import load_unet
from model.network import norms
from model.network.norms import FrameGroupNorm
from tests.test_unet import run

# Statistics taken in float32 from bf16 values are within ~1e-6 of exact (float64 of the same values,
# measured: 2.4e-7 of mean, 9.7e-7 of variance). Statistics rounded to bf16 (`var_mean` on the bf16
# tensor, which returns bf16) are off by up to 2^-9 = 2e-3: far outside.
STATS_RTOL = 1e-5
# bf16 UNet against the float32 UNet with the same (bf16-rounded) weights, on the golden inputs, as
# a fraction of the output's largest magnitude: measured 0.023. This bound holds the bf16 path as a
# whole; it alone could not tell bf16-rounded statistics apart (measured 0.019), because the scale
# and shift they give are rounded to bf16 anyway: STATS_RTOL does that.
UNET_RTOL = 0.04


def exact_moments(x: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    videos = x.double().unflatten(0, (-1, frames))
    variance, mean = torch.var_mean(videos, dim=(1, 3, 4), unbiased=False)
    return mean, variance


def assert_float32_accurate(x: torch.Tensor, frames: int) -> None:
    mean, variance = norms.channel_moments(x, x.shape[0] // frames, frames)
    assert mean.dtype == variance.dtype == torch.float32
    exact_mean, exact_variance = exact_moments(x, frames)
    spread = exact_mean.abs() + exact_variance.sqrt()
    assert ((mean - exact_mean).abs() <= STATS_RTOL * spread + 1e-30).all()
    assert ((variance - exact_variance).abs() <= STATS_RTOL * exact_variance + 1e-30).all()


def test_bf16_unet_statistics_are_float32_accurate(tiny_model_dir, fixtures_dir, monkeypatch):
    from safetensors.torch import load_file

    golden = load_file(fixtures_dir / "unet_golden.safetensors")
    bf16 = load_unet(tiny_model_dir, dtype="bf16")
    seen = []
    take = norms.channel_moments

    def recording(x, batch, frames):
        seen.append((x.clone(), frames))
        return take(x, batch, frames)

    monkeypatch.setattr(norms, "channel_moments", recording)
    out = run(bf16, golden)
    monkeypatch.undo()
    assert len(seen) > 20 and all(x.dtype == torch.bfloat16 for x, _ in seen)
    assert {frames for _, frames in seen} == {1, 8}  # per image (transformers) and per video (resnets)
    for x, frames in seen:
        assert_float32_accurate(x, frames)

    fp32 = load_unet(tiny_model_dir, dtype="fp32")
    fp32.load_state_dict({name: t.float() for name, t in bf16.state_dict().items()})
    expected = run(fp32, golden)
    assert (out - expected).abs().max() <= UNET_RTOL * expected.abs().max()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_half_precision_statistics_of_offset_and_constant_channels(dtype, channels_last):
    torch.manual_seed(0)
    x = torch.randn(2 * 4, 24, 6, 5) * torch.rand(1, 24, 1, 1) * 3 + torch.randn(1, 24, 1, 1) * 20
    x[:, 5] = 7.0  # a constant channel: variance 0, not inf or NaN
    x = x.to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert_float32_accurate(x, frames=4)
    assert_float32_accurate(x, frames=1)
    assert norms.channel_moments(x, 2, 4)[1][:, 5].eq(0).all()

    norm = FrameGroupNorm(6, 24, eps=1e-6).to(dtype)
    with torch.no_grad():
        norm.weight.normal_(1, 0.2)
        norm.bias.normal_(0, 0.2)
        out = norm(x, 4).double()
    assert out.isfinite().all()
    expected = norms.frame_group_norm(x.double(), 4, 6, norm.weight.double(), norm.bias.double(), 1e-6)
    # The scale and shift are rounded to the activations' dtype, so an output is off by about one unit in
    # the last place of |mean / std|, not of itself: measured 0.011 (bf16) and 0.0012 (fp16) here.
    bound = {torch.bfloat16: 0.03, torch.float16: 0.004}[dtype]
    assert (out - expected).abs().max() <= bound
