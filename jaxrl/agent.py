"""The agent contract: what an agent is, and the one way the runner builds and runs it.

An agent is an `Agent` record of pure functions over explicit pytrees:

* `setup(config) -> Setup`: build the env, its spec, the network and (for replay agents)
  the buffer, once per config, outside any trace. Everything below receives this `Setup`
  and never builds it again, so nothing environment- or network-shaped is created inside
  a traced function.
* `init(key, setup, hparams) -> state`: fresh training state for one seed.
* `iteration(state, key, hparams, setup) -> (state, metrics)`: one iteration (a rollout
  and its learning), metrics a flat dict of scalars with `episode/*` statistics.
* `greedy_act(params, obs, key, setup) -> action`: the evaluation policy for one
  observation.
* optionally `loss` and `update`, the agent's kernels, for tests.

`Config` is a frozen dataclass validated at construction that subclasses `BaseConfig`
(so the runner can read `env`, `num_envs`, `steps_per_iteration` and `num_iterations`);
`HParams` is a `flax.struct` of traced scalars with `HParams.create(**values)`. A variant
of a family (`ppo-kl`, `td3`) is the same record with another `Config` class, made with
`Agent.variant`. `jaxrl.runner.make_train(agent, config)` composes the record into one
pure `train(key, hparams)`; `jaxrl.runner.run` into the chunked host loop.

Extension points, each a value the record or its `Setup` carries rather than an edit of
an agent: `Setup.extras` holds what an add-on builds once (a reward transform, a curriculum
schedule, a dataset); `BaseConfig.torso` chooses the network torso (`mlp`, `cnn`, or any
flax module from Python); an agent built from other agents closes over their records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn

from jaxrl import config as cfg
from jaxrl import envs, networks
from jaxrl.config import ConfigError
from jaxrl.types import EnvSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class BaseConfig:
    """Fields every agent's `Config` shares, and the sizes the runner reads.

    Attributes:
      env: registered environment id (`jaxrl list`).
      num_envs: parallel environment copies per seed (`N`).
      rollout_len: env steps per env copy per iteration (one logged row).
      total_timesteps: env steps per seed over the whole run (all env copies).
      hidden_sizes: widths of the hidden layers of every network.
      activation: hidden activation (`tanh`, `relu`, `gelu`, `elu`, `silu`).
      torso: the networks' feature extractor: `mlp` (flattened observations), `cnn`
        (convolutions over `[H, W, C]` image observations, then the MLP), or, from Python,
        any flax module mapping observations `[..., *obs_shape]` to features `[..., F]`.
      normalize_obs: normalise observations by running statistics (per env copy).
      skip_nonfinite: skip updates whose gradient is NaN or infinite, counting them;
        fatal after this many in a row (0: off, every non-finite value stops the run).
    """

    env: str = "CartPole-v1"
    num_envs: int = 1
    rollout_len: int = 1
    total_timesteps: int = 100_000
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    torso: Any = "mlp"
    normalize_obs: bool = False
    skip_nonfinite: int = 0

    def __post_init__(self):
        if not isinstance(self.env, str):
            raise ConfigError(f"env must be a string environment id, got {self.env!r}")
        envs.check_env_id(self.env)
        cfg.check_positive_int(self, ("num_envs", "rollout_len", "total_timesteps"))
        cfg.check_sizes("hidden_sizes", self.hidden_sizes)
        cfg.check_choice("activation", self.activation, networks.ACTIVATIONS)
        if not isinstance(self.torso, nn.Module):
            cfg.check_choice("torso", self.torso, networks.TORSOS)
        cfg.check_bool(self, ("normalize_obs",))
        if type(self.skip_nonfinite) is not int or self.skip_nonfinite < 0:
            raise ConfigError(f"skip_nonfinite must be a non-negative int (0: off), got "
                              f"{self.skip_nonfinite!r}")
        if self.total_timesteps < self.steps_per_iteration:
            raise ConfigError(
                f"total_timesteps ({self.total_timesteps}) must be at least num_envs * "
                f"rollout_len ({self.steps_per_iteration})")

    @property
    def steps_per_iteration(self) -> int:
        """Env steps one iteration takes per seed: `num_envs * rollout_len`."""
        return self.num_envs * self.rollout_len

    @property
    def num_iterations(self) -> int:
        """Iterations in the run."""
        return self.total_timesteps // self.steps_per_iteration


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """What an agent builds once per config and closes over; never built in a trace.

    Compared and hashed by identity, so a jitted function may take it as a static
    argument: the same `Setup` reuses the compiled program.

    Attributes:
      config: the agent's `Config`.
      env: the wrapped training environment (gymnax API, auto-reset).
      env_params: its `EnvParams`.
      spec: the raw environment's `EnvSpec`.
      network: the agent's network functions (`Network`, `QNetworkFns`, or a bundle).
      buffer: the replay buffer's functions (replay agents), else None.
      extras: whatever an add-on builds once (a reward transform, a schedule, a
        dataset's static description), keyed by the add-on's name.
    """

    config: Any
    env: Any
    env_params: Any
    spec: EnvSpec
    network: Any
    buffer: Any = None
    extras: dict = dataclasses.field(default_factory=dict)


class Agent(NamedTuple):
    """An agent: its name, its `Config` and `HParams` classes, and its pure functions.

    See the module docstring for each function's signature. Records are closed over,
    never passed through `jit`.
    """

    name: str
    Config: type
    HParams: type
    setup: Callable[[Any], Setup]
    init: Callable[..., Any]
    iteration: Callable[..., Any]
    greedy_act: Callable[..., Any]
    loss: Callable[..., Any] | None = None
    update: Callable[..., Any] | None = None

    @property
    def doc(self) -> str:
        """One line describing the agent (its `Config`'s first docstring line)."""
        return (self.Config.__doc__ or self.name).strip().split("\n")[0]

    def variant(self, name: str, *, config: type, hparams: type | None = None) -> "Agent":
        """The same functions under `name`, with another `Config` (and `HParams`) class."""
        return self._replace(name=name, Config=config,
                             HParams=self.HParams if hparams is None else hparams)


def make_env(env_id: str, *, normalize_obs: bool = False):
    """The training environment every agent uses: a non-finite guard (innermost: it sees
    the raw observations, rewards and the action the env got), actions clipped to the box
    if continuous, optional running observation normalisation, episode statistics.

    Returns:
      `(env, env_params, spec)`, `spec` of the raw environment.
    """
    env, env_params = envs.make(env_id)
    spec = envs.env_spec(env, env_params)
    env = envs.wrappers.GuardFinite(env, env_params)
    if not spec.discrete:
        env = envs.ClipAction(env, env_params)
    if normalize_obs:
        env = envs.NormalizeObservation(env)
    return envs.EpisodeStatistics(env), env_params, spec
