"""jaxrl.agents: one module per algorithm family, each a set of pure functions.

`REGISTRY` maps the CLI name of an agent to its module. Every module provides `Config`
(static, validated), `HParams` (traced scalars, with `HParams.create(**values)`), `init`,
`act`, `loss`, `update`, `make_parts` and `make_train`.
"""

from jaxrl.agents import a2c, ppo

REGISTRY = {"ppo": ppo, "a2c": a2c}

__all__ = ["REGISTRY", "a2c", "ppo"]
