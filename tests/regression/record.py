"""Record the regression fixture: every registered agent's short fixed-seed run.

Run once on the commit before a refactor (`python tests/regression/record.py`); it writes
one `.npz` per case beside this file with the run's metrics and final parameters.
`tests/test_regression.py` trains the same cases through the current API and compares.
This script was run on commit 5d8e3c7 (before the agent contract) and uses that API.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cases import CASES, flatten  # noqa: E402


def main() -> None:
    from jaxrl.agents import REGISTRY
    for case, (name, kwargs, hparams) in CASES.items():
        agent = REGISTRY[name]
        config = agent.Config(**kwargs)
        train = jax.jit(agent.make_train(config))
        state, metrics = train(jax.random.key(0), agent.HParams.create(**hparams))
        arrays = {f"metrics/{k}": np.asarray(v) for k, v in metrics.items()}
        arrays.update({f"params{k}": v for k, v in flatten(state.params).items()})
        np.savez(os.path.join(HERE, f"{case}.npz"), **arrays)
        print(case, len(arrays), "arrays")


if __name__ == "__main__":
    main()
