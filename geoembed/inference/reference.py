"""Scoring a class map against a reference raster on the same grid, block by block.

:func:`reference_mapping` says which model class each reference value counts as;
:class:`Reference` reads the reference raster block by block as model class codes; the
confusion matrix and its report are :mod:`geoembed.metrics`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from rasterio.windows import Window

from geoembed.errors import InputError
from geoembed.io.labels import check_same_grid, value_key
from geoembed.io.scenes import Scene, open_scene
from geoembed.metrics import ConfusionAccumulator

#: reference value -> model class code (-1: not scored)
ValueToCode = Callable[[Any], int]


def _table_mapping(names: list[str], reference_map: Mapping[Any, Any]) -> tuple[ValueToCode, str]:
    """``{reference value: class code or class name}``; other values are not scored."""
    table: dict[str, int] = {}
    for k, v in reference_map.items():
        key = value_key(v)
        if key in names:
            code = names.index(key)
        else:
            try:
                code = int(key)
            except ValueError:
                code = -2
            if not 0 <= code < len(names):
                raise InputError(f"--reference-map: {v!r} is not a class of the model "
                                 f"(classes: {', '.join(names)}; or codes 0..{len(names)-1})")
        table[value_key(k)] = code
    return (lambda v: table.get(value_key(v), -1)), f"map {table}"


def _positive_mapping(positive: Sequence[Any]) -> tuple[ValueToCode, str]:
    pos = {value_key(p) for p in positive}
    return (lambda v: 1 if value_key(v) in pos else 0), f"positive {sorted(pos)}"


def reference_mapping(ckpt: Mapping[str, Any], *, reference_positive: Sequence[Any] | None = None,
                      reference_map: Mapping[Any, Any] | None = None) -> tuple[ValueToCode, str]:
    """A function reference value -> model class code (-1: not scored) and its description.

    * ``reference_map``: ``{reference value: class code or class name}``; other values are
      not scored.
    * ``reference_positive`` (binary models): these reference values are the positive class,
      every other valid value the negative one.
    * default: a one-vs-rest model's positive label values are positive, the rest negative;
      otherwise a reference value scores as the class whose label value it equals.
    """
    names = list(ckpt["class_names"])
    if reference_map is not None and reference_positive is not None:
        raise InputError("give either --reference-positive or --reference-map, not both")
    if reference_map is not None:
        return _table_mapping(names, reference_map)
    if reference_positive is not None:
        if len(names) != 2:
            raise InputError("--reference-positive is for binary models; this model has "
                             f"{len(names)} classes: use --reference-map")
        return _positive_mapping(reference_positive)
    if ckpt.get("positive"):
        return _positive_mapping(ckpt["positive"])
    values = [list(v) for v in ckpt.get("class_values") or [[n] for n in names]]
    table = {k: i for i, vals in enumerate(values) for k in vals}
    return (lambda v: table.get(value_key(v), -1)), f"label values {table}"


class Reference:
    """A reference raster on the scene's grid, read block by block and mapped to class codes.

    Raises:
        RasterError: the reference is not on the scene's grid.
    """

    def __init__(self, path: str | os.PathLike, scene: Scene, mapping: ValueToCode,
                 n_classes: int) -> None:
        self.scene = open_scene(path, bands=[1], allow_no_crs=scene.crs is None)
        check_same_grid(scene, self.scene, what="reference raster")
        self.mapping = mapping
        self.confusion = ConfusionAccumulator(n_classes)

    def codes(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(codes int64 (h, w) with -1 = not scored, valid reference pixels (h, w))``."""
        raw = self.scene.read(window)
        valid = self.scene.read_valid(window, data=raw)
        raw = raw[0]
        out = np.full(raw.shape, -1, dtype=np.int64)
        for u in np.unique(raw[valid]):
            out[(raw == u) & valid] = self.mapping(u)
        return out, valid

    def score(self, window: Window, classes: np.ndarray, mapped: np.ndarray) -> None:
        """Add a block of predicted ``classes`` (scored where ``mapped``) to the confusion."""
        truth, ref_valid = self.codes(window)
        scored = mapped & (truth >= 0)
        self.confusion.n_unmapped += int((mapped & ref_valid & (truth < 0)).sum())
        self.confusion.add(truth[scored], classes[scored].astype(np.int64))

    def close(self) -> None:
        self.scene.close()
