"""Where a WAE model's inference time goes: encoder, low branch, high branch and heads, eager and optimised.

:func:`profile_components` runs a model's forward split into its four components, in the order
``WAEWrapper.forward`` runs them, and times each one inside the same call::

    encoder      x -> (I_L, I_H)                     forward_decomposition (input check, WAE encoder)
    low branch   I_L -> f_L                          low_norm, then the backbone's forward_features
    high branch  I_H -> f_H                          high_norm, then the quarter-width branch (fusion models)
    heads        (f_L, f_H) -> logits                pooling and both classifiers, (s_L + s_c) / 2

so the components of one call add up to that call's ``total`` (the remainder is Python glue
between them). The whole ``model(x)`` of the same variant is timed in the same rounds as
``forward``, to show what splitting the call costs. Variants (:data:`VARIANTS`): the model as
built (``eager``), after ``fuse_for_inference`` and channels_last (``fused``), and the fused model
with each component TorchScript-frozen on its own (``fused + jit``; ``forward`` is then the whole
model frozen by ``prepare_for_inference(backend='jit')``, which may fuse across components).

Every variant of every model is timed in one interleaved phase per batch size (each round calls
every variant once, starting one later than the round before), as the speed benchmark does
(:mod:`wae_timm.experiments.speed`). Each ``record_function`` label below shows up in a
``torch.profiler`` trace of these calls as well.
"""
import copy
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from tqdm import tqdm

from ..deploy.inference import prepare_for_inference
from ..files import refuse_to_overwrite, write_csv
from .tables import dataclass_records, markdown_table

__all__ = ['COMPONENTS', 'VARIANTS', 'ComponentRow', 'profile_components', 'profile_markdown', 'write_profile',
           'profile_paths']

COMPONENTS = ('encoder', 'low branch', 'high branch', 'heads')
TOTAL = 'total'  # the four components' call, end to end
FORWARD = 'forward'  # the variant's whole model(x), timed on its own
# how each variant is prepared (prepare_for_inference arguments), and whether its components are jit-frozen
VARIANTS: Dict[str, Dict[str, object]] = {
    'eager': dict(fold_bn=False, channels_last=False, backend='eager'),
    'fused': dict(fold_bn=True, channels_last=True, backend='eager'),
    'fused + jit': dict(fold_bn=True, channels_last=True, backend='jit'),
}


@dataclass
class ComponentRow:
    """One CSV row: one component of one model, variant and batch size."""
    model: str
    variant: str
    batch_size: int
    input_size: int
    component: str  # one of COMPONENTS, TOTAL or FORWARD
    median_ms: float
    mean_ms: float
    share_of_total: float  # mean / mean of TOTAL (components of one call sum to at most 1)
    threads: int
    rounds: int
    load_avg_1m: float  # mean over the rounds


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        low, high = self.model.forward_decomposition(x)
        return low, high


class _LowBranch(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.low_norm, self.low = model.low_norm, model.low

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        return self.low.forward_features(self.low_norm(low))


class _HighBranch(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.high_norm, self.high = model.high_norm, model.high

    def forward(self, high: torch.Tensor) -> torch.Tensor:
        return self.high.forward_features(self.high_norm(high))


class _Heads(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.pre_logits = model.num_classes == 0

    def forward(self, f_low: torch.Tensor, f_high: torch.Tensor) -> torch.Tensor:
        return self.model._classify(f_low, f_high, self.pre_logits)


def _freeze(module: nn.Module) -> torch.jit.ScriptModule:
    frozen = torch.jit.freeze(torch.jit.script(module.eval()))
    return torch.jit.optimize_for_inference(frozen)


class _Profiled:
    """A model prepared by one variant: its whole forward and its four components."""

    def __init__(self, model: nn.Module, variant: str) -> None:
        args = VARIANTS[variant]
        if not hasattr(model, 'forward_decomposition') or not hasattr(model, '_classify'):
            raise ValueError(f'profile_components needs a WAE model (WAEWrapper), got {type(model).__name__}')
        model = copy.deepcopy(model).eval()
        if args['fold_bn']:
            model.fuse_for_inference()
        if args['channels_last']:
            model.to(memory_format=torch.channels_last)
        self.channels_last = bool(args['channels_last'])
        self.fusion = bool(model.fusion)
        parts: List[nn.Module] = [_Encoder(model), _LowBranch(model), _HighBranch(model), _Heads(model)]
        if args['backend'] == 'jit':
            self.forward = prepare_for_inference(copy.deepcopy(model), fold_bn=False, channels_last=False,
                                                 backend='jit')
            parts = [_freeze(copy.deepcopy(p)) if self.fusion or i != 2 else p for i, p in enumerate(parts)]
        elif args['backend'] == 'eager':
            self.forward = model
        else:
            raise ValueError(f"profile variant {variant!r}: backend {args['backend']!r} is not profiled")
        self.encoder, self.low_branch, self.high_branch, self.heads = parts

    def components(self, x: torch.Tensor, timer: Callable[[], float],
                   sync: Callable[[], None]) -> Dict[str, float]:
        """Seconds of each component, and of all four end to end, in one call."""
        sync()
        start = timer()
        with torch.profiler.record_function('wae/encoder'):
            low, high = self.encoder(x)
            sync()
        after_encoder = timer()
        with torch.profiler.record_function('wae/low branch'):
            f_low = self.low_branch(low)
            sync()
        after_low = timer()
        with torch.profiler.record_function('wae/high branch'):
            f_high = self.high_branch(high) if self.fusion else f_low[:, :0]
            sync()
        after_high = timer()
        with torch.profiler.record_function('wae/heads'):
            self.heads(f_low, f_high)
            sync()
        end = timer()
        return {'encoder': after_encoder - start, 'low branch': after_low - after_encoder,
                'high branch': after_high - after_low, 'heads': end - after_high, TOTAL: end - start}

    def whole(self, x: torch.Tensor, timer: Callable[[], float], sync: Callable[[], None]) -> float:
        sync()
        start = timer()
        self.forward(x)
        sync()
        return timer() - start


def profile_components(
        model_names: Sequence[str] = ('wae_resnet50', 'wae_vgg16'),
        batch_sizes: Sequence[int] = (1, 32),
        rounds: Optional[Dict[int, int]] = None,
        variants: Sequence[str] = tuple(VARIANTS),
        input_size: int = 224,
        device: str = 'cpu',
        warmup: int = 3,
        clock: str = 'wall',
        create: Optional[Callable[[str], nn.Module]] = None,
        progress: bool = True,
) -> List[ComponentRow]:
    """Time the components of each WAE model, per variant and batch size; one row per component.

    ``rounds[batch_size]`` rounds per batch size (default 10 at batch 1, 3 otherwise); each round
    times, for every (model, variant), one split call and one whole ``model(x)``. ``clock``:
    ``'wall'``, or ``'thread'`` (the calling thread's CPU time: with one torch thread, robust on a
    shared machine). ``create(name)`` builds a model (default ``timm.create_model``).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f'unknown profile variants {unknown}; expected some of {tuple(VARIANTS)}')
    if clock not in ('wall', 'thread'):
        raise ValueError(f"clock={clock!r}: expected 'wall' or 'thread'")
    create = create or (lambda name: timm.create_model(name))
    torch_device = torch.device(device)
    timer = time.thread_time if clock == 'thread' and torch_device.type == 'cpu' else time.perf_counter

    def sync() -> None:
        if torch_device.type == 'cuda':
            torch.cuda.synchronize(torch_device)

    prepared: List[Tuple[str, str, _Profiled]] = []
    bar = tqdm(total=len(model_names) * len(variants), desc='prepare', disable=not progress)
    for name in model_names:
        base = create(name).to(torch_device).eval()
        for variant in variants:
            prepared.append((name, variant, _Profiled(base, variant)))
            bar.update()
    bar.close()

    rows: List[ComponentRow] = []
    generator = torch.Generator().manual_seed(0)
    for batch_size in batch_sizes:
        x = torch.randn(batch_size, 3, input_size, input_size, generator=generator).to(torch_device)
        inputs = [x.contiguous(memory_format=torch.channels_last) if p.channels_last else x for _, _, p in prepared]
        samples: List[Dict[str, List[float]]] = [{} for _ in prepared]
        loads: List[float] = []
        count = (rounds or {}).get(batch_size, 10 if batch_size == 1 else 3)
        with torch.inference_mode():
            for (_, _, p), xi in zip(prepared, inputs):
                for _ in range(warmup):  # TorchScript optimises on its second call
                    p.components(xi, timer, sync)
                    p.whole(xi, timer, sync)
            for r in tqdm(range(count), desc=f'profile batch {batch_size}', disable=not progress):
                for i in range(len(prepared)):
                    index = (r + i) % len(prepared)
                    _, _, p = prepared[index]
                    times = p.components(inputs[index], timer, sync)
                    times[FORWARD] = p.whole(inputs[index], timer, sync)
                    for key, value in times.items():
                        samples[index].setdefault(key, []).append(value)
                loads.append(os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan'))
        for (name, variant, p), sample in zip(prepared, samples):
            total_mean = statistics.fmean(sample[TOTAL])
            for component in COMPONENTS + (TOTAL, FORWARD):
                if component == 'high branch' and not p.fusion:
                    continue
                values = sample[component]
                rows.append(ComponentRow(
                    model=name, variant=variant, batch_size=batch_size, input_size=input_size, component=component,
                    median_ms=statistics.median(values) * 1000, mean_ms=statistics.fmean(values) * 1000,
                    share_of_total=statistics.fmean(values) / total_mean, threads=torch.get_num_threads(),
                    rounds=count, load_avg_1m=statistics.fmean(loads)))
    return rows


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return 'n/a' if value != value else f'{value:.2f}'
    return str(value)


def profile_markdown(rows: Sequence[ComponentRow], env: Dict[str, str], command: str) -> str:
    """One table per model and batch size: each component's median ms and share of the split call, per variant."""
    parts = ['# Where the time goes: per-component profile', '',
             markdown_table(['', ''], list(env.items()), _fmt), '', f'Regenerate: `{command}`', '',
             f'Median ms per call over the rounds; the share is of the mean `{TOTAL}` (the four components called '
             f'one after another). `{FORWARD}` is the whole `model(x)` of the same variant (`fused + jit`: the '
             'whole model frozen at once, which can fuse across components).', '']
    variants = list(dict.fromkeys(r.variant for r in rows))
    for model in dict.fromkeys(r.model for r in rows):
        for batch_size in sorted({r.batch_size for r in rows if r.model == model}):
            mine = {(r.variant, r.component): r for r in rows if r.model == model and r.batch_size == batch_size}
            components = [c for c in COMPONENTS + (TOTAL, FORWARD) if any(k[1] == c for k in mine)]
            header = ['component'] + [f'{v} {what}' for v in variants for what in ('ms', 'share')]
            lines = []
            for component in components:
                line: List[object] = [component]
                for variant in variants:
                    r = mine.get((variant, component))
                    line += ['n/a', ''] if r is None else [r.median_ms, f'{100 * r.share_of_total:.0f}%']
                lines.append(line)
            first = next(iter(mine.values()))
            threads = f"{first.threads} thread{'s' if first.threads != 1 else ''}"
            parts += [f'## {model}, batch {batch_size} ({first.input_size}x{first.input_size}, {threads}, '
                      f'{first.rounds} rounds, load {first.load_avg_1m:.2f})', '',
                      markdown_table(header, lines, _fmt), '']
    return '\n'.join(parts)


def profile_paths(out_dir: Path, name: str) -> Dict[str, Path]:
    """Where :func:`write_profile` puts the CSV and markdown called ``name``."""
    return {ext: out_dir / f'{name}.{ext}' for ext in ('csv', 'md')}


def write_profile(rows: Sequence[ComponentRow], out_dir: Path, name: str, env: Dict[str, str], command: str,
                  overwrite: bool = False) -> Dict[str, Path]:
    """Write ``name``.csv and .md under ``out_dir``; refuses to replace existing files unless ``overwrite``."""
    if not rows:
        raise ValueError('write_profile: no rows to write')
    paths = profile_paths(out_dir, name)
    refuse_to_overwrite(paths.values(), overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(paths['csv'], dataclass_records(rows))
    paths['md'].write_text(profile_markdown(rows, env, command) + '\n')
    return paths
