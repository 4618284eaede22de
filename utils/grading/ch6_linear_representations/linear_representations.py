"""Graders for 6.1 "Linear representations".

Everything runs on small seeded tensors or on a tiny randomly initialised model
(utils.grading.models), never on the trained Othello model: each check takes well under
a second. Training exercises are graded on what training must achieve on planted data.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from functools import partial

import einops
import torch
import torch.nn.functional as F

from solutions.ch6_linear_representations import linear_representations as ref
from utils.data import othello
from utils.grading import Mistake, exercise
from utils.grading.feedback import CheckFailed, LearnerError
from utils.grading.models import clean_up, hooks_left, tiny_model
from utils.grading.safety import fresh

N_SQUARES = 9          # graders use a 3x3 "board": a 36-square answer would be the wrong shape


def _boards(check, games: int = 3, moves: int = 5):
    return check.randint(3, games, moves, N_SQUARES) - 1


def _legal(check, games: int = 4, moves: int = 5):
    legal = check.randn(games, moves, N_SQUARES) > 0.3
    legal[0, -2:] = False                      # a finished game: nothing to predict
    legal[1, 0] = False
    legal[2, 1, :] = True                      # every move legal
    return legal


def _model(check, **shape):
    model = tiny_model(str(check.device), **shape)
    clean_up(model)
    return model


def _model_case(check, name, model, *args, mistakes=(), fallback=None):
    """`check.case` for functions that run a model with hooks: hooks the learner leaves behind are
    reported before the reference runs (which would otherwise run them too). `fallback(got)` may name
    a mistake no `Mistake` reproduced: it returns (name, hint) or None."""
    got = check.run(model, *fresh(args), case=name)
    _expect_no_hooks(check, model, name)
    expected = check.reference(model, *fresh(args))
    check.expect(not (isinstance(expected, torch.Tensor) and isinstance(got, (list, tuple))), case=name,
                 mistake="a list, not a tensor",
                 message=f"returned a {type(got).__name__} of {len(got) if isinstance(got, (list, tuple)) else 0} "
                         f"items, not a tensor",
                 hint="Return one tensor: collect the per-scale tensors in a list and torch.stack(...) them (keep "
                      "them as tensors: no .item()), or wrap a list of numbers in torch.tensor(...).")
    try:
        check.compare(got, expected, case=name, mistakes=mistakes, inputs=((model, *args), {}), atol=1e-4,
                      check_dtype=False)
    except CheckFailed as failure:
        named = fallback(got) if failure.mistake is None and fallback is not None else None
        if named is None:
            raise
        raise CheckFailed(failure.detail, exercise=failure.exercise, case=failure.case, hint=named[1],
                          mistake=named[0]) from None


def _expect_no_hooks(check, model, case):
    left = hooks_left(model)
    clean_up(model)
    check.expect(not left, case=case, mistake="hooks left on the model",
                 message="your hooks are still attached to the model after the call, so every later forward "
                         "pass runs them too",
                 hint="Use model.run_with_hooks(...) or the `with model.hooks(fwd_hooks=...)` context manager; "
                      "both remove their hooks when they finish (model.add_hook does not).")


# -- 1. the game and the model ------------------------------------------------------------


def _sign_along(boards, *, dim, first):
    """Signs alternating along axis `dim` (first, -first, ...): the parity taken along the wrong axis."""
    index = torch.arange(boards.shape[dim], device=boards.device)
    sign = torch.where(index % 2 == 0, first, -first)
    shape = [1, 1, 1]
    shape[dim] = -1
    return boards * sign.reshape(shape)


@exercise(difficulty=1, minutes=10, hints=[
    "Multiply each board by +1 or -1: the colour of the player to move after that move.",
    "Black plays move 0, so after move 0 it is white's turn: white's stones (-1) are 'mine' there. "
    "torch.arange(n_moves) % 2 tells you the parity of each move.",
    "next_player = torch.where(torch.arange(boards.shape[1]) % 2 == 0, -1, 1); "
    "return boards * next_player[None, :, None]",
])
def test_to_mine_theirs(check):
    mistakes = [
        Mistake("the player who just moved",
                "'Mine' belongs to the player about to move. After move 0 black has just played and white "
                "moves next, so white's stones are 'mine' there: your signs are the other way round.",
                lambda boards: -ref.to_mine_theirs(boards)),
        Mistake("one player for every move",
                "The player to move alternates: the sign must change from one move to the next.",
                lambda boards: -boards),
        Mistake("unchanged", "Return the boards from the point of view of the player to move: multiply "
                             "each move's board by that player's colour (+1 black, -1 white).",
                lambda boards: boards),
        *(Mistake(f"parity along the {name} axis",
                  f"The player to move alternates from one *move* to the next (axis 1, boards.shape[1]), not "
                  f"along the {name} axis: build the signs from torch.arange(boards.shape[1]) and broadcast them "
                  f"as [1, move, 1] (sign[None, :, None]).", partial(_sign_along, dim=dim, first=first))
          for name, dim in (("game", 0), ("square", 2)) for first in (-1, 1)),
    ]
    check.case("3 games of 5 moves", _boards(check), mistakes=mistakes)
    check.case("1 game of 6 moves", _boards(check, 1, 6), mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "Three cases: 0 -> 0, positive -> 1, negative -> 2.",
    "Nested torch.where works: torch.where(boards == 0, 0, torch.where(boards > 0, 1, 2)).",
    "torch.where(boards == 0, 0, torch.where(boards > 0, 1, 2))",
])
def test_state_classes(check):
    mistakes = [
        Mistake("shifted by one", "Adding 1 maps -1, 0, +1 to 0, 1, 2: empty must be class 0, +1 class 1 and "
                                  "-1 class 2.", lambda boards: boards + 1),
        Mistake("colours swapped", "+1 (black, or mine) is class 1 and -1 (white, or theirs) is class 2.",
                lambda boards: torch.where(boards == 0, 0, torch.where(boards > 0, 2, 1))),
        Mistake("colour lost", "abs() makes both colours class 1: -1 must become class 2.",
                lambda boards: boards.abs()),
    ]
    check.case("3 games of 5 moves", _boards(check), mistakes=mistakes)
    check.case("flattened samples", _boards(check, 2, 4).reshape(8, N_SQUARES), mistakes=mistakes)


@exercise(difficulty=1, minutes=10, hints=[
    "Take the argmax over the square axis, look up whether that square is legal, and average the hits "
    "over the positions that have any legal move.",
    "legal.any(dim=-1) marks the positions to count; legal.gather(-1, top[..., None]) reads legality at the "
    "top prediction.",
    "hit = legal.gather(-1, logits.argmax(-1)[..., None])[..., 0]; return hit[legal.any(-1)].float().mean().item()",
])
def test_top1_legal_rate(check):
    def every_position(logits, legal):
        top = logits.argmax(dim=-1)
        return legal.gather(-1, top[..., None]).float().mean().item()

    def legal_mass(logits, legal):
        p = logits.softmax(dim=-1)
        return (p * legal)[legal.any(-1)].sum(-1).mean().item()

    def count(logits, legal, every=False):
        has_move = legal.any(dim=-1)
        hit = legal.gather(-1, logits.argmax(dim=-1)[..., None])[..., 0]
        return float(hit.sum() if every else hit[has_move].sum())

    def wrong_axis(logits, legal, dim=1):
        top = logits.argmax(dim=dim)
        return legal.gather(dim, top.unsqueeze(dim)).float().mean().item()

    def first_legal(logits, legal, *, every=False):
        hit = logits.argmax(dim=-1) == legal.int().argmax(dim=-1)
        return (hit if every else hit[legal.any(dim=-1)]).float().mean().item()

    def per_game(logits, legal):
        has_move = legal.any(dim=-1)
        hit = legal.gather(-1, logits.argmax(dim=-1)[..., None])[..., 0] & has_move
        rates = hit.sum(-1) / has_move.sum(-1)
        return rates[has_move.any(-1)].float().mean().item()

    mistakes = [
        Mistake("finished positions counted",
                "Leave out the positions with no legal move (the game is over): no prediction can be right "
                "there, and they would pull the rate down.", every_position),
        Mistake("averaged per game",
                "You averaged within each game, then over games, so a short game counts as much as a long one. "
                "Pool the positions instead: the rate is the number of legal top moves over the number of "
                "positions with a legal move, across all games at once.", per_game),
        Mistake("probability on legal moves",
                "Count how often the *top* prediction (argmax) is legal, not the probability the model puts "
                "on legal moves.", legal_mass),
        Mistake("a count, not a rate",
                "Return a rate, the *fraction* of positions (with a legal move) whose top prediction is legal: "
                "take the mean of the hits (.float().mean()), not their sum.", count),
        Mistake("a count, not a rate",
                "Return a rate, the *fraction* of positions (with a legal move) whose top prediction is legal: "
                "take the mean of the hits (.float().mean()), not their sum.", lambda lo, le: count(lo, le, every=True)),
        Mistake("argmax over the wrong axis",
                "The model's prediction at one position is a distribution over the *squares* (the last axis): "
                "take logits.argmax(dim=-1), which gives one square per (game, move), and gather legal along "
                "that same axis.", wrong_axis),
        Mistake("argmax over the wrong axis",
                "The model's prediction at one position is a distribution over the *squares* (the last axis): "
                "take logits.argmax(dim=-1), which gives one square per (game, move), and gather legal along "
                "that same axis.", partial(wrong_axis, dim=0)),
        *(Mistake("compared with the first legal move",
                  "Any legal square counts as a hit, not only the first one: look up whether the top square is "
                  "legal, legal.gather(-1, logits.argmax(-1)[..., None]), instead of comparing the argmax with "
                  "one particular legal move (legal.argmax(-1) is the lowest-numbered one).",
                  partial(first_legal, every=every)) for every in (False, True)),
        Mistake("illegal rate", "Return how often the top prediction is *legal*: you returned the rate of illegal "
                                "ones (1 minus the answer).",
                lambda lo, le: 1 - ref.top1_legal_rate(lo, le)),
    ]
    check.case("4 games of 5 moves", check.randn(4, 5, N_SQUARES), _legal(check), mistakes=mistakes,
               check_dtype=False)
    got = check.run(check.randn(4, 3, N_SQUARES), _legal(check, 4, 3), case="type")
    check.expect(isinstance(got, float), case="type", message=f"returned a {type(got).__name__}, not a float",
                 mistake="tensor, not number" if isinstance(got, torch.Tensor) else "not a float",
                 hint="Return a Python number: .item() on the mean.")


# -- 2. linear probes ------------------------------------------------------------------


def _probe(check, d_model=6, n_classes=3):
    return check.randn(d_model, N_SQUARES, n_classes), check.randn(N_SQUARES, n_classes)


@exercise(difficulty=1, minutes=10, hints=[
    "For every sample, square and class: the dot product of the residual vector with W[:, square, class], "
    "plus b[square, class].",
    "einops.einsum(resid, W, 'sample d_model, d_model square cls -> sample square cls')",
    "einops.einsum(resid, W, 'sample d_model, d_model square cls -> sample square cls') + b",
])
def test_probe_logits(check):
    mistakes = [
        Mistake("missing bias", "Add the bias b[square, cls] to every sample's logits.",
                lambda r, W, b: ref.probe_logits(r, W, b) - b),
        Mistake("probabilities", "Return the logits themselves; the loss applies the softmax.",
                lambda r, W, b: ref.probe_logits(r, W, b).softmax(-1)),
    ]
    W, b = _probe(check)
    check.case("10 samples, d_model 6", check.randn(10, 6), W, b, mistakes=mistakes, check_dtype=False)


def _flat(logits):
    return einops.rearrange(logits, "s q c -> (s q) c")


@exercise(difficulty=2, minutes=10, hints=[
    "F.cross_entropy expects the class axis second: flatten samples and squares into one axis first.",
    "einops.rearrange(logits, 'sample square cls -> (sample square) cls') and the labels to "
    "'(sample square)'.",
    "F.cross_entropy(einops.rearrange(logits, 's q c -> (s q) c'), einops.rearrange(labels, 's q -> (s q)'))",
])
def test_probe_loss(check):
    mistakes = [
        Mistake("summed over squares", "Average over squares as well as samples: your loss is "
                                       f"{N_SQUARES} times too large, which changes the learning rate you need.",
                lambda lo, la: ref.probe_loss(lo, la) * lo.shape[1]),
        Mistake("no log-softmax", "Cross-entropy needs log-probabilities: F.nll_loss on raw logits skips the "
                                  "log-softmax. Use F.cross_entropy, which includes it.",
                lambda lo, la: F.nll_loss(einops.rearrange(lo, "s q c -> (s q) c"), la.reshape(-1))),
        Mistake("softmax over squares",
                "The softmax runs over the classes of one square (the last axis), not over the squares.",
                lambda lo, la: -lo.log_softmax(dim=1).gather(-1, la[..., None]).mean()),
        Mistake("nll_loss on probabilities",
                "F.nll_loss expects *log*-probabilities: given softmax probabilities it returns minus the mean "
                "probability of the label, not a cross-entropy. Use log_softmax instead of softmax, or give the "
                "logits to F.cross_entropy, which applies log_softmax itself.",
                lambda lo, la: F.nll_loss(_flat(lo.softmax(-1)), la.reshape(-1))),
        Mistake("softmax before cross_entropy",
                "F.cross_entropy applies log_softmax itself: give it the raw logits. Softmax first normalises "
                "twice and squashes the loss towards log(n_classes).",
                lambda lo, la: F.cross_entropy(_flat(lo.softmax(-1)), la.reshape(-1))),
        Mistake("not averaged", "Return one number, the mean over samples and squares (F.cross_entropy's default "
                                "reduction='mean'), not the loss of every (sample, square).",
                lambda lo, la: F.cross_entropy(_flat(lo), la.reshape(-1), reduction="none")),
        Mistake("not averaged", "Return one number, the mean over samples and squares (F.cross_entropy's default "
                                "reduction='mean'), not the loss of every (sample, square).",
                lambda lo, la: F.cross_entropy(_flat(lo), la.reshape(-1), reduction="none").reshape(la.shape)),
        *(Mistake("flattened in different orders",
                  "Flatten the logits and the labels in the same order, (sample square): the i-th row of the "
                  "flattened logits must meet the i-th flattened label. Flattening one as (square sample), "
                  "e.g. via .T or a transposed rearrange, pairs each square's logits with another square's label.",
                  wrong) for wrong in (
            lambda lo, la: F.cross_entropy(_flat(lo), einops.rearrange(la, "s q -> (q s)")),
            lambda lo, la: F.cross_entropy(einops.rearrange(lo, "s q c -> (q s) c"), la.reshape(-1)))),
        Mistake("summed, not averaged", "Average over samples and squares (reduction='mean', the default): a sum "
                                        "grows with the number of samples, and the learning rate would have to "
                                        "shrink with it.",
                lambda lo, la: F.cross_entropy(_flat(lo), la.reshape(-1), reduction="sum")),
    ]
    try:
        check.case("10 samples", check.randn(10, N_SQUARES, 3), check.randint(3, 10, N_SQUARES), mistakes=mistakes)
    except LearnerError as error:
        if "Expected target size" not in error.detail:
            raise
        raise LearnerError(error.detail, exercise=error.exercise, case=error.case, mistake="class axis not moved",
                           hint="F.cross_entropy takes the classes from dim 1: given logits [sample, square, cls] "
                                f"it read the {N_SQUARES} squares as the classes and expected labels [sample, cls]. "
                                "Flatten samples and squares first (logits [(sample square), cls], labels "
                                "[(sample square)]), or move the class axis to dim 1: "
                                "F.cross_entropy(logits.permute(0, 2, 1), labels).") from None


@exercise(difficulty=1, minutes=5, hints=[
    "The prediction is the argmax over the class axis; compare with the labels.",
    "Average over the sample axis (dim 0) only, so that one accuracy per square remains.",
    "(logits.argmax(dim=-1) == labels).float().mean(dim=0)",
])
def test_probe_accuracy(check):
    mistakes = [
        Mistake("one number", "Return one accuracy per square (average over samples only, dim 0).",
                lambda lo, la: (lo.argmax(-1) == la).float().mean()),
        Mistake("per sample", "Average over the samples (dim 0), not over the squares: the answer has one "
                              "entry per square.", lambda lo, la: (lo.argmax(-1) == la).float().mean(dim=1)),
        Mistake("not averaged", "Average the right/wrong matrix over the samples: return one accuracy per square.",
                lambda lo, la: (lo.argmax(-1) == la).float()),
        Mistake("a count, not a fraction", "Return the *fraction* of samples classified correctly (between 0 and "
                                           "1): divide the count by the number of samples, i.e. .float().mean(dim=0) "
                                           "instead of .sum(dim=0).", lambda lo, la: (lo.argmax(-1) == la).sum(0)),
        Mistake("a percentage", "Return a fraction between 0 and 1, not a percentage: drop the * 100.",
                lambda lo, la: 100 * (lo.argmax(-1) == la).float().mean(0)),
        Mistake("argmax over the wrong axis", "The prediction for one square is the most likely *class*: argmax "
                                              "over the last axis (cls), logits.argmax(dim=-1), not over the "
                                              "squares (dim 1).",
                lambda lo, la: (lo.argmax(1) == la).float().mean(0)),
    ]
    # 3 squares and 3 classes first: an argmax over the wrong axis has the right shape here, and is named
    check.case("12 samples, 3 squares", check.randn(12, 3, 3), check.randint(3, 12, 3), mistakes=mistakes,
               check_dtype=False)
    check.case("12 samples", check.randn(12, N_SQUARES, 3), check.randint(3, 12, N_SQUARES), mistakes=mistakes,
               check_dtype=False)


def _planted(check, n=400, d_model=8, n_classes=3):
    """Residuals whose square states a linear probe can read exactly (plus a little noise)."""
    resid = check.randn(n, d_model)
    truth = check.randn(d_model, N_SQUARES, n_classes, scale=2.0)
    labels = ref.probe_logits(resid, truth, torch.zeros(N_SQUARES, n_classes, device=resid.device)).argmax(-1)
    return resid + 0.05 * check.randn(n, d_model), labels


def _standardised(resid, dim=0):
    return (resid - resid.mean(dim, keepdim=True)) / resid.std(dim, keepdim=True)


_STANDARDISED = ("You trained on standardised residuals (mean subtracted, divided by the standard deviation), so your "
                 "W and b read standardised vectors, and the caller applies them to raw ones: on these residuals, "
                 "which have an offset and features of very different scales, the probe reads the wrong states. "
                 "Train on `resid` as given (only `.detach()` it).")

# Recipes a learner follows instead of the docstring's, each reproduced by its output (W, b): a candidate's
# probe whose logits match one of them within the case's tolerance gets its hint.
_RECIPE_MISTAKES = [
    Mistake("standardised residuals", _STANDARDISED,
            lambda r, y, n_classes, steps, lr: ref.train_probe(_standardised(r), y, n_classes, steps, lr)),
    Mistake("standardised residuals", _STANDARDISED,   # one mean and one std for the whole tensor
            lambda r, y, n_classes, steps, lr: ref.train_probe((r - r.mean()) / r.std(), y, n_classes, steps, lr)),
    Mistake("one step short", "Your probe is the one `steps - 1` steps of Adam give: take exactly `steps` steps "
                              "(`for _ in range(steps):`, one optimizer.step() each).",
            lambda r, y, n_classes, steps, lr: ref.train_probe(r, y, n_classes, steps - 1, lr)),
    Mistake("one step too many", "Your probe is the one `steps + 1` steps of Adam give: take exactly `steps` steps "
                                 "(`for _ in range(steps):`, one optimizer.step() each).",
            lambda r, y, n_classes, steps, lr: ref.train_probe(r, y, n_classes, steps + 1, lr)),
    Mistake("SGD instead of Adam", "Your probe is the one plain SGD gives: the docstring asks for Adam, "
                                   "torch.optim.Adam([W, b], lr=lr), which adapts each weight's step size and "
                                   "gets much further in the same number of steps.",
            lambda r, y, n_classes, steps, lr: _train_probe_variant(r, y, n_classes, steps, lr, optimizer="sgd")),
    Mistake("lr ignored", "Your probe is the one Adam's default learning rate (0.001) gives: pass the lr you are "
                          "given, torch.optim.Adam([W, b], lr=lr).",
            lambda r, y, n_classes, steps, lr: ref.train_probe(r, y, n_classes, steps, 1e-3)),
    Mistake("gradients never zeroed", "Your probe is the one you get when the gradients are never reset: "
                                      "loss.backward() *adds* to .grad, so call optimizer.zero_grad() every step "
                                      "(before backward), or each step uses the sum of all past gradients.",
            lambda r, y, n_classes, steps, lr: _train_probe_variant(r, y, n_classes, steps, lr, zero_grad=False)),
]


def _train_probe_variant(resid, labels, n_classes, steps, lr, *, optimizer="adam", zero_grad=True):
    """The docstring's training loop with one thing changed, for recipe mistakes."""
    resid = resid.detach()
    W = torch.zeros(resid.shape[1], labels.shape[1], n_classes, device=resid.device, requires_grad=True)
    b = torch.zeros(labels.shape[1], n_classes, device=resid.device, requires_grad=True)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([W, b], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = ref.probe_loss(ref.probe_logits(resid, W, b), labels)
            if zero_grad:
                opt.zero_grad()
            loss.backward()
            opt.step()
    return W.detach(), b.detach()


def _tolerance(logits):
    return 0.05 * (1 + logits.abs().max().item())


def _recipe_mistake(check, case, W, b, resid, labels, args, expected):
    """Fail with a recipe mistake's hint if the candidate's probe is the one that mistake trains."""
    got = ref.probe_logits(resid, W.to(resid), b.to(resid))
    if (got - expected).abs().max().item() < _tolerance(expected):
        return
    for mistake in _RECIPE_MISTAKES:
        wrong = ref.probe_logits(resid, *mistake.output(resid, labels, *args))
        gap = (got - wrong).abs().max().item()
        check.expect(gap >= _tolerance(wrong), case=case, mistake=mistake.name, hint=mistake.hint,
                     message=f"your probe's logits differ from those of a probe trained as the docstring says by up "
                             f"to {(got - expected).abs().max().item():.3g}")


def _zero_start(check, resid, labels):
    """Trained for 0 steps, a probe is its starting point: zeros. Anything else started elsewhere, or trained
    although asked not to."""
    case = "0 steps: the starting point"
    try:
        got = check.run(resid.clone(), labels, 3, 0, 0.05, case=case)
    except LearnerError:  # code that needs at least one step is not wrong; the other cases grade it
        return
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)):
        return  # the other cases say what is wrong with the output
    W, b = (t.detach().to(resid) for t in got)
    if W.shape != (resid.shape[1], N_SQUARES, 3) or b.shape != (N_SQUARES, 3):
        return
    largest = max(W.abs().max().item(), b.abs().max().item())
    if largest == 0:
        return
    one_step = ref.train_probe(resid, labels, 3, 1, 0.05)
    gap = max((W - one_step[0]).abs().max().item(), (b - one_step[1]).abs().max().item())
    check.expect(gap > 1e-4, case=case, mistake="one step too many",
                 message="asked for 0 steps, your function took one step of Adam",
                 hint="Take exactly `steps` steps: `for _ in range(steps):`, one optimizer.step() each.")
    loss = ref.probe_loss(ref.probe_logits(resid, W, b), labels).item()
    untrained = ref.probe_loss(ref.probe_logits(resid, 0 * W, 0 * b), labels).item()
    check.expect(loss < untrained - 0.05, case=case, mistake="random start",
                 message=f"asked for 0 steps, your function returned a probe with values up to {largest:.3g}: "
                         f"untrained, a probe is where training starts, and the docstring starts from zeros",
                 hint="Start W and b at zero (torch.zeros(..., requires_grad=True)), not at random values: "
                      "a different start gives a different probe after the same steps.")
    check.expect(False, case=case, mistake="steps ignored",
                 message=f"asked for 0 steps, your function trained anyway (loss {loss:.3f}, against {untrained:.3f} "
                         f"for the zero probe)",
                 hint="Take exactly `steps` steps of Adam, the number passed in: `for _ in range(steps):`.")


@exercise(difficulty=2, minutes=20, timeout=20.0, hints=[
    "Create W [d_model, square, cls] and b [square, cls] as zeros with requires_grad=True, give them to "
    "torch.optim.Adam, and loop: loss, zero_grad, backward, step.",
    "The loss is probe_loss(probe_logits(resid, W, b), labels). Only W and b are parameters; the residuals "
    "are data: resid = resid.detach() first.",
    "resid = resid.detach(); opt = torch.optim.Adam([W, b], lr=lr); for _ in range(steps): "
    "loss = probe_loss(probe_logits(resid, W, b), labels); opt.zero_grad(); loss.backward(); opt.step()  "
    "-- then return W.detach(), b.detach()",
])
def test_train_probe(check):
    resid, labels = _planted(check)
    _zero_start(check, resid, labels)
    # residuals with an offset and features on scales from 0.1 to 10: a probe trained on standardised copies
    # of them fails on the residuals themselves
    scales = torch.logspace(-1, 1, resid.shape[1], device=resid.device)
    shifted = resid * scales + 3 * check.randn(resid.shape[1])
    for case, data, args, needs_grad in (
            ("planted linear states, 400 samples", resid, (3, 200, 0.05), False),
            ("2 classes, 60 steps at lr 0.1", resid, (2, 60, 0.1), False),
            ("residuals with an offset and uneven scales, which require grad", shifted, (3, 200, 0.05), True),
            ("5 steps at lr 0.1", resid, (3, 5, 0.1), False)):
        n_classes = args[0]
        y = labels.clamp(max=n_classes - 1)
        given = data.clone().requires_grad_(needs_grad)
        got = check.run(given, y, *args, case=case)
        check.expect(needs_grad or not given.requires_grad, case=case, mistake="residuals trained",
                     message="your function made the residuals require gradients",
                     hint="Only W and b are parameters: leave `resid` alone (no requires_grad_ on it); "
                          "`resid.detach()` is safe.")
        check.expect(given.grad is None, case=case,
                     mistake="residuals not detached" if needs_grad else "residuals trained",
                     message="after your function, `resid.grad` is filled in: the residuals collected gradients "
                             "during training",
                     hint="Residuals from a model run with gradients on require grad, and then loss.backward() "
                          "also fills in resid.grad at every step. Start with `resid = resid.detach()`: the "
                          "residuals are data, not parameters."
                     if needs_grad else "Only W and b are parameters: leave `resid` alone (no requires_grad_ on "
                                        "it); `resid.detach()` is safe.")
        check.expect(isinstance(got, tuple) and len(got) == 2, case=case, message="did not return a pair (W, b)",
                     hint="Return the trained weight and bias: `return W.detach(), b.detach()`.")
        W, b = got
        shapes_ok = (isinstance(W, torch.Tensor) and isinstance(b, torch.Tensor)
                     and tuple(W.shape) == (8, N_SQUARES, n_classes) and tuple(b.shape) == (N_SQUARES, n_classes))
        classes_ignored = (not shapes_ok and isinstance(W, torch.Tensor) and W.ndim == 3
                           and tuple(W.shape[:2]) == (8, N_SQUARES) and W.shape[-1] == 3)
        check.expect(shapes_ok, case=case, mistake="n_classes ignored" if classes_ignored else None,
                     message=f"W has shape {tuple(getattr(W, 'shape', ()))} and b "
                                        f"{tuple(getattr(b, 'shape', ()))}; expected (8, {N_SQUARES}, {n_classes}) "
                                        f"and ({N_SQUARES}, {n_classes})",
                     hint="W is [d_model, square, cls] and b is [square, cls], with cls = n_classes: size the "
                          "class axis by the `n_classes` argument, not a fixed 3.")
        check.expect(not W.requires_grad and not b.requires_grad, case=case, mistake="not detached",
                     message="the returned tensors still require grad",
                     hint="Return W.detach(), b.detach(): the caller should get plain tensors, not a graph.")
        W_ref, b_ref = ref.train_probe(data, y, *args)
        expected = ref.probe_logits(data, W_ref, b_ref)
        _recipe_mistake(check, case, W, b, data, y, args, expected)
        accuracy = ref.probe_accuracy(ref.probe_logits(data, W, b), y).mean().item()
        target = ref.probe_accuracy(ref.probe_logits(data, W_ref, b_ref), y).mean().item()
        untrained = bool(W.abs().max() == 0)
        check.expect(accuracy >= target - 0.03, case=case, mistake="untrained" if untrained else "undertrained",
                     message=f"your probe reads {accuracy:.0%} of the planted states correctly; a probe trained as "
                             f"the docstring says reads {target:.0%}",
                     hint="Your W is still all zeros: is it the tensor the optimizer updates, and do you call "
                          "optimizer.step() in the loop?" if untrained else
                          "Train for the given steps with the given lr, Adam, full batch, starting from zeros, "
                          "and zero the gradients every step.")
        check.expect(bool(b.abs().max() > 0), case=case, mistake="bias not trained",
                     message="the bias b is still all zeros after training",
                     hint="Give both W and b to the optimizer: torch.optim.Adam([W, b], lr=lr).")
        gap = (ref.probe_logits(data, W, b) - expected).abs().max().item()
        check.expect(gap < _tolerance(expected), case=case, mistake="another recipe",
                     message=f"your probe's logits differ from those of a probe trained as the docstring says by up "
                             f"to {gap:.3g}",
                     hint="Follow the recipe exactly: W and b start at zero, Adam with the given lr, full batch, "
                          "exactly `steps` steps of probe_loss; a different start, lr or step count gives a "
                          "different probe.")


# -- 3. probing done right ------------------------------------------------------------------


@exercise(difficulty=2, minutes=10, hints=[
    "Build the previous move of every move: shift the moves right by one along the move axis and put the "
    "last token id (table.shape[0] - 1) in front.",
    "previous = torch.cat([torch.full_like(moves[:, :1], pad), moves[:, :-1]], dim=1); then index the table with "
    "two index tensors.",
    "return table[previous, moves]",
])
def test_control_labels(check):
    def shifted(moves, first):
        return torch.cat([torch.full_like(moves[:, :1], first), moves[:, :-1]], dim=1)

    mistakes = [
        Mistake("previous and current swapped", "The table is indexed [previous move, move, square]: the "
                                                "previous move comes first.",
                lambda moves, table: table[moves, shifted(moves, table.shape[0] - 1)]),
        Mistake("not shifted", "Use the *previous* move as the first index: shift the moves right by one.",
                lambda moves, table: table[moves, moves]),
        Mistake("wrapped around", "torch.roll wraps the last move round to the front; before the first move "
                                  "there is no previous move, so use the last token id (table.shape[0] - 1).",
                lambda moves, table: table[torch.roll(moves, 1, dims=1), moves]),
        Mistake("0 before the first move", "Before the first move use the last token id (table.shape[0] - 1), "
                                           "not 0, which is a real square.",
                lambda moves, table: table[shifted(moves, 0), moves]),
    ]
    def following(moves, table, *, swapped=False):
        nxt = torch.cat([moves[:, 1:], torch.full_like(moves[:, :1], table.shape[0] - 1)], dim=1)
        return table[nxt, moves] if swapped else table[moves, nxt]

    nxt_hint = ("Use the *previous* move, the one before each move (shift the moves right by one along the move axis, "
                "the last token id in front), not the next one: after move t, only moves t - 1 and t are known.")
    mistakes += [Mistake("next move, not previous", nxt_hint, following),
                 Mistake("next move, not previous", nxt_hint, partial(following, swapped=True))]
    mistakes.append(Mistake("othello.PAD hard-coded",
                            f"Use the table's last token id, table.shape[0] - 1: the function takes any table, and "
                            f"with this one's 40 token ids othello.PAD ({othello.PAD}) is a real move.",
                            lambda moves, table: table[shifted(moves, othello.PAD), moves]))
    table = check.randint(3, 37, 37, N_SQUARES)
    check.case("4 games of 6 moves", check.randint(36, 4, 6), table, mistakes=mistakes)
    # a table over more tokens than Othello's: its last token id is not othello.PAD
    check.case("a table over 40 token ids", check.randint(39, 3, 6), check.randint(3, 40, 40, N_SQUARES),
               mistakes=mistakes)


def _baseline_data(check, games=6, moves=4):
    train = check.randint(3, games, moves, N_SQUARES)
    test = check.randint(3, 3, moves, N_SQUARES)
    valid_train = torch.ones(games, moves, dtype=torch.bool, device=train.device)
    valid_train[:3, -2:] = False
    train[:3, -2:] = 2                     # padding rows repeat one class: counting them changes the guess
    valid_test = torch.ones(3, moves, dtype=torch.bool, device=train.device)
    valid_test[0, -1] = False
    return train, test, valid_train, valid_test


@exercise(difficulty=2, minutes=15, hints=[
    "Count, over the valid training positions, how often each class occurs at every (move, square); the "
    "guess is the most frequent one. Then score that guess on the valid test positions.",
    "F.one_hot(train_labels, n_classes) * valid_train[..., None, None], summed over games, has shape "
    "[move, square, cls]; argmax over cls is the guess.",
    "guess = (F.one_hot(train_labels, n_classes) * valid_train[..., None, None]).sum(0).argmax(-1); "
    "correct = (test_labels == guess) * valid_test[..., None]; return correct.sum((0, 1)) / valid_test.sum()",
])
def test_position_baseline(check):
    def unmasked(train, test, vtr, vte, n_classes=3):
        return ref.position_baseline(train, test, torch.ones_like(vtr), vte, n_classes)

    def all_test(train, test, vtr, vte, n_classes=3):
        return ref.position_baseline(train, test, vtr, torch.ones_like(vte), n_classes)

    def per_square_only(train, test, vtr, vte, n_classes=3):
        counts = (F.one_hot(train, n_classes) * vtr[..., None, None]).sum(dim=(0, 1))
        correct = (test == counts.argmax(-1)).float() * vte[..., None]
        return correct.sum(dim=(0, 1)) / vte.sum()

    def fit_on_test(train, test, vtr, vte, n_classes=3):
        return ref.position_baseline(test, test, vte, vte, n_classes)

    def guess(train, vtr, n_classes):
        return (F.one_hot(train, n_classes) * vtr[..., None, None]).sum(0)

    def ties_high(train, test, vtr, vte, n_classes=3):
        best = n_classes - 1 - guess(train, vtr, n_classes).flip(-1).argmax(-1)
        return ((test == best) & vte[..., None]).sum((0, 1)) / vte.sum()

    def divided(train, test, vtr, vte, n_classes=3, *, by):
        hits = ((test == guess(train, vtr, n_classes).argmax(-1)) & vte[..., None]).float()
        if by == "game mean":
            return (hits.sum(1) / vte.sum(1, keepdim=True)).mean(0)
        if by == "move mean":
            return (hits.sum(0) / vte.sum(0)[:, None]).mean(0)
        return hits.sum((0, 1)) / (vte.shape[0] if by == "games" else vte.numel())

    mistakes = [
        Mistake("padding counted in training", "Count only the training positions that hold a move "
                                               "(valid_train): padding repeats the final board.", unmasked),
        Mistake("padding scored", "Score only the valid test positions and divide by their number.", all_test),
        Mistake("one guess per square", "Guess separately for every move number: early in a game most squares "
                                        "are empty, late most are full.", per_square_only),
        Mistake("fitted on the test games", "Find the most common classes on the *training* games and score "
                                            "them on the test games.", fit_on_test),
        Mistake("ties to the higher class", "When two classes are equally common, guess the *lower* one (the "
                                            "docstring's rule, which argmax follows): take counts.argmax(-1) "
                                            "directly.", ties_high),
        Mistake("divided by the number of games", "Divide by the number of valid test *positions*, "
                                                  "valid_test.sum(), not by the number of test games.",
                partial(divided, by="games")),
        Mistake("divided by every test position", "Divide by the number of *valid* test positions, "
                                                  "valid_test.sum(), not by every (game, move) including padding.",
                partial(divided, by="all")),
        Mistake("averaged per game", "Pool the valid test positions of all games: sum the hits and divide by "
                                     "valid_test.sum(), rather than averaging within each game first.",
                partial(divided, by="game mean")),
        Mistake("averaged per move number", "Pool the valid test positions: sum the hits over games *and* moves "
                                            "and divide by valid_test.sum(), rather than taking an accuracy per "
                                            "move number first and averaging those (late moves, where padding "
                                            "leaves fewer games, would weigh as much as early ones).",
                partial(divided, by="move mean")),
    ]
    check.case("6 training and 3 test games", *_baseline_data(check), mistakes=mistakes, check_dtype=False)


# -- 4. intervening along a probe direction ---------------------------------------------------


@exercise(difficulty=1, minutes=10, hints=[
    "The probe's logit difference target - source at one square is resid @ (W[:, square, target] - "
    "W[:, square, source]) plus a constant.",
    "Take that difference of columns and divide it by its norm.",
    "d = W[:, square, target] - W[:, square, source]; return d / d.norm()",
])
def test_class_direction(check):
    mistakes = [
        Mistake("reversed", "The direction points *towards* target: W[..., target] - W[..., source].",
                lambda W, s, a, b: -ref.class_direction(W, s, a, b)),
        Mistake("not normalised", "Return a unit vector: divide by the difference's norm.",
                lambda W, s, a, b: W[:, s, b] - W[:, s, a]),
        Mistake("target column only", "Subtract the source class's weights: only the difference of the two "
                                      "logits decides between them.",
                lambda W, s, a, b: W[:, s, b] / W[:, s, b].norm()),
        Mistake("divided by the squared norm", "Divide the difference by its norm, d / d.norm(), to get a unit "
                                               "vector: d / (d @ d) divides by the norm *squared*.",
                lambda W, s, a, b: (W[:, s, b] - W[:, s, a]) / (W[:, s, b] - W[:, s, a]).norm() ** 2),
        Mistake("wrong axis of W", "W is [d_model, square, cls]: the direction lives in the d_model axis, so keep "
                                   "it whole and index the other two, W[:, square, target] - W[:, square, source].",
                lambda W, s, a, b: F.normalize(W[s, :, b] - W[s, :, a], dim=0)),
        Mistake("L1 norm", "Divide by the Euclidean (L2) length, d.norm() (F.normalize's default p=2), so that "
                           "the direction has unit length: dividing by the sum of absolute values (the L1 norm) "
                           "gives a shorter vector.",
                lambda W, s, a, b: (W[:, s, b] - W[:, s, a]) / (W[:, s, b] - W[:, s, a]).abs().sum()),
        Mistake("columns normalised separately", "Normalise the *difference* once: normalising each class's "
                                                 "column first and then subtracting gives a vector that is "
                                                 "neither unit length nor along the logit difference.",
                lambda W, s, a, b: F.normalize(W[:, s, b], dim=0) - F.normalize(W[:, s, a], dim=0)),
    ]
    W, _ = _probe(check)
    check.case("square 4, class 1 -> 2", W, 4, 1, 2, mistakes=mistakes)
    check.case("square 0, class 2 -> 1", W, 0, 2, 1, mistakes=mistakes)


@exercise(difficulty=2, minutes=10, hints=[
    "Split each vector into its component along the unit direction and the rest; flip the sign of the first.",
    "unit = direction / direction.norm(); the component is (resid @ unit) times unit.",
    "return resid - 2 * (resid @ unit)[..., None] * unit",
])
def test_reflect_along(check):
    mistakes = [
        Mistake("not normalised", "Normalise the direction first: with a vector of length L the component you "
                                  "subtract is L^2 times too big.",
                lambda r, d: r - 2 * (r @ d)[..., None] * d),
        Mistake("projected out", "Subtract the component *twice*: subtracting it once only removes it "
                                 "(the probe would read 'undecided'), a reflection flips it.",
                lambda r, d: r - ((r @ (d / d.norm()))[..., None] * (d / d.norm()))),
        Mistake("only the component", "Return the whole reflected vector, not only its part along the direction.",
                lambda r, d: -(r @ (d / d.norm()))[..., None] * (d / d.norm())),
        Mistake("component added", "*Subtract* twice the component along the direction (resid - 2 (resid . u) u): "
                                   "adding it triples the component instead of flipping its sign.",
                lambda r, d: r + 2 * (r @ (d / d.norm()))[..., None] * (d / d.norm())),
        Mistake("normalised once", "Divide by the norm in *both* places the direction appears (use the unit vector "
                                   "u = d / |d| for the dot product and for the vector you subtract), or by |d|^2 "
                                   "once: dividing by |d| only once leaves the component |d| times too big.",
                lambda r, d: r - 2 * (r @ d)[..., None] * d / d.norm()),
    ]
    direction = check.randn(6, scale=3.0)
    check.case("8 vectors, a direction of length ~7", check.randn(8, 6), direction, mistakes=mistakes)
    check.case("a [game, move, d_model] batch", check.randn(2, 3, 6), direction, mistakes=mistakes)


def _intervene_variant(*, every=False, hook="resid_post", project=False, factor=2.0, normalise=True, offset=0,
                       next_layer=False, added=False):
    def variant(model, moves, layer, direction, position):
        unit = direction / direction.norm() if normalise else direction

        def edit(resid, hook):
            resid = resid.clone()
            where = slice(None) if every else position + offset
            part = resid[:, where]
            along = (part @ unit)[..., None] * unit
            resid[:, where] = part + unit if added else part - (1 if project else factor) * along
            return resid

        return model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer + next_layer}.hook_{hook}", edit)])
    return variant


_NO_EFFECT = ("Your edit never reaches the model: the logits at `position` are exactly the unedited ones. A hook "
              "that clones the residual and edits the clone must *return* it (`return resid`), or TransformerLens "
              "keeps the original; and the edit goes at `position` itself (resid[:, position]), not a neighbour.")


@exercise(difficulty=2, minutes=15, hints=[
    "Write a hook for blocks.{layer}.hook_resid_post that changes only `position` (all games), and run the "
    "model with it using model.run_with_hooks.",
    "Inside the hook: resid = resid.clone(); resid[:, position] = reflect_along(resid[:, position], "
    "direction); return resid.",
    "return model.run_with_hooks(moves, fwd_hooks=[(f'blocks.{layer}.hook_resid_post', hook)]) with the hook "
    "from the previous hint",
])
def test_intervene(check):
    mistakes = [
        Mistake("every position", "Edit only the residual at `position`; later moves should see the edit "
                                  "only through attention.", _intervene_variant(every=True)),
        Mistake("before the block", "Edit the residual stream *after* block `layer`: the hook is "
                                    "blocks.{layer}.hook_resid_post.", _intervene_variant(hook="resid_pre")),
        Mistake("projected out", "Reflect (subtract the component twice), as reflect_along does.",
                _intervene_variant(project=True)),
        Mistake("no effect", _NO_EFFECT, lambda model, moves, *_: model(moves)),
        Mistake("one position late", "Edit the residual at `position` itself (resid[:, position]), not at "
                                     "position + 1: the logits at `position` must already see the edit.",
                _intervene_variant(offset=1)),
        Mistake("one position early", "Edit the residual at `position` itself (resid[:, position]), not at "
                                      "position - 1.", _intervene_variant(offset=-1)),
        Mistake("direction not normalised", "Reflect along the *unit* direction: direction may have any length, "
                                            "so normalise it first (or call reflect_along, which does).",
                _intervene_variant(normalise=False)),
        Mistake("component added", "Subtract twice the component (resid - 2 (resid . u) u), as reflect_along "
                                   "does: adding it triples the component instead of flipping it.",
                _intervene_variant(factor=-2.0)),
        Mistake("one block late", "Edit the residual stream after block `layer`, blocks.{layer}.hook_resid_post, "
                                  "not after block layer + 1.", _intervene_variant(next_layer=True)),
        Mistake("inside the block", "Edit the residual stream *after* block `layer` "
                                    "(blocks.{layer}.hook_resid_post), not between its attention and MLP "
                                    "(hook_resid_mid).", _intervene_variant(hook="resid_mid")),
        *(Mistake("direction added", "Reflect the residual along the direction, resid - 2 (resid . u) u with u the "
                                     "unit direction (reflect_along does it): adding the direction moves every "
                                     "game's residual by the same vector instead of flipping its component.",
                  _intervene_variant(added=True, normalise=normalise)) for normalise in (False, True)),
    ]
    model = _model(check)
    direction = check.randn(24)
    last = model.cfg.n_layers - 1
    try:
        for name, moves, layer, position in (("layer 1, position 2", check.randint(12, 3, 6), 1, 2),
                                             ("layer 0, position 4", check.randint(12, 2, 6), 0, 4),
                                             (f"layer {last}, the last block, position 3", check.randint(12, 2, 6),
                                              last, 3)):
            try:
                _model_case(check, name, model, moves, layer, direction, position, mistakes=mistakes,
                            fallback=partial(_unedited_at, check, model, moves, position))
            except LearnerError as error:
                if f"blocks.{layer + 1}.hook_resid_pre" not in error.detail:
                    raise
                raise LearnerError(error.detail, exercise=error.exercise, case=error.case,
                                   mistake="the next block's hook_resid_pre",
                                   hint=f"The residual stream after block `layer` is "
                                        f"blocks.{{layer}}.hook_resid_post. The next block's hook_resid_pre holds "
                                        f"the same values, except after the last block (here layer {layer}), "
                                        f"which has no next block: use hook_resid_post.") from None
    finally:
        clean_up(model)


def _unedited_at(check, model, moves, position, got):
    """A wrong intervention whose logits at `position` are the unedited ones: the edit never reached it."""
    if not isinstance(got, torch.Tensor):
        return None
    with torch.no_grad():
        clean = model(moves.to(check.device))
    got = got.detach().to(clean)
    if got.shape == clean.shape and torch.allclose(got[:, position], clean[:, position], atol=1e-5, rtol=1e-5):
        return "no effect", _NO_EFFECT
    return None


@exercise(difficulty=2, minutes=15, hints=[
    "N differs per position: legal.sum(-1). Rank the moves by logit (rank 0 = most likely); a move is in the "
    "top N if its rank is below N.",
    "The rank of each move is logits.argsort(-1, descending=True).argsort(-1) (0 = most likely).",
    "in_top = rank < legal.sum(-1, keepdim=True); return (in_top & ~legal).sum(-1)",
])
def test_top_n_errors(check):
    def top1(logits, legal):
        return (~legal.gather(-1, logits.argmax(-1)[..., None])[..., 0]).long()

    def ascending(logits, legal):
        return ref.top_n_errors(-logits, legal)

    def threshold(logits, legal):
        n = legal.sum(-1, keepdim=True).clamp(min=1)
        return ((logits.softmax(-1) > 1 / n) & ~legal).sum(-1)

    def in_top_n(logits, legal):
        rank = logits.argsort(dim=-1, descending=True).argsort(dim=-1)
        return rank < legal.sum(dim=-1, keepdim=True)

    fraction = ("Return the number of illegal moves among the top N, an integer count, not a fraction of N (or of "
                "the squares): 0 means the top N are exactly the legal moves, 2 means two of them are illegal.")
    mistakes = [
        Mistake("a fraction, not a count", fraction,
                lambda logits, legal: (in_top_n(logits, legal) & ~legal).sum(-1) / legal.sum(-1)),
        Mistake("a fraction, not a count", fraction,
                lambda logits, legal: (in_top_n(logits, legal) & ~legal).sum(-1) / legal.sum(-1).clamp(min=1)),
        Mistake("a fraction, not a count", fraction,
                lambda logits, legal: (in_top_n(logits, legal) & ~legal).float().mean(-1)),
        Mistake("legal moves counted", "Count the *illegal* moves among the top N (in_top & ~legal): you counted "
                                       "the legal ones, so a perfect prediction scores N instead of 0.",
                lambda logits, legal: (in_top_n(logits, legal) & legal).sum(-1)),
        Mistake("top 1 only", "Take as many top moves as there are legal moves at that position, not one.", top1),
        Mistake("least likely first", "Rank by descending logit: rank 0 is the most likely move.", ascending),
        Mistake("probability threshold", "Count the N most likely moves (N = number of legal moves), whatever "
                                         "their probabilities.", threshold),
        Mistake("top N + 1", "Ranks count from 0, so the top N are the ranks 0 ... N - 1: use rank < N, not "
                             "rank <= N (which takes N + 1 moves).",
                lambda logits, legal: ((_ranks(logits) <= legal.sum(-1, keepdim=True)) & ~legal).sum(-1)),
        Mistake("top N - 1", "Ranks count from 0, so the top N are the ranks 0 ... N - 1: use rank < N (rank < "
                             "N - 1 takes only N - 1 moves).",
                lambda logits, legal: ((_ranks(logits) < legal.sum(-1, keepdim=True) - 1) & ~legal).sum(-1)),
        Mistake("sort order used as ranks", "argsort gives the *indices* of the moves in order of logit "
                                            "(order[0] is the best square), not each move's rank. Argsort twice, "
                                            "logits.argsort(-1, descending=True).argsort(-1), to get every "
                                            "square's rank, or scatter the first N indices of the order into a "
                                            "mask.",
                lambda logits, legal: ((logits.argsort(-1, descending=True) < legal.sum(-1, keepdim=True))
                                       & ~legal).sum(-1)),
    ]
    legal = _legal(check)
    legal[3, 2] = False
    legal[3, 2, :3] = True
    check.case("4 games of 5 moves", check.randn(4, 5, N_SQUARES), legal, mistakes=mistakes)
    _tied_case(check, mistakes)


def _ranks(logits):
    return logits.argsort(dim=-1, descending=True).argsort(dim=-1)


def _tie_bounds(logits, legal):
    """The fewest and the most illegal moves among N moves that a top N can hold when logits tie at the
    cut-off: every move above the N-th logit is in, and any of those equal to it may fill the rest."""
    n = legal.sum(-1, keepdim=True)
    ordered = logits.sort(dim=-1, descending=True).values
    cut = ordered.gather(-1, (n - 1).clamp(min=0))
    above = (logits > cut) & (n > 0)
    tied = (logits == cut) & (n > 0)
    free = n[..., 0] - above.sum(-1)                                # slots the tied moves fill
    sure = (above & ~legal).sum(-1)
    tied_illegal, tied_legal = (tied & ~legal).sum(-1), (tied & legal).sum(-1)
    return sure + (free - tied_legal).clamp(min=0), sure + torch.minimum(free, tied_illegal)


_TIES = ("When several moves tie at the N-th logit, the top N still holds exactly N moves: all those above the tie, "
         "then any of the tied ones until there are N (a sort, argsort or topk does this for you).")


def _tied_case(check, mistakes):
    """Logits with ties at the cut-off: any choice among the tied moves is accepted (the docstring's rule)."""
    case = "tied logits at the cut-off"
    logits = check.randint(3, 4, 5, N_SQUARES).float()
    legal = _legal(check)
    got = check.run(logits, legal, case=case)
    if isinstance(got, torch.Tensor) and got.shape == legal.shape[:-1] and not got.is_floating_point():
        low, high = _tie_bounds(logits, legal)
        given = got.to(low)
        if bool(((given >= low) & (given <= high)).all()):
            check.expect(True, case=case, message="")
            return

    def tie_rule(logits, legal, *, strict):
        n = legal.sum(-1, keepdim=True)
        ordered = logits.sort(dim=-1, descending=True).values
        if strict:  # above the (N+1)-th logit
            top = (logits > ordered.gather(-1, n.clamp(max=logits.shape[-1] - 1))) | (n == logits.shape[-1])
        else:       # at least the N-th logit
            top = (logits >= ordered.gather(-1, (n - 1).clamp(min=0))) & (n > 0)
        return (top & ~legal).sum(-1)

    tie_mistakes = [
        Mistake("ties all counted", f"{_TIES} Counting every move at least as likely as the N-th one takes more "
                                    f"than N when they tie.", partial(tie_rule, strict=False)),
        Mistake("tied moves left out", f"{_TIES} Counting only the moves strictly above the (N+1)-th logit "
                                       f"takes fewer than N when the N-th and the (N+1)-th tie.", partial(tie_rule, strict=True)),
    ]
    check.compare(got, check.reference(logits, legal), case=case, mistakes=[*tie_mistakes, *mistakes],
                  inputs=((logits, legal), {}))


# -- 5. lenses ----------------------------------------------------------------------------------


@exercise(difficulty=1, minutes=10, hints=[
    "The last residual stream goes through the final layer norm and then the unembedding.",
    "model.ln_final and model.unembed are both modules you can call on a tensor.",
    "return model.unembed(model.ln_final(resid))",
])
def test_logit_lens(check):
    def manual_ln(m, r, *, unbiased):
        centred = r - r.mean(-1, keepdim=True)
        scale = (centred.var(-1, keepdim=True, unbiased=unbiased) + m.cfg.eps).sqrt()
        return m.unembed(centred / scale * m.ln_final.weight + m.ln_final.bias)

    mistakes = [
        Mistake("no final layer norm", "Apply model.ln_final before the unembedding, as the model does to its "
                                       "last residual stream.", lambda m, r: m.unembed(r)),
        Mistake("probabilities", "Return logits (no softmax).",
                lambda m, r: ref.logit_lens(m, r).softmax(-1)),
        Mistake("log-probabilities", "Return the logits themselves, not log_softmax of them: the lens is the "
                                     "model's own last two steps, and the model outputs logits.",
                lambda m, r: ref.logit_lens(m, r).log_softmax(-1)),
        _NO_UNEMBED_BIAS,
        Mistake("layer norm without its weights", "Use the model's own final layer norm, model.ln_final: it scales "
                                                  "and shifts by its learned weight and bias after normalising "
                                                  "(F.layer_norm without weight= and bias=, or a hand-written "
                                                  "normalisation, leaves them out).",
                lambda m, r: m.unembed(F.layer_norm(r, r.shape[-1:], eps=m.cfg.eps))),
        Mistake("unbiased variance", "Layer norm divides by the *biased* standard deviation (mean of squares, "
                                     "unbiased=False); .std() or .var() default to the unbiased one (divide by "
                                     "d - 1). Simplest: call model.ln_final.",
                partial(manual_ln, unbiased=True)),
    ]
    model = _model(check, d_vocab_out=9)
    with _unembed_bias(check, model):
        check.case("resid [2, 5, 24]", model, check.randn(2, 5, 24, scale=2.0), mistakes=mistakes, atol=1e-4)
        check.case("resid [7, 24]", model, check.randn(7, 24), mistakes=mistakes, atol=1e-4)


_NO_UNEMBED_BIAS = Mistake("no unembedding bias", "The unembedding has a bias: logits = x @ W_U + b_U. Call "
                                                  "model.unembed(x), which adds it, or add model.b_U yourself.",
                           lambda m, r, *translator: _unembed_no_bias(m, r, *translator))


def _unembed_no_bias(model, resid, A=None, b=None):
    if A is not None:
        resid = resid + resid @ A + b
    return model.ln_final(resid) @ model.W_U


@contextmanager
def _unembed_bias(check, model):
    """The shared tiny model with a random unembedding bias for the duration (its own is zero, which would
    hide a forgotten b_U); put back afterwards."""
    bias = model.unembed.original_component.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias.copy_(check.randn(bias.shape[0]))
    try:
        yield
    finally:
        with torch.no_grad():
            bias.copy_(saved)


@exercise(difficulty=2, minutes=10, hints=[
    "KL(P || Q) = sum over squares of P * (log P - log Q), with P the final distribution and Q the lens's.",
    "Work with log_softmax of both logits; exp() of the final one gives P.",
    "final = final_logits.log_softmax(-1); return (final.exp() * (final - lens_logits.log_softmax(-1))).sum(-1)",
])
def test_kl_from_final(check):
    def kl(p_logits, q_logits):
        p = p_logits.log_softmax(-1)
        return (p.exp() * (p - q_logits.log_softmax(-1))).sum(-1)

    mistakes = [
        Mistake("reversed", "Weight by the *final* distribution: KL(final || lens), not KL(lens || final).",
                lambda lens, final: kl(lens, final)),
        Mistake("averaged over squares", "Sum over the squares; a mean divides the KL by their number.",
                lambda lens, final: ref.kl_from_final(lens, final) / lens.shape[-1]),
        Mistake("raw logits", "Normalise first: log_softmax turns logits into log-probabilities.",
                lambda lens, final: (final.softmax(-1) * (final - lens)).sum(-1)),
        Mistake("raw logits", "F.kl_div's first argument must be the lens's *log*-probabilities: pass "
                              "lens_logits.log_softmax(-1), not the raw logits.",
                lambda lens, final: F.kl_div(lens, final.softmax(-1), reduction="none").sum(-1)),
        Mistake("bits, not nats", "The KL is in nats: use natural logarithms (log_softmax, .log()). log2 gives "
                                  "bits, 1 / ln 2 = 1.44 times the value in nats.",
                lambda lens, final: ref.kl_from_final(lens, final) / math.log(2)),
        *(Mistake("reduced to one number", "Return one KL per position (shape lens_logits.shape[:-1]): sum over "
                                          "the squares only. F.kl_div reduces everything unless you pass "
                                          "reduction='none' and then .sum(-1).",
                  partial(_kl_div_reduced, reduction=reduction))
          for reduction in ("batchmean", "mean", "sum")),
        Mistake("reduced to one number", "Return one KL per position (shape lens_logits.shape[:-1]): sum over "
                                         "the squares only, do not average over the positions.",
                lambda lens, final: ref.kl_from_final(lens, final).mean()),
        Mistake("log_target missing", "F.kl_div reads its target as *probabilities* unless you pass "
                                      "log_target=True: with log-probabilities as the target it takes the log of "
                                      "negative numbers (NaN). Pass log_target=True, or give final_logits.softmax(-1).",
                lambda lens, final: F.kl_div(lens.log_softmax(-1), final.log_softmax(-1), reduction="none").sum(-1)),
        *(Mistake("softmax over the wrong axis", f"Normalise over the squares, the last axis (log_softmax(-1)), not "
                                                f"axis {dim}: each position's distribution sums to 1 over the squares.",
                  partial(_kl_axis, dim=dim)) for dim in (0, 1)),
    ]
    check.case("[3, 4, 9] logits", check.randn(3, 4, 9, scale=2.0), check.randn(3, 4, 9, scale=2.0),
               mistakes=mistakes, check_dtype=False)
    # both NaN here, a missing log_target and softmax().log() look alike: the case hint names the latter
    check.case("very confident logits", check.randn(2, 9, scale=200.0), check.randn(2, 9, scale=200.0),
               mistakes=[m for m in mistakes if m.name != "log_target missing"], check_dtype=False,
               hint="Use log_softmax, not softmax().log(): with large logits a probability underflows to 0 and "
                    "its log is -inf.")


def _kl_axis(lens, final, *, dim):
    p = final.log_softmax(dim)
    return (p.exp() * (p - lens.log_softmax(dim))).sum(-1)


def _kl_div_reduced(lens, final, *, reduction):
    with warnings.catch_warnings():  # reduction="mean" warns that it is not "batchmean": that is the mistake
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(lens.log_softmax(-1), final.log_softmax(-1), log_target=True, reduction=reduction)


@exercise(difficulty=1, minutes=10, hints=[
    "The translator keeps the residual and adds a learned correction: h + h A + b.",
    "Translate first, then apply logit_lens to the result.",
    "return logit_lens(model, resid + resid @ A + b)",
])
def test_tuned_lens(check):
    mistakes = [
        Mistake("no skip connection", "Keep the residual itself: the translator is h + h A + b, so that A = 0 "
                                      "gives back the logit lens.",
                lambda m, r, A, b: ref.logit_lens(m, r @ A + b)),
        Mistake("A transposed", "Multiply the row vector h by A on the right: h @ A.",
                lambda m, r, A, b: ref.logit_lens(m, r + r @ A.T + b)),
        Mistake("missing bias", "Add the translator's bias b.",
                lambda m, r, A, b: ref.logit_lens(m, r + r @ A)),
        Mistake("translator after the layer norm", "Translate the residual stream itself, *before* the final "
                                                   "layer norm: logit_lens(model, h + h A + b). The translator "
                                                   "maps layer-l residuals to last-layer residuals, which "
                                                   "ln_final then normalises.",
                lambda m, r, A, b: m.unembed(m.ln_final(r) + m.ln_final(r) @ A + b)),
        Mistake("bias multiplied by A", "The translator is h + h A + b: add b after the product, not (h + b) A.",
                lambda m, r, A, b: ref.logit_lens(m, r + (r + b) @ A)),
        _NO_UNEMBED_BIAS,
        Mistake("translator not applied", "Your output is the plain logit lens: translate the residual first, "
                                          "logit_lens(model, resid + resid @ A + b).",
                lambda m, r, A, b: ref.logit_lens(m, r)),
    ]
    model = _model(check, d_vocab_out=9)
    A, b = check.randn(24, 24, scale=0.3), check.randn(24)
    with _unembed_bias(check, model):
        check.case("resid [2, 5, 24]", model, check.randn(2, 5, 24), A, b, mistakes=mistakes, atol=1e-4)


@exercise(difficulty=3, minutes=20, timeout=30.0, hints=[
    "Same loop as train_probe: A and b start at zero with requires_grad=True, Adam on [A, b], the loss is "
    "kl_from_final(tuned_lens(model, resid, A, b), final_logits).mean().",
    "Give the optimizer A and b only, never model.parameters(): the model must not change.",
    "opt = torch.optim.Adam([A, b], lr=lr); loop steps times: loss, opt.zero_grad(), loss.backward(), opt.step(); "
    "return A.detach(), b.detach()",
])
def test_train_translator(check):
    model = _model(check, d_vocab_out=9)
    case = "a tiny model's layer-0 residuals"
    tokens = check.randint(12, 16, 6)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    resid = einops.rearrange(cache["blocks.0.hook_resid_post"], "b p d -> (b p) d")
    final = einops.rearrange(logits, "b p v -> (b p) v")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.requires_grad_(True)  # as a loaded model is: training it by mistake must show
    try:
        # the model is passed through a closure: a changed model is diagnosed below, not as an edited input
        got = check.call(lambda r, f, steps, lr: check.candidate(model, r, f, steps, lr), resid, final, 150, 1e-2,
                         case=case)
        changed = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
        check.expect(not changed, case=case, mistake="model trained",
                     message="the model's own weights changed during training",
                     hint="Pass only [A, b] to the optimizer: the lens learns, the model is fixed.")
        check.expect(isinstance(got, tuple) and len(got) == 2, case=case, message="did not return a pair (A, b)",
                     hint="Return A.detach(), b.detach().")
        A, b = got
        check.expect(isinstance(A, torch.Tensor) and isinstance(b, torch.Tensor)
                     and tuple(A.shape) == (24, 24) and tuple(b.shape) == (24,), case=case,
                     message=f"A has shape {tuple(getattr(A, 'shape', ()))} and b {tuple(getattr(b, 'shape', ()))}; "
                             f"expected (24, 24) and (24,)",
                     hint="A is [d_model, d_model] and b is [d_model].")
        check.expect(not A.requires_grad and not b.requires_grad, case=case, mistake="not detached",
                     message="the returned tensors still require grad",
                     hint="Return A.detach(), b.detach(): the caller should get plain tensors, not a graph.")
    finally:
        with torch.no_grad():
            model.load_state_dict(before)
        clean_up(model)
    A_ref, b_ref = ref.train_translator(model, resid, final, 150, 1e-2)
    clean_up(model)
    with torch.no_grad():
        A, b = A.to(resid), b.to(resid)
        lens = ref.tuned_lens(model, resid, A, b)
        kl = ref.kl_from_final(lens, final).mean().item()
        kl_logit_lens = ref.kl_from_final(ref.logit_lens(model, resid), final).mean().item()
        kl_ref = ref.kl_from_final(ref.tuned_lens(model, resid, A_ref, b_ref), final).mean().item()
        gap = (lens - ref.tuned_lens(model, resid, A_ref, b_ref)).abs().max().item()
    untrained = bool(A.abs().max() == 0 and b.abs().max() == 0)
    if not untrained and (gap >= 0.05 or kl > kl_ref * 1.2 + 0.01):
        _translator_start(check, model, resid, final)
        for mistake in _TRANSLATOR_RECIPES:     # each a training run: only for a translator already wrong
            A_wrong, b_wrong = mistake.output(model, resid, final, 150, 1e-2)
            clean_up(model)
            with torch.no_grad():
                wrong_gap = (lens - ref.tuned_lens(model, resid, A_wrong, b_wrong)).abs().max().item()
            check.expect(wrong_gap >= 0.05, case=case, mistake=mistake.name, hint=mistake.hint,
                         message=f"your lens's logits differ by up to {gap:.3g} from those of a translator trained "
                                 f"as the docstring says (your tuned lens is {kl:.3f} nats from the final output, "
                                 f"the docstring's {kl_ref:.3f})")
    check.expect(kl <= kl_ref * 1.2 + 0.01, case=case, mistake="untrained" if untrained else "undertrained",
                 message=f"your tuned lens is {kl:.3f} nats from the final output; the logit lens is "
                         f"{kl_logit_lens:.3f} and a translator trained as the docstring says {kl_ref:.3f}",
                 hint="A and b are still zero: do you call optimizer.step(), on the tensors you return?"
                      if untrained else "Minimise the mean KL from the final output, with Adam at the given lr "
                                        "for the given steps, starting from A = 0 and b = 0.")
    check.expect(gap < 0.05, case=case, mistake="another recipe",
                 message=f"your lens's logits differ by up to {gap:.3g} from those of a translator trained as the "
                         f"docstring says",
                 hint="Follow the recipe: A and b start at zero, Adam at the given lr for exactly `steps` steps, "
                      "and the loss is kl_from_final(lens logits, final logits).mean() (KL from the final output, "
                      "not the reverse, not a squared error).")


def _train_translator_variant(model, resid, final, steps, lr, *, optimizer="adam", zero_grad=True, reverse=False,
                              skip=True):
    """The docstring's translator training with one thing changed, for recipe mistakes."""
    d_model = resid.shape[-1]
    A = torch.zeros(d_model, d_model, device=resid.device, requires_grad=True)
    b = torch.zeros(d_model, device=resid.device, requires_grad=True)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([A, b], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            lens = ref.logit_lens(model, (resid if skip else 0) + resid @ A + b)
            kl = ref.kl_from_final(final, lens) if reverse else ref.kl_from_final(lens, final)
            if zero_grad:
                opt.zero_grad()
            kl.mean().backward()
            opt.step()
    return A.detach(), b.detach()


_TRANSLATOR_RECIPES = [
    Mistake("KL reversed", "Your translator is the one that minimises KL(lens || final): the loss is "
                           "kl_from_final(lens_logits, final_logits), KL(final || lens), weighted by the model's own "
                           "final distribution (check the order of the two arguments).",
            partial(_train_translator_variant, reverse=True)),
    Mistake("no skip connection", "Your translator is the one trained without the skip connection: the lens is "
                                  "h + h A + b (tuned_lens adds h back), so that A = 0, b = 0 is the logit lens. "
                                  "Train through tuned_lens(model, resid, A, b).",
            partial(_train_translator_variant, skip=False)),
    Mistake("SGD instead of Adam", "Your translator is the one plain SGD gives: the docstring asks for Adam, "
                                   "torch.optim.Adam([A, b], lr=lr).",
            partial(_train_translator_variant, optimizer="sgd")),
    Mistake("gradients never zeroed", "Your translator is the one you get when the gradients are never reset: "
                                      "loss.backward() *adds* to .grad, so call optimizer.zero_grad() every step.",
            partial(_train_translator_variant, zero_grad=False)),
    Mistake("lr ignored", "Your translator is the one Adam's default learning rate (0.001) gives: pass the lr you "
                          "are given, torch.optim.Adam([A, b], lr=lr).",
            lambda model, resid, final, steps, lr: _train_translator_variant(model, resid, final, steps, 1e-3)),
]


def _translator_start(check, model, resid, final):
    """Trained for 0 steps, a translator is its starting point: zeros (the logit lens)."""
    case = "0 steps: the starting point"
    try:
        got = check.call(lambda r, f: check.candidate(model, r, f, 0, 1e-2), resid, final, case=case)
    except LearnerError:  # code that needs at least one step is not wrong; the other checks grade it
        return
    finally:
        clean_up(model)
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)):
        return
    largest = max(t.detach().abs().max().item() for t in got)
    if largest == 0:
        return
    A, b = (t.detach().to(resid) for t in got)
    if A.shape != (resid.shape[-1],) * 2 or b.shape != resid.shape[-1:]:
        return
    with torch.no_grad():
        kl = ref.kl_from_final(ref.tuned_lens(model, resid, A, b), final).mean().item()
        kl_logit_lens = ref.kl_from_final(ref.logit_lens(model, resid), final).mean().item()
    if _looks_trained(model, resid, final, A, b):
        check.expect(False, case=case, mistake="steps ignored",
                     message=f"asked for 0 steps, your function trained anyway (KL {kl:.3f} nats, against "
                             f"{kl_logit_lens:.3f} for the untrained logit lens)",
                     hint="Take exactly `steps` steps of Adam, the number passed in: `for _ in range(steps):`.")
    check.expect(False, case=case, mistake="random start",
                 message=f"asked for 0 steps, your function returned a translator with values up to {largest:.3g}: "
                         f"untrained, a translator is where training starts, and the docstring starts from A = 0 "
                         f"and b = 0",
                 hint="Start A and b at zero (torch.zeros(..., requires_grad=True)): then the tuned lens starts as "
                      "the logit lens, and a different start gives a different translator after the same steps.")


def _looks_trained(model, resid, final, A, b):
    """Whether a translator returned for 0 steps was trained from zero anyway (steps ignored) rather than drawn
    at random (a random start). Adam's steps from zero go against the sign of the gradient there, and they move
    b as well as A; a random start agrees with that sign about half the time (a trained one about 0.7-1.0 of the
    time for up to 300 steps), and a random A alone leaves b at exactly zero."""
    if b.abs().max() == 0:
        return False
    start = [torch.zeros_like(A, requires_grad=True), torch.zeros_like(b, requires_grad=True)]
    with torch.enable_grad():
        loss = ref.kl_from_final(ref.tuned_lens(model, resid, *start), final).mean()
        grads = torch.autograd.grad(loss, start)  # only A and b: the model's .grad stay untouched
    moved = torch.cat([A.flatten(), b.flatten()])
    downhill = -torch.cat([g.flatten() for g in grads])
    counted = (moved != 0) & (downhill != 0)
    return bool(counted.any()) and ((moved * downhill)[counted] > 0).float().mean().item() > 0.6


# -- 6. steering ------------------------------------------------------------------------------


def _labelled(check, n=30):
    labels = check.randint(3, n, N_SQUARES)
    labels[:3, 2] = torch.tensor([0, 1, 2])      # every class present at square 2
    return check.randn(n, 6), labels


@exercise(difficulty=1, minutes=10, hints=[
    "Select the samples whose label at `square` is `target`, and those where it is `source`.",
    "Boolean masks: labels[:, square] == target picks rows of resid.",
    "at = labels[:, square]; return resid[at == target].mean(0) - resid[at == source].mean(0)",
])
def test_mean_difference(check):
    mistakes = [
        Mistake("reversed", "Target minus source: the direction should point towards the target class.",
                lambda r, la, s, t, so: -ref.mean_difference(r, la, s, t, so)),
        Mistake("minus the overall mean", "Subtract the mean of the *source* class, not of every sample.",
                lambda r, la, s, t, so: r[la[:, s] == t].mean(0) - r.mean(0)),
        Mistake("normalised", "Return the difference of means itself: its length says how far apart the "
                              "classes are, which steering uses.",
                lambda r, la, s, t, so: ref.mean_difference(r, la, s, t, so)
                / ref.mean_difference(r, la, s, t, so).norm()),
        Mistake("sums, not means", "Average each class's residuals (.mean(dim=0)): a sum grows with the number of "
                                   "samples in the class, so the difference mostly says which class is commoner.",
                lambda r, la, s, t, so: r[la[:, s] == t].sum(0) - r[la[:, s] == so].sum(0)),
        Mistake("compared with every other sample", "Subtract the mean of the *source* class only (labels[:, "
                                                    "square] == source), not of every sample outside the target "
                                                    "class: the direction should move source to target.",
                lambda r, la, s, t, so: r[la[:, s] == t].mean(0) - r[la[:, s] != t].mean(0)),
    ]
    resid, labels = _labelled(check)
    try:
        check.case("square 2, empty -> class 1", resid, labels, 2, 0, 1, mistakes=mistakes, check_dtype=False)
        check.case("square 5, class 2 -> class 1", resid, labels, 5, 2, 1, mistakes=mistakes, check_dtype=False)
    except LearnerError as error:
        if "shape of the mask" not in error.detail:
            raise
        raise LearnerError(error.detail, exercise=error.exercise, case=error.case, mistake="a row of labels",
                           hint="labels is [sample, square]: labels[square] is one *sample's* labels for every "
                                "square. Take the column, labels[:, square], one label per sample, to select rows "
                                "of resid.") from None


def _steer_variant(*, every=False, read_last=False, logits=False, read_offset=0, hook_name="resid_post", dim=-1,
                   average="probabilities", unit=False):
    def variant(model, moves, layer, direction, scales, square, position):
        out = []
        step = direction / direction.norm() if unit else direction
        for scale in scales:
            def hook(resid, hook):
                resid = resid.clone()
                if every:
                    resid += scale * step
                else:
                    resid[:, position] += scale * step
                return resid

            result = model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_{hook_name}", hook)])
            if dim != -1:
                out.append(result.softmax(dim)[:, position, square].mean())
                continue
            at = result[:, -1 if read_last else position + read_offset]
            if average == "logits":
                out.append(at.mean(0).softmax(-1)[square])
            elif average == "none":
                out.append(at.softmax(-1)[:, square])
            else:
                out.append((at if logits else at.softmax(-1))[:, square].mean())
        return torch.stack(out)
    return variant


@exercise(difficulty=2, minutes=15, hints=[
    "For each scale: a hook on blocks.{layer}.hook_resid_post adds scale * direction at `position`; run the "
    "model with it and read the softmax at `position`.",
    "Collect one number per scale: logits[:, position].softmax(-1)[:, square].mean(); torch.stack them.",
    "In a loop over scales: def hook(resid, hook): resid = resid.clone(); resid[:, position] += scale * "
    "direction; return resid -- then model.run_with_hooks(moves, fwd_hooks=[(name, hook)])",
])
def test_steering_curve(check):
    mistakes = [
        Mistake("every position", "Add the direction at `position` only.", _steer_variant(every=True)),
        Mistake("read at the last position", "Read the prediction at `position`, where you steered.",
                _steer_variant(read_last=True)),
        Mistake("logits", "Return the mean *probability* of the square (softmax over squares).",
                _steer_variant(logits=True)),
        Mistake("read one position late", "Read the prediction at `position` itself (logits[:, position]), where "
                                          "you steered: logits[:, position] already predict the next move.",
                _steer_variant(read_offset=1)),
        Mistake("before the block", "Steer the residual stream *after* block `layer`: the hook is "
                                    "blocks.{layer}.hook_resid_post, not hook_resid_pre.",
                _steer_variant(hook_name="resid_pre")),
        *(Mistake("softmax over the wrong axis", f"Take the softmax over the squares, the last axis of the logits "
                                                f"(softmax(dim=-1)), not over axis {dim} ({name}).",
                  _steer_variant(dim=dim)) for dim, name in ((1, "positions"), (0, "games"))),
        Mistake("probability of the mean logits", "Average the *probabilities* over games: softmax each game's "
                                                  "logits first, then take the mean of the square's probability.",
                _steer_variant(average="logits")),
        Mistake("not averaged over games", "Return one number per scale: the mean over games of the square's "
                                           "probability.", _steer_variant(average="none")),
        Mistake("direction normalised", "Add scale * direction as given: the direction's length is part of the "
                                        "step (a mean difference says how far apart the classes are).",
                _steer_variant(unit=True)),
    ]
    model = _model(check, d_vocab_out=9)
    direction = check.randn(24)
    try:
        _model_case(check, "scales -4..4, position 3", model, check.randint(12, 3, 6), 1, direction,
                    [-4.0, 0.0, 2.0, 4.0], 5, 3, mistakes=mistakes)
    finally:
        clean_up(model)
