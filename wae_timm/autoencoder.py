"""The Wavelet-like Auto-Encoder (WAE) of Chen et al., AAAI 2018.

The encoder splits an image ``[B, C, H, W]`` into two half-resolution
3-channel images, ``I_L`` (low frequency, carries the content) and ``I_H``
(high frequency, pushed towards zero energy), each ``[B, 3, ceil(H/2),
ceil(W/2)]``. The decoder upsamples each one and adds them to rebuild the
image, ``I' = D_L(I_L) + D_H(I_H)``; it exists for the transform loss only and
never runs at inference.

Layer shapes follow the paper's Fig. 2 and the authors' Caffe release: three
3x3 convolutions of 16 channels at full resolution, then one stride-2 3x3
convolution per branch; per decoder branch a 4x4 stride-2 transposed
convolution followed by three 3x3 convolutions (16, 16, 3 channels). There is
no normalisation inside the WAE (the authors confirmed it); the BatchNorms on
``I_L``/``I_H`` belong to the classifier and live in :class:`WAEWrapper`.
"""
from pathlib import Path
from typing import NamedTuple, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['WaveletLikeAutoEncoder', 'Decomposition', 'transform_loss', 'load_wae_weights', 'SHIPPED_WEIGHTS_DIR']

# stage-1 WAE weights that ship inside the package, loadable by name
SHIPPED_WEIGHTS_DIR = Path(__file__).parent / 'weights'


class Decomposition(NamedTuple):
    """The two half-resolution images the encoder produces."""
    low: torch.Tensor
    high: torch.Tensor


def _conv3x3(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=stride, padding=1)


class _Upsampler(nn.Module):
    """One decoder branch: ``[B, 3, h, w] -> [B, out_chs, H, W]`` with ``H <= 2h``.

    The 4x4 stride-2 transposed convolution doubles the size exactly; the
    result is cropped to the target size before the refining convolutions so
    that odd input sizes reconstruct at their own size and no work is spent on
    the extra row/column.
    """

    def __init__(self, in_chs: int = 3, width: int = 16, out_chs: int = 3) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_chs, width, kernel_size=4, stride=2, padding=1)
        self.conv1 = _conv3x3(width, width)
        self.conv2 = _conv3x3(width, width)
        self.conv3 = _conv3x3(width, out_chs)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
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
        with_decoder: build the decoder; inference-only models can drop it.

    Shapes: ``encode`` maps ``[B, in_chans, H, W]`` to two tensors of
    ``[B, band_chans, ceil(H/2), ceil(W/2)]``; ``decode`` maps them back to
    ``[B, in_chans, H, W]`` for any ``H, W`` (odd sizes included).
    """

    def __init__(
            self,
            in_chans: int = 3,
            width: int = 16,
            band_chans: int = 3,
            with_decoder: bool = True,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.band_chans = band_chans
        self.high_chans = band_chans
        self.stem = nn.Sequential(
            _conv3x3(in_chans, width), nn.ReLU(inplace=True),
            _conv3x3(width, width), nn.ReLU(inplace=True),
            _conv3x3(width, width), nn.ReLU(inplace=True),
        )
        self.to_low = _conv3x3(width, band_chans, stride=2)
        self.to_high = _conv3x3(width, band_chans, stride=2)
        if with_decoder:
            self.decode_low = _Upsampler(band_chans, width, in_chans)
            self.decode_high = _Upsampler(band_chans, width, in_chans)
        else:
            self.decode_low = None
            self.decode_high = None
        self.init_weights()

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

    def encode(self, x: torch.Tensor) -> Decomposition:
        shared = self.stem(x)
        return Decomposition(self.to_low(shared), self.to_high(shared))

    def decode(self, low: torch.Tensor, high: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if self.decode_low is None or self.decode_high is None:
            raise RuntimeError('this WaveletLikeAutoEncoder was built with with_decoder=False')
        return self.decode_low(low, height, width) + self.decode_high(high, height, width)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(I_L, I_H, reconstruction)``."""
        low, high = self.encode(x)
        return low, high, self.decode(low, high, x.shape[-2], x.shape[-1])


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


def load_wae_weights(wae: WaveletLikeAutoEncoder, source: Union[str, Path]) -> None:
    """Load stage-1 weights into ``wae`` from a ``.safetensors`` file or a shipped name.

    The file may hold the WAE alone or a whole model (keys under ``wae.``).
    The encoder must be complete; decoder weights are loaded when ``wae`` has a
    decoder (and then required), ignored otherwise.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = _resolve_weights(source)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f'cannot read WAE weights {path}: {err}') from err
    if any(k.startswith('wae.') for k in state):
        state = {k[len('wae.'):]: v for k, v in state.items() if k.startswith('wae.')}
    if not wae.has_decoder:
        state = {k: v for k, v in state.items() if not k.startswith('decode_')}
    expected = wae.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    mismatched = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f'{path} is not a checkpoint of this WAE: missing {missing[:4]}, unexpected {unexpected[:4]}, '
            f'shape mismatch {mismatched[:4]}')
    wae.load_state_dict(state)
