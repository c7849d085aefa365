"""Continuous-action pieces shared by `agents/cq.py` (Q-learning) and `agents/ddpg.py`.

The lecture's answers to "how do we take `max_a Q(s, a)` when `a` is a real vector?"
(ALGORITHMS.md, section 3) as small kernels: sample candidates and keep the best
(`sample_argmax`, with cross-entropy-method refinement), projected gradient ascent on the
action (`gradient_ascent`), and a critic whose maximum is known in closed form (`naf_q`).
For actor-critics: the tanh-squashed Gaussian of SAC with its log-probability
(`squashed_sample`) and TD3's smoothed target action (`smoothed_target_action`). For
exploration: Gaussian or Ornstein-Uhlenbeck noise on the chosen action, the OU process a
per-env pytree state advanced after every step (`explore`, `renew_noise`).

Also the configuration every continuous off-policy agent shares (`Config`, `HParams`,
subclassed by each agent), the check that an env has a Box action space, and one optax
state per parameter group (`PartOptimizer`), so that an actor can be updated less often
than its critic.

Every action here lives in the env's units, inside the box `[low, high]` (`low`, `high`
`[A]`); noise scales are fractions of the half-range `(high - low) / 2`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl import actor_critic, off_policy, runner
from jaxrl import config as cfg
from jaxrl.config import ConfigError, hparam
from jaxrl.types import EnvSpec, Params, PRNGKey

NOISES = ("gaussian", "ou", "none")


def check_continuous(spec: EnvSpec, env_id: str, agent: str) -> None:
    """Raise `ConfigError` unless `spec` has a flat Box action space, suggesting agents."""
    if spec.discrete:
        raise ConfigError(
            f"env {env_id!r} has a discrete action space, but {agent} needs continuous (Box) "
            "actions; use an agent for discrete actions (dqn, c51, rainbow, ppo, a2c) or an "
            "env with continuous actions (e.g. Pendulum-v1)")
    if len(spec.action_shape) != 1:
        raise ConfigError(f"env {env_id!r} has actions of shape {spec.action_shape}; {agent} "
                          "needs a flat action vector (shape [A])")


def bounds(spec: EnvSpec) -> tuple[np.ndarray, np.ndarray]:
    """The action box `(low [A], high [A])` of a continuous `spec`, as NumPy constants."""
    return np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)


# --- The max over actions -------------------------------------------------------------------

def naf_q(value: jax.Array, mu: jax.Array, chol: jax.Array, action: jax.Array) -> jax.Array:
    """`Q(s, a) = V(s) - 1/2 (a - mu)^T L L^T (a - mu)` (Gu et al. 2016, eq. 2-4).

    Args:
      value: [...] state values `V(s)`.
      mu: [..., A] the maximising actions.
      chol: [..., A, A] lower-triangular `L` (positive diagonal), `P = L L^T`.
      action: [..., A] actions to evaluate.

    Returns:
      [...] Q-values; `Q(s, mu(s)) = V(s)` is the maximum over all actions.
    """
    chex.assert_equal_shape([mu, action])
    diff = action - mu
    proj = jnp.einsum("...ij,...i->...j", chol, diff)  # L^T (a - mu)
    return value - 0.5 * jnp.sum(proj * proj, axis=-1)


def _box(low: jax.Array, high: jax.Array, ndim: int) -> tuple[jax.Array, jax.Array]:
    shape = (1,) * (ndim - 1) + (-1,)
    return jnp.reshape(low, shape), jnp.reshape(high, shape)


def sample_argmax(q_fn: Callable[[jax.Array], jax.Array], key: PRNGKey, low: jax.Array,
                  high: jax.Array, num_samples: int, cem_iters: int = 0,
                  num_elites: int = 1) -> jax.Array:
    """An approximate `argmax_a Q(s, a)` of one state by sampling, with optional CEM.

    Draws `num_samples` actions uniformly in the box and keeps the best. With
    `cem_iters = K > 0` it then refines K times by the cross-entropy method: fit a
    diagonal Gaussian to the `num_elites` best of the last draw, draw `num_samples` around
    it (clipped to the box), and keep the best action seen in any draw. The lecture's
    first answer (ALGORITHMS.md, section 3).

    Args:
      q_fn: `q_fn(actions [N, A]) -> [N]`, the critic of one state.
      low, high: [A] the action box.
      num_samples: N, candidates per draw.
      cem_iters: K refinement iterations (0: one uniform draw only).
      num_elites: draws' top actions the Gaussian is fitted to (at most N).

    Returns:
      [A] the best action found.
    """
    dim = low.shape[-1]
    lo, hi = _box(low, high, 2)
    first, *keys = jax.random.split(key, cem_iters + 1)
    actions = jax.random.uniform(first, (num_samples, dim), jnp.float32, lo, hi)
    q = q_fn(actions)
    best = actions[jnp.argmax(q)]
    best_q = jnp.max(q)
    for k in keys:  # K is small and static: unrolled, no loop-carried shapes to manage
        _, elite_idx = jax.lax.top_k(q, num_elites)
        elites = actions[elite_idx]
        mean, std = elites.mean(axis=0), elites.std(axis=0) + 1e-3 * (high - low)
        actions = jnp.clip(mean[None] + std[None] * jax.random.normal(k, actions.shape),
                           lo, hi)
        q = q_fn(actions)
        better = jnp.max(q) > best_q
        best = jnp.where(better, actions[jnp.argmax(q)], best)
        best_q = jnp.maximum(best_q, jnp.max(q))
    return best


def gradient_ascent(q_fn: Callable[[jax.Array], jax.Array], action: jax.Array, low: jax.Array,
                    high: jax.Array, num_steps: int, step_size: jax.Array) -> jax.Array:
    """`num_steps` of projected gradient ascent on `Q(s, a)` with respect to `a`.

    The lecture's second answer. Each step moves `step_size` half-ranges along the
    normalised gradient (in half-range units, so one step size suits any critic's scale
    and any box) and projects onto the box: `a' = clip(a + step * h * d / |d|, low, high)`
    with `h = (high - low) / 2`, `d = h * dQ/da`. A step that would not raise Q is
    rejected and the step length halves, so Q never decreases and a step too long for
    the critic's curvature shrinks until it helps.

    Args:
      q_fn: `q_fn(action [A]) -> scalar`, the critic of one state.
      action: [A] the starting action (e.g. the best of a few samples).
      low, high: [A] the action box.
      num_steps: ascent steps (static).
      step_size: traced length of the first step, in half-ranges.

    Returns:
      [A] the action after the last step.
    """
    half = 0.5 * (high - low)
    value_and_grad = jax.value_and_grad(q_fn)

    def step(carry, _):
        a, length = carry
        q, g = value_and_grad(a)
        d = half * g
        candidate = jnp.clip(a + length * half * d / (jnp.linalg.norm(d) + 1e-12), low, high)
        better = q_fn(candidate) > q
        return (jnp.where(better, candidate, a), jnp.where(better, length, 0.5 * length)), None

    start = jnp.clip(action, low, high)
    (action, _), _ = jax.lax.scan(step, (start, jnp.asarray(step_size, start.dtype)), None,
                                  length=num_steps)
    return action


# --- Stochastic and smoothed actions for actor-critics -------------------------------------

def _squash_log_det(u: jax.Array) -> jax.Array:
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)): finite where tanh(u) rounds to 1.
    return 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def squashed_sample(mean: jax.Array, log_std: jax.Array, key: PRNGKey, low: jax.Array,
                    high: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A reparameterised action of SAC's tanh-squashed Gaussian, and its log-probability.

    `u ~ N(mean, exp(log_std))`, `a = low + (tanh(u) + 1) (high - low) / 2`; by the change of
    variables (Haarnoja et al. 2018, appendix C, eq. 21, plus the affine map onto the box):
    `log pi(a) = log N(u) - sum_i [log(1 - tanh(u_i)^2) + log((high_i - low_i) / 2)]`.

    Args:
      mean, log_std: [..., A] the Gaussian's parameters before squashing.
      low, high: [A] the action box.

    Returns:
      `(action [..., A], log_prob [...])`; the action is differentiable in mean and log_std.
    """
    std = jnp.exp(log_std)
    u = mean + std * jax.random.normal(key, mean.shape, mean.dtype)
    lo, hi = _box(low, high, mean.ndim)
    gauss = -0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_prob = jnp.sum(gauss - _squash_log_det(u) - jnp.log(0.5 * (hi - lo)), axis=-1)
    return lo + 0.5 * (jnp.tanh(u) + 1.0) * (hi - lo), log_prob


def squashed_mode(mean: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """The deterministic action of a squashed Gaussian (evaluation): the squashed mean."""
    lo, hi = _box(low, high, mean.ndim)
    return lo + 0.5 * (jnp.tanh(mean) + 1.0) * (hi - lo)


def smoothed_target_action(action: jax.Array, key: PRNGKey, noise_std: jax.Array,
                           noise_clip: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """TD3's target policy smoothing (Fujimoto et al. 2018, eq. 15).

    `a' = clip(mu'(s') + clip(eps, -c, c), low, high)`, `eps ~ N(0, sigma^2)`; sigma and
    c are fractions of the half-range (0.2 and 0.5 in the paper, whose actions span
    [-1, 1]).

    Args:
      action: [..., A] the target actor's actions `mu'(s')`.
      noise_std, noise_clip: sigma and c, traced.
      low, high: [A] the action box.

    Returns:
      [..., A] smoothed actions inside the box.
    """
    lo, hi = _box(low, high, action.ndim)
    half = 0.5 * (hi - lo)
    eps = noise_std * jax.random.normal(key, action.shape, action.dtype)
    return jnp.clip(action + half * jnp.clip(eps, -noise_clip, noise_clip), lo, hi)


# --- Exploration noise on the chosen action -------------------------------------------------

def init_noise(kind: str, action_dim: int) -> Any:
    """One env copy's noise state: the OU process value `[A]` at 0, or `{}` otherwise."""
    return {"ou": jnp.zeros((action_dim,), jnp.float32)} if kind == "ou" else {}


def explore(action: jax.Array, noise: Any, key: PRNGKey, kind: str, scale: jax.Array,
            low: jax.Array, high: jax.Array) -> jax.Array:
    """`clip(action + scale * half-range * n, low, high)` for one env copy's action `[A]`.

    `n` is a fresh standard normal (`gaussian`), the env copy's OU value (`ou`, unit
    stationary variance, advanced by `renew_noise`) or 0 (`none`).
    """
    if kind == "none":
        return action
    n = noise["ou"] if kind == "ou" else jax.random.normal(key, action.shape, action.dtype)
    return jnp.clip(action + scale * 0.5 * (high - low) * n, low, high)


def renew_noise(noise: Any, done: jax.Array, key: PRNGKey, kind: str,
                theta: jax.Array) -> Any:
    """Advance one env copy's OU process after a step; back to 0 when its episode ended.

    `x <- (1 - theta) x + sqrt(1 - (1 - theta)^2) eps`: the Ornstein-Uhlenbeck process
    of DDPG (Lillicrap et al. 2016, theta 0.15) sampled at unit time steps and scaled to
    a unit stationary variance, so that `explore`'s `scale` means the same for both kinds.
    """
    if kind != "ou":
        return noise
    x = noise["ou"]
    keep = 1.0 - theta
    x = keep * x + jnp.sqrt(1.0 - keep ** 2) * jax.random.normal(key, x.shape, x.dtype)
    return {"ou": jnp.where(done, jnp.zeros_like(x), x)}


# --- One optimizer state per parameter group -----------------------------------------------

class PartOptimizer:
    """Separate optax transformations for the top-level groups of a params dict.

    `init(params) -> {group: state}` (so `off_policy.init` can build it like any optax
    transformation), and `step` updates one group, optionally only where a (traced)
    condition holds, which a delayed actor update needs: optax's `multi_transform` updates
    every group in one call, but the actor's gradient must be taken after the critic's
    update, and a skipped step must leave Adam's moments untouched.
    """

    def __init__(self, txs: dict[str, optax.GradientTransformation]):
        self.txs = txs

    def init(self, params: Params) -> dict:
        return {name: tx.init(params[name]) for name, tx in self.txs.items()}

    def step(self, params: Params, opt_state: dict, name: str, grads: Params,
             apply: jax.Array | bool = True) -> tuple[Params, dict]:
        """Params and optimizer state after updating group `name` by `grads` (if `apply`)."""
        updates, new = self.txs[name].update(grads, opt_state[name], params[name])
        group = optax.apply_updates(params[name], updates)
        if apply is not True:
            keep = lambda n, o: jnp.where(apply, n, o)  # noqa: E731
            group = jax.tree.map(keep, group, params[name])
            new = jax.tree.map(keep, new, opt_state[name])
        return {**params, name: group}, {**opt_state, name: new}

    def skipped(self, opt_state: dict) -> jax.Array:
        """Non-finite updates skipped so far, all groups together (see `skipping_nonfinite`)."""
        return sum(actor_critic.skipped_updates(s) for s in opt_state.values())


# --- The configuration every continuous off-policy agent shares -----------------------------

_BOOLS = ("normalize_obs",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(off_policy.Config):
    """Fields shared by the continuous-action off-policy agents (each agent subclasses it).

    Defaults suit classic control (Pendulum-v1) on a CPU: 64x64 ReLU networks (the papers'
    256x256 cost 16x more per update: `--hidden-sizes 256 256`), one env, a gradient step
    per env step after a warm-up of `learning_starts` steps of uniformly random actions,
    Polyak-averaged targets (Lillicrap et al. 2016), and a replay buffer that holds whole
    classic-control runs: once a smaller buffer wraps, the early failures it forgets are
    exactly the states a good policy stops visiting, and NAF on Pendulum-v1 then collapsed
    (2 seeds, buffer 1e5: from -150 to -1500 within 3e4 steps of the wrap). The other
    fields are `jaxrl.off_policy.Config`'s.

    Attributes:
      env: registered environment id with a Box action space (`jaxrl list`).
      exploration_noise: noise on the chosen action while training: `gaussian`, `ou`
        (Ornstein-Uhlenbeck, per env copy, reset at episode ends) or `none`.
      normalize_obs: normalise observations by running statistics (the buffer stores
        them normalised as they were when collected).
    """

    env: str = "Pendulum-v1"
    buffer_size: int = 1_000_000
    exploration_noise: str = "gaussian"
    normalize_obs: bool = False

    agent_name = "this agent"  # for error messages; each agent's Config overrides it

    def __post_init__(self):
        super().__post_init__()
        cfg.check_bool(self, _BOOLS)
        cfg.check_choice("exploration_noise", self.exploration_noise, NOISES)
        check_continuous(off_policy.make_env(self.env)[2], self.env, self.agent_name)


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
    return actor_critic.make_optimizer("adam", lr, hparams.max_grad_norm, None,
                                       skip_nonfinite=config.skip_nonfinite)


# --- The loop every continuous off-policy agent shares --------------------------------------

PolicyFn = Callable[[Params, jax.Array, PRNGKey], jax.Array]
UpdateFn = Callable[[off_policy.State, Any, PRNGKey], tuple[off_policy.State, Any]]


def make_setup(config: Config, network: Any) -> off_policy.Setup:
    """The env (normalised observations if asked), `network` and the replay buffer."""
    env, env_params, spec = off_policy.make_env(config.env, normalize_obs=config.normalize_obs)
    buffer = off_policy.make_buffer(config, sequence_length=config.n_step)
    return off_policy.Setup(env=env, env_params=env_params, spec=spec, network=network,
                            buffer=buffer)


def init_state(key: PRNGKey, setup: off_policy.Setup, config: Config, params: Params,
               tx: Any) -> off_policy.State:
    """`off_policy.init` with every env copy's exploration noise at its start."""
    one = init_noise(config.exploration_noise, setup.spec.action_dim)
    noise = jax.tree.map(lambda x: jnp.broadcast_to(x, (config.num_envs,) + x.shape), one)
    return off_policy.init(key, setup, config.num_envs, params, tx, noise)


def collect_step(state: off_policy.State, key: PRNGKey, hparams: HParams, config: Config,
                 setup: off_policy.Setup, policy: PolicyFn):
    """Step every env copy once and store the steps (`off_policy.collect_step`).

    Each copy acts uniformly at random in the box during the warm-up (the first
    `learning_starts` env steps), then by `policy(params, obs, key)` with exploration noise.
    """
    low, high = bounds(setup.spec)
    warm_up = state.env_steps < config.learning_starts

    def act(params, noise, obs, key):
        policy_key, noise_key, uniform_key = jax.random.split(key, 3)
        action = explore(policy(params, obs, policy_key), noise, noise_key,
                         config.exploration_noise, hparams.noise_scale, low, high)
        uniform = jax.random.uniform(uniform_key, action.shape, jnp.float32, low, high)
        return jnp.where(warm_up, uniform, action)

    def renew(noise, done, key):
        return renew_noise(noise, done, key, config.exploration_noise, hparams.ou_theta)

    return off_policy.collect_step(state, key, setup, act, renew)


def iteration(state: off_policy.State, key: PRNGKey, config: Config, setup: off_policy.Setup,
              collect: Callable, update: UpdateFn):
    """`rollout_len` steps of every env copy with learning phases (`off_policy.iteration`).

    Args:
      collect: `collect(state, key) -> (state, episodes)`, the agent's `collect_step`.
      update: `update(state, sample, key) -> (state, metrics)`, one gradient step on a
        uniformly replayed sample of `minibatch_size` n-step windows.
    """

    def train_step(state, key):
        sample_key, update_key = jax.random.split(key)
        return update(state, setup.buffer.sample(state.buffer, sample_key), update_key)

    return off_policy.iteration(state, key, config, setup, collect, train_step)



def agent_functions(setup: Callable[[Config], off_policy.Setup], init: Callable,
                    policy: Callable, update: Callable):
    """The loop functions of a continuous agent module, from its own pieces.

    Args:
      setup: `setup(config) -> off_policy.Setup` (cached).
      init: `init(key, config, hparams) -> State`.
      policy: `policy(params, obs, key, hparams, config) -> action [A]`, the acting policy
        of one observation before exploration noise.
      update: `update(state, sample, key, hparams, config) -> (state, metrics)`.

    Returns:
      `(collect_step, iteration, make_parts, make_train)`: `collect_step(state, key,
      hparams, config)` (one exploring step of every env copy, stored),
      `iteration(state, key, hparams, config)` (`rollout_len` such steps with learning
      phases), `make_parts(config) -> (init, iteration)` for `jaxrl.runner`, and
      `make_train(config) -> train(key, hparams)`, one pure function of the whole run.
    """

    def agent_collect_step(state, key, hparams, config):
        return collect_step(state, key, hparams, config, setup(config),
                            lambda params, obs, k: policy(params, obs, k, hparams, config))

    def agent_iteration(state, key, hparams, config):
        return iteration(state, key, config, setup(config),
                         lambda s, k: agent_collect_step(s, k, hparams, config),
                         lambda s, sample, k: update(s, sample, k, hparams, config))

    def make_parts(config):
        return runner.bind(init, agent_iteration, config)

    def make_train(config):
        return runner.make_train(*make_parts(config), config.num_iterations)

    return agent_collect_step, agent_iteration, make_parts, make_train
