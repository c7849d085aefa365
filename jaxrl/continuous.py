"""Continuous-action kernels shared by `agents/continuous_q.py` and `agents/ddpg.py`.

Ways to take `max_a Q(s, a)` over a real vector `a` (`sample_argmax`, `gradient_ascent`,
`naf_q`); SAC's squashed Gaussian and TD3's smoothed target action; Gaussian or
Ornstein-Uhlenbeck exploration noise (`explore`, `renew_noise`); the Box checks. The
configuration and loop those agents share are in `jaxrl.box_agents`.

Every action here lives in the env's units, inside the box `[low, high]` (`low`, `high`
`[A]`); noise scales are fractions of the half-range `(high - low) / 2`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.config import ConfigError
from jaxrl.types import EnvSpec, PRNGKey

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
    it (clipped to the box), and keep the best action seen in any draw. The
    cross-entropy method (Rubinstein 1999) is how QT-Opt maximises its critic
    (Kalashnikov et al. 2018); keeping the best action of every draw is our choice.

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

    Not from a paper (and no library has it): each step moves `step_size` half-ranges
    along the normalised gradient (in half-range units, so one step size suits any
    critic's scale and any box) and projects onto the box:
    `a' = clip(a + step * h * d / |d|, low, high)` with `h = (high - low) / 2`,
    `d = h * dQ/da`. A step that would not raise Q is rejected and the step length
    halves, so Q never decreases and a step too long for the critic's curvature shrinks
    until it helps.

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
