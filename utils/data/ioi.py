"""A synthetic indirect-object-identification (IOI) task for Chapter 4.

"When Mary and John went to the store , John gave a drink to" -> "Mary".

The vocabulary is word-level, so every name is one token. A prompt is built
from three parts, each drawn from a list: an optional opening (it shifts every
later position), a first clause that introduces the two names and a place, and
a second clause in which the subject (S2) gives an object "to" somebody. The
parts vary in length and put the names at different places, so no position
holds the answer: a model must find which name is repeated and say the other.

Held out for evaluation: whole layouts (first and second clauses the model
never trained on, behind openings it did or did not see) and a quarter of the
(IO, S) name pairs. Every word and every name still appears in training: an
unseen token would have an untrained embedding that no circuit could copy.

A batch drawn with `layout=` shares one layout, so positions line up across
the batch, which is what position-by-position patching and mean ablation need.
A batch without it mixes layouts and pads each prompt on the right (the model
is causal, so padding after the last word cannot change its prediction); `end`
says where each prompt's last word is.

Corruptions keep every position aligned:
- "abc": S2 is replaced by a third, unrelated name, so nothing in the prompt
  says which of the first two names is the subject (the logit difference
  should fall to about 0);
- "flip": S2 is replaced by the IO name, so the *other* name becomes correct
  (the logit difference should turn negative).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

NAMES = ["Mary", "John", "Alice", "Bob", "Sarah", "Tom", "Emma", "James", "Lucy", "David", "Anna", "Peter",
         "Kate", "Paul", "Julia", "Mark", "Laura", "Sam", "Grace", "Max", "Rose", "Dan", "Nina", "Leo",
         "Clara", "Adam", "Helen", "Ben", "Eva", "Carl", "Iris", "Hugo", "Jane", "Oscar", "Mia", "Felix",
         "Ruth", "Ivan", "Sofia", "Luke", "Ella", "Owen", "Vera", "Noah", "Tina", "Ray", "Zoe", "Jack"]
PLACES = ["store", "park", "school", "garden", "station", "office", "market", "beach", "library", "cafe"]
OBJECTS = ["drink", "book", "ball", "letter", "ring", "key", "bag", "cake", "pen", "gift"]

# {A} {B}: the first clause's names (IO and S in either order); {P} place; {S} the subject again; {O} object.
OPENINGS = {
    "train": ["", "Today ,", "One day ,", "It was a warm day .", "Earlier that morning ,", "Later that day ,"],
    "test": ["", "One morning ,", "Earlier that day ,", "It was warm ."],
}
FIRST_CLAUSES = {
    "train": [
        "When {A} and {B} went to the {P} ,",
        "{A} and {B} went to the {P} .",
        "While {A} and {B} were at the {P} ,",
        "At the {P} , {A} and {B} were talking .",
        "{A} met {B} at the {P} .",
        "After {A} and {B} arrived at the {P} ,",
        "{A} and {B} walked into the {P} together .",
        "Once {A} and {B} got to {P} ,",
        "In the {P} , {A} saw {B} .",
        "{A} was with {B} at the {P} .",
        "The {P} was busy when {A} and {B} arrived .",
        "After {A} met {B} in the {P} ,",
    ],
    "test": [
        "When {A} and {B} got to {P} ,",
        "At {P} , {A} met {B} .",
        "{A} and {B} were talking at the {P} .",
        "The {P} was busy , {A} saw {B} .",
    ],
}
SECOND_CLAUSES = {
    "train": [
        "{S} gave a {O} to",
        "then {S} handed the {O} to",
        "{S} quickly passed a {O} to",
        "{S} threw the {O} to",
        "Later , {S} sent a {O} to",
        "{S} offered a {O} to",
        "and {S} gave the {O} back to",
        "The {O} was passed by {S} to",
    ],
    "test": [
        "then {S} quickly gave the {O} to",
        "Later , {S} threw a {O} to",
        "and {S} passed the {O} back to",
    ],
}


def layouts(split: str) -> list[str]:
    """Every template of a split: opening + first clause + second clause.

    Test layouts pair a held-out first clause with a held-out second clause, so
    the names, S2 and the end all sit at places no training prompt put them."""
    if split not in ("train", "test"):
        raise ValueError("split must be 'train' or 'test'")
    openings = OPENINGS["train"] + OPENINGS["test"][1:] if split == "test" else OPENINGS["train"]
    return [" ".join(p for p in parts if p) for parts in
            itertools.product(openings, FIRST_CLAUSES[split], SECOND_CLAUSES[split])]


# Mixed batches also vary each prompt inside its layout: a word before the place and the object, and a
# second opening in front, so that even within one layout no slot has a fixed position.
MODIFIERS = ["big", "old", "new", "quiet", "red", "small"]


FILLERS = ["well", "so", "now", "yes", "indeed", "oh"]


def _vary(template: str, generator: torch.Generator | None) -> str:
    draw = lambda options: options[int(torch.randint(len(options), (1,), generator=generator))]
    for slot in ("{P}", "{O}"):
        if draw([True, False]):
            template = template.replace(slot, f"{draw(MODIFIERS)} {slot}")
    if draw([True, False]):
        template = f"{draw(OPENINGS['train'][1:])} {template}"
    words = template.split()
    for _ in range(draw(range(MAX_FILLERS + 1))):
        words.insert(draw(range(words.index("{S}") + 1)), draw(FILLERS))
    return " ".join(words)


MAX_FILLERS = 3
BOS, PAD = "<bos>", "<pad>"
MAX_LEN = 1 + 2 + MAX_FILLERS + max(len(o.split()) for o in OPENINGS["train"]) + max(
    len(t.split()) for split in ("train", "test") for t in layouts(split))


def _words() -> list[str]:
    words = {w for split in ("train", "test") for t in layouts(split) for w in t.split() if not w.startswith("{")}
    return [BOS, PAD] + sorted(words | set(MODIFIERS) | set(FILLERS)) + NAMES + PLACES + OBJECTS


class WordTokenizer:
    """One token per word; names, places and objects are single tokens."""

    def __init__(self) -> None:
        self.words = _words()
        self.index = {w: i for i, w in enumerate(self.words)}
        self.bos_token_id = 0
        self.pad_token_id = 1
        self.name_ids = torch.tensor([self.index[n] for n in NAMES])

    @property
    def d_vocab(self) -> int:
        return len(self.words)

    def encode(self, text: str, prepend_bos: bool = True) -> list[int]:
        ids = [self.index[w] for w in text.replace(",", " , ").replace(".", " . ").split()]
        return [self.bos_token_id] + ids if prepend_bos else ids

    def decode(self, ids) -> str:
        words = (self.words[int(i)] for i in ids if int(i) != self.pad_token_id)
        return " ".join(words).replace(" ,", ",").replace(" .", ".")


def position_labels(layout: str) -> list[str]:
    """A label per position of a layout: BOS, its words, and A, B, P, S2, O for the slots."""
    slots = {"{A}": "A", "{B}": "B", "{P}": "P", "{S}": "S2", "{O}": "O"}
    return ["BOS"] + [slots.get(w, w) for w in layout.split()]


def _pair_is_held_out(a: int, b: int) -> bool:
    """A fixed quarter of unordered name pairs is kept for evaluation."""
    lo, hi = min(a, b), max(a, b)
    return (lo * 7 + hi * 13) % 4 == 0


@dataclass
class IOIBatch:
    """Clean prompts with their answers, plus an aligned corrupted copy, and where each role sits."""

    clean: Int[Tensor, "batch pos"]
    corrupted: Int[Tensor, "batch pos"]
    io: Int[Tensor, " batch"]  # token id of the indirect object (correct answer on clean)
    s: Int[Tensor, " batch"]  # token id of the subject (the wrong answer on clean)
    layouts: Int[Tensor, " batch"]  # index into layouts(split)
    abba: Int[Tensor, " batch"]  # 1 if the subject comes first ("S and IO"), 0 for "IO and S"
    io_pos: Int[Tensor, " batch"]
    s1_pos: Int[Tensor, " batch"]
    s2_pos: Int[Tensor, " batch"]
    end: Int[Tensor, " batch"]  # the last word ("to"), where the answer is predicted

    @property
    def answers(self) -> Int[Tensor, "batch 2"]:
        """[correct, wrong] token ids for the clean prompts."""
        return torch.stack([self.io, self.s], dim=1)

    def __len__(self) -> int:
        return len(self.io)


def _pad(rows: list[list[int]], pad: int) -> Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows])


def ioi_batch(
    n: int,
    split: str = "train",
    corruption: str = "abc",
    generator: torch.Generator | None = None,
    tokenizer: WordTokenizer | None = None,
    layout: int | None = None,
) -> IOIBatch:
    """`n` IOI prompts from the train or held-out split, with both name orders, and their corruption.

    `layout` (an index into `layouts(split)`) gives every prompt the same layout; otherwise each
    prompt draws its own and the batch is right-padded."""
    if corruption not in ("abc", "flip"):
        raise ValueError("corruption must be 'abc' or 'flip'")
    tok = tokenizer or WordTokenizer()
    templates = layouts(split)
    fields = {k: [] for k in ("clean", "corrupted", "io", "s", "layouts", "abba", "io_pos", "s1_pos", "s2_pos")}
    while len(fields["io"]) < n:
        i, j, k = torch.randperm(len(NAMES), generator=generator)[:3].tolist()
        if _pair_is_held_out(i, j) != (split == "test"):
            continue
        t = layout if layout is not None else int(torch.randint(len(templates), (1,), generator=generator))
        p = PLACES[int(torch.randint(len(PLACES), (1,), generator=generator))]
        o = OBJECTS[int(torch.randint(len(OBJECTS), (1,), generator=generator))]
        io, s, other = NAMES[i], NAMES[j], NAMES[k]
        abba = int(torch.randint(2, (1,), generator=generator))
        a, b = (s, io) if abba else (io, s)
        template = templates[t] if layout is not None else _vary(templates[t], generator)
        words = ["BOS"] + template.split()
        pos_a, pos_b, pos_s2 = words.index("{A}"), words.index("{B}"), words.index("{S}")
        fields["clean"].append(tok.encode(template.format(A=a, B=b, P=p, S=s, O=o)))
        s2 = other if corruption == "abc" else io
        fields["corrupted"].append(tok.encode(template.format(A=a, B=b, P=p, S=s2, O=o)))
        fields["io"].append(tok.index[io])
        fields["s"].append(tok.index[s])
        fields["layouts"].append(t)
        fields["abba"].append(abba)
        fields["io_pos"].append(pos_b if abba else pos_a)
        fields["s1_pos"].append(pos_a if abba else pos_b)
        fields["s2_pos"].append(pos_s2)
    end = torch.tensor([len(row) - 1 for row in fields["clean"]])
    clean, corrupted = (_pad(fields.pop(key), tok.pad_token_id) for key in ("clean", "corrupted"))
    return IOIBatch(clean, corrupted, **{k: torch.tensor(v) for k, v in fields.items()}, end=end)


def logits_at_end(logits: Tensor, batch: IOIBatch) -> Tensor:
    """[batch, d_vocab]: each prompt's prediction after its last word (padding ignored)."""
    return logits[torch.arange(len(batch)), batch.end.to(logits.device)]


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
    clean, corrupt, ios, ss, positions = [], [], [], [], []
    for i, (prompt, io, s) in enumerate(prompts):
        head, tail = prompt.rsplit(f"{s.strip()} gave", 1)
        other = next(n for n in GPT2_OTHER_NAMES[i % len(GPT2_OTHER_NAMES):] + GPT2_OTHER_NAMES if n not in (io, s))
        clean.append(model.to_tokens(prompt)[0])
        corrupt.append(model.to_tokens(f"{head}{other.strip()} gave{tail}")[0])
        ios.append(model.to_single_token(io))
        ss.append(model.to_single_token(s))
        where = lambda token: (clean[-1] == token).nonzero()[:, 0].tolist()
        positions.append([where(ios[-1])[0], where(ss[-1])[0], where(ss[-1])[-1], len(clean[-1]) - 1])
    if len({len(t) for t in clean + corrupt}) != 1:
        raise ValueError("every prompt (and its corruption) must have the same number of tokens")
    n = len(prompts)
    io_pos, s1_pos, s2_pos, end = torch.tensor(positions).T
    return IOIBatch(torch.stack(clean), torch.stack(corrupt), torch.tensor(ios), torch.tensor(ss),
                    torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), io_pos, s1_pos, s2_pos, end)


# -- sentence frames the model never trained on: where does it generalise? ------------------------------
#
# Each frame is one fixed template, so every prompt has the same length and its last word is the end.
# Slots: {A} {B} the first clause's two names (IO and S, in either order, as in the training layouts);
# {IO} and {S} a name in a fixed role; {X} a third name that is neither answer; {P} a place; {O} an object.
# The right answer is always IO, the wrong one S. Frames are grouped by where the names sit, which is
# what decides whether `ioi_3l` copes (4.1, section 7).
FRAMES = {
    # IO comes before the subject's last mention, as in training, but in clauses the model never saw
    "passive": ("S last", "{A} and {B} went to the {P} . The {O} was handed by {S} to"),
    "three clauses": ("S last", "{A} and {B} went to the {P} . The {P} was busy . Later that day , {S} gave a {O} to"),
    "long gap": ("S last", "{A} met {B} at the {P} . It was a warm day . The {P} was busy . One morning , "
                           "{S} quickly gave the {O} to"),
    "words after S2": ("S last", "When {A} and {B} went to the {P} , {S} , well , so , gave a {O} to"),
    "IO alone first": ("S last", "{IO} was at the {P} . Later , {S} walked into the {P} and {S} gave a {O} to"),
    # a new, unrepeated name after S2: the last name is no longer the subject
    "S and X": ("new name after S2", "When {A} and {B} went to the {P} , {S} and {X} gave a {O} to"),
    "S with X": ("new name after S2", "When {A} and {B} went to the {P} , {S} was with {X} and gave a {O} to"),
    # IO is the last name, after a repeated subject: [S, S, IO]
    "S, S met IO": ("S, S, IO", "{S} went to the {P} . {S} met {IO} and gave a {O} to"),
    "S, S saw IO": ("S, S, IO", "When {S} went to the {P} , {S} saw {IO} and then gave the {O} to"),
    "S, S with IO": ("S, S, IO", "{S} was at the {P} . Later , {S} was with {IO} and passed a {O} to"),
    # IO is the last name and nothing is repeated: [S, IO]
    "S met IO": ("S, IO", "{S} met {IO} at the {P} and gave a {O} to"),
    "S with IO": ("S, IO", "{S} was with {IO} at the {P} and then gave the {O} to"),
    "S saw IO": ("S, IO", "At the {P} , {S} saw {IO} and quickly passed a {O} to"),
}


@dataclass
class FrameBatch:
    """Prompts of one frame (same length, no padding), their answers, and where each name sits."""

    tokens: Int[Tensor, "batch pos"]
    io: Int[Tensor, " batch"]
    s: Int[Tensor, " batch"]
    # role -> position in each prompt: "IO" (its first mention), "S1" and "S2" (the subject's first and
    # last mention; "S2" only where it is repeated), "X" (the third name, where there is one)
    roles: dict[str, Int[Tensor, " batch"]]

    @property
    def answers(self) -> Int[Tensor, "batch 2"]:
        return torch.stack([self.io, self.s], dim=1)

    def __len__(self) -> int:
        return len(self.io)


def frame_batch(frame: str, n: int, generator: torch.Generator | None = None,
                tokenizer: WordTokenizer | None = None) -> FrameBatch:
    """`n` prompts of `FRAMES[frame]` with held-out (IO, S) name pairs and both first-clause name orders."""
    tok = tokenizer or WordTokenizer()
    template = ["BOS"] + FRAMES[frame][1].split()
    rows, ios, ss, roles = [], [], [], []
    while len(rows) < n:
        i, j, k = torch.randperm(len(NAMES), generator=generator)[:3].tolist()
        if not _pair_is_held_out(i, j):
            continue
        place = PLACES[int(torch.randint(len(PLACES), (1,), generator=generator))]
        obj = OBJECTS[int(torch.randint(len(OBJECTS), (1,), generator=generator))]
        io, s, x = NAMES[i], NAMES[j], NAMES[k]
        abba = int(torch.randint(2, (1,), generator=generator))
        slots = {"{A}": s if abba else io, "{B}": io if abba else s, "{IO}": io, "{S}": s, "{X}": x,
                 "{P}": place, "{O}": obj}
        words = [slots.get(w, w) for w in template]
        rows.append([tok.bos_token_id] + [tok.index[w] for w in words[1:]])
        ios.append(tok.index[io])
        ss.append(tok.index[s])
        s_at = [p for p, w in enumerate(words) if w == s]
        where = {"IO": words.index(io), "S1": s_at[0]}
        if len(s_at) > 1:
            where["S2"] = s_at[-1]
        if x in words:
            where["X"] = words.index(x)
        roles.append(where)
    return FrameBatch(torch.tensor(rows), torch.tensor(ios), torch.tensor(ss),
                      {role: torch.tensor([r[role] for r in roles]) for role in roles[0]})
