"""A synthetic indirect-object-identification (IOI) task for Chapter 4.

"When Mary and John went to the store, John gave a drink to" -> "Mary".

The vocabulary is word-level, so every name is one token, and every template
has the same layout: the two names of the first clause sit at positions 2 and
4, the repeated subject (S2) at position 10 and the last word ("to") at
position 14 (position 0 is BOS). Every prompt in every batch is therefore 15
tokens long and the interesting positions line up across the batch, which is
what position-by-position patching needs.

Held-out evaluation uses templates the model never trained on and (IO, S)
name pairs it never saw together. Every name still appears in training (in
other pairs): a name never seen at all would have an untrained embedding and
unembedding, which no circuit could copy.

Corruptions keep every position aligned:
- "abc": S2 is replaced by a third, unrelated name, so nothing in the prompt
  says which of the first two names is the subject (the logit difference
  should fall to about 0);
- "flip": S2 is replaced by the IO name, so the *other* name becomes correct
  (the logit difference should turn negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

NAMES = ["Mary", "John", "Alice", "Bob", "Sarah", "Tom", "Emma", "James", "Lucy", "David", "Anna", "Peter",
         "Kate", "Paul", "Julia", "Mark", "Laura", "Sam", "Grace", "Max", "Rose", "Dan", "Nina", "Leo"]
PLACES = ["store", "park", "school", "garden", "station", "office", "market", "beach", "library", "cafe"]
OBJECTS = ["drink", "book", "ball", "letter", "ring", "key", "bag", "cake", "pen", "gift"]

# {A} {B}: the first clause's names; {P} place; {S} the subject repeated; {O} object.
# Each template is exactly 14 words: positions (after BOS) 2, 4, 10, 14 are A, B, S2, "to".
TEMPLATES = [
    "When {A} and {B} went to the {P} , {S} gave a {O} to",
    "While {A} and {B} were at the {P} , {S} handed a {O} to",
    "After {A} and {B} arrived at the {P} , {S} passed a {O} to",
    "Then {A} and {B} walked into the {P} , {S} threw a {O} to",
    "Once {A} and {B} got to the {P} , {S} sent a {O} to",
    "Later {A} and {B} sat in the {P} , {S} offered a {O} to",
    # held out: new combinations of words the training templates use
    "Once {A} and {B} were in the {P} , {S} threw a {O} to",
    "After {A} and {B} walked to the {P} , {S} offered a {O} to",
]
TRAIN_TEMPLATES = list(range(6))
HELD_OUT_TEMPLATES = [6, 7]

POS_IO_OR_S1 = (2, 4)  # the first two names (which is IO depends on the order)
POS_S2 = 10
POS_END = 14
SEQ_LEN = 15
POSITION_LABELS = ["BOS", "When", "A", "and", "B", "went", "to", "the", "P", ",", "S2", "gave", "a", "O", "to"]

BOS = "<bos>"


def _words() -> list[str]:
    words = {w for t in TEMPLATES for w in t.split() if not w.startswith("{")}
    return [BOS] + sorted(words) + NAMES + PLACES + OBJECTS


class WordTokenizer:
    """One token per word; names, places and objects are single tokens."""

    def __init__(self) -> None:
        self.words = _words()
        self.index = {w: i for i, w in enumerate(self.words)}
        self.bos_token_id = 0
        self.name_ids = torch.tensor([self.index[n] for n in NAMES])

    @property
    def d_vocab(self) -> int:
        return len(self.words)

    def encode(self, text: str, prepend_bos: bool = True) -> list[int]:
        ids = [self.index[w] for w in text.replace(",", " , ").split()]
        return [self.bos_token_id] + ids if prepend_bos else ids

    def decode(self, ids) -> str:
        return " ".join(self.words[int(i)] for i in ids).replace(" ,", ",")


def _pair_is_held_out(a: int, b: int) -> bool:
    """A fixed quarter of unordered name pairs is kept for evaluation."""
    lo, hi = min(a, b), max(a, b)
    return (lo * 7 + hi * 13) % 4 == 0


@dataclass
class IOIBatch:
    """Clean prompts with their answers, plus an aligned corrupted copy."""

    clean: Int[Tensor, "batch 15"]
    corrupted: Int[Tensor, "batch 15"]
    io: Int[Tensor, " batch"]  # token id of the indirect object (correct answer on clean)
    s: Int[Tensor, " batch"]  # token id of the subject (the wrong answer on clean)
    templates: Int[Tensor, " batch"]
    abba: Int[Tensor, " batch"]  # 1 if the subject comes first ("S and IO"), 0 for "IO and S"

    @property
    def answers(self) -> Int[Tensor, "batch 2"]:
        """[correct, wrong] token ids for the clean prompts."""
        return torch.stack([self.io, self.s], dim=1)

    def __len__(self) -> int:
        return len(self.io)


def ioi_batch(
    n: int,
    split: str = "train",
    corruption: str = "abc",
    generator: torch.Generator | None = None,
    tokenizer: WordTokenizer | None = None,
) -> IOIBatch:
    """`n` IOI prompts from the train or held-out split, with both name orders, and their corruption."""
    if split not in ("train", "test"):
        raise ValueError("split must be 'train' or 'test'")
    if corruption not in ("abc", "flip"):
        raise ValueError("corruption must be 'abc' or 'flip'")
    tok = tokenizer or WordTokenizer()
    templates = TRAIN_TEMPLATES if split == "train" else HELD_OUT_TEMPLATES
    clean, corrupt, ios, ss, ts, orders = [], [], [], [], [], []
    while len(clean) < n:
        i, j, k = torch.randperm(len(NAMES), generator=generator)[:3].tolist()
        if _pair_is_held_out(i, j) != (split == "test"):
            continue
        t = templates[int(torch.randint(len(templates), (1,), generator=generator))]
        p = PLACES[int(torch.randint(len(PLACES), (1,), generator=generator))]
        o = OBJECTS[int(torch.randint(len(OBJECTS), (1,), generator=generator))]
        io, s, other = NAMES[i], NAMES[j], NAMES[k]
        abba = int(torch.randint(2, (1,), generator=generator))
        a, b = (s, io) if abba else (io, s)
        template = TEMPLATES[t]
        clean.append(tok.encode(template.format(A=a, B=b, P=p, S=s, O=o)))
        s2 = other if corruption == "abc" else io
        corrupt.append(tok.encode(template.format(A=a, B=b, P=p, S=s2, O=o)))
        ios.append(tok.index[io])
        ss.append(tok.index[s])
        ts.append(t)
        orders.append(abba)
    return IOIBatch(torch.tensor(clean), torch.tensor(corrupt), torch.tensor(ios), torch.tensor(ss),
                    torch.tensor(ts), torch.tensor(orders))


# The classic IOI prompts (Wang et al. 2022) for running the same notebook on GPT-2 small, where every
# name is one GPT-2 token. Each entry: (prompt, IO, S), answers with a leading space as GPT-2 spells them.
GPT2_PROMPTS = [
    ("When John and Mary went to the shops, John gave the bag to", " Mary", " John"),
    ("When John and Mary went to the shops, Mary gave the bag to", " John", " Mary"),
    ("When Tom and James went to the park, James gave the ball to", " Tom", " James"),
    ("When Tom and James went to the park, Tom gave the ball to", " James", " Tom"),
    ("When Dan and Sid went to the shops, Sid gave an apple to", " Dan", " Sid"),
    ("When Dan and Sid went to the shops, Dan gave an apple to", " Sid", " Dan"),
    ("After Martin and Amy went to the park, Amy gave a drink to", " Martin", " Amy"),
    ("After Martin and Amy went to the park, Martin gave a drink to", " Amy", " Martin"),
]

GPT2_OTHER_NAMES = [" Bob", " Alice", " Lucy", " Paul", " Kate", " Sam"]


def gpt2_batch(model, prompts=GPT2_PROMPTS) -> IOIBatch:
    """The classic prompts tokenized by a HuggingFace model's tokenizer, with ABC corruptions (S2 replaced
    by an unrelated name). All prompts must tokenize to the same length."""
    clean, corrupt, ios, ss = [], [], [], []
    for i, (prompt, io, s) in enumerate(prompts):
        head, tail = prompt.rsplit(f"{s.strip()} gave", 1)
        other = next(n for n in GPT2_OTHER_NAMES[i % len(GPT2_OTHER_NAMES):] + GPT2_OTHER_NAMES if n not in (io, s))
        clean.append(model.to_tokens(prompt)[0])
        corrupt.append(model.to_tokens(f"{head}{other.strip()} gave{tail}")[0])
        ios.append(model.to_single_token(io))
        ss.append(model.to_single_token(s))
    if len({len(t) for t in clean + corrupt}) != 1:
        raise ValueError("every prompt (and its corruption) must have the same number of tokens")
    n = len(prompts)
    return IOIBatch(torch.stack(clean), torch.stack(corrupt), torch.tensor(ios), torch.tensor(ss),
                    torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long))
