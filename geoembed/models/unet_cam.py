"""U-Nets for weak supervision (Wang et al. 2020): a CAM head for image-level labels, a
per-pixel head for single-pixel and dense labels.

Both wrap segmentation-models-pytorch's ``Unet`` (its encoder and decoder, no pretrained
weights). Tiles are reflect-padded to the encoder's output stride and the decoder output is
cropped back, so any tile size works (the paper's 50 x 50 included).

* ``label_type="image"`` (U-CAM): global average pooling of the **last decoder feature map**
  (over the tile's valid pixels) feeds one linear layer to ``n_out`` logits. The class
  activation map is the same linear layer applied at every pixel (a 1 x 1 convolution with
  the shared weights): a per-pixel logit map whose valid-pixel mean equals the image logit.
  smp's ``aux_params`` head sits on the deepest *encoder* map, which is why it is not used.
* ``label_type="pixel"`` / ``"dense"``: smp's segmentation head, one logit per pixel.

``n_out`` is 1 for a binary model (one class vs the rest) and K for K classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from geoembed.errors import CheckpointError, InputError, first_line

# The option defaults live in the torch-free config module that the CLI reads at start-up.
from geoembed.models.unet_options import DEFAULT_DEPTH, DEFAULT_ENCODER, LABEL_TYPES


def default_decoder_channels(depth: int, base: int = 16) -> tuple[int, ...]:
    """Decoder widths halving down to ``base``: depth 5 -> (256, 128, 64, 32, 16) (smp's)."""
    return tuple(base * 2 ** (depth - 1 - i) for i in range(depth))


def n_outputs(n_classes: int) -> int:
    """One logit for a binary model, K for K classes."""
    return 1 if n_classes == 2 else n_classes


class WeakUNet(nn.Module):
    """A U-Net with a CAM head (image labels) or a per-pixel head (pixel / dense labels).

    Args:
        in_channels: input bands.
        n_classes: number of classes (2 = binary, one output logit).
        label_type: ``"image"``, ``"pixel"`` or ``"dense"``.
        encoder: any segmentation-models-pytorch encoder name (no pretrained weights).
        encoder_depth: number of encoder stages (3 to 5).
        decoder_channels: one width per decoder stage (``len == encoder_depth``).
    """

    def __init__(self, in_channels: int, n_classes: int = 2, label_type: str = "pixel", *,
                 encoder: str = DEFAULT_ENCODER, encoder_depth: int = DEFAULT_DEPTH,
                 decoder_channels: Sequence[int] | None = None) -> None:
        super().__init__()
        # smp costs ~3 s and 0.85 GB at import: only building a model needs it, not the
        # modules (segmentation, checkpoints) that import this one.
        import segmentation_models_pytorch as smp

        if label_type not in LABEL_TYPES:
            raise InputError(f"unknown label type {label_type!r}; use one of "
                             f"{', '.join(LABEL_TYPES)}")
        if n_classes < 2:
            raise InputError("a segmenter needs at least two classes")
        if in_channels < 1:
            raise InputError("in_channels must be at least 1")
        decoder_channels = tuple(int(c) for c in (decoder_channels
                                                  or default_decoder_channels(encoder_depth)))
        if len(decoder_channels) != encoder_depth:
            raise InputError(f"give {encoder_depth} decoder channels (one per encoder stage), "
                             f"not {len(decoder_channels)}")
        self.label_type = label_type
        self.n_classes = n_classes
        self.n_out = n_outputs(n_classes)
        try:
            unet = smp.Unet(encoder_name=encoder, encoder_depth=encoder_depth,
                            encoder_weights=None, decoder_channels=decoder_channels,
                            in_channels=in_channels, classes=self.n_out)
        except KeyError:
            raise InputError(f"unknown encoder {encoder!r}; any segmentation-models-pytorch "
                             "encoder name works (e.g. resnet18, resnet34, efficientnet-b0)"
                             ) from None
        except (ValueError, AssertionError) as exc:
            raise InputError(f"cannot build a U-Net with encoder {encoder!r} and depth "
                             f"{encoder_depth} ({first_line(exc, 120)})") from None
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        _drop_unused_stages(self.encoder, encoder_depth)
        self.stride = int(self.encoder.output_stride)
        if label_type == "image":
            self.cam_head: nn.Module = nn.Linear(decoder_channels[-1], self.n_out)
        else:
            self.cam_head = unet.segmentation_head

    # -- shared trunk ---------------------------------------------------------------------------

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last decoder feature map ``(B, F, H, W)`` at the input's size (pad, run, crop)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        top, left = ph // 2, pw // 2
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (left, pw - left, top, ph - top), mode=mode)
        out = self.decoder(self.encoder(x))
        return out[..., top:top + h, left:left + w]

    # -- heads ----------------------------------------------------------------------------------

    def cam(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits from decoder features (the CAM for an image-level model)."""
        if self.label_type == "image":
            weight = self.cam_head.weight[:, :, None, None]
            return F.conv2d(feats, weight, self.cam_head.bias)
        return self.cam_head(feats)

    def pooled_logits(self, feats: torch.Tensor, valid: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """Image logits ``(B, n_out)``: linear layer on the (valid-pixel) average of features."""
        if self.label_type != "image":
            raise RuntimeError("pooled logits exist only for an image-level (CAM) model")
        if valid is None:
            pooled = feats.mean(dim=(2, 3))
        else:
            v = valid.to(feats.dtype).unsqueeze(1)
            pooled = (feats * v).sum(dim=(2, 3)) / v.sum(dim=(2, 3)).clamp_min(1.0)
        return self.cam_head(pooled)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None, *,
                image_logits: bool = False) -> torch.Tensor:
        """Per-pixel logits ``(B, n_out, H, W)``: the CAM (image model) or the pixel head.

        With ``image_logits=True`` (image models) the pooled image logits ``(B, n_out)``
        instead, averaged over ``valid`` pixels when given (training goes through
        ``forward`` so that DistributedDataParallel sees it).
        """
        feats = self.features(x)
        if image_logits:
            return self.pooled_logits(feats, valid)
        return self.cam(feats)


def _drop_unused_stages(encoder: nn.Module, depth: int) -> None:
    """Delete ResNet stages a shallow encoder never runs (smp keeps them).

    Smaller checkpoints, and no parameters without gradients (which DDP rejects).
    """
    for k in range(max(depth, 1), 5):
        if isinstance(getattr(encoder, f"layer{k}", None), nn.Module):
            delattr(encoder, f"layer{k}")


def weak_model_config(in_channels: int, n_classes: int, label_type: str, *,
                      encoder: str = DEFAULT_ENCODER, encoder_depth: int = DEFAULT_DEPTH,
                      decoder_channels: Sequence[int] | None = None) -> dict[str, Any]:
    """Plain-dict architecture config stored in ``weak`` checkpoints."""
    channels = tuple(decoder_channels or default_decoder_channels(encoder_depth))
    return {"in_channels": int(in_channels), "n_classes": int(n_classes),
            "label_type": label_type, "encoder": encoder, "encoder_depth": int(encoder_depth),
            "decoder_channels": [int(c) for c in channels]}


def build_weak_model(config: dict[str, Any]) -> WeakUNet:
    """Build a :class:`WeakUNet` from :func:`weak_model_config`'s dict."""
    return WeakUNet(config["in_channels"], config["n_classes"], config["label_type"],
                    encoder=config["encoder"], encoder_depth=config["encoder_depth"],
                    decoder_channels=config["decoder_channels"])


def weak_model_from_checkpoint(ckpt: dict[str, Any]) -> WeakUNet:
    """Rebuild a trained weak U-Net (eval mode) from a loaded ``weak`` checkpoint dict."""
    try:
        model = build_weak_model(dict(ckpt["model"]))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError, InputError) as exc:
        raise CheckpointError(f"the checkpoint's U-Net cannot be rebuilt ({type(exc).__name__}: "
                              f"{first_line(exc)})") from None
    return model.eval()
