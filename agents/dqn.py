"""Deep Q-Networks, from DQN to Rainbow: every component a switch of one `Config`.

Mnih et al. 2015, "Human-level control through deep reinforcement learning" (replay, a
target network reset every C updates, epsilon-greedy with a linear decay), with the
components of Hessel et al. 2018, "Rainbow": Double DQN (van Hasselt et al. 2016, eq. 4),
dueling heads (Wang et al. 2016, eq. 9), proportional prioritized replay (Schaul et al.
2016), n-step targets (Sutton 1988; cut at episode ends, truncation bootstrapped from the
pre-reset observation), factorised-Gaussian Noisy Nets (Fortunato et al. 2018; noise
drawn per env copy at the start of each episode and held during it, or redrawn every
step) and C51 (Bellemare et al. 2017: a categorical return distribution on a fixed
support, the target projected onto it; acting on its mean). Boltzmann exploration
(softmax over Q with a decaying temperature) is the alternative to epsilon-greedy.

The records `AGENT` (`dqn`), `C51_AGENT` (`c51`) and `RAINBOW_AGENT` (`rainbow`) share
these functions; their configs differ in defaults only. The loop is `jaxrl.off_policy`'s.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax
from flax import struct

from jaxrl import agent, networks, off_policy, optim
from jaxrl import config as cfg
from jaxrl.agent import Agent, Setup
from jaxrl.buffers import Sample
from jaxrl.config import ConfigError, hparam
from jaxrl.off_policy import State
from jaxrl.types import Params, PRNGKey

LOSSES = ("huber", "mse")
EXPLORATIONS = ("auto", "epsilon", "boltzmann", "greedy")
NOISE_RESAMPLES = ("episode", "step")
_SWITCHES = ("double", "dueling", "prioritized", "noisy", "distributional")
_BOOLS = _SWITCHES + ("anneal_lr",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(off_policy.Config):
    """Static DQN configuration. Defaults: plain DQN with CleanRL's CartPole settings.

    CleanRL's `dqn_jax.py` settings (1 env, 10k replay, batch 128, a gradient step every
    10 env steps, target copy every 500 env steps = 50 updates, epsilon 1 -> 0.05 over half
    the run, 120-84 ReLU MLP, Adam 2.5e-4, squared error), plus a learning rate annealed
    to 0, which kept every seed of our CartPole check at the top at the end of the run.
    `env` must have discrete actions. Other fields: `jaxrl.off_policy.Config`.

    Attributes:
      anneal_lr: decay the learning rate linearly to 0 over the run's gradient steps.
      loss: `huber` (delta 1) or `mse` (half squared TD error); C51 uses cross-entropy.
      exploration: `auto` (epsilon-greedy, or greedy when noisy), `epsilon`, `boltzmann`
        or `greedy`.
      double: Double DQN target: the online net picks the next action, the target net
        evaluates it.
      dueling: dueling head: state value plus mean-subtracted advantages.
      prioritized: proportional prioritized replay with importance weights.
      priority_alpha: priority exponent of prioritized replay (0 is uniform).
      noisy: factorised-Gaussian noisy layers (NoisyNet) for exploration.
      noise_resample: when an env copy's acting noise is redrawn: `episode` (when its
        episode ends) or `step`.
      noisy_sigma: initial noise scale sigma0 of the noisy layers.
      distributional: C51 head: a categorical return distribution; acts on its mean.
      num_atoms: atoms of the C51 support.
      v_min: lowest atom of the C51 support.
      v_max: highest atom of the C51 support.
    """

    rollout_len: int = 500
    total_timesteps: int = 500_000
    buffer_size: int = 10_000
    minibatch_size: int = 128
    learning_starts: int = 10_000
    train_frequency: int = 10
    target_update_period: int = 50
    hidden_sizes: tuple[int, ...] = (120, 84)
    anneal_lr: bool = True
    loss: str = "mse"
    exploration: str = "auto"
    double: bool = False
    dueling: bool = False
    prioritized: bool = False
    priority_alpha: float = 0.6
    noisy: bool = False
    noise_resample: str = "episode"
    noisy_sigma: float = 0.5
    distributional: bool = False
    num_atoms: int = 51
    v_min: float = -100.0
    v_max: float = 100.0

    def __post_init__(self):
        super().__post_init__()
        cfg.check_positive_int(self, ("num_atoms",))
        cfg.check_bool(self, _BOOLS)
        cfg.check_choice("loss", self.loss, LOSSES)
        cfg.check_choice("exploration", self.exploration, EXPLORATIONS)
        cfg.check_choice("noise_resample", self.noise_resample, NOISE_RESAMPLES)
        if self.num_atoms < 2:
            raise ConfigError(f"num_atoms must be at least 2, got {self.num_atoms}")
        if cfg.check_real("v_min", self.v_min) >= cfg.check_real("v_max", self.v_max):
            raise ConfigError(f"v_min ({self.v_min}) must be below v_max ({self.v_max})")
        if not 0.0 <= cfg.check_real("priority_alpha", self.priority_alpha) <= 1.0:
            raise ConfigError(f"priority_alpha must be in [0, 1], got {self.priority_alpha}")
        if not cfg.check_real("noisy_sigma", self.noisy_sigma) > 0.0:
            raise ConfigError(f"noisy_sigma must be > 0, got {self.noisy_sigma}")

    @property
    def exploration_kind(self) -> str:
        """`epsilon`, `boltzmann` or `greedy`: `auto` resolved (greedy iff noisy)."""
        if self.exploration == "auto":
            return "greedy" if self.noisy else "epsilon"
        return self.exploration


@dataclasses.dataclass(frozen=True, kw_only=True)
class C51Config(Config):
    """C51: DQN with a categorical return distribution (Bellemare et al. 2017).

    `Config` with `distributional` on; everything else (and every switch) as in `Config`.
    """

    distributional: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class RainbowConfig(Config):
    """Rainbow: double, dueling, prioritized, 3-step, noisy, C51 DQN (Hessel et al. 2018).

    `Config` with every component on; switch any off for an ablation (with `noisy` off,
    `exploration` auto acts epsilon-greedily, as in the paper's ablation). A constant
    learning rate: with annealing, one CartPole seed of four stayed stuck near 100 once
    the rate had decayed, where with a constant rate all four reached 500.
    """

    double: bool = True
    dueling: bool = True
    prioritized: bool = True
    n_step: int = 3
    noisy: bool = True
    distributional: bool = True
    anneal_lr: bool = False


@struct.dataclass
class HParams(cfg.HParamsBase):
    """Traced scalar hyperparameters; a leading axis on every leaf sweeps them with `vmap`.

    Attributes:
      learning_rate: Adam step size.
      gamma: discount factor.
      max_grad_norm: threshold of global gradient-norm clipping (the default is above
        the norms DQN reaches on classic control: clipping at 10 made it unstable).
      tau: target update step: 1 copies, below 1 is Polyak averaging.
      epsilon_start: epsilon-greedy's epsilon at the start.
      epsilon_end: epsilon after the decay.
      temperature_start: Boltzmann temperature at the start.
      temperature_end: Boltzmann temperature after the decay.
      exploration_fraction: fraction of total_timesteps over which epsilon (or the
        temperature) decays linearly.
      beta_start: importance exponent of prioritized replay at the start, annealed
        linearly to 1 over the run.
    """

    learning_rate: jax.Array = hparam(2.5e-4, low=0.0, low_open=True)
    gamma: jax.Array = hparam(0.99, low=0.0, high=1.0)
    max_grad_norm: jax.Array = hparam(1000.0, low=0.0, low_open=True)
    tau: jax.Array = hparam(1.0, low=0.0, high=1.0, low_open=True)
    epsilon_start: jax.Array = hparam(1.0, low=0.0, high=1.0)
    epsilon_end: jax.Array = hparam(0.05, low=0.0, high=1.0)
    temperature_start: jax.Array = hparam(1.0, low=0.0, low_open=True)
    temperature_end: jax.Array = hparam(0.05, low=0.0, low_open=True)
    exploration_fraction: jax.Array = hparam(0.5, low=0.0, high=1.0, low_open=True)
    beta_start: jax.Array = hparam(0.4, low=0.0, high=1.0)


def setup(config: Config) -> Setup:
    """Build the environment, the Q-network and the replay buffer for `config`, once.

    Called outside any trace (by `jaxrl.runner`); every function below receives the result.
    """
    env, env_params, spec = agent.make_env(config.env, normalize_obs=config.normalize_obs)
    off_policy.check_discrete(spec, config.env, "DQN")
    network = networks.make_q_network(
        spec, config.hidden_sizes, config.activation, dueling=config.dueling,
        num_atoms=config.num_atoms if config.distributional else None,
        noisy=config.noisy, sigma0=config.noisy_sigma, torso=config.torso)
    buffer = off_policy.make_buffer(config, prioritized=config.prioritized,
                                    alpha=config.priority_alpha)
    return Setup(config=config, env=env, env_params=env_params, spec=spec, network=network,
                 buffer=buffer)


def atoms(config: Config) -> np.ndarray:
    """The C51 support `[K]`: `num_atoms` evenly spaced values from v_min to v_max."""
    return np.linspace(config.v_min, config.v_max, config.num_atoms, dtype=np.float32)


def mean_return(logits: jax.Array, config: Config) -> jax.Array:
    """The mean of C51 distributions: logits `[..., K]` -> `[...]`."""
    z = atoms(config).reshape((1,) * (logits.ndim - 1) + (-1,))
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * z, axis=-1)


def optimizer(hparams: HParams, config: Config) -> optax.GradientTransformation:
    """Adam (eps 1e-5) after global-norm clipping, learning rate traced from `hparams`
    (annealed linearly to 0 over `num_updates` when `anneal_lr`)."""
    return optim.make_optimizer("adam", hparams.learning_rate, hparams.max_grad_norm,
                                config.num_updates if config.anneal_lr else None,
                                skip_nonfinite=config.skip_nonfinite)


def q_values(params: Params, obs: jax.Array, noise: Any, setup: Setup) -> jax.Array:
    """Q-values `[..., A]` of observations `[..., *obs_shape]` (C51: the mean return)."""
    out = setup.network.apply(params, obs, noise)
    if not setup.config.distributional:
        return out
    return mean_return(out, setup.config)


def explore_value(env_steps: jax.Array, hparams: HParams, config: Config) -> jax.Array:
    """Epsilon or Boltzmann temperature after `env_steps` (0 when acting greedily)."""
    progress = env_steps / (hparams.exploration_fraction * config.total_timesteps)
    kind = config.exploration_kind
    if kind == "epsilon":
        return off_policy.linear_schedule(hparams.epsilon_start, hparams.epsilon_end, progress)
    if kind == "boltzmann":
        return off_policy.linear_schedule(hparams.temperature_start, hparams.temperature_end,
                                          progress)
    return jnp.float32(0.0)


def act(params: Params, noise: Any, obs: jax.Array, key: PRNGKey, explore: jax.Array,
        setup: Setup) -> jax.Array:
    """An exploring action (int32) for one observation `[*obs_shape]`.

    Args:
      noise: this env copy's noisy-layer noise (`{}` if not noisy).
      explore: epsilon (epsilon-greedy) or temperature (Boltzmann); unused when greedy.
    """
    q = q_values(params, obs, noise, setup)
    kind = setup.config.exploration_kind
    if kind == "epsilon":
        action = distrax.EpsilonGreedy(q, explore).sample(seed=key)
    elif kind == "boltzmann":
        action = distrax.Softmax(q, explore).sample(seed=key)
    else:
        action = jnp.argmax(q)
    return action.astype(jnp.int32)


def greedy_act(params: Params, obs: jax.Array, key: PRNGKey, setup: Setup) -> jax.Array:
    """`argmax_a Q(obs, a)` with noisy layers at their mean (evaluation); `key` is unused."""
    del key
    return jnp.argmax(q_values(params, obs, setup.network.zero_noise, setup)).astype(jnp.int32)


def renew_noise(noise: Any, done: jax.Array, key: PRNGKey, setup: Setup) -> Any:
    """One env copy's acting noise after a step: redrawn at an episode end (or every step).

    The noise is drawn when an episode starts and held until it ends (Fortunato et al.
    2018, section 3.1), unless `noise_resample` is `step`.
    """
    if not setup.config.noisy:
        return noise
    fresh = setup.network.sample_noise(key)
    if setup.config.noise_resample == "step":
        return fresh
    return jax.tree.map(lambda new, old: jnp.where(done, new, old), fresh, noise)


def init(key: PRNGKey, setup: Setup, hparams: HParams) -> State:
    """Fresh parameters (target a copy), an empty buffer, `num_envs` reset envs and noise."""
    params_key, env_key, noise_key = jax.random.split(key, 3)
    params = setup.network.init(params_key)
    noise = jax.vmap(setup.network.sample_noise)(
        jax.random.split(noise_key, setup.config.num_envs))
    return off_policy.init(env_key, setup, params, optimizer(hparams, setup.config), noise)


@struct.dataclass
class Batch:
    """What the DQN loss needs for B replayed windows; targets computed before the loss.

    Attributes:
      obs: [B, *obs_shape] observation of each window's first transition (`obs_tm1`).
      action: [B] int32 action taken there.
      reward: [B] discounted reward sum through the window's first episode end (n-step).
      discount: [B] product of the discounts summed over (0 after a termination).
      next_q: [B, A] target-network Q-values (C51: logits [B, A, K]) at the bootstrap
        observation.
      next_q_selector: [B, A] Q-values that choose the bootstrap action: the online net's
        (double) or the target net's (plain max).
      weights: [B] importance weights (ones for uniform replay).
      noise: the online network's noisy-layer noise for this batch (`{}` if not noisy).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    next_q: jax.Array
    next_q_selector: jax.Array
    weights: jax.Array
    noise: Any


def make_batch(state: State, sample: Sample, key: PRNGKey, hparams: HParams,
               setup: Setup) -> Batch:
    """n-step returns and bootstrap values for sampled windows `[B, L]` (L = n_step).

    The target network is evaluated only at each window's bootstrap observation (the
    `next_obs` of its first episode-ending transition, or of its last one). One noise draw
    is shared by the batch for the online net and another for the target net.
    """
    config, network = setup.config, setup.network
    steps = off_policy.n_step(sample.items, hparams.gamma)
    next_obs = steps.next_obs
    online_key, target_key = jax.random.split(key)
    noise = network.sample_noise(online_key)
    next_q = network.apply(state.target_params, next_obs, network.sample_noise(target_key))
    if config.double:
        selector = q_values(state.params, next_obs, noise, setup)
    elif config.distributional:
        selector = mean_return(next_q, config)
    else:
        selector = next_q
    return Batch(obs=steps.obs, action=steps.action, reward=steps.reward,
                 discount=steps.discount, next_q=next_q, next_q_selector=selector,
                 weights=sample.weights, noise=noise)


def loss(params: Params, batch: Batch, hparams: HParams, setup: Setup):
    """Importance-weighted TD loss on a batch, and the new priorities.

    Scalar Q: `rlax.double_q_learning`'s TD error `G + discount * next_q[argmax selector]
    - Q(s, a)` (with the target's own values as selector it is Q-learning's max), then
    Huber or half squared error; priority `|TD|`. C51: `rlax.categorical_double_q_learning`,
    the cross-entropy between the target distribution shifted and scaled by `(G,
    discount)` and projected onto the support, and the predicted one (Bellemare et al.
    2017, Algorithm 1); priority the cross-entropy (Hessel et al. 2018, section 3).

    Returns:
      `(total, (metrics, priority [B]))`.
    """
    del hparams
    config = setup.config
    out = setup.network.apply(params, batch.obs, batch.noise)
    if config.distributional:
        z = jnp.asarray(atoms(config))
        per_example = jax.vmap(rlax.categorical_double_q_learning,
                               in_axes=(None, 0, 0, 0, 0, None, 0, 0))(
            z, out, batch.action, batch.reward, batch.discount, z, batch.next_q,
            batch.next_q_selector)
        priority = per_example
        q_taken = mean_return(out, config)
    else:
        td = jax.vmap(rlax.double_q_learning)(out, batch.action, batch.reward, batch.discount,
                                              batch.next_q, batch.next_q_selector)
        per_example = rlax.huber_loss(td, 1.0) if config.loss == "huber" else rlax.l2_loss(td)
        priority = jnp.abs(td)
        q_taken = out
    q_taken = jnp.take_along_axis(q_taken, batch.action[:, None], axis=1)[:, 0]
    total = jnp.mean(batch.weights * per_example)
    metrics = {"loss/total": total, "q/taken": q_taken.mean()}
    return total, (metrics, jax.lax.stop_gradient(priority))


def update(state: State, sample: Sample, key: PRNGKey, hparams: HParams, setup: Setup):
    """One gradient step on a replayed sample, its priorities, and the target update.

    Returns `(state, metrics)` with the metrics of `optim.gradient_step`.
    """
    config = setup.config
    batch = make_batch(state, sample, key, hparams, setup)
    # Not `optim.gradient_step`: the loss's auxiliary output carries the priorities too.
    grads, (metrics, priority) = jax.grad(loss, has_aux=True)(state.params, batch, hparams,
                                                               setup)
    state = optim.apply_gradients(state, grads, optimizer(hparams, config))
    target = off_policy.update_target(state.params, state.target_params, state.step,
                                      config.target_update_period, hparams.tau)
    buffer = setup.buffer.update_priorities(state.buffer, sample.indices, priority)
    # A non-finite priority would corrupt the sum tree for good: keep the old one (the
    # runner's guard, or the skip count, reports the bad update itself).
    finite = jnp.isfinite(priority).all()
    buffer = jax.tree.map(lambda new, old: jnp.where(finite, new, old), buffer, state.buffer)
    state = state.replace(target_params=target, buffer=buffer)
    return state, {**metrics, "opt/grad_norm": optax.tree.norm(grads),
                   "opt/nonfinite_skipped": optim.skipped_updates(state.opt_state)}


def beta(env_steps: jax.Array, hparams: HParams, config: Config) -> jax.Array:
    """Prioritized replay's importance exponent, annealed linearly from beta_start to 1."""
    return off_policy.linear_schedule(hparams.beta_start, jnp.float32(1.0),
                                      env_steps / config.total_timesteps)


def train_step(state: State, key: PRNGKey, hparams: HParams, setup: Setup):
    """Sample `minibatch_size` windows and `update` on them."""
    sample_key, update_key = jax.random.split(key)
    sample = setup.buffer.sample(state.buffer, sample_key,
                                 beta(state.env_steps, hparams, setup.config))
    return update(state, sample, update_key, hparams, setup)


def collect_step(state: State, key: PRNGKey, hparams: HParams, setup: Setup):
    """One exploring step of every env copy, stored in the buffer (`off_policy.collect_step`)."""
    explore = explore_value(state.env_steps, hparams, setup.config)
    return off_policy.collect_step(state, key, setup,
                                   functools.partial(act, explore=explore, setup=setup),
                                   functools.partial(renew_noise, setup=setup))


def iteration(state: State, key: PRNGKey, hparams: HParams, setup: Setup):
    """`rollout_len` steps of every env copy with learning phases (`off_policy.iteration`).

    Returns:
      `(state, metrics)`: update metrics, `replay/learning`, `explore/value` (epsilon or
      temperature at the end) and the `episode/*` statistics.
    """
    state, metrics = off_policy.iteration(
        state, key, setup, functools.partial(collect_step, hparams=hparams, setup=setup),
        functools.partial(train_step, hparams=hparams, setup=setup))
    return state, {**metrics,
                   "explore/value": explore_value(state.env_steps, hparams, setup.config)}


AGENT = Agent(name="dqn", Config=Config, HParams=HParams, setup=setup, init=init,
              iteration=iteration, greedy_act=greedy_act, loss=loss, update=update)
C51_AGENT = AGENT.variant("c51", config=C51Config)
RAINBOW_AGENT = AGENT.variant("rainbow", config=RainbowConfig)
