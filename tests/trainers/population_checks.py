"""What several population tests share: a member's weights, the exact-resume check and the
frozen-member check."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from trainers import names
from trainers.population import Population


def weights(pop: Population, j: int) -> list[torch.Tensor]:
    """Member j's generator and critic state, in the single-run module's layout."""
    return [*pop.G.member_state_dict(j).values(), *pop.D.member_state_dict(j).values()]


def check_resume_is_exact(cfgs: list, folder) -> None:
    """Saved at step 10 (after an evaluation) and resumed, a population ends bit for bit
    where one trained straight through ends."""
    straight = Population(cfgs)
    straight.run()
    first = Population(cfgs)
    first.train_until(10)
    first.evaluate()
    first.save(folder / "pop.pt")
    resumed = Population.load(folder / "pop.pt", device="cpu")
    resumed.run()
    for j in range(len(cfgs)):
        for a, b in zip(weights(straight, j), weights(resumed, j), strict=True):
            assert torch.equal(a, b)


def check_a_poisoned_member_freezes(cfgs: list, poison: Callable[[Population], None], *,
                                    start: int, end: int, exact: bool = True) -> list[dict]:
    """Members 0, 1, 2: `poison` puts a NaN into member 1 at step `start`; the finite check at
    step 25 freezes it. It must then stand still, while members 0 and 2 end as they do in a
    population without member 1 (bit for bit when `exact`, else to round-off). Returns the
    poisoned population's final metrics."""
    hit, clean = Population(cfgs), Population([cfgs[0], cfgs[2]])
    hit.train_until(start)
    clean.train_until(start)
    with torch.no_grad():
        poison(hit)
    hit.train_until(25)  # frozen at the check at step 25
    frozen = [torch.nan_to_num(w).clone() for w in weights(hit, 1)]
    hit.train_until(end)
    clean.train_until(end)
    final = hit.evaluate()
    assert final[1][names.DIVERGED] == 1 and final[1][names.STEP] == 25
    assert all(not math.isnan(v) for v in final[1].values())
    assert all(torch.equal(a, torch.nan_to_num(b))  # it no longer moves
               for a, b in zip(frozen, weights(hit, 1), strict=True))
    for j_hit, j_clean in ((0, 0), (2, 1)):
        assert final[j_hit][names.DIVERGED] == 0 and final[j_hit][names.STEP] == end
        for a, b in zip(weights(hit, j_hit), weights(clean, j_clean), strict=True):
            if exact:
                assert torch.equal(a, b)
            else:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    return final
