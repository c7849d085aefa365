"""Q-learning for continuous actions: three ways to take `max_a Q(s, a)` over a real vector.

One agent; `method` picks how the max over a real action vector is taken, both to act and
in the bootstrap target `r + gamma max_a' Q_target(s', a')`:

* `sample`: draw `num_samples` actions uniformly in the box and keep the best by Q,
  optionally refined by `cem_iters` iterations of the cross-entropy method, as QT-Opt
  maximises its critic (Kalashnikov et al. 2018; `jaxrl.continuous.sample_argmax`);
* `grad`: start from the best of `num_samples` uniform draws and take `ascent_steps`
  steps of projected gradient ascent on `Q(s, a)` with respect to `a`
  (`jaxrl.continuous.gradient_ascent`);
* `naf`: a critic whose maximum is known in closed form, `Q(s, a) = V(s) - 1/2 (a -
  mu(s))^T P(s) (a - mu(s))` (Gu et al. 2016), so the greedy action is `mu(s)` and the
  target is `V_target(s')`.

Exploration adds Gaussian or Ornstein-Uhlenbeck noise to the chosen action (clipped to the
box). Replay, warm-up and the loop are `jaxrl.box_agents`'. The records `AGENT`
(`cq-sample`), `GRAD_AGENT` (`cq-grad`) and `NAF_AGENT` (`naf`) share these functions.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import box_agents, continuous, networks, off_policy, optim
from jaxrl import config as cfg
from jaxrl.agent import Agent, Setup
from jaxrl.buffers import Sample
from jaxrl.config import ConfigError, hparam
from jaxrl.off_policy import State
from jaxrl.types import Params, PRNGKey

METHODS = ("sample", "grad", "naf")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(box_agents.Config):
    """Continuous Q-learning, the max over actions by sampling (optionally refined by CEM).

    The max is taken for every replayed next observation of every update, so its cost
    multiplies the critic's: minibatches of 64, 16 candidates (ample for a 1-D action;
    raise `num_samples` with the action dimension) and an update every 2 env steps keep
    a CPU run of 2e5 steps to minutes.

    Attributes:
      method: how `max_a Q(s, a)` is taken: `sample`, `grad` or `naf`.
      num_samples: candidate actions per draw (`sample`), or the draws the ascent starts
        from (`grad`).
      cem_iters: cross-entropy-method refinements after the first draw (`sample`).
      cem_elites: best candidates of a draw that the CEM Gaussian is fitted to.
      ascent_steps: projected gradient-ascent steps on the action (`grad`).
    """

    minibatch_size: int = 64
    train_frequency: int = 2
    method: str = "sample"
    num_samples: int = 16
    cem_iters: int = 0
    cem_elites: int = 4
    ascent_steps: int = 5

    def __post_init__(self):
        cfg.check_choice("method", self.method, METHODS)
        cfg.check_positive_int(self, ("num_samples", "cem_elites", "ascent_steps"))
        cfg.check_int("cem_iters", self.cem_iters, zero=True)
        if self.cem_elites > self.num_samples:
            raise ConfigError(f"cem_elites ({self.cem_elites}) must be at most num_samples "
                              f"({self.num_samples})")
        super().__post_init__()


@struct.dataclass
class HParams(box_agents.HParams):
    """Traced scalars of continuous Q-learning (the shared ones, plus the ascent step).

    Attributes:
      ascent_step_size: first step of gradient ascent, as a fraction of the action
        half-range (`grad`; halved after every step that does not raise Q).
    """

    ascent_step_size: jax.Array = hparam(0.25, low=0.0, low_open=True)


def setup(config: Config) -> Setup:
    """The env, the critic (a `Q(s, a)` MLP, or the NAF head) and the buffer, built once."""
    kind = "naf" if config.method == "naf" else "critic"
    return box_agents.setup(
        config, lambda spec: networks.make_continuous_network(
            spec, kind, config.hidden_sizes, config.activation, torso=config.torso),
        agent="continuous Q-learning")


def q_value(params: Params, obs: jax.Array, action: jax.Array, setup: Setup) -> jax.Array:
    """`Q(s, a)`: observations `[..., *obs_shape]` (broadcast) and actions `[..., A]` -> `[...]`."""
    if setup.config.method != "naf":
        return setup.network.apply(params, obs, action)[0]
    value, mu, chol = setup.network.apply(params, obs)
    batch = jnp.broadcast_shapes(value.shape, action.shape[:-1])
    return continuous.naf_q(jnp.broadcast_to(value, batch),
                            jnp.broadcast_to(mu, batch + mu.shape[-1:]),
                            jnp.broadcast_to(chol, batch + chol.shape[-2:]), action)


def greedy(params: Params, obs: jax.Array, key: PRNGKey, hparams: HParams,
           setup: Setup) -> jax.Array:
    """`argmax_a Q(obs, a)` of one observation `[*obs_shape]` by `method` -> `[A]`."""
    config = setup.config
    if config.method == "naf":
        return setup.network.apply(params, obs)[1]
    low, high = continuous.bounds(setup.spec)
    sampled = continuous.sample_argmax(
        lambda actions: q_value(params, obs, actions, setup), key, low, high,
        config.num_samples, config.cem_iters if config.method == "sample" else 0,
        config.cem_elites)
    if config.method == "sample":
        return sampled
    return continuous.gradient_ascent(lambda a: q_value(params, obs, a, setup), sampled, low,
                                      high, config.ascent_steps, hparams.ascent_step_size)


def max_q(params: Params, obs: jax.Array, key: PRNGKey, hparams: HParams,
          setup: Setup) -> jax.Array:
    """`max_a Q(s, a)` by `method` for observations `[B, *obs_shape]` -> `[B]` (NAF: `V(s)`)."""
    if setup.config.method == "naf":
        return setup.network.apply(params, obs)[0]
    keys = jax.random.split(key, obs.shape[0])
    best = jax.vmap(greedy, in_axes=(None, 0, 0, None, None))(params, obs, keys, hparams,
                                                                setup)
    return q_value(params, obs, best, setup)


def act(params: Params, obs: jax.Array, key: PRNGKey, setup: Setup,
        hparams: HParams | None = None) -> jax.Array:
    """The greedy action of one observation (exploration noise is added when collecting)."""
    return greedy(params, obs, key, hparams or HParams.create(), setup)


def greedy_act(params: Params, obs: jax.Array, key: PRNGKey, setup: Setup) -> jax.Array:
    """Evaluation: the greedy action of one observation (default hyperparameters)."""
    return act(params, obs, key, setup)


def optimizer(hparams: HParams, config: Config) -> optax.GradientTransformation:
    """Adam after gradient clipping, at `learning_rate` (see `box_agents.make_optimizer`)."""
    return box_agents.make_optimizer(hparams, config)


def init(key: PRNGKey, setup: Setup, hparams: HParams) -> State:
    """Fresh critic (target a copy), an empty buffer, `num_envs` reset envs."""
    params_key, env_key = jax.random.split(key)
    return box_agents.init_state(env_key, setup, setup.network.init(params_key),
                                 optimizer(hparams, setup.config))


@struct.dataclass
class Batch:
    """n-step replayed transitions and their bootstrapped targets; leaves `[B, ...]`.

    Attributes:
      obs: [B, *obs_shape] observations.
      action: [B, A] actions taken.
      target: [B] `reward + discount * max_a' Q_target(next_obs, a')`.
    """

    obs: jax.Array
    action: jax.Array
    target: jax.Array


def make_batch(state: State, sample: Sample, key: PRNGKey, hparams: HParams,
               setup: Setup) -> Batch:
    """Targets of sampled windows: the max over actions taken on the target network."""
    steps = off_policy.n_step(sample.items, hparams.gamma)
    bootstrap = max_q(state.target_params, steps.next_obs, key, hparams, setup)
    return Batch(obs=steps.obs, action=steps.action,
                 target=steps.reward + steps.discount * bootstrap)


def loss(params: Params, batch: Batch, hparams: HParams, setup: Setup):
    """Half squared TD error `1/2 (target - Q(s, a))^2`, batch mean: `(loss, metrics)`."""
    del hparams
    q = q_value(params, batch.obs, batch.action, setup)
    total = jnp.mean(0.5 * (batch.target - q) ** 2)
    return total, {"loss/total": total, "q/taken": q.mean()}


def update(state: State, sample: Sample, key: PRNGKey, hparams: HParams, setup: Setup):
    """One gradient step on a replayed sample, then the target-network update."""
    batch = make_batch(state, sample, key, hparams, setup)
    state, metrics = optim.gradient_step(loss, state, batch,
                                         optimizer(hparams, setup.config), hparams, setup)
    target = off_policy.update_target(state.params, state.target_params, state.step,
                                      setup.config.target_update_period, hparams.tau)
    return state.replace(target_params=target), metrics


def collect_step(state: State, key: PRNGKey, hparams: HParams, setup: Setup):
    """One exploring step of every env copy, stored (`box_agents.collect_step`, `greedy`)."""
    return box_agents.collect_step(state, key, hparams, setup,
                                   lambda params, obs, k: greedy(params, obs, k, hparams, setup))


def iteration(state: State, key: PRNGKey, hparams: HParams, setup: Setup):
    """`rollout_len` exploring steps of every env copy, learning by `update`."""
    return box_agents.iteration(state, key, hparams, setup, collect_step, update)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GradConfig(Config):
    """Continuous Q-learning, the max over actions by projected gradient ascent.

    `Config` with `method` `grad`: the best of `num_samples` draws, then `ascent_steps`
    projected gradient-ascent steps.
    """

    method: str = "grad"
    num_samples: int = 8


@dataclasses.dataclass(frozen=True, kw_only=True)
class NAFConfig(Config):
    """NAF: continuous Q-learning with a closed-form max (Gu et al. 2016).

    `Config` with `method` `naf`: the greedy action is the network's `mu(s)`.
    """

    method: str = "naf"


AGENT = Agent(name="cq-sample", Config=Config, HParams=HParams, setup=setup, init=init,
              iteration=iteration, greedy_act=greedy_act, loss=loss, update=update)
GRAD_AGENT = AGENT.variant("cq-grad", config=GradConfig)
NAF_AGENT = AGENT.variant("naf", config=NAFConfig)
