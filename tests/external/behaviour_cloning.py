"""Behaviour cloning from a dataset pytree, written outside the package on the contract.

Pomerleau 1991 (ALVINN): fit the policy to the expert's actions by maximum likelihood.
The learner trains from a dataset of `(obs [D, *obs_shape], action [D])` that its `setup`
closes over (`Setup.extras["dataset"]`), built once, never inside a trace; each iteration
takes `gradient_steps` minibatch steps on it, then plays `rollout_len` greedy steps in each
of the `num_envs` env copies so that `episode/*` statistics report how the clone does.
`make_agent(dataset)` is the record for one dataset.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import config as cfg
from jaxrl import networks, optim, rollout
from jaxrl.agent import Agent, BaseConfig, Setup, make_env


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(BaseConfig):
    """Behaviour cloning of a discrete-action expert by cross-entropy."""

    num_envs: int = 8
    rollout_len: int = 8
    gradient_steps: int = 32
    minibatch_size: int = 64


@struct.dataclass
class HParams(cfg.HParamsBase):
    """Attributes:
      learning_rate: Adam step size.
    """

    learning_rate: jax.Array = cfg.hparam(3e-3, low=0.0, low_open=True)


@struct.dataclass
class State:
    params: optax.Params
    opt_state: optax.OptState
    env_state: object
    obs: jax.Array
    step: jax.Array


def optimizer(hparams: HParams) -> optax.GradientTransformation:
    return optim.make_optimizer("adam", hparams.learning_rate, 10.0, None)


def make_agent(dataset: dict) -> Agent:
    """The cloning agent for `dataset = {"obs": [D, *obs_shape], "action": [D]}`."""

    def setup(config: Config) -> Setup:
        env, env_params, spec = make_env(config.env)
        network = networks.make_q_network(spec, config.hidden_sizes, config.activation,
                                          torso=config.torso)  # logits, one per action
        return Setup(config=config, env=env, env_params=env_params, spec=spec,
                     network=network, extras={"dataset": dataset})

    return Agent(name="bc", Config=Config, HParams=HParams, setup=setup, init=init,
                 iteration=iteration, greedy_act=greedy_act, loss=loss, update=update)


def init(key, setup: Setup, hparams: HParams) -> State:
    params_key, env_key = jax.random.split(key)
    params = setup.network.init(params_key)
    env_state, obs = rollout.reset_envs(setup.env, setup.env_params, env_key,
                                        setup.config.num_envs)
    return State(params=params, opt_state=optimizer(hparams).init(params),
                 env_state=env_state, obs=obs, step=jnp.int32(0))


def greedy_act(params, obs, key, setup: Setup):
    del key
    return jnp.argmax(setup.network.apply(params, obs)).astype(jnp.int32)


def loss(params, batch, hparams: HParams, setup: Setup):
    logits = setup.network.apply(params, batch["obs"])
    total = optax.softmax_cross_entropy_with_integer_labels(logits, batch["action"]).mean()
    return total, {"loss/total": total}


def update(state: State, batch, hparams: HParams, setup: Setup):
    return optim.gradient_step(loss, state, batch, optimizer(hparams), hparams, setup)


def iteration(state: State, key, hparams: HParams, setup: Setup):
    data = setup.extras["dataset"]
    size = data["action"].shape[0]
    learn_key, play_key = jax.random.split(key)

    def step(state, k):
        idx = jax.random.randint(k, (setup.config.minibatch_size,), 0, size)
        return update(state, jax.tree.map(lambda x: x[idx], data), hparams, setup)

    state, metrics = jax.lax.scan(step, state,
                                  jax.random.split(learn_key, setup.config.gradient_steps))
    play = rollout.make_rollout(setup.env, setup.env_params,
                                functools.partial(greedy_act, setup=setup),
                                setup.config.rollout_len)
    env_state, obs, _, episodes = play(state.params, state.env_state, state.obs, play_key)
    return (state.replace(env_state=env_state, obs=obs),
            {**jax.tree.map(jnp.mean, metrics), **rollout.episode_metrics(episodes)})
