"""The order in which a worker serving several queues claims from them.

Strict (the default): every claim takes the queues in the order given, so a later queue
waits while an earlier one holds tasks. Weighted (``--queue a:3 --queue b:1``): each
claim draws its own order at random, a queue coming first in proportion to its weight
(as Sidekiq's and asynq's weighted queues do), so no queue starves. The claim script
takes whatever order it is given, so a weighted order costs a few random draws per
claim and nothing on the server.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.queue.names import check_queue_name

#: Largest weight of one queue: more is a typo, and weights are relative anyway.
MAX_WEIGHT = 1000


@dataclass(frozen=True)
class QueueOrder:
    """The queues a worker serves; ``weights`` None means strict, in the order given."""

    queues: tuple[str, ...]
    weights: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, specs: Sequence[str], strict: bool = False) -> QueueOrder:
        """``NAME`` or ``NAME:WEIGHT`` per queue. With no weight anywhere the order is
        strict; with some, a queue without one weighs 1. ``strict`` with weights orders
        the queues by weight, heaviest first (ties in the order given), every claim."""
        names: list[str] = []
        weights: list[int] = []
        weighted = False
        for spec in specs:
            name, colon, weight_text = spec.rpartition(":")
            if not colon:
                name, weight_text = spec, ""
            names.append(check_queue_name(name))
            weights.append(_weight(spec, weight_text) if colon else 1)
            weighted = weighted or bool(colon)
        if len(set(names)) < len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"queue {twice!r} is given twice: name each queue once")
        if not weighted:
            return cls(tuple(names))
        if strict:
            ranked = sorted(range(len(names)), key=lambda i: -weights[i])
            return cls(tuple(names[i] for i in ranked))
        return cls(tuple(names), tuple(weights))

    def claim_order(self, rng: random.Random) -> list[str]:
        """The queues in the order the next claim takes them."""
        if self.weights is None or len(self.queues) < 2:
            return list(self.queues)
        names, weights = list(self.queues), list(self.weights)
        total = sum(weights)
        out: list[str] = []
        while len(names) > 1:
            point = rng.random() * total
            chosen = len(names) - 1  # a float sum may fall short of the last one
            for i, weight in enumerate(weights):
                point -= weight
                if point < 0:
                    chosen = i
                    break
            out.append(names.pop(chosen))
            total -= weights.pop(chosen)
        out.append(names[0])
        return out

    def describe(self) -> list[str]:
        """The queues as given, weights included (for logs)."""
        if self.weights is None:
            return list(self.queues)
        return [f"{q}:{w}" for q, w in zip(self.queues, self.weights, strict=True)]


def _weight(spec: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_WEIGHT:
        raise ValueError(
            f"invalid --queue {spec!r}: the weight after ':' must be a whole number "
            f"from 1 to {MAX_WEIGHT}"
        )
    return int(text)
