"""What every continuous-action (Box) off-policy agent shares: its configuration and its loop.

`agents/continuous_q.py` (cq-sample, cq-grad, naf) and `agents/ddpg.py` (ddpg, td3, sac)
subclass `Config` and `HParams`, build their `Setup` with `setup` (which refuses an env
without a flat Box action space), start from `init_state`, and run `iteration`: every env
copy acts uniformly at random in the box during the warm-up, then by the agent's policy
plus exploration noise (`jaxrl.continuous.explore`), and learning phases replay uniform
samples of n-step windows. Observations are stored in the buffer as the agent saw them
(normalised at collection time when `normalize_obs` is on). The kernels are in
`jaxrl.continuous`, the replay plumbing in `jaxrl.off_policy`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import continuous, off_policy, optim
from jaxrl import config as cfg
from jaxrl.agent import Setup, make_env
from jaxrl.config import hparam
from jaxrl.off_policy import State
from jaxrl.types import EnvSpec, Metrics, Params, PRNGKey


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(off_policy.Config):
    """Fields shared by the continuous-action off-policy agents (each agent subclasses it).

    Defaults suit classic control (Pendulum-v1) on a CPU: 64x64 ReLU networks (the papers'
    256x256 cost 16x more per update: `--hidden-sizes 256 256`), one env, a gradient step
    per env step after a warm-up of `learning_starts` steps of uniformly random actions,
    Polyak-averaged targets (Lillicrap et al. 2016), and a replay buffer that holds whole
    classic-control runs: once a smaller buffer wraps, the early failures it forgets are
    exactly the states a good policy stops visiting, and NAF on Pendulum-v1 then collapsed.
    Other fields: `jaxrl.off_policy.Config`; `env` needs a Box action space (`setup`).

    Attributes:
      exploration_noise: noise on the chosen action while training: `gaussian`, `ou`
        (Ornstein-Uhlenbeck, per env copy, reset at episode ends) or `none`.
    """

    env: str = "Pendulum-v1"
    buffer_size: int = 1_000_000
    exploration_noise: str = "gaussian"

    def __post_init__(self):
        super().__post_init__()
        cfg.check_choice("exploration_noise", self.exploration_noise, continuous.NOISES)


@struct.dataclass
class HParams(cfg.HParamsBase):
    """Traced scalars shared by the continuous off-policy agents (each agent subclasses it).

    Attributes:
      learning_rate: Adam step size (every network).
      gamma: discount factor.
      tau: target update step: Polyak averaging below 1, a copy at 1.
      noise_scale: exploration noise standard deviation, as a fraction of the action
        half-range.
      ou_theta: mean reversion of the Ornstein-Uhlenbeck noise per step.
      max_grad_norm: threshold of global gradient-norm clipping (high: effectively off).
    """

    learning_rate: jax.Array = hparam(1e-3, low=0.0, low_open=True)
    gamma: jax.Array = hparam(0.99, low=0.0, high=1.0)
    tau: jax.Array = hparam(0.005, low=0.0, high=1.0, low_open=True)
    noise_scale: jax.Array = hparam(0.1, low=0.0)
    ou_theta: jax.Array = hparam(0.15, low=0.0, high=1.0, low_open=True)
    max_grad_norm: jax.Array = hparam(1000.0, low=0.0, low_open=True)


def make_optimizer(hparams: HParams, config: Config,
                   learning_rate: jax.Array | None = None) -> optax.GradientTransformation:
    """Adam (eps 1e-5) after global-norm clipping, at `learning_rate` (default hparams')."""
    lr = hparams.learning_rate if learning_rate is None else learning_rate
    return optim.make_optimizer("adam", lr, hparams.max_grad_norm, None,
                                skip_nonfinite=config.skip_nonfinite)


def setup(config: Config, make_network: Callable[[EnvSpec], Any], *, agent: str) -> Setup:
    """The env (normalised observations if asked), the network and the replay buffer.

    Args:
      make_network: `make_network(spec) -> network`, called once the env's spec is known
        to have a flat Box action space.
      agent: how error messages name the agent (e.g. `continuous Q-learning`).

    Raises:
      ConfigError: `config.env` has discrete or non-flat actions, before anything is built
        from its spec.
    """
    env, env_params, spec = make_env(config.env, normalize_obs=config.normalize_obs)
    continuous.check_continuous(spec, config.env, agent)
    return Setup(config=config, env=env, env_params=env_params, spec=spec,
                 network=make_network(spec), buffer=off_policy.make_buffer(config))


def init_state(key: PRNGKey, setup: Setup, params: Params,
               tx: optax.GradientTransformation) -> State:
    """`off_policy.init` with every env copy's exploration noise at its start."""
    config = setup.config
    one = continuous.init_noise(config.exploration_noise, setup.spec.action_dim)
    noise = jax.tree.map(lambda x: jnp.broadcast_to(x, (config.num_envs,) + x.shape), one)
    return off_policy.init(key, setup, params, tx, noise)


PolicyFn = Callable[[Params, jax.Array, PRNGKey], jax.Array]


def collect_step(state: State, key: PRNGKey, hparams: HParams, setup: Setup,
                 policy: PolicyFn) -> tuple[State, Any]:
    """Step every env copy once and store the steps (`off_policy.collect_step`).

    Each copy acts uniformly at random in the box during the warm-up (the first
    `learning_starts` env steps), then by `policy(params, obs, key) -> action [A]` (one
    observation) with exploration noise.

    Returns:
      `(state, episodes)`, `episodes` the `[N]` statistics of the step.
    """
    config = setup.config
    low, high = continuous.bounds(setup.spec)
    warm_up = state.env_steps < config.learning_starts

    def act(params, noise, obs, key):
        policy_key, noise_key, uniform_key = jax.random.split(key, 3)
        action = continuous.explore(policy(params, obs, policy_key), noise, noise_key,
                                    config.exploration_noise, hparams.noise_scale, low, high)
        uniform = jax.random.uniform(uniform_key, action.shape, jnp.float32, low, high)
        return jnp.where(warm_up, uniform, action)

    def renew(noise, done, key):
        return continuous.renew_noise(noise, done, key, config.exploration_noise,
                                      hparams.ou_theta)

    return off_policy.collect_step(state, key, setup, act, renew)


def iteration(state: State, key: PRNGKey, hparams: HParams, setup: Setup,
              collect_step: Callable[..., tuple[State, Any]],
              update: Callable[..., tuple[State, Metrics]]) -> tuple[State, Metrics]:
    """`rollout_len` steps of every env copy with learning phases (`off_policy.iteration`).

    `collect_step(state, key, hparams, setup) -> (state, episodes)` is the agent's exploring
    step of every env copy, `update(state, sample, key, hparams, setup) -> (state, metrics)`
    its gradient step on a uniform sample of `minibatch_size` windows.
    """

    def collect(state, key):
        return collect_step(state, key, hparams, setup)

    def train_step(state, key):
        sample_key, update_key = jax.random.split(key)
        return update(state, setup.buffer.sample(state.buffer, sample_key), update_key,
                      hparams, setup)

    return off_policy.iteration(state, key, setup, collect, train_step)
