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


def _first_line(cls: type) -> str:
    return cls.__doc__.split("\n")[0]


from jaxrl.agents import a2c, cq, ddpg, dqn, pg, ppo, trpo  # noqa: E402 - Preset must exist first

REGISTRY = {
    "reinforce": pg,
    "ppo": ppo,
    "ppo-kl": Preset(ppo, config=ppo.KLConfig, hparams=ppo.KLHParams,
                     doc=_first_line(ppo.KLConfig)),
    "a2c": a2c,
    "trpo": trpo,
    "dqn": dqn,
    "c51": Preset(dqn, config=dqn.C51Config, doc=_first_line(dqn.C51Config)),
    "rainbow": Preset(dqn, config=dqn.RainbowConfig, doc=_first_line(dqn.RainbowConfig)),
    "cq-sample": Preset(cq, config=cq.Config, doc=_first_line(cq.Config)),
    "cq-grad": Preset(cq, config=cq.GradConfig, doc=_first_line(cq.GradConfig)),
    "naf": Preset(cq, config=cq.NAFConfig, doc=_first_line(cq.NAFConfig)),
    "ddpg": Preset(ddpg, config=ddpg.Config, doc=_first_line(ddpg.Config)),
    "td3": Preset(ddpg, config=ddpg.TD3Config, doc=_first_line(ddpg.TD3Config)),
    "sac": Preset(ddpg, config=ddpg.SACConfig, doc=_first_line(ddpg.SACConfig)),
}

__all__ = ["REGISTRY", "Preset", "a2c", "cq", "ddpg", "dqn", "pg", "ppo", "trpo"]
