"""The WAE model family: :class:`WAEWrapper` around any supported timm CNN, its cfgs and its timm entrypoints.

One family file, as timm's own model files are (the class, ``default_cfgs`` and
the ``@register_model`` functions together), hence its length.

Data flow for an input ``x: [B, C, H, W]`` (``h = ceil(H/2)``, ``w = ceil(W/2)``)::

    x --WAE encoder--> I_L [B, 3, h, w] --BatchNorm--> low branch  (the backbone)       --> f_L [B, C_L, h', w']
                   \\-> I_H [B, 3, h, w] --BatchNorm--> high branch (backbone, widths / 4) --> f_H [B, C_H, h', w']
    s_L = head_low(f_L),  s_c = head_fusion(f_L, f_H),  logits = (s_L + s_c) / 2

The low branch is created by ``timm.create_model`` (so ``pretrained_backbone``
goes through timm's own weight loading); the high branch by
:func:`wae_timm.layers.width_scaling.create_width_scaled`.

Heads come in two styles:

- pooled (default, timm style): each branch's own ``forward_head(...,
  pre_logits=True)`` (global pooling, plus ConvNeXt's norm or MobileNetV3's
  head conv) feeds linear classifiers.
- ``flatten_grid=g``: each map is max-pooled to ``g x g`` and flattened, as the
  reference WAE-VGG16 puts fc layers on pool5 (``g = 4``; identity at 224).

Both heads may have hidden layers (fc-ReLU-dropout), as the reference VGG's
1024-1024 (low) and 2048-2048 (fusion) heads do.
"""
from typing import Any, Dict, Final, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

import torch
import torch.fx
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch.utils.checkpoint import checkpoint

from ..layers.autoencoder import PADDING_MODES, load_wae_weights, transform_loss, weights_padding_mode
from ..layers.auxiliary_loss import attach_auxiliary_loss
from ..layers.checks import MIN_INPUT_SIZE, check_image_batch
from ..layers.decomposition import DECOMPOSITIONS, create_decomposition
from ..layers.bn_folding import fold_batchnorms
from ..layers.heads import BranchClassifier, grid_max_pool, head_input_size
from ..layers.width_scaling import create_trunk, create_width_scaled, default_out_indices, family_of, prepare_trunk
from .pretrained import PretrainedTag, build_tags, checkpoint_filter, explain_load_errors, prepare_pretrained, \
    pretrained_cfgs

__all__ = [
    'WAEWrapper', 'WAEOutput', 'BranchClassifier', 'WAE_MODEL_ARGS', 'wrapper_cfg', 'build_wrapper',
    'PRETRAINED_TAGS', 'published_tags',
]

# torch.fx leaves are per calling module: keep the input check and the shape-dependent pooling
# single graph calls here
torch.fx.wrap('check_image_batch')
torch.fx.wrap('grid_max_pool')

class WAEOutput(NamedTuple):
    """Everything the paper's losses need from one training forward."""
    logits: torch.Tensor  # (s_L + s_c) / 2, [B, num_classes]
    logits_low: torch.Tensor  # s_L
    logits_fusion: Optional[torch.Tensor]  # s_c; None without a fusion branch
    low: torch.Tensor  # I_L before its BatchNorm, [B, 3, h, w]
    high: torch.Tensor  # I_H before its BatchNorm (no channels for the 'resize' front end)
    reconstruction: Optional[torch.Tensor]  # I', [B, C, H, W]; None without a decoder


# global_pool of a flatten_grid model: each map max-pooled to the grid (the reference VGG head)
GRID_POOL = 'grid'
# families whose timm constructors take output_stride (through dilation)
OUTPUT_STRIDE_FAMILIES = ('resnet', 'convnext', 'efficientnet', 'regnet')


def _check_output_stride(backbone: str, output_stride: int) -> None:
    family = family_of(backbone)
    if family not in OUTPUT_STRIDE_FAMILIES:
        raise ValueError(f'output_stride={output_stride}: {backbone} ({family} family) has a fixed stride; '
                         f'output_stride is supported for the families {OUTPUT_STRIDE_FAMILIES}')
    if output_stride not in (16, 32, 64):
        raise ValueError(f'output_stride={output_stride}: expected 16, 32 or 64 (the branches run at half '
                         'resolution with a stride of 8, 16 or 32)')


def _check_wrapper_args(**args: Any) -> None:
    """Refuse flag values and combinations that are invalid or would be silently ignored."""
    def refuse(why: str) -> None:
        raise ValueError(f'WAEWrapper: {why}')

    if args['num_classes'] < 0:
        refuse(f"num_classes={args['num_classes']}: expected 0 (pre-logit features) or a positive count")
    if args['in_chans'] < 1:
        refuse(f"in_chans={args['in_chans']}: expected a positive channel count")
    if args['width_divisor'] < 1:
        refuse(f"width_divisor={args['width_divisor']}: expected a positive integer")
    for name in ('drop_rate', 'hidden_drop_rate'):
        if not 0 <= args[name] < 1:
            refuse(f'{name}={args[name]}: expected a probability in [0, 1)')
    for name in ('energy_weight', 'aux_loss_weight'):
        if args[name] < 0:
            refuse(f'{name}={args[name]}: expected a weight >= 0')
    if args['flatten_grid'] < 0:
        refuse(f"flatten_grid={args['flatten_grid']}: expected 0 (pooled heads) or a grid size > 0")
    pool = args['global_pool']
    if args['flatten_grid'] > 0 and pool not in ('', GRID_POOL):
        refuse(f"global_pool={pool!r} with flatten_grid={args['flatten_grid']}: the heads see each map max-pooled "
               f"to the grid; expected global_pool={GRID_POOL!r} (the default) or '' (unpooled maps)")
    if args['flatten_grid'] == 0 and pool == GRID_POOL:
        refuse(f"global_pool={GRID_POOL!r} needs flatten_grid > 0")
    if pool == '' and args['num_classes'] > 0:
        refuse(f"global_pool='' returns unpooled feature maps and needs num_classes=0, "
               f"got num_classes={args['num_classes']}")
    if args['hidden_drop_rate'] > 0 and not (args['low_hidden'] or args['fusion_hidden']):
        refuse(f"hidden_drop_rate={args['hidden_drop_rate']} without hidden layers (low_hidden, fusion_hidden)")
    if not args['fusion'] and args['fusion_hidden']:
        refuse(f"fusion_hidden={tuple(args['fusion_hidden'])} with fusion=False: there is no fusion head")
    decomposition = args['decomposition']
    if decomposition not in DECOMPOSITIONS:
        refuse(f'decomposition={decomposition!r}: expected one of {DECOMPOSITIONS}')
    if decomposition == 'resize' and args['fusion']:
        refuse("decomposition='resize' has no high band for a fusion branch: use fusion=False")
    if decomposition != 'wae':
        for name in ('wae_weights', 'wae_padding', 'freeze_wae', 'with_decoder', 'aux_loss_weight'):
            if args[name]:
                refuse(f'{name}={args[name]!r} needs decomposition="wae"; the fixed {decomposition!r} '
                       'front end has no weights, decoder or transform loss')
    if args['wae_padding'] is not None and args['wae_padding'] not in PADDING_MODES:
        refuse(f"wae_padding={args['wae_padding']!r}: expected one of {PADDING_MODES}, or None (that of wae_weights)")
    if args['aux_loss_weight'] > 0 and not args['with_decoder']:
        refuse(f"aux_loss_weight={args['aux_loss_weight']} needs the WAE decoder (the transform loss "
               'reconstructs the image): drop with_decoder=False')
    if args['aux_loss_weight'] > 0 and args['freeze_wae']:
        refuse(f"aux_loss_weight={args['aux_loss_weight']} with freeze_wae=True: the transform loss trains "
               'only the WAE, which is frozen (stage 3 unfreezes it)')


class WAEWrapper(nn.Module):
    """The WAE classification network of Chen et al. (AAAI 2018) around a timm CNN.

    Args:
        backbone: timm model name of the standard network (resnet50, vgg16, convnext_tiny, ...).
        num_classes: classes of both classifiers (0 gives pre-logit features).
        in_chans: channels of the input image (the WAE's input; I_L and I_H stay 3-channel).
        width_divisor: the high branch's widths are the backbone's divided by this (4 in the paper).
        global_pool: pooling of the branches' pooled heads (timm names: 'avg', 'max', ...; default
            'avg'), or '' for unpooled maps (with ``num_classes=0``). With ``flatten_grid`` only
            'grid' (the default) and '' are valid.
        flatten_grid: if > 0, heads see each map max-pooled to this grid and flattened
            (the reference VGG16 head on pool5) instead of the branches' pooled features.
        low_hidden: hidden fc widths of the low classifier (reference VGG16: (1024, 1024)).
        fusion_hidden: hidden fc widths of the fusion classifier (reference VGG16: (2048, 2048)).
        hidden_drop_rate: dropout after each hidden fc.
        drop_rate: dropout before each final fc (timm's ``--drop``).
        drop_path_rate: stochastic depth of both branches where the backbone supports it.
        output_stride: reduction of the final maps relative to the input (16, 32 or 64; default 64,
            the branches' 32 at half resolution), by dilation, for the families in
            :data:`OUTPUT_STRIDE_FAMILIES`.
        pretrained_backbone: initialise the low branch from the backbone's timm weights.
        with_decoder: build the WAE decoder. Default: only when ``aux_loss_weight > 0``, the one
            loss of a plain ``forward`` that trains it; ``True`` for trainers that compute the
            transform loss themselves (:meth:`forward_train`). A checkpoint with or without
            decoder loads into either form (see :mod:`wae_timm.layers.autoencoder`).
        energy_weight: lambda of the transform loss.
        backbone_kwargs: extra arguments for both branches' timm constructors.
        decomposition: the front end, 'wae' (learned), 'wavelet' (CDF 9/7) or 'resize'
            (see :mod:`wae_timm.layers.decomposition`); the last two are the paper's baselines.
        fusion: build the high branch and fusion head; without it the model is the
            paper's "I_L only" (or, with 'resize', "I_R") baseline and logits are s_L.
        wae_weights: a stage-1 WAE checkpoint to start from: a ``.safetensors`` path, or
            the name of weights shipped with the package (see :func:`load_wae_weights`).
        wae_padding: how the WAE's layers pad, ``'zeros'`` (the paper) or ``'reflect'``; default
            (``None``): the padding ``wae_weights`` were trained with, else ``'zeros'``. Given
            together with ``wae_weights``, the two must agree.
        freeze_wae: keep the WAE fixed (the paper's stage 2).
        aux_loss_weight: gamma of stage 3; when > 0, a training-mode ``forward`` adds the
            gradient of ``gamma * L_t`` to whatever loss the training script computes
            (see :mod:`wae_timm.layers.auxiliary_loss`).
        device, dtype: where and in which type the parameters are created (``'meta'`` included).

    Every flag is checked before anything is built: an invalid value, or a combination in
    which a flag would have no effect, raises ``ValueError`` naming it.
    """

    fusion: Final[bool]
    shared_pre_logits: Final[bool]

    def __init__(
            self,
            backbone: str = 'resnet50',
            num_classes: int = 1000,
            in_chans: int = 3,
            width_divisor: int = 4,
            global_pool: Optional[str] = None,
            flatten_grid: int = 0,
            low_hidden: Sequence[int] = (),
            fusion_hidden: Sequence[int] = (),
            hidden_drop_rate: float = 0.,
            drop_rate: float = 0.,
            drop_path_rate: Optional[float] = None,
            output_stride: Optional[int] = None,
            pretrained_backbone: bool = False,
            with_decoder: Optional[bool] = None,
            energy_weight: float = 1.0,
            backbone_kwargs: Optional[Dict[str, Any]] = None,
            decomposition: str = 'wae',
            fusion: bool = True,
            wae_weights: Optional[str] = None,
            wae_padding: Optional[str] = None,
            freeze_wae: bool = False,
            aux_loss_weight: float = 0.,
            device: Optional[Union[str, torch.device]] = None,
            dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        if global_pool is None:
            global_pool = GRID_POOL if flatten_grid > 0 else 'avg'
        if with_decoder is None:
            with_decoder = aux_loss_weight > 0
        _check_wrapper_args(
            num_classes=num_classes, in_chans=in_chans, width_divisor=width_divisor, global_pool=global_pool,
            flatten_grid=flatten_grid, fusion_hidden=fusion_hidden, low_hidden=low_hidden,
            hidden_drop_rate=hidden_drop_rate, drop_rate=drop_rate, output_stride=output_stride,
            with_decoder=with_decoder, energy_weight=energy_weight, decomposition=decomposition, fusion=fusion,
            wae_weights=wae_weights, wae_padding=wae_padding, freeze_wae=freeze_wae, aux_loss_weight=aux_loss_weight)
        dd = dict(device=device, dtype=dtype)
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.min_input_size = MIN_INPUT_SIZE
        self.width_divisor = width_divisor
        self.flatten_grid = flatten_grid
        self.energy_weight = energy_weight
        self.aux_loss_weight = aux_loss_weight
        self.fusion = fusion
        self.shared_pre_logits = fusion and not low_hidden and not fusion_hidden
        self.last_transform_loss: Optional[torch.Tensor] = None  # for logging in training scripts
        self.global_pool = global_pool
        self.grad_checkpointing = False
        self.inference_only = False  # set by fuse_for_inference
        # run the high branch in a TorchScript fork, beside the low branch (prepare_for_inference sets it)
        self.concurrent_branches = False

        self.decomposition = decomposition
        # the decoder only where the transform loss trains it, I_H only where something reads it:
        # every parameter gets a gradient from the classification loss (DDP needs it)
        if wae_padding is None:
            wae_padding = weights_padding_mode(wae_weights) if wae_weights else 'zeros'
        self.wae = create_decomposition(
            decomposition, in_chans, with_decoder=with_decoder, with_high=fusion or with_decoder,
            padding_mode=wae_padding, **dd)
        if wae_weights:
            load_wae_weights(self.wae, wae_weights)
        if freeze_wae:
            self.wae.requires_grad_(False)
        self.low_norm = nn.BatchNorm2d(self.wae.band_chans, **dd)
        self.high_norm = nn.BatchNorm2d(self.wae.high_chans, **dd) if fusion else nn.Identity()

        branch_kwargs = dict(backbone_kwargs or {}, **dd)
        if drop_path_rate is not None:
            branch_kwargs['drop_path_rate'] = drop_path_rate
        if output_stride is not None:
            _check_output_stride(backbone, output_stride)
            branch_kwargs['output_stride'] = output_stride // 2  # the branches see a half-resolution image
        # global_pool='' and the grid only change what the wrapper reads from the
        # branches; the branches keep a pooling so the heads stay valid after a reset
        branch_pool = global_pool if global_pool not in ('', GRID_POOL) else 'avg'
        self.low = create_trunk(
            backbone, pretrained=pretrained_backbone, global_pool=branch_pool,
            in_chans=self.wae.band_chans, **branch_kwargs)
        self.low_channels = int(self.low.num_features)
        if fusion:
            self.high = prepare_trunk(create_width_scaled(
                backbone, width_divisor, num_classes=0, in_chans=self.wae.high_chans, **branch_kwargs), branch_pool)
            self.high_channels = int(self.high.num_features)
        else:
            self.high = nn.Identity()
            self.high_channels = 0
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
    def no_weight_decay(self) -> Set[str]:
        """The branches' own no-decay parameters (timm's optimizer factory reads this)."""
        # attribute access only: a torch.jit.script'ed model keeps submodules, not Python helpers
        names: Set[str] = set()
        for prefix in ('low', 'high'):
            own = getattr(getattr(self, prefix), 'no_weight_decay', None)
            if own is not None:
                names |= {f'{prefix}.{n}' for n in own()}
        return names

    @torch.jit.ignore
    def get_classifier(self) -> Union[nn.Module, Tuple[nn.Module, nn.Module]]:
        if not self.fusion:
            return self.head_low.fc
        return self.head_low.fc, self.head_fusion.fc

    def _build_heads(self, num_classes: int) -> None:
        dd = dict(device=self.low_norm.weight.device, dtype=self.low_norm.weight.dtype)
        if self.flatten_grid > 0:
            low_in = self.low_channels * self.flatten_grid ** 2
            high_in = self.high_channels * self.flatten_grid ** 2
        else:
            low_in = head_input_size(self.low)
            high_in = head_input_size(self.high) if self.fusion else 0
        args = self._head_args
        common = dict(hidden_drop_rate=args['hidden_drop_rate'], drop_rate=args['drop_rate'], **dd)
        self.head_low = BranchClassifier(low_in, num_classes, args['low_hidden'], **common)
        self.head_hidden_size = self.head_low.num_features
        if self.fusion:
            self.head_fusion = BranchClassifier(low_in + high_in, num_classes, args['fusion_hidden'], **common)
            # with linear heads the fusion input [p_L, p_H] already holds the low head's p_L
            shared = self.head_fusion.num_features
            self.head_hidden_size = shared if self.shared_pre_logits else self.head_hidden_size + shared
        else:
            self.head_fusion = nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """New final classifiers, on the model's device and dtype. ``global_pool=''`` (with
        ``num_classes=0``) makes ``forward`` return the unpooled maps; another pool type re-pools
        both branches and rebuilds the heads (flatten-grid models: ``'grid'`` restores the grid)."""
        if num_classes < 0:
            raise ValueError(f'num_classes={num_classes}: expected 0 (pre-logit features) or a positive count')
        if global_pool == '' and num_classes > 0:
            raise ValueError(f"global_pool='' needs num_classes=0, got num_classes={num_classes}")
        if global_pool and (global_pool == GRID_POOL) != (self.flatten_grid > 0):
            expected = f"'{GRID_POOL}' or ''" if self.flatten_grid > 0 else "a timm pool type or ''"
            raise ValueError(f'global_pool={global_pool!r} for a model with flatten_grid={self.flatten_grid}: '
                             f'expected {expected}')
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        if global_pool and self.flatten_grid == 0:
            for trunk in self._trunks():
                trunk.reset_classifier(0, global_pool)
            self._build_heads(num_classes)
        else:
            for head in self._heads():
                head.reset(num_classes, device=self.low_norm.weight.device, dtype=self.low_norm.weight.dtype)

    def _trunks(self) -> List[nn.Module]:
        return [self.low, self.high] if self.fusion else [self.low]

    def _heads(self) -> List[nn.Module]:
        return [self.head_low, self.head_fusion] if self.fusion else [self.head_low]

    @torch.jit.ignore
    def fuse_for_inference(self) -> 'WAEWrapper':
        """Make this model an inference-only one that computes the same logits faster, in place.

        Switches to eval mode, drops the WAE decoder and the stage-3 auxiliary loss, folds
        every BatchNorm that follows a convolution into it (see
        :func:`wae_timm.deploy.inference.fold_batchnorms`): the BatchNorms on ``I_L``/``I_H`` into the
        encoder's ``to_low``/``to_high`` convolutions, and the conv-BN pairs of both branches; then
        merges ``to_low``/``to_high`` into one 6-channel stride-2 convolution whose output halves are
        ``I_L``/``I_H`` (see :meth:`~wae_timm.layers.autoencoder.WaveletLikeAutoEncoder.merge_band_convs`;
        a no-op for front ends without ``to_high``). ``forward_decomposition`` then returns the
        normalised bands, and ``forward_train``, which needs the raw bands and the decoder, refuses
        to run. Calling it again changes nothing. Returns ``self``.

        The fused model's ``state_dict`` differs from a normal checkpoint's (no BatchNorm entries,
        ``wae.to_bands.*`` in place of ``wae.to_low.*``/``wae.to_high.*``): save and load the
        unfused model, and fuse after loading.
        """
        self.eval()
        if getattr(self.wae, 'has_decoder', False):
            self.wae.remove_decoder()
        self.aux_loss_weight = 0.
        fold_batchnorms(self)
        merge_band_convs = getattr(self.wae, 'merge_band_convs', None)
        if merge_band_convs is not None:
            merge_band_convs()
        self.inference_only = True
        return self

    def train(self, mode: bool = True) -> 'WAEWrapper':
        """timm's ``train``; refused on a model fused for inference (its BatchNorms are gone)."""
        if mode and self.inference_only:
            self._check_trainable()
        return super().train(mode)

    def _check_trainable(self) -> None:
        if self.inference_only:
            raise RuntimeError(
                'this model was fused for inference (BatchNorms folded, decoder dropped); '
                'build a fresh model to train or to compute the transform loss')

    # ----------------------------------------------------------------- forward paths
    def forward_decomposition(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(I_L, I_H)`` as the WAE produces them, before the classifier's BatchNorms."""
        x = check_image_batch(x, self.in_chans, self.min_input_size)
        return self.wae.encode(x)

    def _forward_branches(self, low: torch.Tensor, high: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.fusion and self.concurrent_branches and torch.jit.is_scripting():
            # TorchScript runs a fork on its inter-op thread pool: the quarter-width branch (many small,
            # overhead-bound ops) overlaps the low branch; eager/fx/dynamo would run a fork inline
            future = torch.jit.fork(self._high_features, high)
            f_low = self.low.forward_features(self.low_norm(low))
            return f_low, torch.jit.wait(future)
        low = self.low_norm(low)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            f_low = checkpoint(self.low.forward_features, low, use_reentrant=False)
        else:
            f_low = self.low.forward_features(low)
        if not self.fusion:
            return f_low, f_low[:, :0]
        if self.grad_checkpointing and not torch.jit.is_scripting():
            # the BatchNorm stays outside: a recomputation would update its running statistics twice
            return f_low, checkpoint(self.high.forward_features, self.high_norm(high), use_reentrant=False)
        return f_low, self._high_features(high)

    def _high_features(self, high: torch.Tensor) -> torch.Tensor:
        return self.high.forward_features(self.high_norm(high))

    def _head_inputs(self, f_low: torch.Tensor, f_high: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.flatten_grid > 0:
            p_low = grid_max_pool(f_low, self.flatten_grid).flatten(1)
        else:
            p_low = self.low.forward_head(f_low, pre_logits=True)
        if not self.fusion:
            return p_low, p_low
        if self.flatten_grid > 0:
            p_high = grid_max_pool(f_high, self.flatten_grid).flatten(1)
        else:
            p_high = self.high.forward_head(f_high, pre_logits=True)
        return p_low, torch.cat([p_low, p_high], dim=1)

    def _classify(self, f_low: torch.Tensor, f_high: torch.Tensor, pre_logits: bool) -> torch.Tensor:
        low_in, fusion_in = self._head_inputs(f_low, f_high)
        if not self.fusion:
            return self.head_low.pre_logits(low_in) if pre_logits else self.head_low(low_in)
        if pre_logits and self.shared_pre_logits:
            return self.head_fusion.pre_logits(fusion_in)  # [p_L, p_H]: each feature once
        if pre_logits:
            return torch.cat([self.head_low.pre_logits(low_in), self.head_fusion.pre_logits(fusion_in)], dim=1)
        return (self.head_low(low_in) + self.head_fusion(fusion_in)) / 2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C_L + C_H, h', w']``: both branches' last maps, concatenated."""
        low, high = self.forward_decomposition(x)
        f_low, f_high = self._forward_branches(low, high)
        return torch.cat([f_low, f_high], dim=1) if self.fusion else f_low

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, C_L + C_H, h', w'] -> [B, num_classes]``; ``[B, head_hidden_size]`` with
        ``pre_logits`` or ``num_classes=0``: the inputs of the final fc layers, concatenated."""
        f_low, f_high = x[:, :self.low_channels], x[:, self.low_channels:]
        return self._classify(f_low, f_high, pre_logits or self.num_classes == 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, num_classes]``, the averaged score ``(s_L + s_c) / 2``."""
        low, high = self.forward_decomposition(x)
        f_low, f_high = self._forward_branches(low, high)
        if self.global_pool == '':
            out = torch.cat([f_low, f_high], dim=1) if self.fusion else f_low
        else:
            # the branch maps go straight to the heads: no concatenated copy
            out = self._classify(f_low, f_high, self.num_classes == 0)
        if self.training and self.aux_loss_weight > 0 and not torch.jit.is_scripting():
            out = self._attach_transform_loss(out, x, low, high)
        return out

    @torch.jit.unused
    def _attach_transform_loss(
            self, out: torch.Tensor, x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        reconstruction = self.wae.decode(low, high, x.shape[-2], x.shape[-1])
        loss = transform_loss(x, reconstruction, high, self.energy_weight)
        self.last_transform_loss = loss.detach()
        return attach_auxiliary_loss(out, loss, self.aux_loss_weight)

    @torch.jit.ignore
    def forward_train(self, x: torch.Tensor) -> WAEOutput:
        """One forward returning scores, decomposition and reconstruction (see :class:`WAEOutput`)."""
        self._check_trainable()
        low, high = self.forward_decomposition(x)
        low_in, fusion_in = self._head_inputs(*self._forward_branches(low, high))
        s_low = self.head_low(low_in)
        s_fusion = self.head_fusion(fusion_in) if self.fusion else None
        logits = s_low if s_fusion is None else (s_low + s_fusion) / 2
        reconstruction = None
        if getattr(self.wae, 'has_decoder', False):
            reconstruction = self.wae.decode(low, high, x.shape[-2], x.shape[-1])
        return WAEOutput(logits, s_low, s_fusion, low, high, reconstruction)

    @torch.jit.ignore
    def transform_loss(self, x: torch.Tensor, output: WAEOutput) -> torch.Tensor:
        """The paper's ``L_t`` for a batch and its :meth:`forward_train` output."""
        self._check_trainable()
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


# ----------------------------------------------------------------------------- registry
# After ``import wae_timm``, ``timm.list_models('wae_*')`` lists these and
# ``timm.create_model('wae_resnet50', num_classes=10)`` builds one; each entrypoint
# is one line of arguments to WAEWrapper.

# reference WAE-VGG16 heads (authors' release): fc 1024-1024 on the low pool5,
# fc 2048-2048 on both pool5 maps, dropout 0.5 after each hidden fc
_VGG_REFERENCE_HEADS = dict(flatten_grid=4, low_hidden=(1024, 1024), fusion_hidden=(2048, 2048), hidden_drop_rate=0.5)

WAE_MODEL_ARGS: Dict[str, Dict[str, Any]] = {
    'wae_vgg16': dict(backbone='vgg16', **_VGG_REFERENCE_HEADS),
    'wae_resnet18': dict(backbone='resnet18'),
    'wae_resnet34': dict(backbone='resnet34'),
    'wae_resnet50': dict(backbone='resnet50'),
    'wae_resnet101': dict(backbone='resnet101'),
    'wae_convnext_tiny': dict(backbone='convnext_tiny'),
    'wae_efficientnet_b0': dict(backbone='efficientnet_b0'),
    'wae_mobilenetv3_large_100': dict(backbone='mobilenetv3_large_100'),
    'wae_regnety_016': dict(backbone='regnety_016'),
}


def wrapper_cfg(**kwargs: Any) -> Dict[str, Any]:
    """The pretrained config of a :class:`WAEWrapper` model at 224 (``kwargs`` override entries)."""
    return {
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (4, 4),
        'crop_pct': 0.875, 'interpolation': 'bilinear',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'wae.stem.0', 'classifier': ('head_low.fc', 'head_fusion.fc'),
        'license': 'apache-2.0', 'paper_ids': 'arXiv:1712.07493',
        'paper_name': 'Learning a Wavelet-like Auto-Encoder to Accelerate Deep Neural Networks',
        **kwargs,
    }


def _base_cfg(name: str) -> Dict[str, Any]:
    # pool_size: the final map at 224, whose branches see 112 (ConvNeXt's 4x4 stem floors 7/2)
    return wrapper_cfg(pool_size=(3, 3)) if 'convnext' in name else wrapper_cfg()


# 'arch.tag' -> where its weights live and whether they exist (see wae_timm.models.pretrained)
PRETRAINED_TAGS: Dict[str, PretrainedTag] = build_tags(list(WAE_MODEL_ARGS))
default_cfgs = generate_default_cfgs(pretrained_cfgs(PRETRAINED_TAGS, _base_cfg))


def published_tags() -> List[PretrainedTag]:
    """Tags with weights: each has a Hub repo, and a shipped folder ``hub/<model>.<tag>/`` with its card."""
    return [t for t in PRETRAINED_TAGS.values() if t.has_weights]


# timm's train.py reads ``--model-kwargs k=v`` with ast.literal_eval and keeps
# what does not parse as text: 'freeze_wae=true' would arrive as the (truthy)
# string 'true'. Flags and weights must arrive as real bools and numbers.
_BOOL_ARGS = ('freeze_wae', 'pretrained_backbone', 'with_decoder', 'fusion')
_NUMBER_ARGS = ('aux_loss_weight', 'energy_weight', 'drop_rate', 'drop_path_rate', 'hidden_drop_rate')


def _check_parsed_kwargs(kwargs: Dict[str, Any]) -> None:
    for name in _BOOL_ARGS:
        if isinstance(kwargs.get(name), str):
            raise ValueError(f'{name}={kwargs[name]!r} is text, expected True or False '
                             f'(--model-kwargs values are Python literals: write {name}=True)')
    for name in _NUMBER_ARGS:
        if isinstance(kwargs.get(name), str):
            raise ValueError(f'{name}={kwargs[name]!r} is text, expected a number '
                             f'(--model-kwargs values are Python literals, e.g. {name}=0.001)')


def build_wrapper(variant: str, model_args: Dict[str, Any], pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """A registered :class:`WAEWrapper` variant built by timm from its ``model_args`` (``kwargs`` override them).

    ``pretrained=True`` fails before building when the variant's tag has no weights,
    and load errors name the weight file (see :mod:`wae_timm.models.pretrained`); so
    do those of ``timm.create_model``'s ``checkpoint_path=`` (see
    :func:`~wae_timm.models.checkpoint_files.explain_checkpoint_path_errors`).
    """
    from .checkpoint_files import explain_checkpoint_path_errors
    explain_checkpoint_path_errors(WAEWrapper)  # timm loads checkpoint_path after this returns
    _check_parsed_kwargs(kwargs)
    model_args = dict(model_args, **kwargs)
    feature_cfg = dict(feature_cls='getter')
    if model_args.get('features_only'):
        # the backbone's own feature levels (ConvNeXt has 4, ResNet 5, VGG 6), asked of timm only when needed
        feature_cfg['out_indices'] = default_out_indices(model_args['backbone'])
    source = prepare_pretrained(variant, model_args, PRETRAINED_TAGS) if pretrained else None
    with explain_load_errors(source):
        return build_model_with_cfg(
            WAEWrapper, variant, pretrained,
            # the default FeatureListNet rebuilds a model from its direct children,
            # which cannot reach inside the branches: use forward_intermediates
            feature_cfg=feature_cfg,
            pretrained_filter_fn=checkpoint_filter(source) if source else None,
            **model_args,
        )



def _create_wae(variant: str, pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    return build_wrapper(variant, WAE_MODEL_ARGS[variant], pretrained, **kwargs)


@register_model
def wae_vgg16(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE-VGG16 with the reference release's fc heads (Chen et al., AAAI 2018)."""
    return _create_wae('wae_vgg16', pretrained, **kwargs)


@register_model
def wae_resnet18(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around ResNet-18, pooled linear heads."""
    return _create_wae('wae_resnet18', pretrained, **kwargs)


@register_model
def wae_resnet34(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around ResNet-34, pooled linear heads."""
    return _create_wae('wae_resnet34', pretrained, **kwargs)


@register_model
def wae_resnet50(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE-ResNet-50 (Chen et al., AAAI 2018), pooled linear heads."""
    return _create_wae('wae_resnet50', pretrained, **kwargs)


@register_model
def wae_resnet101(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around ResNet-101, pooled linear heads."""
    return _create_wae('wae_resnet101', pretrained, **kwargs)


@register_model
def wae_convnext_tiny(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around ConvNeXt-T; the heads see each branch's normed pooled features."""
    return _create_wae('wae_convnext_tiny', pretrained, **kwargs)


@register_model
def wae_efficientnet_b0(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around EfficientNet-B0; the high branch uses a quarter channel multiplier."""
    return _create_wae('wae_efficientnet_b0', pretrained, **kwargs)


@register_model
def wae_mobilenetv3_large_100(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around MobileNetV3-Large 1.0."""
    return _create_wae('wae_mobilenetv3_large_100', pretrained, **kwargs)


@register_model
def wae_regnety_016(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around RegNetY-1.6GF."""
    return _create_wae('wae_regnety_016', pretrained, **kwargs)
