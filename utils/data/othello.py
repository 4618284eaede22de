"""Othello on a 6x6 board, played at random, with the whole board known after every move.

Chapter 6 trains a small GPT on move sequences and asks whether it *represents*
the board. That needs the ground truth: for every game and every move, the board,
the player to move and the legal moves. The engine below plays thousands of games
at once (every rule is a tensor operation over the batch), so a notebook generates
its data in well under a second.

Conventions. Squares are numbered 0..35 row by row; `square_name(14)` is "C3"
(columns A-F, rows 1-6). A board holds +1 for black, -1 for white, 0 for empty.
Black moves first. Games stop at the first pass (a player with no legal move), so
the players strictly alternate: after move t (counting from 0) white is to move
if t is even, black if it is odd. Token = square index; `PAD` fills the rest of
a finished game.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

SIZE = 6
N_SQUARES = SIZE * SIZE
MAX_MOVES = N_SQUARES - 4
PAD = N_SQUARES
D_VOCAB = N_SQUARES + 1
EMPTY, BLACK, WHITE = 0, 1, -1
HELDOUT_SEED = 12345          # training draws its games from seed 0's stream
DIRECTIONS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
CENTRE = {(2, 2): WHITE, (2, 3): BLACK, (3, 2): BLACK, (3, 3): WHITE}


def square_name(square: int) -> str:
    return "ABCDEF"[square % SIZE] + str(square // SIZE + 1)


def _rays() -> Int[Tensor, "square direction step"]:
    """For every square and direction, the squares met walking away from it (N_SQUARES = off the board)."""
    rays = torch.full((N_SQUARES, len(DIRECTIONS), SIZE - 1), N_SQUARES, dtype=torch.long)
    for square in range(N_SQUARES):
        row, col = divmod(square, SIZE)
        for d, (dr, dc) in enumerate(DIRECTIONS):
            for step in range(1, SIZE):
                r, c = row + step * dr, col + step * dc
                if not (0 <= r < SIZE and 0 <= c < SIZE):
                    break
                rays[square, d, step - 1] = r * SIZE + c
    return rays


RAYS = _rays()


def initial_boards(n: int) -> Int[Tensor, "n square"]:
    board = torch.zeros(n, N_SQUARES, dtype=torch.long)
    for (r, c), colour in CENTRE.items():
        board[:, r * SIZE + c] = colour
    return board


def _captures(board: Int[Tensor, "n square"], player: Int[Tensor, " n"],
              rays: Int[Tensor, "n ... step"]) -> Bool[Tensor, "n ... step"]:
    """Along each ray from a square, the stones that playing there would flip: a run of opponent
    stones closed by one of the player's own."""
    padded = torch.cat([board, torch.zeros_like(board[:, :1])], dim=1).to(torch.int8)
    along = padded.gather(1, rays.reshape(len(board), -1)).reshape(rays.shape)
    colour = player.to(torch.int8).reshape(-1, *[1] * (rays.dim() - 1))
    own, opponent = along == colour, along == -colour
    streak, closed = opponent[..., 0], torch.zeros_like(opponent[..., 0])
    run = streak.long()
    for step in range(1, SIZE - 1):
        closed |= streak & own[..., step]
        streak = streak & opponent[..., step]
        run += streak
    return (torch.arange(SIZE - 1) < run[..., None]) & closed[..., None]


def legal_moves(board: Int[Tensor, "n square"], player: Int[Tensor, " n"]) -> Bool[Tensor, "n square"]:
    """A move is legal iff its square is empty and it flips at least one stone."""
    rays = RAYS.expand(len(board), -1, -1, -1)
    return _captures(board, player, rays).any(dim=(-1, -2)) & (board == EMPTY)


def flips(board: Int[Tensor, "n square"], player: Int[Tensor, " n"], move: Int[Tensor, " n"]) -> Bool[Tensor, "n square"]:
    """The stones each move flips."""
    rays = RAYS[move]                                                  # n direction step
    flipped = torch.zeros(len(board), N_SQUARES + 1, dtype=torch.long)
    flipped.scatter_add_(1, rays.reshape(len(board), -1), _captures(board, player, rays).long().reshape(len(board), -1))
    return flipped[:, :N_SQUARES] > 0


def play(board: Int[Tensor, "n square"], player: Int[Tensor, " n"], move: Int[Tensor, " n"]) -> Int[Tensor, "n square"]:
    """The boards after each player plays its (legal) move."""
    board = torch.where(flips(board, player, move), player[:, None], board)
    return board.scatter(1, move[:, None], player[:, None])


@dataclass
class Games:
    """Random games and their ground truth; t indexes moves (position t of the token sequence).

    `boards[:, t]` is the board after move t, `legal[:, t]` the legal moves for the player to move
    after it (all False once the game is over), `flipped[:, t]` the stones move t flipped."""
    moves: Int[Tensor, "n t"]
    boards: Int[Tensor, "n t square"]
    legal: Bool[Tensor, "n t square"]
    flipped: Bool[Tensor, "n t square"]
    length: Int[Tensor, " n"]

    @property
    def valid(self) -> Bool[Tensor, "n t"]:
        """Positions holding a move (not padding)."""
        return torch.arange(self.moves.shape[1]) < self.length[:, None]

    @property
    def predictable(self) -> Bool[Tensor, "n t"]:
        """Positions after which the game goes on: there is a legal next move to predict."""
        return self.legal.any(dim=-1)

    def __len__(self) -> int:
        return self.moves.shape[0]


def to_move(t: Int[Tensor, "..."] | int) -> Int[Tensor, "..."]:
    """The player to move after move t: white after black's moves (t even), black after white's."""
    return torch.where(torch.as_tensor(t) % 2 == 0, WHITE, BLACK)


def random_games(n: int, generator: torch.Generator | None = None) -> Games:
    """n games of uniformly random legal moves, stopped at the first pass."""
    board = initial_boards(n)
    player = torch.full((n,), BLACK, dtype=torch.long)
    alive = torch.ones(n, dtype=torch.bool)
    moves = torch.full((n, MAX_MOVES), PAD, dtype=torch.long)
    boards = torch.zeros(n, MAX_MOVES, N_SQUARES, dtype=torch.long)
    legal = torch.zeros(n, MAX_MOVES, N_SQUARES, dtype=torch.bool)
    flipped = torch.zeros(n, MAX_MOVES, N_SQUARES, dtype=torch.bool)
    for t in range(MAX_MOVES):
        options = legal_moves(board, player)
        alive &= options.any(dim=-1)
        if t:
            legal[:, t - 1] = options & alive[:, None]
        if not alive.any():
            break
        move = torch.rand(n, N_SQUARES, generator=generator).masked_fill(~options, -1.0).argmax(dim=-1)
        turned = flips(board, player, move) & alive[:, None]
        board = torch.where(alive[:, None], play(board, player, move), board)
        moves[:, t] = torch.where(alive, move, PAD)
        boards[:, t] = board
        flipped[:, t] = turned
        player = -player
    length = (moves != PAD).sum(dim=1)
    return Games(moves, boards, legal, flipped, length)


def render(board: Int[Tensor, " square"], marks: Bool[Tensor, " square"] | None = None) -> str:
    """A board as text: ● black, ○ white, · empty, * a marked empty square (e.g. the legal moves)."""
    rows = ["  " + " ".join("ABCDEF")]
    for r in range(SIZE):
        cells = []
        for c in range(SIZE):
            s = r * SIZE + c
            v = int(board[s])
            cells.append("●" if v == BLACK else "○" if v == WHITE else "*" if marks is not None and marks[s] else "·")
        rows.append(f"{r + 1} " + " ".join(cells))
    return "\n".join(rows)
