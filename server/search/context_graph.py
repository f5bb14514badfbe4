"""Phrase boosting: a context graph over the token sequences of a request's phrases.

The graph is a trie of the phrases' token ids with Aho-Corasick failure links, made
deterministic (every state has a next state for every token). A hypothesis' position in it
is one int per hypothesis (``BeamState.context_state``, 0 = the root), carried through the
search as the LM context is. Scores follow a potential:

- each token that extends a match earns the phrase's per-token bonus at once, so the search
  keeps a partial match alive while its acoustics are still ambiguous;
- that bonus is on loan until the phrase is complete. The loan of state n, ``potential[n]``,
  is the bonus earned since the last complete phrase on its trie path; a token that breaks
  the match moves to the longest suffix still matched (the failure chain) and gives back the
  difference, ``gain[next] - potential[state]``;
- completing a phrase banks its bonus for good (``gain`` of an end state includes it), and at
  the end of an utterance whatever is still on loan is given back (``potential_of``), so a
  final never keeps a bonus for half a phrase.

A phrase that ends inside a longer match (phrase "b" inside a match of "abc") is not banked
separately: it earns only the loan of the longer match (simpler than dictionary-suffix links).

Tables (N states, V tokens), all torch tensors on one device:
    potential (N,) float32: the loan of each state.
    gain (N,) float32: potential[n] plus, for a state that completes a phrase, its bank.
    failure (N,) int64: the state of the longest proper suffix of n's path that is a trie path.
    root_next (V,) int64: the state after each token from the root (0: none matches).
    offsets (N + 1,) int64, child_tokens (N - 1,), child_states (N - 1,): each state's trie
        children (CSR; the root's are ``root_next``). A state's next state for a token is its
        child, else its failure state's next state: ``step`` walks the failure chains of K
        hypotheses at once, one level per tensor operation (the chains are as long as the
        matched suffixes, rarely more than two).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Phrase:
    """A phrase's token ids and the bonus (log-score) each of its tokens earns."""

    tokens: tuple[int, ...]
    token_bonus: float


@dataclass(frozen=True, eq=False)
class ContextGraph:
    """The deterministic automaton of a set of phrases (see the module docstring for the tables)."""

    vocab_size: int
    potential: Tensor
    gain: Tensor
    failure: Tensor
    root_next: Tensor
    offsets: Tensor
    child_tokens: Tensor
    child_states: Tensor
    # The trie and failure links as Python lists, for walking one hypothesis.
    children: tuple[dict[int, int], ...]
    failure_of: tuple[int, ...]
    # The phrases' words as text: the word-LM rescoring of finals does not count them as unknown.
    words: frozenset[str] = frozenset()

    @property
    def num_states(self) -> int:
        return int(self.potential.shape[0])

    def to(self, device: torch.device | str) -> ContextGraph:
        if self.potential.device == torch.device(device):
            return self
        return dataclasses.replace(self, **{name: getattr(self, name).to(device) for name in _TENSORS})

    def next_state(self, state: int, token: int) -> int:
        """One transition, in Python."""
        while state and token not in self.children[state]:
            state = self.failure_of[state]
        return self.children[state].get(token, 0)

    def walk(self, tokens: Sequence[int], state: int = 0) -> int:
        """The state after ``tokens`` from ``state``."""
        for token in tokens:
            state = self.next_state(state, token)
        return state

    def potential_of(self, tokens: Sequence[int]) -> float:
        """The bonus a hypothesis of ``tokens`` still has on loan (taken back at its final)."""
        return float(self.potential[self.walk(tokens)])

    def step(self, states: Tensor) -> tuple[Tensor, Tensor]:
        """For hypotheses in ``states`` (K,) int64: (delta (K, V) float32, next (K, V) int64), the score
        each token adds and the state it leads to. The caller leaves blank out (it moves nothing)."""
        following = self.root_next.expand(states.shape[0], -1).clone()
        chain = []
        level = states
        while bool((level != 0).any()):
            chain.append(level)
            level = self.failure[level]
        for level in reversed(chain):  # the nearest state on a chain writes last: its child wins
            self._write_children(following, level)
        delta = self.gain[following] - self.potential[states].unsqueeze(1)
        return delta, following

    def _write_children(self, following: Tensor, states: Tensor) -> None:
        """following[k, token] = child for every trie child of states[k] (K,)."""
        starts = self.offsets[states]
        sizes = self.offsets[states + 1] - starts
        rows = torch.repeat_interleave(torch.arange(states.shape[0], device=states.device), sizes)
        if rows.numel() == 0:
            return
        first = torch.repeat_interleave(starts - torch.cumsum(sizes, 0) + sizes, sizes)
        entries = first + torch.arange(rows.numel(), device=states.device)
        following[rows, self.child_tokens[entries]] = self.child_states[entries]


_TENSORS = ("potential", "gain", "failure", "root_next", "offsets", "child_tokens", "child_states")


def build_context_graph(
    phrases: Sequence[Phrase], vocab_size: int, words: frozenset[str] = frozenset()
) -> ContextGraph:
    """The automaton of ``phrases`` (token ids below ``vocab_size``; a shared prefix earns the
    larger of its phrases' bonuses); ``words``: their words as text (see ``ContextGraph.words``)."""
    children: list[dict[int, int]] = [{}]
    bonus = [0.0]  # per state: the bonus of the token that enters it
    parent = [0]
    entering = [0]  # per state: the token that enters it
    ends = [False]
    for phrase in phrases:
        state = 0
        for token in phrase.tokens:
            if not 0 <= token < vocab_size:
                raise ValueError(f"token {token} outside the vocabulary of {vocab_size}")
            child = children[state].get(token)
            if child is None:
                child = len(children)
                children[state][token] = child
                children.append({})
                bonus.append(phrase.token_bonus)
                parent.append(state)
                entering.append(token)
                ends.append(False)
            else:
                bonus[child] = max(bonus[child], phrase.token_bonus)
            state = child
        if phrase.tokens:
            ends[state] = True
    count = len(children)
    accumulated = [0.0] * count  # bonus of the whole trie path
    last_end = [0.0] * count  # accumulated bonus at the deepest complete phrase on the path
    failure = [0] * count
    # Breadth-first: a state's parent and failure state (both shallower) come before it.
    queue = deque(children[0].values())
    while queue:
        state = queue.popleft()
        queue.extend(children[state].values())
        up, token = parent[state], entering[state]
        accumulated[state] = accumulated[up] + bonus[state]
        last_end[state] = accumulated[state] if ends[state] else last_end[up]
        if up != 0:
            fallback = failure[up]
            while fallback != 0 and token not in children[fallback]:
                fallback = failure[fallback]
            failure[state] = children[fallback].get(token, 0)
    potential = [accumulated[n] - last_end[n] for n in range(count)]
    # Entering n completes a phrase: what was on loan just before, plus this token's bonus, is banked.
    gain = [potential[n] + (accumulated[n] - last_end[parent[n]] if ends[n] and n else 0.0) for n in range(count)]
    root_next = torch.zeros(vocab_size, dtype=torch.int64)
    for token, child in children[0].items():
        root_next[token] = child
    sizes = torch.tensor([0] + [len(c) for c in children[1:]], dtype=torch.int64)
    offsets = torch.zeros(count + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(sizes, 0)
    flat = [pair for c in children[1:] for pair in c.items()]
    pairs = torch.tensor(flat, dtype=torch.int64).reshape(-1, 2)
    return ContextGraph(
        vocab_size=vocab_size,
        potential=torch.tensor(potential, dtype=torch.float32),
        gain=torch.tensor(gain, dtype=torch.float32),
        failure=torch.tensor(failure, dtype=torch.int64),
        root_next=root_next,
        offsets=offsets,
        child_tokens=pairs[:, 0].contiguous(),
        child_states=pairs[:, 1].contiguous(),
        children=tuple(children),
        failure_of=tuple(failure),
        words=words,
    )
