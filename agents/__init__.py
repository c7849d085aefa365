"""jaxrl.agents: one module per algorithm family, each a set of pure functions.

`REGISTRY` maps the CLI name of an agent to its module, or to a `Preset` of a module: a
variant of the family that differs only in its `Config`/`HParams` classes (switches and
defaults), never in code. Every entry provides `Config` (static, validated), `HParams`
(traced scalars, with `HParams.create(**values)`), `init`, `act`, `loss`, `update`,
`make_parts` and `make_train`.
"""

from __future__ import annotations

from typing import Any


class Preset:
    """An agent module seen under another name, with its own `Config` and `HParams`.

    Every other attribute (`init`, `make_parts`, ...) is the module's: the module's code
    dispatches on the config it is given, so a preset adds no logic of its own.
    """

    def __init__(self, module: Any, *, config: type, hparams: type | None = None, doc: str):
        self.module = module
        self.Config = config
        self.HParams = hparams if hparams is not None else module.HParams
        self.__doc__ = doc
        self.__name__ = module.__name__

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)


from jaxrl.agents import a2c, dqn, pg, ppo, trpo  # noqa: E402 - Preset must exist first

REGISTRY = {
    "reinforce": pg,
    "ppo": ppo,
    "ppo-kl": Preset(ppo, config=ppo.KLConfig, hparams=ppo.KLHParams,
                     doc=ppo.KLConfig.__doc__.split("\n")[0]),
    "a2c": a2c,
    "trpo": trpo,
    "dqn": dqn,
    "c51": Preset(dqn, config=dqn.C51Config, doc=dqn.C51Config.__doc__.split("\n")[0]),
    "rainbow": Preset(dqn, config=dqn.RainbowConfig,
                      doc=dqn.RainbowConfig.__doc__.split("\n")[0]),
}

__all__ = ["REGISTRY", "Preset", "a2c", "dqn", "pg", "ppo", "trpo"]
