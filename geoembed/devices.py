"""Choosing a compute device."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from geoembed.errors import DeviceError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu; an explicit device that is absent is an error.

    Raises:
        DeviceError: an explicit device that this machine does not have, or an unknown name.
    """
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but no CUDA GPU is available; "
                          "use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None
                              and torch.backends.mps.is_available()):
        raise DeviceError("--device mps was asked for but MPS is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}") from None


def autocast_context(device: torch.device, enabled: bool = True
                     ) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA (when enabled); a no-op context elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
