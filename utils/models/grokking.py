"""The grokking model of Chapter 5, in plain PyTorch, and its checkpoint series.

The setup of Nanda et al. (2023), "Progress measures for grokking via mechanistic
interpretability": p = 113, inputs `a b =`, 30% of the p² pairs for training, one layer,
4 heads of size 32, d_model 128, d_mlp 512, ReLU, no LayerNorm, AdamW (weight decay 1.0,
betas 0.9/0.98), full batch.

Only the logits at the last position (`=`) are ever used, so the fast forward computes the
attention query, the MLP and the unembedding only there; `forward(..., straightforward=True)`
runs every position like a generic transformer would, for the speed comparison.

`python -m utils.models.grokking` retrains (on a GPU if there is one, else the CPU: the same code)
and writes `checkpoints/grokking_p113.safetensors` (the checkpoint series, the final weights and
the loss history), recording its sha256 in `checkpoints/manifest.json` with the same helpers as
the other models.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from utils.data import modular

NAME = "grokking_p113"


@dataclass
class GrokConfig:
    p: int = 113
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 3
    seed: int = 0

    @property
    def d_vocab(self) -> int:  # the p residues and `=`
        return self.p + 1


class Attention(nn.Module):
    def __init__(self, cfg: GrokConfig):
        super().__init__()
        shape = (cfg.n_heads, cfg.d_model, cfg.d_head)
        self.W_Q = nn.Parameter(torch.randn(shape) / math.sqrt(cfg.d_model))
        self.W_K = nn.Parameter(torch.randn(shape) / math.sqrt(cfg.d_model))
        self.W_V = nn.Parameter(torch.randn(shape) / math.sqrt(cfg.d_model))
        self.W_O = nn.Parameter(torch.randn(cfg.n_heads, cfg.d_head, cfg.d_model) / math.sqrt(cfg.d_model))
        self.scale = math.sqrt(cfg.d_head)

    def pattern(self, resid: Float[Tensor, "batch pos d_model"], last_only: bool) -> Tensor:
        """Attention probabilities [batch head query key]; with last_only a single query (the `=`)."""
        k = torch.einsum("bpd,hde->bhpe", resid, self.W_K)  # [batch head key d_head]
        q_resid = resid[:, -1:] if last_only else resid
        q = torch.einsum("bpd,hde->bhpe", q_resid, self.W_Q)  # [batch head query d_head]
        scores = q @ k.transpose(-1, -2) / self.scale  # [batch head query key]
        if not last_only:  # causal mask; the last query sees every key anyway
            n = resid.shape[1]
            mask = torch.ones(n, n, dtype=torch.bool, device=resid.device).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        return scores.softmax(dim=-1)

    def forward(self, resid: Float[Tensor, "batch pos d_model"], last_only: bool = True) -> Tensor:
        pattern = self.pattern(resid, last_only)  # [batch head query key]
        v = torch.einsum("bpd,hde->bhpe", resid, self.W_V)  # [batch head key d_head]
        z = pattern @ v  # [batch head query d_head]
        return torch.einsum("bhqe,hed->bqd", z, self.W_O)  # [batch query d_model]


class MLP(nn.Module):
    def __init__(self, cfg: GrokConfig):
        super().__init__()
        self.W_in = nn.Parameter(torch.randn(cfg.d_model, cfg.d_mlp) / math.sqrt(cfg.d_model))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.randn(cfg.d_mlp, cfg.d_model) / math.sqrt(cfg.d_mlp))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))

    def neurons(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_mlp"]:
        return torch.relu(resid @ self.W_in + self.b_in)

    def forward(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return self.neurons(resid) @ self.W_out + self.b_out


class GrokModel(nn.Module):
    """Embed → attention → MLP → unembed, residual stream throughout, no LayerNorm, outputs p logits."""

    def __init__(self, cfg: GrokConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or GrokConfig()
        torch.manual_seed(cfg.seed)
        self.W_E = nn.Parameter(torch.randn(cfg.d_vocab, cfg.d_model) / math.sqrt(cfg.d_model))
        self.W_pos = nn.Parameter(torch.randn(cfg.n_ctx, cfg.d_model) / math.sqrt(cfg.d_model))
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.W_U = nn.Parameter(torch.randn(cfg.d_model, cfg.p) / math.sqrt(cfg.d_model))

    def embed(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.W_E[tokens] + self.W_pos[: tokens.shape[1]]

    def forward(self, tokens: Int[Tensor, "batch pos"], straightforward: bool = False) -> Float[Tensor, "batch p"]:
        """Logits at the last position. `straightforward` computes every position, then keeps the last."""
        if straightforward:
            resid = self.embed(tokens)  # [batch pos d_model]
            resid = resid + self.attn(resid, last_only=False)  # [batch pos d_model]
            resid = resid + self.mlp(resid)
            return (resid @ self.W_U)[:, -1]
        return self.mlp_and_unembed(self.last_resid_mid(tokens))

    def last_resid_mid(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_model"]:
        """Residual stream at the last position after attention, computed from per-token tables.

        Each position's key and value depend only on its own token, and the one query needed
        only on the last token. So every attention score is a lookup in a small table
        [pos, key token, query token, head], and every value a lookup in [pos, token, head·d_head]:
        the per-example work is a few gathers and one matmul by W_O."""
        n, vocab = tokens.shape[1], self.cfg.d_vocab
        table = self.W_E[None] + self.W_pos[:n, None]  # [pos vocab d_model]
        k_table = torch.einsum("pvd,hde->pvhe", table, self.attn.W_K)  # [pos vocab head d_head]
        q_table = torch.einsum("vd,hde->vhe", table[-1], self.attn.W_Q)  # [vocab head d_head]
        score_table = torch.einsum("pkhe,qhe->pkqh", k_table, q_table) / self.attn.scale  # [pos key query head]
        v_table = torch.einsum("pvd,hde->pvhe", table, self.attn.W_V).flatten(2)  # [pos vocab head*d_head]
        positions = torch.arange(n, device=tokens.device) * vocab  # row offset of each position's table
        rows = tokens + positions  # [batch pos]: row of (position, token) in the flattened tables
        scores = score_table.flatten(0, 1)[rows, tokens[:, -1:]]  # [batch pos head]
        pattern = scores.softmax(dim=1)  # over the key positions
        v = F.embedding(rows, v_table.flatten(0, 1))  # [batch pos head*d_head]
        z = (pattern.repeat_interleave(self.cfg.d_head, dim=-1) * v).sum(1)  # [batch head*d_head]
        attn_out = z @ self.attn.W_O.flatten(0, 1)  # [batch d_model]
        return F.embedding(tokens[:, -1], table[-1]) + attn_out

    def mlp_and_unembed(self, resid_mid: Float[Tensor, "batch d_model"]) -> Float[Tensor, "batch p"]:
        return (resid_mid + self.mlp(resid_mid)) @ self.W_U

    def neuron_acts(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_mlp"]:
        """ReLU outputs of the MLP at the last position."""
        return self.mlp.neurons(self.last_resid_mid(tokens))

    def attention_pattern(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch head key"]:
        """Where the `=` position attends, per head."""
        return self.attn.pattern(self.embed(tokens), last_only=True)[:, :, 0]


def loss_fn(logits: Float[Tensor, "batch p"], labels: Int[Tensor, "batch"]) -> Tensor:
    """Cross-entropy in float64, as the paper does: near-zero training losses need the precision."""
    return F.cross_entropy(logits.double(), labels)


def checkpoint_steps(steps: int) -> list[int]:
    """Where the shipped series is saved: dense where its curves bend (memorisation in the first
    1,000 steps; circuit formation turning into cleanup between 3,000 and 7,000), sparse elsewhere."""
    early = [0, 50, 100, 150, 200, 300, 400, 600, 800, 1000, 1500, 2000, 2500]
    bends = list(range(3000, 7001, 250))
    late = list(range(7500, steps + 1, 500))
    return sorted({s for s in early + bends + late if s <= steps} | {steps})


def first_below(steps: Iterable[int], values: Iterable[float], level: float, after: int = -1) -> int | None:
    """The first step (later than `after`) whose value is below `level`; None if there is none."""
    return next((int(s) for s, v in zip(steps, values) if s > after and v < level), None)


def phases(steps: list[int], measures: dict[str, list[float]]) -> dict[str, tuple[int, int]]:
    """The three phases of Nanda et al. (2023), read off the progress measures by fixed thresholds:
    memorisation lasts until the train loss is below 0.01, circuit formation until the restricted loss
    is below 0.1, cleanup until the test loss is below 0.01."""
    memorised = first_below(steps, measures["train"], 0.01)
    formed = first_below(steps, measures["restricted"], 0.1, after=memorised)
    cleaned = first_below(steps, measures["test"], 0.01, after=formed)
    return {"memorisation": (steps[0], memorised), "circuit formation": (memorised, formed),
            "cleanup": (formed, cleaned)}


def training_data(cfg: GrokConfig, train_frac: float, device: str = "cpu") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test): every pair of Z_p, split by the seeded permutation."""
    tokens = modular.all_pairs(cfg.p).to(device)
    ys = modular.labels(tokens, cfg.p)
    train_idx, test_idx = modular.train_test_split(cfg.p, train_frac, seed=cfg.seed)
    return tokens[train_idx], ys[train_idx], tokens[test_idx], ys[test_idx]


def train_step(model: GrokModel, optimizer, x: Tensor, y: Tensor, straightforward: bool = False) -> tuple[Tensor, Tensor]:
    """One full-batch AdamW step; returns the logits and loss from before the update."""
    logits = model(x, straightforward=straightforward)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits.detach(), loss.detach()


@contextlib.contextmanager
def denormals_flushed() -> Iterator[None]:
    """Weight decay 1.0 pulls the weights the model stops using towards zero, into denormal floats,
    which a CPU computes on many times slower: unflushed, the live run of 5.1 takes 2.2 times as long
    (254 s against 116 s on one core). Flushing them to zero changes only values below 1e-38."""
    flushing = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushing:
            torch.set_flush_denormal(False)


@torch.enable_grad()  # notebooks switch gradients off for analysis; training needs them back
def train_grokking(
    steps: int = 2000,
    lr: float = 3e-3,
    weight_decay: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.98),
    train_frac: float = 0.3,
    cfg: GrokConfig | None = None,
    checkpoint_at: Iterable[int] = (),
    eval_every: int = 10,
    straightforward: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[GrokModel, dict, dict[int, dict[str, Tensor]]]:
    """Full-batch AdamW training. Returns (model, history, checkpoints {step: state_dict}).

    The defaults are the live run of 5.1; RECIPE holds the shipped model's settings."""
    cfg = cfg or GrokConfig()
    model = GrokModel(cfg).to(device)
    x_tr, y_tr, x_te, y_te = training_data(cfg, train_frac, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
    save_at = set(checkpoint_at)
    history = {k: [] for k in ("step", "train_loss", "test_loss", "train_acc", "test_acc")}
    checkpoints = {}
    start = time.perf_counter()
    bar = tqdm(range(steps + 1), disable=not progress, desc="grokking")
    with denormals_flushed():
        for step in bar:
            if step in save_at:
                checkpoints[step] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            log = step % eval_every == 0 or step == steps
            if log:  # before this step's update, like the training loss
                with torch.no_grad():
                    test_logits = model(x_te)
            if step < steps:
                logits, loss = train_step(model, optimizer, x_tr, y_tr, straightforward)
            else:
                with torch.no_grad():
                    logits = model(x_tr)
                    loss = loss_fn(logits, y_tr)
            if log:
                history["step"].append(step)
                history["train_loss"].append(loss.item())
                history["test_loss"].append(loss_fn(test_logits, y_te).item())
                history["train_acc"].append((logits.argmax(-1) == y_tr).float().mean().item())
                history["test_acc"].append((test_logits.argmax(-1) == y_te).float().mean().item())
                bar.set_postfix(train=f"{history['train_loss'][-1]:.2e}", test=f"{history['test_loss'][-1]:.2e}")
    history["seconds"] = time.perf_counter() - start
    model.eval()
    return model, history, checkpoints


@torch.enable_grad()
def steps_per_second(straightforward: bool, steps: int = 40, warmup: int = 5, device: str = "cpu") -> float:
    """Training steps per second with the fast (last position only) or the straightforward forward,
    timed after `warmup` steps, since the first calls pay one-off costs."""
    cfg = GrokConfig()
    model = GrokModel(cfg).to(device)
    x, y, _, _ = training_data(cfg, RECIPE["train_frac"], device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"],
                                  betas=RECIPE["betas"])
    for i in range(warmup + steps):
        if i == warmup:
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
        train_step(model, optimizer, x, y, straightforward)
    if device != "cpu":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


# -- saving and loading the checkpoint series ------------------------------------------------------


def save_series(model: GrokModel, history: dict, checkpoints: dict, info: dict, path=None):
    """One safetensors file: final weights (float32) under `final.`, the series (float16) under
    `step_<n>.`, and the history as tensors under `history.`; hash and facts go into the manifest."""
    from utils.models import CHECKPOINTS, MANIFEST, manifest, sha256

    path = path or CHECKPOINTS / f"{NAME}.safetensors"
    tensors = {f"final.{k}": v.detach().cpu().float().contiguous() for k, v in model.state_dict().items()}
    for step, state in checkpoints.items():
        tensors.update({f"step_{step}.{k}": v.half().contiguous() for k, v in state.items()})
    for key in ("step", "train_loss", "test_loss", "train_acc", "test_acc"):
        tensors[f"history.{key}"] = torch.tensor(history[key], dtype=torch.float64 if key != "step" else torch.int64)
    save_file(tensors, path)
    entry = {"file": path.name, "sha256": sha256(path), "config": asdict(model.cfg), **info}
    if path.parent != CHECKPOINTS:  # a trial run elsewhere: its manifest entry goes next to it
        path.with_suffix(".json").write_text(json.dumps({NAME: entry}, indent=2) + "\n")
        return path
    entries = manifest()
    entries[NAME] = entry
    MANIFEST.write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    return path


def load_series(path=None) -> tuple[GrokModel, dict[int, GrokModel], dict[str, Tensor]]:
    """(final model, {step: model} for every checkpoint, history) after checking the sha256."""
    from utils.models import CHECKPOINTS, MANIFEST, manifest, sha256

    entry = manifest().get(NAME)
    if entry is None:
        raise KeyError(f"{NAME} is not in {MANIFEST}: run `python -m utils.models.grokking`")
    path = path or CHECKPOINTS / entry["file"]
    if sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match its sha256 in {MANIFEST.name}: run `python -m utils.models.grokking`")
    tensors = load_file(path)
    cfg = GrokConfig(**entry["config"])

    def build(prefix):
        model = GrokModel(cfg)
        model.load_state_dict({k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)})
        return model.eval()

    steps = sorted({int(k.split(".")[0][5:]) for k in tensors if k.startswith("step_")})
    history = {k[len("history."):]: v for k, v in tensors.items() if k.startswith("history.")}
    return build("final."), {s: build(f"step_{s}.") for s in steps}, history


# Nanda et al. (2023)'s optimiser settings; 10,000 steps pass memorisation, circuit formation and
# cleanup (the test loss is below 0.01 from about step 5,500) and then a flat stretch.
RECIPE = dict(steps=10_000, lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98), train_frac=0.3)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m utils.models.grokking", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--out", default=None, help="write here instead of checkpoints/ (its manifest entry goes to a .json beside it)")
    args = parser.parse_args(argv)
    recipe = {**RECIPE, "steps": args.steps}
    model, history, checkpoints = train_grokking(**recipe, checkpoint_at=checkpoint_steps(args.steps),
                                                 device=args.device)
    info = {"steps": recipe["steps"], "lr": recipe["lr"], "weight_decay": recipe["weight_decay"],
            "betas": list(recipe["betas"]), "train_frac": recipe["train_frac"],
            "final_loss": round(history["train_loss"][-1], 8), "final_test_acc": history["test_acc"][-1],
            "train_seconds": round(history["seconds"]), "torch": torch.__version__,
            "data": "all pairs a b = of Z_113, 30% train (utils.data.modular, seed 0)"}
    from pathlib import Path
    path = save_series(model.cpu(), history, checkpoints, info, Path(args.out) if args.out else None)
    print(f"{NAME}: train acc {history['train_acc'][-1]:.4f}, test acc {history['test_acc'][-1]:.4f}, "
          f"saved {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
