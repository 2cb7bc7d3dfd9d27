"""Encoders initialised from a local weights file (transfer from pretrained weights).

A weights file is read with ``torch.load(weights_only=True)`` only (a file that needs
unpickling arbitrary objects is refused), and may be:

* a state dict of the whole geoembed model (e.g. a geoembed checkpoint): loaded as it is;
* for a segmentation-models-pytorch encoder, a backbone state dict: a torchvision / timm
  ``state_dict()`` (ImageNet ResNets...), or a TorchGeo / Lightning checkpoint whose
  ``state_dict`` keys carry a prefix (``backbone.``, ``model.``, ``encoder.``, see
  :data:`PREFIXES`; the prefix under which most of the encoder's keys are found is
  stripped and keys under other prefixes, such as a MoCo projection head, are ignored).
  A classifier head (``fc.*``, see :data:`HEADS`) is dropped; any other unexpected or
  missing key is a :class:`~geoembed.errors.CheckpointError`. The projection to ``z_dim``
  (when there is one) keeps its random initialisation.

The first convolution is adapted to the scene's bands (:func:`adapt_first_conv`): a scene
band whose name matches one of the weights' input bands gets that band's filters; every
other band gets the mean of the pretrained filters over their input bands times
``P / C`` (``P`` pretrained bands, ``C`` scene bands), the scale of timm's
``adapt_input_conv``, so that a band-averaged input keeps the activation's magnitude.
The weights' band names are ``red, green, blue`` for 3-band weights (ImageNet), Sentinel-2
L1C's 13 bands (:data:`SENTINEL2`, the SSL4EO-S12 order) for 13-band weights, or given
(``weights_bands``). When no scene band name matches, the scene's bands are taken to be the
weights' bands in order (the first three bands are RGB for ImageNet weights).
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from geoembed.errors import CheckpointError, InputError, first_line

#: Key prefixes stripped from a checkpoint's state dict ("" first: a plain state dict).
PREFIXES = ("", "backbone.", "model.", "encoder.", "model.encoder.", "model.backbone.",
            "module.", "module.encoder_q.", "encoder_q.", "net.")
#: Classifier heads dropped from a backbone state dict (keys the encoder does not have).
HEADS = ("fc.", "_fc.", "classifier.", "head.")
RGB = ("red", "green", "blue")
#: Sentinel-2 L1C bands in the order of the SSL4EO-S12 / TorchGeo ``SENTINEL2_ALL`` weights.
SENTINEL2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
             "B11", "B12")
#: Sentinel-2 bands by their STAC ``eo:common_name`` (the unique ones), for scenes whose
#: bands are named red, nir... rather than B04, B08...
SENTINEL2_COMMON = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04",
                    "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10",
                    "swir16": "B11", "swir22": "B12"}
_NAMED = {"rgb": RGB, "s2": SENTINEL2, "sentinel2": SENTINEL2}
_ALIASES = {"r": "red", "g": "green", "b": "blue"}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (its ``state_dict`` or ``model`` entry if it has one).

    Raises:
        CheckpointError: no such file, a file needing pickled objects, an unreadable file,
            or no tensors in it.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such weights file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc).lower()  # "unsupported global": a pickled object; else not a pickle
        if "unsupported global" not in text and "unsupported class" not in text:
            raise CheckpointError(f"{path}: not a readable weights file (not written by "
                                  "torch.save)") from None
        raise CheckpointError(f"{path}: refused to load: it holds pickled Python objects "
                              "(geoembed loads weights with weights_only=True); save a plain "
                              "state dict with torch.save(model.state_dict(), FILE)") from None
    except Exception as exc:  # zip errors, truncated files, EOF...
        raise CheckpointError(f"{path}: not a readable weights file ({type(exc).__name__}: "
                              f"{first_line(exc, 120)})") from None
    if isinstance(data, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    state = ({str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
             if isinstance(data, Mapping) else {})
    if not state:
        raise CheckpointError(f"{path}: no weights (tensors) in the file")
    return state


def strip_prefix(state: Mapping[str, torch.Tensor], target: Sequence[str]
                 ) -> dict[str, torch.Tensor]:
    """The keys under the :data:`PREFIXES` entry that finds most ``target`` keys, stripped."""
    wanted = set(target)

    def found(prefix: str) -> int:
        return sum(k.startswith(prefix) and k[len(prefix):] in wanted for k in state)

    prefix = max(PREFIXES, key=found)  # ties: the first (the plain state dict)
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def weights_band_names(spec: str | Sequence[str] | None, n: int) -> tuple[str, ...] | None:
    """The weights' input band names: ``spec`` (``rgb``, ``s2`` or names), else by count.

    Returns None (unknown: bands are matched in order) for ``spec=None`` and ``n`` other
    than 3 (RGB) or 13 (Sentinel-2 L1C).

    Raises:
        InputError: ``spec`` names a different number of bands than the weights have.
    """
    if spec is None:
        return {3: RGB, 13: SENTINEL2}.get(n)
    if isinstance(spec, str):
        names = _NAMED.get(spec.strip().lower()) or tuple(
            s.strip() for s in spec.split(",") if s.strip())
    else:
        names = tuple(str(s) for s in spec)
    if len(names) != n:
        raise InputError(f"--weights-bands names {len(names)} bands but the weights' first "
                         f"convolution has {n} input bands")
    return tuple(names)


def _norm(name: str | None) -> str | None:
    """A band name for matching: lower case; r/g/b -> red/green/blue; b4, B04 -> b04."""
    if not name:
        return None
    name = name.strip().lower()
    m = re.fullmatch(r"b0*(\d{1,2})(a?)", name)
    if m:
        return f"b{int(m.group(1)):02d}{m.group(2)}"
    return _ALIASES.get(name, name)


def band_mapping(scene_bands: Sequence[str | None], weight_bands: Sequence[str] | None,
                 n_weights: int) -> list[int | None]:
    """For each scene band, the index of the weights' band it takes, or None (mean filter).

    Bands are matched by name (case-insensitive; ``R``/``red``, ``B4``/``B04``; with
    Sentinel-2 weights also the common names ``red``, ``nir``, ``swir16``...); when no
    name matches, scene band ``i`` takes weights band ``i`` for ``i < n_weights``.
    """
    if weight_bands is not None:
        index = {_norm(n): i for i, n in enumerate(weight_bands)}
        if tuple(weight_bands) == SENTINEL2:  # a scene's red / nir take B04 / B08
            index.update({name: index[_norm(b)] for name, b in SENTINEL2_COMMON.items()})
        by_name = [index.get(_norm(n)) for n in scene_bands]
        if any(i is not None for i in by_name):
            return by_name
    return [i if i < n_weights else None for i in range(len(scene_bands))]


def adapt_first_conv(weight: torch.Tensor, mapping: Sequence[int | None]) -> torch.Tensor:
    """A first-convolution weight ``(O, C, k, k)`` from pretrained ``(O, P, k, k)`` filters.

    Band ``c`` copies pretrained band ``mapping[c]``; a band mapped to None gets the mean
    pretrained filter times ``P / C`` (timm's ``adapt_input_conv`` scale).
    """
    p, c = weight.shape[1], len(mapping)
    fill = weight.mean(dim=1) * (p / c)
    return torch.stack([weight[:, i] if i is not None else fill for i in mapping], dim=1)


def _few(keys: Sequence[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def first_conv_key(module: nn.Module) -> str:
    """The state-dict key of ``module``'s first ``Conv2d`` weight."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Conv2d):
            return f"{name}.weight"
    raise InputError("this encoder has no convolution to adapt to the scene's bands")


def load_backbone(encoder: nn.Module, state: Mapping[str, torch.Tensor], path: str,
                  band_names: Sequence[str | None], weights_bands: str | Sequence[str] | None
                  = None) -> list[str | None]:
    """Load a backbone state dict into ``encoder``, its first convolution adapted.

    Args:
        encoder: the segmentation-models-pytorch encoder (its first convolution takes
            ``len(band_names)`` bands).
        state: the file's tensors (:func:`read_state_dict`).
        path: the file, for messages.
        band_names: the scene's band names (descriptions; None where unnamed).
        weights_bands: the weights' band names (see :func:`weights_band_names`).

    Returns:
        For each scene band, the weights' band it was initialised from (its name, or
        ``"#i"`` when the weights' bands are unnamed), or None for the mean filter.

    Raises:
        CheckpointError: missing or unexpected keys (a classifier head excepted), shapes
            that do not fit.
    """
    target = encoder.state_dict()
    state = strip_prefix(state, list(target))
    unexpected = [k for k in state if k not in target and not k.startswith(HEADS)]
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        parts = ([f"missing {_few(missing)}"] if missing else []) + (
            [f"unexpected {_few(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"{path}: the weights do not fit this encoder ({'; '.join(parts)})")
    conv = first_conv_key(encoder)
    merged = dict(target)
    merged.update({k: v for k, v in state.items() if k in target})
    w, want = merged[conv], target[conv].shape
    if w.ndim != 4 or w.shape[0] != want[0] or w.shape[2:] != want[2:]:
        raise CheckpointError(f"{path}: {conv} has shape {tuple(w.shape)}, this encoder's "
                              f"first convolution needs {tuple(want)} (another architecture?)")
    names = weights_band_names(weights_bands, w.shape[1])
    mapping = band_mapping(band_names, names, w.shape[1])
    merged[conv] = adapt_first_conv(w.float(), mapping).to(w.dtype)
    wrong = [k for k in target if merged[k].shape != target[k].shape]
    if wrong:
        raise CheckpointError(f"{path}: the weights do not fit this encoder (shapes differ: "
                              f"{_few(wrong)})")
    encoder.load_state_dict(merged)
    return [None if i is None else (names[i] if names else f"#{i + 1}") for i in mapping]


def load_weights(model: nn.Module, path: str | os.PathLike,
                 band_names: Sequence[str | None] | None = None,
                 weights_bands: str | Sequence[str] | None = None) -> list[str | None] | None:
    """Initialise ``model`` from a local weights file (see the module docstring).

    A state dict of the whole model is loaded as it is (returns None); otherwise, for a
    model with an smp ``encoder``, the file is a backbone's (:func:`load_backbone`; returns
    its band mapping). ``band_names``: the scene's band names (default: unnamed).

    Raises:
        CheckpointError: the file is refused or does not fit.
    """
    path = str(path)
    state = read_state_dict(path)
    full = model.state_dict()
    whole = strip_prefix(state, list(full))
    if set(full) <= set(whole):
        try:
            model.load_state_dict({k: whole[k] for k in full})
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: the weights do not fit this model "
                                  f"({first_line(exc)})") from None
        return None
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        missing = [k for k in full if k not in whole]
        raise CheckpointError(f"{path}: the weights do not fit this model (missing "
                              f"{_few(missing)})")
    conv = first_conv_key(encoder)
    n_bands = encoder.state_dict()[conv].shape[1]
    names = list(band_names) if band_names is not None else [None] * n_bands
    if len(names) != n_bands:
        raise InputError(f"{len(names)} band names for an encoder of {n_bands} bands")
    return load_backbone(encoder, state, path, names, weights_bands)
