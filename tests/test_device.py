"""rnnlab.device.default_device honours RNNLAB_DEVICE, else picks cuda when available."""

from __future__ import annotations

import pytest
import torch

from rnnlab.device import default_device


def test_default_device_follows_cuda_availability(monkeypatch):
    monkeypatch.delenv("RNNLAB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert default_device().type == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")


def test_default_device_honours_rnnlab_device_cpu(monkeypatch):
    monkeypatch.setenv("RNNLAB_DEVICE", "CPU")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cpu")


def test_default_device_honours_rnnlab_device_cuda_with_index(monkeypatch):
    monkeypatch.setenv("RNNLAB_DEVICE", "cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda", 1)


def test_default_device_refuses_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setenv("RNNLAB_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="RNNLAB_DEVICE='cuda'"):
        default_device()


def test_default_device_rejects_unknown_names(monkeypatch):
    monkeypatch.setenv("RNNLAB_DEVICE", "tpu")
    with pytest.raises(ValueError, match=r"RNNLAB_DEVICE: expected one of .* got 'tpu'"):
        default_device()


def test_empty_rnnlab_device_means_unset(monkeypatch):
    monkeypatch.setenv("RNNLAB_DEVICE", "  ")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
