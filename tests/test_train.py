"""Fine-tuning: the differentiable UNet reproduces the original's gradients, and the trainer
(python -m model.train) overfits, resumes bit for bit, trains data-parallel and refuses bad input."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from model.loading import is_temporal_key, load_unet
from model.train.graph import set_gradient_checkpointing

LOSS_TOLERANCE = 1e-5  # relative
GRAD_TOLERANCE = 1e-4  # of each gradient's largest entry


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return load_file(fixtures_dir / "train_golden.safetensors")


def temporal_gradients(unet, golden, checkpointing=False):
    unet.requires_grad_(False)
    params = {name: p for name, p in unet.named_parameters() if is_temporal_key(name)}
    for p in params.values():
        p.requires_grad_(True)
        p.grad = None
    unet.train()
    set_gradient_checkpointing(unet, checkpointing)
    pred = unet(golden["noisy_latents"], golden["timesteps"], golden["encoder_hidden_states"],
                golden["text_embeds"], golden["time_ids"])
    loss = F.mse_loss(pred.float(), golden["noise"])
    loss.backward()
    unet.eval()
    return loss.detach(), {name: p.grad.clone() for name, p in params.items()}


@pytest.fixture(scope="module")
def golden_run(tiny_model_dir, golden):
    unet = load_unet(tiny_model_dir, dtype="fp32")
    return unet, temporal_gradients(unet, golden)


def test_noising_matches_the_release_scheduler(golden, tiny_model_dir):
    from model.components import scheduler_config
    from model.train.objective import Objective

    objective = Objective(scheduler_config(tiny_model_dir))
    noisy = objective.add_noise(golden["latents"], golden["noise"], golden["timesteps"])
    assert (noisy - golden["noisy_latents"]).abs().max() < 1e-6


def test_loss_and_gradients_match_the_original(golden_run, golden):
    _, (loss, grads) = golden_run
    assert abs(loss.item() / golden["loss"].item() - 1) < LOSS_TOLERANCE
    assert len(grads) == 390 and grads.keys() == {k[5:] for k in golden if k.startswith("grad.")}
    for name, grad in grads.items():
        reference = golden[f"grad.{name}"]
        assert (grad - reference).abs().max() <= GRAD_TOLERANCE * reference.abs().max(), name


def test_gradient_checkpointing_gives_the_same_gradients(golden_run, golden):
    unet, (loss, grads) = golden_run
    loss_again, grads_again = temporal_gradients(unet, golden, checkpointing=True)
    assert loss_again == loss
    for name, grad in grads.items():
        assert torch.allclose(grads_again[name], grad, rtol=0, atol=1e-7 * grad.abs().max().item()), name


def test_the_unet_is_built_for_inference_and_train_mode_is_asked_for(tiny_model_dir):
    unet = load_unet(tiny_model_dir, dtype="fp32")
    assert not unet.training
    sample = torch.randn(1, 4, 2, 8, 8, requires_grad=True)
    args = (torch.tensor([10]), torch.randn(1, 77, 64), torch.randn(1, 32), torch.randn(1, 6))
    assert not unet(sample, *args).requires_grad  # eval: no graph
    unet.train()
    assert unet(sample, *args).requires_grad
