"""The Othello engine: chapter 6's probes are only as right as the boards they are trained on."""

import torch

from utils.data import othello


def _rules_legal(board: list[int], player: int) -> list[bool]:
    """Legal moves by the rules, one square and direction at a time (slow, obviously right)."""
    legal = []
    for square in range(othello.N_SQUARES):
        row, col = divmod(square, othello.SIZE)
        ok = False
        if board[square] == othello.EMPTY:
            for dr, dc in othello.DIRECTIONS:
                r, c, seen = row + dr, col + dc, 0
                while 0 <= r < othello.SIZE and 0 <= c < othello.SIZE and board[r * othello.SIZE + c] == -player:
                    r, c, seen = r + dr, c + dc, seen + 1
                ok |= seen > 0 and 0 <= r < othello.SIZE and 0 <= c < othello.SIZE \
                    and board[r * othello.SIZE + c] == player
        legal.append(ok)
    return legal


def _rules_play(board: list[int], player: int, move: int) -> tuple[list[int], set[int]]:
    board, flipped = list(board), set()
    row, col = divmod(move, othello.SIZE)
    board[move] = player
    for dr, dc in othello.DIRECTIONS:
        r, c, path = row + dr, col + dc, []
        while 0 <= r < othello.SIZE and 0 <= c < othello.SIZE and board[r * othello.SIZE + c] == -player:
            path.append(r * othello.SIZE + c)
            r, c = r + dr, c + dc
        if path and 0 <= r < othello.SIZE and 0 <= c < othello.SIZE and board[r * othello.SIZE + c] == player:
            flipped.update(path)
    for q in flipped:
        board[q] = player
    return board, flipped


def test_random_games_follow_the_rules_move_by_move():
    games = othello.random_games(60, torch.Generator().manual_seed(0))
    for g in range(len(games)):
        board, player = othello.initial_boards(1)[0].tolist(), othello.BLACK
        for t in range(int(games.length[g])):
            move = int(games.moves[g, t])
            assert _rules_legal(board, player)[move], (g, t)
            board, flipped = _rules_play(board, player, move)
            player = -player
            assert games.boards[g, t].tolist() == board, (g, t)
            assert set(games.flipped[g, t].nonzero()[:, 0].tolist()) == flipped, (g, t)
            assert games.legal[g, t].tolist() == _rules_legal(board, player), (g, t)
        assert not games.legal[g, games.length[g] - 1].any(), "a game stops only when the player to move must pass"
        assert (games.moves[g, games.length[g]:] == othello.PAD).all()


def test_players_alternate_and_to_move_says_who_is_next():
    games = othello.random_games(20, torch.Generator().manual_seed(1))
    for g in range(len(games)):
        for t in range(int(games.length[g])):
            mover = othello.BLACK if t % 2 == 0 else othello.WHITE
            assert games.boards[g, t, games.moves[g, t]] == mover
            assert othello.to_move(t) == -mover


def test_games_are_seeded_and_mostly_fill_the_board():
    a = othello.random_games(200, torch.Generator().manual_seed(2))
    b = othello.random_games(200, torch.Generator().manual_seed(2))
    assert torch.equal(a.moves, b.moves)
    assert a.length.float().mean() > 28 and a.length.max() == othello.MAX_MOVES


def test_square_names_run_along_rows():
    assert [othello.square_name(s) for s in (0, 5, 6, 14, 35)] == ["A1", "F1", "A2", "C3", "F6"]
