"""NaN/Inf weights are refused where they enter, with the file named (training would blame the learning rate)."""
import pytest
import timm
import torch
from safetensors.torch import save_file

from wae_timm.layers.autoencoder import WaveletLikeAutoEncoder, load_wae_weights
from wae_timm.models.pretrained import CorruptWeightsError
from wae_timm.publish.hub import read_checkpoint


def _with_nan(state, key):
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    state[key].view(-1)[0] = float('nan')
    return state


def test_pretrained_file_with_nan_is_refused(tmp_path):
    path = tmp_path / 'model.safetensors'
    state = timm.create_model('wae_resnet18', num_classes=3).state_dict()
    save_file(_with_nan(state, 'low.layer1.0.conv1.weight'), str(path))
    with pytest.raises(CorruptWeightsError, match=rf'{path}.*NaN/Inf values in 1 tensors.*low.layer1.0.conv1.weight'):
        timm.create_model('wae_resnet18', num_classes=3, pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(path), num_classes=3))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))  # the same file without the NaN loads
    loaded = timm.create_model('wae_resnet18', num_classes=3, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(path), num_classes=3))
    assert torch.equal(loaded.head_fusion.fc.weight, state['head_fusion.fc.weight'])


def test_wae_weights_with_inf_are_refused(tmp_path):
    path = tmp_path / 'stage1.safetensors'
    save_file(_with_nan(WaveletLikeAutoEncoder().state_dict(), 'stem.0.weight'), str(path))
    with pytest.raises(ValueError, match=rf'{path} holds NaN/Inf values in 1 tensors'):
        load_wae_weights(WaveletLikeAutoEncoder(), path)


def test_push_refuses_a_checkpoint_with_nan(tmp_path):
    path = tmp_path / 'checkpoint.pth.tar'
    torch.save({'state_dict': _with_nan(WaveletLikeAutoEncoder().state_dict(), 'to_low.bias')}, path)
    with pytest.raises(CorruptWeightsError, match=rf'checkpoint to publish {path} holds NaN/Inf.*not a usable checkpoint'):
        read_checkpoint(path)
