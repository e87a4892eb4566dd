"""`dtype="auto"`: bf16 where the device computes it faster than fp32 (model/memory/precision.py)."""

import pytest
import torch

from model.memory import precision
from model.tiny import fastest_dtype

CPU = torch.device("cpu")


@pytest.mark.parametrize("amx, onednn_bf16, expected", [
    (True, True, torch.bfloat16),  # AMX: bf16 measured 3.7-5.1x faster (benchmarks/bench_cpu_dtypes.py)
    (False, True, torch.float32),  # AVX-512 (BF16 or not) without AMX: bf16 measured slower
    (True, False, torch.float32),  # a torch whose oneDNN has no bf16 here
])
def test_auto_on_cpus_is_bf16_only_with_amx(monkeypatch, amx, onednn_bf16, expected):
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(precision, "mkldnn_bf16_supported", lambda: onednn_bf16)
    assert precision.resolve_dtype("auto", CPU) == expected
    assert precision.resolve_dtype(None, CPU) == expected
    assert precision.resolve_precision("auto", CPU) == (expected, False)
    assert precision.resolve_dtype("fp32", CPU) == torch.float32  # asked for: kept
    # Training keeps fp32 on CPUs (its gradients are checked in fp32); tiny-random keeps fp32 on CPUs.
    assert precision.training_dtype("auto", CPU) == torch.float32
    assert fastest_dtype("cpu") == torch.float32


def test_amx_probe_answers_on_this_cpu():
    assert isinstance(precision.cpu_has_amx(), bool)
    assert isinstance(precision.mkldnn_bf16_supported(), bool)


@pytest.mark.parametrize("hardware, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_on_cuda_is_bf16_only_where_the_gpu_has_it(monkeypatch, hardware, expected):
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return hardware or including_emulation  # torch emulates bf16 on older GPUs: that must not count

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    cuda = torch.device("cuda")
    assert precision.default_dtype(cuda) == expected
    assert precision.training_dtype("auto", cuda) == (torch.bfloat16 if hardware else torch.float32)
    assert asked and not any(asked)
