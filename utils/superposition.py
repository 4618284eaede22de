"""Plumbing for the superposition toys (Chapter 2): initialisation, a training loop, plots.

The models are plain tensors with a leading instance axis, so one optimiser step trains a
whole sweep of independent models; the learner writes the forward passes and losses, and
these helpers only wire them together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm


def xavier_weights(n_instances: int, rows: int, cols: int, generator: torch.Generator,
                   device: str | torch.device = "cpu", scale: float = 1.0, nonnegative: bool = False) -> Tensor:
    """[n_instances, rows, cols] Xavier-normal weights that require grad.

    `scale` multiplies them (a small start); with `nonnegative` every weight is replaced by its
    absolute value (a read-out that starts by writing every output positively).
    """
    std = (2.0 / (rows + cols)) ** 0.5
    weights = torch.randn(n_instances, rows, cols, generator=generator) * std * scale
    if nonnegative:
        weights = weights.abs()
    return weights.to(device).requires_grad_(True)


def zeros(*shape: int, device: str | torch.device = "cpu") -> Tensor:
    """A zero-initialised parameter (biases)."""
    return torch.zeros(*shape, device=device, requires_grad=True)


def train(params: Sequence[Tensor], loss_fn: Callable[[int], Tensor], *, steps: int, lr: float = 1e-3,
          cosine: bool = True, desc: str = "training", log_every: int = 100) -> list[float]:
    """Adam on `params` for `steps` steps; `loss_fn(step)` returns a scalar (sum over instances).

    With `cosine` the learning rate decays from `lr` to 0 along a half cosine, which lets a short
    run settle into its minimum. Returns the loss every `log_every` steps; the progress bar shows
    the latest one.
    """
    optimiser = torch.optim.Adam(list(params), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)) if cosine else 1.0)
    history: list[float] = []
    with torch.enable_grad():
        bar = tqdm(range(steps), desc=desc, mininterval=1.0)
        for step in bar:
            loss = loss_fn(step)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            if step % log_every == 0 or step == steps - 1:
                history.append(loss.item())
                bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
    for p in params:
        p.requires_grad_(False)
    return history


# -- plots -----------------------------------------------------------------------------------

def feature_vectors_figure(W: Tensor, title: str = "", importance: Tensor | None = None):
    """One instance's 2-D feature directions [2, feat] as arrows from the origin (plotly)."""
    import plotly.graph_objects as go

    W = W.detach().cpu()
    colours = importance.detach().cpu().tolist() if importance is not None else [1.0] * W.shape[1]
    fig = go.Figure()
    for i in range(W.shape[1]):
        x, y = W[0, i].item(), W[1, i].item()
        fig.add_trace(go.Scatter(x=[0, x], y=[0, y], mode="lines+markers", name=f"feature {i}",
                                 marker=dict(size=[0, 9]), line=dict(width=3),
                                 opacity=0.35 + 0.65 * colours[i] / max(colours)))
    fig.update_layout(title=title, width=430, height=430, xaxis=dict(range=[-1.5, 1.5]),
                      yaxis=dict(range=[-1.5, 1.5], scaleanchor="x"), margin=dict(l=20, r=20, t=40, b=20))
    return fig


def sparsity_slider(W: Tensor, feature_probability: Tensor, importance: Tensor | None = None):
    """A widget: a slider over instances (sparsity) and the 2-D feature plot of the chosen one.

    Returns an ipywidgets `interactive` (display it as the cell's last expression). The plot for
    every instance is built up front, so moving the slider only swaps figures; it needs no
    extra packages beyond ipywidgets and plotly.
    """
    import ipywidgets as widgets
    from IPython.display import display

    from utils.notebook import interactive_view

    W = W.detach().cpu()
    figs = [feature_vectors_figure(W[k], importance=importance,
                                   title=f"instance {k}: feature probability {feature_probability[k].item():.3g}")
            for k in range(W.shape[0])]

    def show(instance: int) -> None:
        display(figs[instance])

    slider = widgets.IntSlider(value=0, min=0, max=W.shape[0] - 1, description="instance")
    return interactive_view(show, instance=slider)


def instances_grid(W: Tensor, feature_probability: Tensor, columns: int = 5, importance: Tensor | None = None):
    """Static fallback: every instance's 2-D feature plot in one plotly figure (works without widgets)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    W = W.detach().cpu()
    n = W.shape[0]
    rows = -(-n // columns)
    fig = make_subplots(rows=rows, cols=columns,
                        subplot_titles=[f"p = {feature_probability[k].item():.3g}" for k in range(n)])
    weights = importance.detach().cpu() if importance is not None else torch.ones(W.shape[-1])
    for k in range(n):
        for i in range(W.shape[-1]):
            fig.add_trace(go.Scatter(x=[0, W[k, 0, i].item()], y=[0, W[k, 1, i].item()], mode="lines",
                                     line=dict(width=2), opacity=float(0.35 + 0.65 * weights[i] / weights.max()),
                                     showlegend=False), row=k // columns + 1, col=k % columns + 1)
    fig.update_xaxes(range=[-1.5, 1.5], showticklabels=False)
    fig.update_yaxes(range=[-1.5, 1.5], showticklabels=False)
    fig.update_layout(height=190 * rows, width=190 * columns, margin=dict(l=10, r=10, t=40, b=10))
    return fig
