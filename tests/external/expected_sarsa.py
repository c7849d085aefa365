"""Expected SARSA, written outside the package through jaxrl's public agent contract.

Van Seijen et al. 2009, "A Theoretical and Empirical Analysis of Expected Sarsa": the
target of a transition is `r + gamma * sum_a pi(a|s') Q(s', a)` with pi the epsilon-greedy
policy being followed. Each iteration acts `rollout_len` steps in `num_envs` env copies
and takes one gradient step on the mean squared TD error of the whole `[T, N]` batch.
This file is the whole agent: one module plus one registry line (`{"expected-sarsa":
AGENT}`) is all a new agent needs.
"""

from __future__ import annotations

import dataclasses
import functools

import distrax
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import config as cfg
from jaxrl import networks, optim, rollout
from jaxrl.agent import Agent, BaseConfig, Setup, make_env


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(BaseConfig):
    """Expected SARSA with an epsilon-greedy policy over a Q-network MLP."""

    num_envs: int = 8
    rollout_len: int = 16
    activation: str = "relu"


@struct.dataclass
class HParams(cfg.HParamsBase):
    """Attributes:
      learning_rate: Adam step size.
      gamma: discount factor.
      epsilon: exploration probability of the followed (and evaluated) policy.
    """

    learning_rate: jax.Array = cfg.hparam(1e-3, low=0.0, low_open=True)
    gamma: jax.Array = cfg.hparam(0.99, low=0.0, high=1.0)
    epsilon: jax.Array = cfg.hparam(0.1, low=0.0, high=1.0)


@struct.dataclass
class State:
    params: optax.Params
    opt_state: optax.OptState
    env_state: object
    obs: jax.Array
    step: jax.Array


def setup(config: Config) -> Setup:
    env, env_params, spec = make_env(config.env, normalize_obs=config.normalize_obs)
    network = networks.make_q_network(spec, config.hidden_sizes, config.activation,
                                      torso=config.torso)
    return Setup(config=config, env=env, env_params=env_params, spec=spec, network=network)


def optimizer(hparams: HParams) -> optax.GradientTransformation:
    return optim.make_optimizer("adam", hparams.learning_rate, 10.0, None)


def init(key, setup: Setup, hparams: HParams) -> State:
    params_key, env_key = jax.random.split(key)
    params = setup.network.init(params_key)
    env_state, obs = rollout.reset_envs(setup.env, setup.env_params, env_key,
                                        setup.config.num_envs)
    return State(params=params, opt_state=optimizer(hparams).init(params),
                 env_state=env_state, obs=obs, step=jnp.int32(0))


def act(params, obs, key, setup: Setup, epsilon):
    q = setup.network.apply(params, obs)
    return distrax.EpsilonGreedy(q, epsilon).sample(seed=key).astype(jnp.int32)


def greedy_act(params, obs, key, setup: Setup):
    del key
    return jnp.argmax(setup.network.apply(params, obs)).astype(jnp.int32)


def loss(params, traj, hparams: HParams, setup: Setup):
    q_tm1 = setup.network.apply(params, traj.obs)  # [T, N, A]
    q_t = setup.network.apply(params, traj.next_obs)
    probs_t = distrax.EpsilonGreedy(q_t, hparams.epsilon).probs
    discount = hparams.gamma * (1.0 - traj.terminated.astype(jnp.float32))
    target = traj.reward + discount * jnp.sum(probs_t * q_t, axis=-1)
    q_taken = jnp.take_along_axis(q_tm1, traj.action[..., None], axis=-1)[..., 0]
    td = jax.lax.stop_gradient(target) - q_taken
    total = 0.5 * jnp.mean(td ** 2)
    return total, {"loss/total": total}


def update(state: State, traj, hparams: HParams, setup: Setup):
    return optim.gradient_step(loss, state, traj, optimizer(hparams), hparams, setup)


def iteration(state: State, key, hparams: HParams, setup: Setup):
    run = rollout.make_rollout(setup.env, setup.env_params,
                               functools.partial(act, setup=setup, epsilon=hparams.epsilon),
                               setup.config.rollout_len)
    env_state, obs, traj, episodes = run(state.params, state.env_state, state.obs, key)
    state, metrics = update(state.replace(env_state=env_state, obs=obs), traj, hparams,
                            setup)
    return state, {**metrics, **rollout.episode_metrics(episodes)}


AGENT = Agent(name="expected-sarsa", Config=Config, HParams=HParams, setup=setup, init=init,
              iteration=iteration, greedy_act=greedy_act, loss=loss, update=update)
