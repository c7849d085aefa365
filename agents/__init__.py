"""jaxrl.agents: one module per algorithm family, each defining `Agent` records.

`REGISTRY` maps the CLI name of an agent to its `jaxrl.agent.Agent` record. A variant of a
family (`ppo-kl`, `c51`, `td3`, ...) is the family's record with another `Config` class
(`Agent.variant`), never other code. Modules are imported on first use, so importing this
package (or listing names) does not import every family.
"""

from __future__ import annotations

import importlib
from typing import Any

# CLI name -> (module, record name in the module)
ENTRIES = {
    "reinforce": ("reinforce", "AGENT"),
    "ppo": ("ppo", "AGENT"),
    "ppo-kl": ("ppo", "KL_AGENT"),
    "a2c": ("a2c", "AGENT"),
    "trpo": ("trpo", "AGENT"),
    "dqn": ("dqn", "AGENT"),
    "c51": ("dqn", "C51_AGENT"),
    "rainbow": ("dqn", "RAINBOW_AGENT"),
    "cq-sample": ("continuous_q", "AGENT"),
    "cq-grad": ("continuous_q", "GRAD_AGENT"),
    "naf": ("continuous_q", "NAF_AGENT"),
    "ddpg": ("ddpg", "AGENT"),
    "td3": ("ddpg", "TD3_AGENT"),
    "sac": ("ddpg", "SAC_AGENT"),
    "bc": ("imitation", "BC_AGENT"),
    "dagger": ("imitation", "DAGGER_AGENT"),
    "gail": ("imitation", "GAIL_AGENT"),
    "airl": ("imitation", "AIRL_AGENT"),
}
MODULES = ("a2c", "continuous_q", "ddpg", "dqn", "ppo", "reinforce", "trpo", "imitation")


def get(name: str) -> Any:
    """The `Agent` record registered under CLI name `name` (imports its module)."""
    module, record = ENTRIES[name]
    return getattr(importlib.import_module(f"jaxrl.agents.{module}"), record)


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":
        registry = {n: get(n) for n in ENTRIES}
        globals()["REGISTRY"] = registry
        return registry
    if name in MODULES:
        return importlib.import_module(f"jaxrl.agents.{name}")
    raise AttributeError(f"module 'jaxrl.agents' has no attribute {name!r}")


__all__ = ["ENTRIES", "MODULES", "REGISTRY", "get", *MODULES]
