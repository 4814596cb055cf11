"""The accuracy budget, for every bundle kind: keep the most sensitive MatMuls in float, one at a time, until it holds.

    measure the recipe ──► drop <= max_drop? ──► done
                               │ no
    rank every candidate node by the drop with it alone kept in float (on a small subset)
    keep the most helpful one, measure on the whole set, repeat until the budget holds or nodes run out

The caller says what a trial is (quantize one graph, or every graph of a generation bundle) and
how a node is named; a budget never met is the caller's BudgetError.
"""

from __future__ import annotations

from typing import Callable, Hashable, TypeVar

from .evaluation import Fidelity

Node = TypeVar("Node", bound=Hashable)


def rank_sensitivity(nodes: list[Node], drop_with_kept: Callable[[Node], float]) -> list[tuple[Node, float]]:
    """(node, drop with that node alone kept in float), most helpful first."""
    return sorted(((node, drop_with_kept(node)) for node in nodes), key=lambda s: s[1])


def keep_within_budget(fid: Fidelity, max_drop: float | None, candidates: Callable[[], list[Node]],
                       drop_with_kept: Callable[[Node], float], measure_kept: Callable[[list[Node]], Fidelity],
                       progress: Callable[[str], None], name: Callable[[Node], str] = str,
                       max_kept: int | None = None) -> tuple[Fidelity, list[Node]]:
    """The fidelity and the nodes kept in float once the budget holds (or every node, or `max_kept` of them, was tried).

    `candidates()`: the nodes that may be kept (listed only when the budget is missed); `drop_with_kept(node)`: the drop with `node` alone kept (ranking, on a subset); `measure_kept(kept)`:
    the fidelity with `kept` in float on the whole evaluation set, leaving that candidate as the one written.
    """
    kept: list[Node] = []
    if max_drop is None or fid.drop <= max_drop:
        return fid, kept
    nodes = candidates()
    progress(f"over the budget {max_drop:g}: ranking {len(nodes)} MatMuls by sensitivity")
    for node, _ in rank_sensitivity(nodes, drop_with_kept)[:max_kept]:
        kept.append(node)
        fid = measure_kept(kept)
        progress(f"  kept {name(node)} in float: drop {fid.drop:.4g}")
        if fid.drop <= max_drop:
            break
    return fid, kept
