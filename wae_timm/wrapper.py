"""WAEWrapper: the WAE classification network around any supported timm CNN.

Data flow for an input ``x: [B, C, H, W]`` (``h = ceil(H/2)``, ``w = ceil(W/2)``)::

    x --WAE encoder--> I_L [B, 3, h, w] --BatchNorm--> low branch  (the backbone)       --> f_L [B, C_L, h', w']
                   \\-> I_H [B, 3, h, w] --BatchNorm--> high branch (backbone, widths / 4) --> f_H [B, C_H, h', w']
    s_L = head_low(f_L),  s_c = head_fusion(f_L, f_H),  logits = (s_L + s_c) / 2

The low branch is created by ``timm.create_model`` (so ``pretrained_backbone``
goes through timm's own weight loading); the high branch by
:func:`wae_timm.width_scaling.create_width_scaled`.

Heads come in two styles:

- pooled (default, timm style): each branch's own ``forward_head(...,
  pre_logits=True)`` (global pooling, plus ConvNeXt's norm or MobileNetV3's
  head conv) feeds linear classifiers.
- ``flatten_grid=g``: each map is max-pooled to ``g x g`` and flattened, as the
  reference WAE-VGG16 puts fc layers on pool5 (``g = 4``; identity at 224).

Both heads may have hidden layers (fc-ReLU-dropout), as the reference VGG's
1024-1024 (low) and 2048-2048 (fusion) heads do.
"""
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .autoencoder import WaveletLikeAutoEncoder, transform_loss
from .checks import MIN_INPUT_SIZE, check_image_batch
from .width_scaling import create_trunk, create_width_scaled, prepare_trunk

__all__ = ['WAEWrapper', 'WAEOutput', 'BranchClassifier']

# torch.fx leaves are per calling module: keep the input check a single graph call here
torch.fx.wrap('check_image_batch')

class WAEOutput(NamedTuple):
    """Everything the paper's losses need from one training forward."""
    logits: torch.Tensor  # (s_L + s_c) / 2, [B, num_classes]
    logits_low: torch.Tensor  # s_L
    logits_fusion: torch.Tensor  # s_c
    low: torch.Tensor  # I_L before its BatchNorm, [B, 3, h, w]
    high: torch.Tensor  # I_H before its BatchNorm
    reconstruction: Optional[torch.Tensor]  # I', [B, C, H, W]; None without a decoder


class BranchClassifier(nn.Module):
    """``[B, in_features] -> [B, num_classes]``: optional fc-ReLU-dropout layers, then dropout and fc."""

    def __init__(
            self,
            in_features: int,
            num_classes: int,
            hidden_sizes: Sequence[int] = (),
            hidden_drop_rate: float = 0.,
            drop_rate: float = 0.,
    ) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(hidden_drop_rate)]
            width = hidden
        self.hidden = nn.Sequential(*layers)
        self.num_features = width
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.hidden(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pre_logits(x))


def _head_input_size(trunk: nn.Module) -> int:
    return int(getattr(trunk, 'head_hidden_size', trunk.num_features))


class WAEWrapper(nn.Module):
    """The WAE classification network of Chen et al. (AAAI 2018) around a timm CNN.

    Args:
        backbone: timm model name of the standard network (resnet50, vgg16, convnext_tiny, ...).
        num_classes: classes of both classifiers (0 gives pre-logit features).
        in_chans: channels of the input image (the WAE's input; I_L and I_H stay 3-channel).
        width_divisor: the high branch's widths are the backbone's divided by this (4 in the paper).
        global_pool: pooling of the branches' pooled heads (timm names: 'avg', 'max', ...).
        flatten_grid: if > 0, heads see each map max-pooled to this grid and flattened
            (the reference VGG16 head on pool5) instead of the branches' pooled features.
        low_hidden: hidden fc widths of the low classifier (reference VGG16: (1024, 1024)).
        fusion_hidden: hidden fc widths of the fusion classifier (reference VGG16: (2048, 2048)).
        hidden_drop_rate: dropout after each hidden fc.
        drop_rate: dropout before each final fc (timm's ``--drop``).
        drop_path_rate: stochastic depth of both branches where the backbone supports it.
        pretrained_backbone: initialise the low branch from the backbone's timm weights.
        with_decoder: keep the WAE decoder (needed for the transform loss; not for inference).
        energy_weight: lambda of the transform loss.
        backbone_kwargs: extra arguments for both branches' timm constructors.
    """

    def __init__(
            self,
            backbone: str = 'resnet50',
            num_classes: int = 1000,
            in_chans: int = 3,
            width_divisor: int = 4,
            global_pool: str = 'avg',
            flatten_grid: int = 0,
            low_hidden: Sequence[int] = (),
            fusion_hidden: Sequence[int] = (),
            hidden_drop_rate: float = 0.,
            drop_rate: float = 0.,
            drop_path_rate: Optional[float] = None,
            pretrained_backbone: bool = False,
            with_decoder: bool = True,
            energy_weight: float = 1.0,
            backbone_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.min_input_size = MIN_INPUT_SIZE
        self.width_divisor = width_divisor
        self.flatten_grid = flatten_grid
        self.energy_weight = energy_weight
        self.global_pool = global_pool
        self.grad_checkpointing = False
        if global_pool == '' and num_classes > 0:
            raise ValueError("global_pool='' returns unpooled feature maps and needs num_classes=0, "
                             f'got num_classes={num_classes}')

        self.wae = WaveletLikeAutoEncoder(in_chans=in_chans, with_decoder=with_decoder)
        band_chans = self.wae.band_chans
        self.low_norm = nn.BatchNorm2d(band_chans)
        self.high_norm = nn.BatchNorm2d(band_chans)

        branch_kwargs = dict(backbone_kwargs or {}, in_chans=band_chans)
        if drop_path_rate is not None:
            branch_kwargs['drop_path_rate'] = drop_path_rate
        # global_pool='' only switches the wrapper's output to maps; the
        # branches keep a pooling so the heads stay valid after a reset
        branch_pool = global_pool or 'avg'
        self.low = create_trunk(backbone, pretrained=pretrained_backbone, global_pool=branch_pool, **branch_kwargs)
        self.high = prepare_trunk(
            create_width_scaled(backbone, width_divisor, num_classes=0, **branch_kwargs), branch_pool)
        self.low_channels = int(self.low.num_features)
        self.high_channels = int(self.high.num_features)
        self.num_features = self.low_channels + self.high_channels

        self._head_args = dict(
            low_hidden=tuple(low_hidden), fusion_hidden=tuple(fusion_hidden),
            hidden_drop_rate=hidden_drop_rate, drop_rate=drop_rate)
        self._build_heads(num_classes)

        # multi-scale features (features_only) are those of the low branch, at
        # twice its reductions because the branch sees a half-resolution image
        self.feature_info = [
            dict(info, reduction=info['reduction'] * 2, module=f"low.{info['module']}")
            for info in self.low.feature_info
        ]

    # ----------------------------------------------------------------- timm API
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Layer groups for layer-wise LR decay: the WAE and norms form the stem,
        then each backbone group holds the same layers of both branches."""
        inner = self.low.group_matcher(coarse=coarse)

        def both_branches(pattern: str) -> str:
            alternatives = '|'.join(p.lstrip('^') for p in pattern.split('|'))
            return rf'^(?:low|high)\.(?:{alternatives})'

        matcher: Dict[str, Any] = {}
        for key, value in inner.items():
            if isinstance(value, str):
                matcher[key] = both_branches(value)
            else:
                matcher[key] = [(both_branches(p), *rest) for p, *rest in value]
        matcher['stem'] = rf'^wae\.|^low_norm|^high_norm|{matcher["stem"]}'
        return matcher

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each branch in backward instead of storing its activations."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        names = set()
        for prefix, trunk in (('low.', self.low), ('high.', self.high)):
            if hasattr(trunk, 'no_weight_decay'):
                names |= {prefix + n for n in trunk.no_weight_decay()}
        return names

    @torch.jit.ignore
    def get_classifier(self) -> Tuple[nn.Module, nn.Module]:
        return self.head_low.fc, self.head_fusion.fc

    def _build_heads(self, num_classes: int) -> None:
        if self.flatten_grid > 0:
            low_in = self.low_channels * self.flatten_grid ** 2
            high_in = self.high_channels * self.flatten_grid ** 2
        else:
            low_in, high_in = _head_input_size(self.low), _head_input_size(self.high)
        args = self._head_args
        common = dict(hidden_drop_rate=args['hidden_drop_rate'], drop_rate=args['drop_rate'])
        self.head_low = BranchClassifier(low_in, num_classes, args['low_hidden'], **common)
        self.head_fusion = BranchClassifier(low_in + high_in, num_classes, args['fusion_hidden'], **common)
        self.head_hidden_size = self.head_low.num_features + self.head_fusion.num_features

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """New final classifiers. ``global_pool=''`` (with ``num_classes=0``) makes ``forward``
        return the unpooled maps; another pool type re-pools both branches and rebuilds the heads."""
        if global_pool == '' and num_classes > 0:
            raise ValueError(f"global_pool='' needs num_classes=0, got num_classes={num_classes}")
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        if global_pool and self.flatten_grid == 0:
            for trunk in (self.low, self.high):
                trunk.reset_classifier(0, global_pool)
            self._build_heads(num_classes)
        else:
            self.head_low.reset(num_classes)
            self.head_fusion.reset(num_classes)

    # ----------------------------------------------------------------- forward paths
    def forward_decomposition(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(I_L, I_H)`` as the WAE produces them, before the classifier's BatchNorms."""
        x = check_image_batch(x, self.in_chans, self.min_input_size)
        return self.wae.encode(x)

    def _forward_branches(self, low: torch.Tensor, high: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        low, high = self.low_norm(low), self.high_norm(high)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return (checkpoint(self.low.forward_features, low, use_reentrant=False),
                    checkpoint(self.high.forward_features, high, use_reentrant=False))
        return self.low.forward_features(low), self.high.forward_features(high)

    def _head_inputs(self, f_low: torch.Tensor, f_high: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.flatten_grid > 0:
            p_low = F.adaptive_max_pool2d(f_low, self.flatten_grid).flatten(1)
            p_high = F.adaptive_max_pool2d(f_high, self.flatten_grid).flatten(1)
        else:
            p_low = self.low.forward_head(f_low, pre_logits=True)
            p_high = self.high.forward_head(f_high, pre_logits=True)
        return p_low, torch.cat([p_low, p_high], dim=1)

    def _scores(self, f_low: torch.Tensor, f_high: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        low_in, fusion_in = self._head_inputs(f_low, f_high)
        return self.head_low(low_in), self.head_fusion(fusion_in)

    def _classify(self, f_low: torch.Tensor, f_high: torch.Tensor, pre_logits: bool) -> torch.Tensor:
        low_in, fusion_in = self._head_inputs(f_low, f_high)
        if pre_logits:
            return torch.cat([self.head_low.pre_logits(low_in), self.head_fusion.pre_logits(fusion_in)], dim=1)
        return (self.head_low(low_in) + self.head_fusion(fusion_in)) / 2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C_L + C_H, h', w']``: both branches' last maps, concatenated."""
        low, high = self.forward_decomposition(x)
        f_low, f_high = self._forward_branches(low, high)
        return torch.cat([f_low, f_high], dim=1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, C_L + C_H, h', w'] -> [B, num_classes]``; ``[B, head_hidden_size]`` with
        ``pre_logits`` or ``num_classes=0``: the inputs of both final fc layers, concatenated."""
        f_low, f_high = x[:, :self.low_channels], x[:, self.low_channels:]
        return self._classify(f_low, f_high, pre_logits or self.num_classes == 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, num_classes]``, the averaged score ``(s_L + s_c) / 2``."""
        low, high = self.forward_decomposition(x)
        f_low, f_high = self._forward_branches(low, high)
        if self.global_pool == '':
            return torch.cat([f_low, f_high], dim=1)
        # the branch maps go straight to the heads: no concatenated copy
        return self._classify(f_low, f_high, self.num_classes == 0)

    @torch.jit.ignore
    def forward_train(self, x: torch.Tensor) -> WAEOutput:
        """One forward returning scores, decomposition and reconstruction (see :class:`WAEOutput`)."""
        low, high = self.forward_decomposition(x)
        s_low, s_fusion = self._scores(*self._forward_branches(low, high))
        reconstruction = None
        if self.wae.has_decoder:
            reconstruction = self.wae.decode(low, high, x.shape[-2], x.shape[-1])
        return WAEOutput((s_low + s_fusion) / 2, s_low, s_fusion, low, high, reconstruction)

    @torch.jit.ignore
    def transform_loss(self, x: torch.Tensor, output: WAEOutput) -> torch.Tensor:
        """The paper's ``L_t`` for a batch and its :meth:`forward_train` output."""
        if output.reconstruction is None:
            raise RuntimeError('the transform loss needs the decoder: build the model with with_decoder=True')
        return transform_loss(x, output.reconstruction, output.high, self.energy_weight)

    # ----------------------------------------------------------------- features_only
    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Multi-scale feature maps of the low branch (run on I_L), as timm's models return them."""
        low, high = self.forward_decomposition(x)
        low = self.low_norm(low)
        if intermediates_only:
            return self.low.forward_intermediates(
                low, indices=indices, norm=norm, stop_early=stop_early, output_fmt=output_fmt,
                intermediates_only=True)
        f_low, intermediates = self.low.forward_intermediates(
            low, indices=indices, norm=norm, stop_early=stop_early, output_fmt=output_fmt)
        f_high = self.high.forward_features(self.high_norm(high))
        return torch.cat([f_low, f_high], dim=1), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop what a features-only model never runs (later low stages, the high branch, the heads)."""
        take_indices = self.low.prune_intermediate_layers(indices, prune_norm=prune_norm, prune_head=prune_head)
        if prune_head:
            self.high = nn.Identity()
            self.head_low = nn.Identity()
            self.head_fusion = nn.Identity()
        return take_indices
