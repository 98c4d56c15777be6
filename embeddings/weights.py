"""Shared plumbing for locating model weights: offline detection, fail-fast errors, hashing."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

import torch

OFFLINE_ENV_VARS = ("AUTOTAG_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# A model config (open_clip_config.json, a detector's .json) with this key set to true is a
# demo model; the names it records on predictions start with DEMO_MODEL_PREFIX.
DEMO_CONFIG_KEY = "demo"
DEMO_MODEL_PREFIX = "demo:"
_TRUE = {"1", "true", "yes", "on"}


class WeightsUnavailableError(RuntimeError):
    """Weights that cannot be had here; the message says how to provide them."""


def offline_requested() -> bool:
    """True when the environment asks for no network access (``HF_HUB_OFFLINE=1`` etc.)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in OFFLINE_ENV_VARS)


def host_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds (DNS included)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    # getaddrinfo has no timeout of its own: run it in a thread we can stop waiting for
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def ensure_download_possible(host: str, what: str, how_to_provide: str) -> None:
    """Raise :class:`WeightsUnavailableError` at once when ``host`` cannot be used."""
    if offline_requested():
        reason = "offline mode is set (" + ", ".join(OFFLINE_ENV_VARS) + ")"
    elif not host_reachable(host):
        reason = f"{host} cannot be reached"
    else:
        return
    raise WeightsUnavailableError(
        f"cannot download {what}: {reason} and no cached copy was found. {how_to_provide}"
    )


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_dict_sha256(module: torch.nn.Module) -> str:
    """Hex SHA-256 of a module's parameters and buffers (names, dtypes, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{flat.dtype}:{tuple(flat.shape)}".encode())
        digest.update(flat.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
