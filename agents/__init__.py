"""jaxrl.agents: one module per algorithm family, each a set of pure functions.

`REGISTRY` maps the CLI name of an agent to its module. Every module provides `Config`
(static, validated), `HParams` (traced scalars, with `HParams.create(**values)`), `init`,
`act`, `loss`, `update`, `make_parts` and `make_train`.
"""

from jaxrl.agents import ppo

REGISTRY = {"ppo": ppo}

__all__ = ["REGISTRY", "ppo"]
