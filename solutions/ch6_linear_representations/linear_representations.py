"""Reference solutions for 6.1 "Linear representations": probes, interventions, lenses and steering.

Conventions. `boards` hold +1 black, -1 white, 0 empty, one row per move: `boards[:, t]` is the
board after move t (utils.data.othello). Probe classes are 0 empty, 1 black (or mine),
2 white (or theirs). A probe is a weight `W` [d_model, square, class] and a bias `b` [square, class].
Residual-stream samples are flattened to one row per (game, move): [sample, d_model].
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

# -- 1. the game and the model ------------------------------------------------------------


def to_mine_theirs(boards: Int[Tensor, "game move square"]) -> Int[Tensor, "game move square"]:
    """The boards seen by the player to move next: +1 for its stones ("mine"), -1 for the
    opponent's ("theirs"), 0 empty. After move t (counting from 0) white moves next if t is even,
    black if t is odd."""
    t = torch.arange(boards.shape[1], device=boards.device)
    next_player = torch.where(t % 2 == 0, -1, 1)
    return boards * next_player[None, :, None]


def state_classes(boards: Int[Tensor, "*batch square"]) -> Int[Tensor, "*batch square"]:
    """Probe classes from board values: empty (0) -> 0, +1 -> 1, -1 -> 2."""
    return torch.where(boards == 0, 0, torch.where(boards > 0, 1, 2))


def top1_legal_rate(
    logits: Float[Tensor, "game move square"],
    legal: Bool[Tensor, "game move square"],
) -> float:
    """How often the model's top prediction is a legal move, over the positions that have a legal
    next move (a finished game has none and is left out)."""
    has_move = legal.any(dim=-1)
    top = logits.argmax(dim=-1)
    hit = legal.gather(-1, top[..., None])[..., 0]
    return hit[has_move].float().mean().item()


# -- 2. linear probes ------------------------------------------------------------------


def probe_logits(
    resid: Float[Tensor, "sample d_model"],
    W: Float[Tensor, "d_model square cls"],
    b: Float[Tensor, "square cls"],
) -> Float[Tensor, "sample square cls"]:
    """One linear classifier per square, all read from the same residual vector."""
    return einops.einsum(resid, W, "sample d_model, d_model square cls -> sample square cls") + b


def probe_loss(
    logits: Float[Tensor, "sample square cls"],
    labels: Int[Tensor, "sample square"],
) -> Float[Tensor, ""]:
    """Cross-entropy over the classes, averaged over samples and squares."""
    return F.cross_entropy(einops.rearrange(logits, "sample square cls -> (sample square) cls"),
                           einops.rearrange(labels, "sample square -> (sample square)"))


def probe_accuracy(
    logits: Float[Tensor, "sample square cls"],
    labels: Int[Tensor, "sample square"],
) -> Float[Tensor, " square"]:
    """Per square, the fraction of samples whose most likely class is the true one."""
    return (logits.argmax(dim=-1) == labels).float().mean(dim=0)


def train_probe(
    resid: Float[Tensor, "sample d_model"],
    labels: Int[Tensor, "sample square"],
    n_classes: int = 3,
    steps: int = 100,
    lr: float = 0.1,
) -> tuple[Float[Tensor, "d_model square cls"], Float[Tensor, "square cls"]]:
    """Fit a linear probe by full-batch Adam on `probe_loss`, starting from zero weights.

    Returns the trained (W, b), detached. The residuals are data, not parameters: they must not
    change or collect gradients. (The loss's scale does not matter: Adam ignores a constant
    factor, so a sum over squares trains the same.)"""
    resid = resid.detach()
    W = torch.zeros(resid.shape[1], labels.shape[1], n_classes, device=resid.device, requires_grad=True)
    b = torch.zeros(labels.shape[1], n_classes, device=resid.device, requires_grad=True)
    optimizer = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        loss = probe_loss(probe_logits(resid, W, b), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return W.detach(), b.detach()


# -- 3. probing done right ------------------------------------------------------------------


def control_labels(
    moves: Int[Tensor, "game move"],
    table: Int[Tensor, "vocab vocab square"],
) -> Int[Tensor, "game move square"]:
    """A control task (Hewitt & Liang 2019): after each move, every square gets a fixed random
    "state", `table[previous move, move, square]`, a function of the last two moves only. Before
    the first move there is no previous move: use the table's last token id, `table.shape[0] - 1`
    (othello.PAD for a table over the Othello tokens)."""
    pad = table.shape[0] - 1
    previous = torch.cat([torch.full_like(moves[:, :1], pad), moves[:, :-1]], dim=1)
    return table[previous, moves]


def position_baseline(
    train_labels: Int[Tensor, "game move square"],
    test_labels: Int[Tensor, "game move square"],
    valid_train: Bool[Tensor, "game move"],
    valid_test: Bool[Tensor, "game move"],
    n_classes: int = 3,
) -> Float[Tensor, " square"]:
    """Per-square accuracy of guessing, for each move number, the class most common at that move
    number and square in the valid training positions (ties go to the lower class, as argmax does;
    a move number no training game reaches guesses class 0): what the position alone gives."""
    counts = F.one_hot(train_labels, n_classes) * valid_train[..., None, None]
    guess = counts.sum(dim=0).argmax(dim=-1)                                    # move square
    correct = (test_labels == guess[None]).float()
    return (correct * valid_test[..., None]).sum(dim=(0, 1)) / valid_test.sum()


# -- 4. intervening along a probe direction ---------------------------------------------------


def class_direction(
    W: Float[Tensor, "d_model square cls"],
    square: int,
    source: int,
    target: int,
) -> Float[Tensor, " d_model"]:
    """The unit vector along which the probe's logit for `target` grows fastest relative to
    `source` at one square: the normalised difference of the two class weights."""
    direction = W[:, square, target] - W[:, square, source]
    return direction / direction.norm()


def reflect_along(
    resid: Float[Tensor, "... d_model"],
    direction: Float[Tensor, " d_model"],
) -> Float[Tensor, "... d_model"]:
    """Mirror each vector in the hyperplane orthogonal to `direction` (any length): its component
    along the direction changes sign, everything orthogonal to it stays."""
    unit = direction / direction.norm()
    along = einops.einsum(resid, unit, "... d_model, d_model -> ...")
    return resid - 2 * along[..., None] * unit


def intervene(
    model,
    moves: Int[Tensor, "game move"],
    layer: int,
    direction: Float[Tensor, " d_model"],
    position: int,
) -> Float[Tensor, "game move square"]:
    """The model's logits when the residual stream after block `layer` is reflected along
    `direction` at one position, every game at once; other positions are untouched."""
    def hook(resid, hook):
        resid = resid.clone()
        resid[:, position] = reflect_along(resid[:, position], direction)
        return resid

    return model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)])


def top_n_errors(
    logits: Float[Tensor, "... square"],
    legal: Bool[Tensor, "... square"],
) -> Int[Tensor, "..."]:
    """Li et al. (2023)'s error count: with N legal moves, how many of the model's N most likely
    moves are illegal. 0 means the top N are exactly the legal moves. The top N always holds
    exactly N moves: if logits tie at the cut-off, any of the tied moves may complete it (as a
    sort or topk picks them)."""
    n_legal = legal.sum(dim=-1, keepdim=True)
    rank = logits.argsort(dim=-1, descending=True).argsort(dim=-1)
    in_top = rank < n_legal
    return (in_top & ~legal).sum(dim=-1)


# -- 5. lenses ----------------------------------------------------------------------------------


def logit_lens(model, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... square"]:
    """Read an intermediate residual stream as if it were the last: final layer norm, then unembed."""
    return model.unembed(model.ln_final(resid))


def kl_from_final(
    lens_logits: Float[Tensor, "... square"],
    final_logits: Float[Tensor, "... square"],
) -> Float[Tensor, "..."]:
    """KL(final || lens) in nats at every position: how much the model's own output distribution
    is surprised by the lens's guess."""
    final = final_logits.log_softmax(dim=-1)
    return (final.exp() * (final - lens_logits.log_softmax(dim=-1))).sum(dim=-1)


def tuned_lens(
    model,
    resid: Float[Tensor, "... d_model"],
    A: Float[Tensor, "d_model d_model"],
    b: Float[Tensor, " d_model"],
) -> Float[Tensor, "... square"]:
    """Belrose et al. (2023)'s lens: an affine translator with a skip connection,
    h + h A + b, then the logit lens. With A = 0 and b = 0 it *is* the logit lens."""
    return logit_lens(model, resid + resid @ A + b)


def train_translator(
    model,
    resid: Float[Tensor, "sample d_model"],
    final_logits: Float[Tensor, "sample square"],
    steps: int = 150,
    lr: float = 1e-2,
) -> tuple[Float[Tensor, "d_model d_model"], Float[Tensor, " d_model"]]:
    """Fit one layer's translator (A, b), both starting at zero, by full-batch Adam on the mean
    `kl_from_final`. Only A and b learn: the model's weights stay as they are. (The loss's scale
    does not matter: Adam ignores a constant factor, so a sum over samples trains the same.)"""
    d_model = resid.shape[-1]
    A = torch.zeros(d_model, d_model, device=resid.device, requires_grad=True)
    b = torch.zeros(d_model, device=resid.device, requires_grad=True)
    optimizer = torch.optim.Adam([A, b], lr=lr)
    resid, final_logits = resid.detach(), final_logits.detach()
    for _ in range(steps):
        loss = kl_from_final(tuned_lens(model, resid, A, b), final_logits).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return A.detach(), b.detach()


# -- 6. steering ------------------------------------------------------------------------------


def mean_difference(
    resid: Float[Tensor, "sample d_model"],
    labels: Int[Tensor, "sample square"],
    square: int,
    target: int,
    source: int,
) -> Float[Tensor, " d_model"]:
    """Mean residual of the samples where `square` is in class `target` minus the mean where it
    is in class `source`: a direction found without training anything."""
    at = labels[:, square]
    return resid[at == target].mean(dim=0) - resid[at == source].mean(dim=0)


def steering_curve(
    model,
    moves: Int[Tensor, "game move"],
    layer: int,
    direction: Float[Tensor, " d_model"],
    scales: list[float],
    square: int,
    position: int,
) -> Float[Tensor, " scale"]:
    """For each scale, add `scale * direction` to the residual stream after block `layer` at one
    position, and return the model's mean probability (over games) of playing `square` next."""
    probabilities = []
    for scale in scales:
        def hook(resid, hook):
            resid = resid.clone()
            resid[:, position] += scale * direction
            return resid

        logits = model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)])
        probabilities.append(logits[:, position].softmax(dim=-1)[:, square].mean())
    return torch.stack(probabilities)
