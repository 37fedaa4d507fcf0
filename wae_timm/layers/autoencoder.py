"""The Wavelet-like Auto-Encoder (WAE) of Chen et al., AAAI 2018.

The encoder splits an image ``[B, C, H, W]`` into two half-resolution
3-channel images, ``I_L`` (low frequency, carries the content) and ``I_H``
(high frequency, pushed towards zero energy), each ``[B, 3, ceil(H/2),
ceil(W/2)]``. The decoder upsamples each one and adds them to rebuild the
image, ``I' = D_L(I_L) + D_H(I_H)``; it exists for the transform loss only and
never runs at inference.

Parts that only training needs are optional: the decoder (only the transform
loss runs it) and the high output ``to_high`` (only a fusion branch or the
decoder reads ``I_H``). A model builds them only where something trains them,
so that every parameter it has gets a gradient (timm's contract, and what
``DistributedDataParallel`` needs). Checkpoints load into either form by one
rule (see :meth:`WaveletLikeAutoEncoder.load_state_dict` pre-hook): keys of a
part the module does not have are dropped, and a part the checkpoint lacks
keeps the module's current weights (with a warning if they were never loaded).

Layer shapes follow the paper's Fig. 2 and the authors' Caffe release: three
3x3 convolutions of 16 channels at full resolution, then one stride-2 3x3
convolution per branch; per decoder branch a 4x4 stride-2 transposed
convolution followed by three 3x3 convolutions (16, 16, 3 channels). There is
no normalisation inside the WAE (the authors confirmed it); the BatchNorms on
``I_L``/``I_H`` belong to the classifier and live in :class:`WAEWrapper`.

Every layer pads by one pixel, with zeros (the paper's Caffe layers; the default) or by
reflection (``padding_mode='reflect'``). Reflection is what a symmetric wavelet does at an image
border: the seven layers between the image and its reconstruction each lose what they would
have read outside the image when padding with zeros; with reflection, a wavelet start whose
filters are symmetric is exact to the borders (1.7 dB better than zeros on colour photographs of
256 px, ``results/wae_photos.md``). The padding is part of
the architecture and of the state dict: a reflecting WAE has a marker buffer (``reflect_padding``,
a scalar uint8), so every checkpoint says how its WAE pads, and loading a checkpoint
into a WAE that pads the other way fails with an error that says which ``wae_padding`` to pass.
"""
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple, TypeVar, Union

import torch
import torch.nn as nn
import torch.fx
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from .checks import non_finite_keys, state_dict_mismatch

__all__ = [
    'WaveletLikeAutoEncoder', 'Decomposition', 'transform_loss', 'load_wae_weights', 'optional_part_keys',
    'strip_wae_prefix', 'weights_padding_mode', 'SHIPPED_WEIGHTS_DIR', 'WAE_PREFIX', 'PADDING_MODES',
    'REFLECT_MARKER',
]

# stage-1 WAE weights that ship inside the package, loadable by name
SHIPPED_WEIGHTS_DIR = Path(__file__).parent.parent / 'weights'
# where a whole model (WAEWrapper) keeps its WAE's state-dict keys
WAE_PREFIX = 'wae.'
# how every layer of the WAE pads its input
PADDING_MODES = ('zeros', 'reflect')
# the buffer a reflecting WAE has (and a zero-padding one lacks): checkpoints carry the padding with the weights
REFLECT_MARKER = 'reflect_padding'


class Decomposition(NamedTuple):
    """The two half-resolution images the encoder produces."""
    low: torch.Tensor
    high: torch.Tensor


def _conv3x3(in_chs: int, out_chs: int, stride: int = 1, padding_mode: str = 'zeros', **dd: Any) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=stride, padding=1, padding_mode=padding_mode, **dd)


class _Upsampler(nn.Module):
    """One decoder branch: ``[B, 3, h, w] -> [B, out_chs, H, W]`` with ``H <= 2h``.

    The 4x4 stride-2 transposed convolution doubles the size exactly; the
    result is cropped to the target size before the refining convolutions so
    that odd input sizes reconstruct at their own size and no work is spent on
    the extra row/column. With ``padding_mode='reflect'`` its input is first
    extended by one reflected pixel on each side (PyTorch's transposed
    convolutions only pad with zeros), which moves the output by 2 pixels: the
    crop starts there.
    """

    def __init__(self, in_chs: int = 3, width: int = 16, out_chs: int = 3, padding_mode: str = 'zeros',
                 **dd: Any) -> None:
        super().__init__()
        self.reflect = padding_mode == 'reflect'
        self.up = nn.ConvTranspose2d(in_chs, width, kernel_size=4, stride=2, padding=1, **dd)
        self.conv1 = _conv3x3(width, width, padding_mode=padding_mode, **dd)
        self.conv2 = _conv3x3(width, width, padding_mode=padding_mode, **dd)
        self.conv3 = _conv3x3(width, out_chs, padding_mode=padding_mode, **dd)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if self.reflect:
            x = F.relu(self.up(F.pad(x, (1, 1, 1, 1), mode='reflect')))[:, :, 2:2 + height, 2:2 + width]
        else:
            x = F.relu(self.up(x))[:, :, :height, :width]
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.conv3(x)


class WaveletLikeAutoEncoder(nn.Module):
    """Learned two-band image decomposition with a reconstruction decoder.

    Args:
        in_chans: channels of the input image.
        width: channels of every intermediate layer (16 in the paper).
        band_chans: channels of each of ``I_L`` and ``I_H`` (3 in the paper).
        with_decoder: build the decoder (stage-1 training, the transform loss).
        with_high: build ``to_high``; without it ``encode`` returns an empty ``I_H``
            (a model with no fusion branch and no decoder never reads it).
        padding_mode: how every layer pads, ``'zeros'`` (the paper) or ``'reflect'``.
        device, dtype: where and in which type the parameters are created.

    Shapes: ``encode`` maps ``[B, in_chans, H, W]`` to two tensors of
    ``[B, band_chans, ceil(H/2), ceil(W/2)]`` (``I_H`` has 0 channels without
    ``to_high``); ``decode`` maps them back to ``[B, in_chans, H, W]`` for any
    ``H, W`` (odd sizes included).
    """

    def __init__(
            self,
            in_chans: int = 3,
            width: int = 16,
            band_chans: int = 3,
            with_decoder: bool = True,
            with_high: bool = True,
            padding_mode: str = 'zeros',
            device: Optional[Union[str, torch.device]] = None,
            dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        if with_decoder and not with_high:
            raise ValueError('with_decoder=True needs with_high=True: the decoder reconstructs from I_L and I_H')
        if padding_mode not in PADDING_MODES:
            raise ValueError(f'padding_mode={padding_mode!r}: expected one of {PADDING_MODES}')
        dd = dict(device=device, dtype=dtype)
        pad = dict(padding_mode=padding_mode, **dd)
        self.in_chans = in_chans
        self.band_chans = band_chans
        self.high_chans = band_chans if with_high else 0
        self.padding_mode = padding_mode
        self.stem = nn.Sequential(
            _conv3x3(in_chans, width, **pad), nn.ReLU(inplace=True),
            _conv3x3(width, width, **pad), nn.ReLU(inplace=True),
            _conv3x3(width, width, **pad), nn.ReLU(inplace=True),
        )
        self.to_low = _conv3x3(width, band_chans, stride=2, **pad)
        self.to_high = _conv3x3(width, band_chans, stride=2, **pad) if with_high else None
        # to_low and to_high merged into one convolution by merge_band_convs (inference only)
        self.to_bands = None
        if with_decoder:
            self.decode_low = _Upsampler(band_chans, width, in_chans, **pad)
            self.decode_high = _Upsampler(band_chans, width, in_chans, **pad)
        else:
            self.decode_low = None
            self.decode_high = None
        if padding_mode == 'reflect':
            self.register_buffer(REFLECT_MARKER, torch.ones((), dtype=torch.uint8, device=device))
        self.init_weights()
        self.decoder_loaded = False  # set when a checkpoint with decoder weights was loaded
        self.register_load_state_dict_pre_hook(_reconcile_optional_parts)

    @property
    def has_decoder(self) -> bool:
        return self.decode_low is not None

    def remove_decoder(self) -> None:
        """Drop the decoder (training-only) to free its memory; ``decode`` then raises."""
        self.decode_low = None
        self.decode_high = None

    def init_weights(self) -> None:
        """Xavier initialisation, as in the paper's stage 1."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @torch.no_grad()
    def merge_band_convs(self) -> bool:
        """Replace ``to_low`` and ``to_high`` by one convolution with both bands' filters, in place.

        Both read the same 16-channel full-resolution map with the same 3x3 stride-2 window, so
        one convolution with their weights stacked (``[2 * band_chans, width, 3, 3]``) computes
        ``[I_L, I_H]`` in a single pass over that map, one operator instead of two; ``encode``
        returns its two halves as views. The result is identical up to float rounding. For
        inference only (``WAEWrapper.fuse_for_inference`` calls it after folding the band
        BatchNorms into both convolutions): the state dict then holds ``to_bands.*`` instead of
        ``to_low.*``/``to_high.*``. Returns False, changing nothing, without ``to_high`` (nothing
        to merge) or when already merged.
        """
        if self.to_low is None or self.to_high is None:
            return False
        low, high = self.to_low, self.to_high
        merged = nn.Conv2d(low.in_channels, low.out_channels + high.out_channels, kernel_size=low.kernel_size,
                           stride=low.stride, padding=low.padding, padding_mode=low.padding_mode,
                           device=low.weight.device, dtype=low.weight.dtype)
        merged.weight.copy_(torch.cat([low.weight, high.weight]))
        merged.bias.copy_(torch.cat([_bias_of(low), _bias_of(high)]))
        merged.train(low.training)
        self.to_bands, self.to_low, self.to_high = merged, None, None
        # the stem runs channels_last after merging (see _encode_merged): store its weights so too
        self.stem.to(memory_format=torch.channels_last)
        self.to_bands.to(memory_format=torch.channels_last)
        return True

    def encode(self, x: torch.Tensor) -> Decomposition:
        if self.to_bands is not None:
            return self._encode_merged(x)
        # inference only: with autograd the stem keeps the input's layout (training is measured and tested that way)
        shared = self.stem(x if torch.is_grad_enabled() else _stem_layout(x))
        if self.to_low is None:
            raise RuntimeError('this WaveletLikeAutoEncoder has neither to_low nor to_bands')
        low = _in_layout_of(x, self.to_low(shared))
        if self.to_high is None:
            return Decomposition(low, low[:, :0])  # a view with no channels: nothing is allocated
        return Decomposition(low, _in_layout_of(x, self.to_high(shared)))

    def _encode_merged(self, x: torch.Tensor) -> Decomposition:
        bands = _in_layout_of(x, self.to_bands(self.stem(_stem_layout(x))))
        return Decomposition(bands[:, :self.band_chans], bands[:, self.band_chans:])  # views, no copy

    def decode(self, low: torch.Tensor, high: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if self.decode_low is None or self.decode_high is None:
            raise RuntimeError('this WaveletLikeAutoEncoder was built with with_decoder=False')
        return self.decode_low(low, height, width) + self.decode_high(high, height, width)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(I_L, I_H, reconstruction)``."""
        low, high = self.encode(x)
        return low, high, self.decode(low, high, x.shape[-2], x.shape[-1])


# The 16-channel full-resolution maps are the encoder's largest tensors, and oneDNN runs these
# convolutions about 1.6x (batch 1) to 2x (batch 32) faster NHWC than NCHW on CPU (measured, 1 thread):
# the encoder (merged, or unmerged without autograd) runs its stem channels_last whatever the input's layout, and hands the bands back in
# the input's layout (6 x h x w values: a cheap copy), so the branches see what they expect. CUDA keeps
# the input's layout (not measured there). Layout tests are control flow: fx keeps these calls as leaves.
def _stem_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` as the merged encoder's stem reads it: channels_last on CPU."""
    if x.is_cuda:
        return x
    return x.contiguous(memory_format=torch.channels_last)


def _in_layout_of(x: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
    """``bands`` in the memory layout of the input ``x`` (NCHW unless ``x`` is channels_last)."""
    if x.is_cuda or x.is_contiguous(memory_format=torch.channels_last):
        return bands
    return bands.contiguous()


# the bands' values are its second argument's: BatchNorm folding looks through it to the convolution
_in_layout_of.fold_through_arg = 1
torch.fx.wrap('_stem_layout')
torch.fx.wrap('_in_layout_of')


def _bias_of(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is None:
        return conv.weight.new_zeros(conv.out_channels)
    return conv.bias


# parts a WaveletLikeAutoEncoder may lack, by the prefix of their state-dict keys
_OPTIONAL_PARTS = {'decoder': ('decode_low.', 'decode_high.'), 'to_high': ('to_high.',)}


def optional_part_keys(
        wae: 'WaveletLikeAutoEncoder', state_keys: Iterable[str], prefix: str = '') -> Tuple[List[str], List[str]]:
    """How a checkpoint's keys meet ``wae``'s optional parts (the decoder, ``to_high``).

    Returns ``(surplus, kept)``: ``surplus`` are checkpoint keys of parts ``wae``
    lacks (to be dropped); ``kept`` are ``wae``'s keys of parts the checkpoint
    lacks entirely (``wae`` keeps its current weights for them). A part that is
    present in part is in neither list, for strict loading to report.
    """
    state_keys = list(state_keys)
    own_keys = list(wae.state_dict(prefix=prefix))
    surplus: List[str] = []
    kept: List[str] = []
    for part_prefixes in _OPTIONAL_PARTS.values():
        full = tuple(prefix + p for p in part_prefixes)
        theirs = [k for k in state_keys if k.startswith(full)]
        ours = [k for k in own_keys if k.startswith(full)]
        if not ours:
            surplus += theirs
        elif not theirs:
            kept += ours
    return surplus, kept


def _reconcile_optional_parts(
        module: 'WaveletLikeAutoEncoder', state_dict: Dict[str, Any], prefix: str, local_metadata: Any,
        strict: bool, missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str]) -> None:
    """``load_state_dict`` pre-hook: refuse a checkpoint of the other padding; fit one with or without the optional
    parts (edits ``state_dict``)."""
    theirs = _padding_of_keys(state_dict.keys(), prefix)
    if theirs != module.padding_mode:
        raise ValueError(_padding_mismatch('the checkpoint', theirs, module.padding_mode))
    surplus, kept = optional_part_keys(module, state_dict.keys(), prefix)
    for key in surplus:
        del state_dict[key]
    decoder_prefixes = tuple(prefix + p for p in _OPTIONAL_PARTS['decoder'])
    if module.has_decoder and not any(k.startswith(decoder_prefixes) for k in kept):
        module.decoder_loaded = True
    elif kept and module.has_decoder and not module.decoder_loaded:
        warnings.warn(
            'the checkpoint has no WAE decoder; the decoder keeps its initial weights '
            '(pass wae_weights=<stage-1 .safetensors> to start from a trained one)', stacklevel=3)
    own = module.state_dict(prefix=prefix)
    state_dict.update({k: own[k] for k in kept})


def transform_loss(
        image: torch.Tensor,
        reconstruction: torch.Tensor,
        high: torch.Tensor,
        energy_weight: float = 1.0,
) -> torch.Tensor:
    """The paper's transform loss ``L_t = ||I - I'||^2 + lambda * ||I_H||^2``.

    Both squared norms are sums over each image's pixels and channels, then
    averaged over the batch. Sums, not means, because that is what the norms in
    the paper (and Caffe's EuclideanLoss the authors trained with) compute:
    the balance ``lambda = 1`` between a full-resolution reconstruction and a
    half-resolution energy term, and the stage-3 weight ``gamma = 0.001``
    against the cross-entropy, were tuned for sums. Averaging over the batch
    keeps the value independent of the batch size.
    """
    batch = image.shape[0]
    reconstruction_error = (image - reconstruction).pow(2).sum() / batch
    energy = high.pow(2).sum() / batch
    return reconstruction_error + energy_weight * energy


def _resolve_weights(source: Union[str, Path]) -> Path:
    path = Path(source)
    if path.suffix != '.safetensors' and len(path.parts) == 1:
        shipped = SHIPPED_WEIGHTS_DIR / f'{source}.safetensors'
        if not shipped.is_file():
            names = sorted(p.stem for p in SHIPPED_WEIGHTS_DIR.glob('*.safetensors'))
            raise FileNotFoundError(f'no shipped WAE weights called {source!r}; shipped: {names}')
        return shipped
    if path.suffix != '.safetensors':
        raise ValueError(f'WAE weights must be a .safetensors file (safe loading only), got {path}')
    if not path.is_file():
        raise FileNotFoundError(f'WAE weights file {path} does not exist')
    return path


_Value = TypeVar('_Value')


def strip_wae_prefix(state: Mapping[str, _Value]) -> Dict[str, _Value]:
    """The WAE's own entries of a checkpoint's ``state`` (or of any mapping keyed like one).

    A whole model's state (some keys under ``wae.``) gives its ``wae.*`` entries with
    the prefix removed; a WAE's own state (no key under ``wae.``) is returned as it is.
    """
    if not any(k.startswith(WAE_PREFIX) for k in state):
        return dict(state)
    return {k[len(WAE_PREFIX):]: v for k, v in state.items() if k.startswith(WAE_PREFIX)}


def _padding_of_keys(keys: Iterable[str], prefix: str = '') -> str:
    return 'reflect' if prefix + REFLECT_MARKER in keys else 'zeros'


def _padding_mismatch(what: str, theirs: str, ours: str) -> str:
    return (f'{what} is of a WAE with padding_mode {theirs!r}, but this WAE pads with {ours!r}: build it with '
            f'padding_mode={theirs!r} (a wae_* model: wae_padding={theirs!r}; timm scripts: '
            f'--model-kwargs wae_padding={theirs})')


def weights_padding_mode(source: Union[str, Path]) -> str:
    """How the WAE of the weights ``source`` pads: ``'reflect'`` if they hold its marker, else ``'zeros'``.

    ``source`` is a ``.safetensors`` file (a WAE alone or a whole model) or a shipped name.
    """
    path = _resolve_weights(source)
    try:
        with safe_open(str(path), framework='pt') as f:
            keys = list(f.keys())
    except (SafetensorError, OSError) as err:
        raise ValueError(f'cannot read WAE weights {path}: {err}') from err
    return _padding_of_keys(strip_wae_prefix({k: k for k in keys}))


def load_wae_weights(wae: WaveletLikeAutoEncoder, source: Union[str, Path]) -> None:
    """Load stage-1 weights into ``wae`` from a ``.safetensors`` file or a shipped name.

    The file may hold the WAE alone or a whole model (keys under ``wae.``).
    The encoder must be complete; the optional parts follow the module's load
    rule (present in the file but not in ``wae``: ignored; the reverse: kept).
    Weights trained with another padding than ``wae``'s are refused (see
    :func:`weights_padding_mode`).
    """
    path = _resolve_weights(source)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f'cannot read WAE weights {path}: {err}') from err
    state = strip_wae_prefix(state)
    if _padding_of_keys(state) != wae.padding_mode:
        raise ValueError(_padding_mismatch(str(path), _padding_of_keys(state), wae.padding_mode))
    surplus, kept = optional_part_keys(wae, state)
    state = {k: v for k, v in state.items() if k not in surplus}
    expected = {k: v for k, v in wae.state_dict().items() if k not in kept}
    problem = state_dict_mismatch(expected, state)
    if problem:
        raise ValueError(f'{path} is not a checkpoint of this WAE: {problem}')
    broken = non_finite_keys(state)
    if broken:
        raise ValueError(f'{path} holds NaN/Inf values in {len(broken)} tensors {broken[:3]}: not usable WAE weights')
    wae.load_state_dict(state)
