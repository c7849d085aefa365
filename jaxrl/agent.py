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

Extension points, each a value composed with an agent rather than an edit of it: an
`Addon` (shaped or intrinsic rewards, a curriculum, a schedule; `Agent.extend`),
`Setup.extras` and `BaseConfig.torso`. An agent built from other agents closes over their
records, keeps their states in its own, and exposes `params` (what `greedy_act` evaluates)
and `env_state` (what the runner guards) as properties.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax

from jaxrl import config as cfg
from jaxrl import envs, networks
from jaxrl.tuned import settings as _tuned_settings
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
        cfg.check_int("skip_nonfinite", self.skip_nonfinite, zero=True)
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
      addons: the `Addon`s composed with the agent, in the order their hooks run.
      extras: whatever else the agent builds once (a dataset, inner agents' setups), by
        name.
    """

    config: Any
    env: Any
    env_params: Any
    spec: EnvSpec
    network: Any
    buffer: Any = None
    addons: tuple = ()
    extras: dict = dataclasses.field(default_factory=dict)


class Addon(NamedTuple):
    """A piece an agent composes, with its own state `state.addons[name]` (checkpointed,
    vmapped over seeds and resumed with the rest of the agent state). Hooks, all optional
    but `init`, all pure:

    * `init(key, setup) -> astate`.
    * `transform(astate, transitions, key, setup) -> (transitions, astate)`: every batch of
      collected `Transition`s (leaves `[T, N, ...]` on-policy, `[N, ...]` for replay agents)
      before the agent learns from or stores it; episode statistics keep the env's rewards.
    * `env_params(astate) -> EnvParams`: the params the agent resets and steps its envs
      with, in place of `setup.env_params` (evaluation keeps `setup.env_params`).
    * `after(astate, metrics, key, setup) -> (astate, metrics)`: after every iteration,
      with its metrics (a schedule that moves the env params; the add-on's own metrics).

    An add-on's networks are built by its factory or its `init` from `setup.spec`, and its
    functions receive `setup`, so its state holds only arrays.
    """

    name: str
    init: Callable[..., Any]
    transform: Callable[..., Any] | None = None
    env_params: Callable[..., Any] | None = None
    after: Callable[..., Any] | None = None


def init_addons(key: jax.Array, setup: Setup) -> dict:
    """Every add-on's initial state by name (`{}`, and `key` unused, without add-ons)."""
    return {a.name: a.init(jax.random.fold_in(key, i), setup)
            for i, a in enumerate(setup.addons)}


def collect_params(addons: dict, setup: Setup):
    """The env params to collect with: an add-on's `env_params`, else `setup.env_params`."""
    for a in setup.addons:
        if a.env_params is not None:
            return a.env_params(addons[a.name])
    return setup.env_params


def transform(addons: dict, transitions: Any, key: jax.Array, setup: Setup):
    """`(transitions, addons)` after every add-on's `transform`, in order."""
    for i, a in enumerate(setup.addons):
        if a.transform is not None:
            transitions, astate = a.transform(addons[a.name], transitions,
                                              jax.random.fold_in(key, i), setup)
            addons = {**addons, a.name: astate}
    return transitions, addons


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

    def settings(self, env: str | None = None, *, tuned: bool = True, **overrides: Any):
        """`(config, hparams)` for `env`: the tuned entry's values (`jaxrl.tuned`), if
        `tuned` and one exists, overridden by `overrides` (fields of `Config` or `HParams`),
        exactly as `jaxrl train NAME --env ENV` builds them."""
        config, hparams, _ = _tuned_settings(self, env, tuned=tuned, **overrides)
        return config, hparams

    def extend(self, name: str, *addons: Addon) -> "Agent":
        """This agent under `name` with `addons` composed (see `Addon`).

        Its state must have an `addons` field the agent's collection passes through the
        hooks (the built-in agents' states do). Resume finds it by `name`.
        """
        names = [a.name for a in addons]
        if len(set(names)) != len(names):
            raise ConfigError(f"add-on names must be unique, got {names}")
        if sum(a.env_params is not None for a in addons) > 1:
            raise ConfigError(f"at most one add-on may supply env_params, got {names}")
        base_setup, base_iteration = self.setup, self.iteration

        def setup(config):
            inner = base_setup(config)
            return dataclasses.replace(inner, addons=inner.addons + addons)

        def iteration(state, key, hparams, setup):
            state, metrics = base_iteration(state, key, hparams, setup)
            after = {**state.addons}
            for i, a in enumerate(addons):
                if a.after is not None:
                    after[a.name], metrics = a.after(after[a.name], metrics,
                                                     jax.random.fold_in(key, i), setup)
            return state.replace(addons=after), metrics

        return self._replace(name=name, setup=setup, iteration=iteration)


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
