"""Off-policy actor-critics for continuous actions: DDPG, TD3 and SAC as switches of one agent.

Learn an actor that takes `max_a Q(s, a)`. DDPG (Lillicrap et al. 2016, on the
deterministic policy gradient of Silver et al. 2014) is Q-learning with four changes: an
actor `mu(s)` trained to maximise `Q(s, mu(s))` by backpropagating through the critic, a
target actor beside the target critic (both Polyak-averaged), exploration noise on the
actor's action, and a replay buffer. Its successors are switches:

* TD3 (Fujimoto et al. 2018): `num_critics` 2 with the target taking their minimum
  (clipped double Q), `target_smoothing` (noise on the target action), `policy_delay` 2
  (the actor and the targets move once per two critic updates);
* SAC (Haarnoja et al. 2018): `policy` `gaussian`, a tanh-squashed Gaussian actor whose
  entropy is rewarded with temperature alpha, the next action sampled from the current
  actor, twin critics, and alpha tuned toward a target entropy of `-A` (`autotune_alpha`).

The records `AGENT` (`ddpg`), `TD3_AGENT` (`td3`) and `SAC_AGENT` (`sac`) share these
functions; every switch can be flipped on any of their configs. Replay, warm-up,
exploration noise and the loop are `jaxrl.box_agents`'.
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

POLICIES = ("deterministic", "gaussian")
_BOOLS = ("target_smoothing", "autotune_alpha")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(box_agents.Config):
    """DDPG: a deterministic actor trained through its critic (Lillicrap et al. 2016).

    The defaults: one critic, Gaussian action noise, no delay; `TD3Config` and
    `SACConfig` flip the switches below.

    Attributes:
      policy: `deterministic` (DDPG, TD3) or `gaussian` (SAC's tanh-squashed Gaussian
        with an entropy bonus).
      num_critics: critics trained on the same target; the target takes the minimum of
        their target copies (2: clipped double Q).
      policy_delay: critic updates per actor and target-network update.
      target_smoothing: add clipped noise to the target action (deterministic only).
      autotune_alpha: learn the entropy temperature toward entropy `-A` (gaussian only;
        otherwise alpha stays at its initial value).
    """

    policy: str = "deterministic"
    num_critics: int = 1
    policy_delay: int = 1
    target_smoothing: bool = False
    autotune_alpha: bool = True

    def __post_init__(self):
        cfg.check_choice("policy", self.policy, POLICIES)
        cfg.check_positive_int(self, ("num_critics", "policy_delay"))
        cfg.check_bool(self, _BOOLS)
        if self.target_smoothing and self.policy != "deterministic":
            raise ConfigError("target_smoothing needs policy deterministic (a gaussian "
                              "policy's target action is already a sample)")
        super().__post_init__()


@struct.dataclass
class HParams(box_agents.HParams):
    """Traced scalars of the actor-critics (the shared ones, plus these).

    Attributes:
      actor_learning_rate: Adam step size of the actor (`learning_rate` is the critics'
        and the temperature's).
      target_noise: standard deviation of the target-action noise, as a fraction of the
        action half-range (TD3: 0.2).
      target_noise_clip: the target-action noise is clipped to +-this (TD3: 0.5).
      alpha: the entropy temperature's initial (or, without autotune, fixed) value.
      target_entropy_scale: autotune drives the policy entropy toward `-scale * A`.
    """

    actor_learning_rate: jax.Array = hparam(1e-3, low=0.0, low_open=True)
    target_noise: jax.Array = hparam(0.2, low=0.0)
    target_noise_clip: jax.Array = hparam(0.5, low=0.0)
    alpha: jax.Array = hparam(0.2, low=0.0, low_open=True)
    target_entropy_scale: jax.Array = hparam(1.0)


class Networks(struct.PyTreeNode):
    """The actor and the critics of a config (static)."""

    actor: networks.Network = struct.field(pytree_node=False)
    critic: networks.Network = struct.field(pytree_node=False)


def setup(config: Config) -> Setup:
    """The env, the actor and critic networks, and the replay buffer, built once."""

    def make_networks(spec):
        actor = networks.make_continuous_network(spec, config.policy, config.hidden_sizes,
                                                 config.activation, torso=config.torso)
        critic = networks.make_continuous_network(spec, "critic", config.hidden_sizes,
                                                  config.activation,
                                                  num_critics=config.num_critics,
                                                  torso=config.torso)
        return Networks(actor=actor, critic=critic)

    return box_agents.setup(config, make_networks,
                            agent="an actor-critic for continuous actions (ddpg, td3, sac)")


def sample_action(actor_params: Params, obs: jax.Array, key: PRNGKey,
                  setup: Setup) -> tuple[jax.Array, jax.Array]:
    """The actor's action for observations `[..., *obs_shape]`, and its log-probability.

    Deterministic: `(mu(s), 0)`; gaussian: a reparameterised squashed sample and its
    log-probability (`continuous.squashed_sample`). Both `[..., A]` and `[...]`.
    """
    out = setup.network.actor.apply(actor_params, obs)
    if setup.config.policy == "deterministic":
        return out, jnp.zeros(out.shape[:-1], out.dtype)
    return continuous.squashed_sample(*out, key, *continuous.bounds(setup.spec))


def act(params: Params, obs: jax.Array, key: PRNGKey, setup: Setup) -> jax.Array:
    """The acting policy's action for one observation (before exploration noise)."""
    return sample_action(params["actor"], obs, key, setup)[0]


def greedy_act(params: Params, obs: jax.Array, key: PRNGKey, setup: Setup) -> jax.Array:
    """Evaluation: `mu(s)`, or the squashed mean of a gaussian policy; `key` is unused."""
    del key
    out = setup.network.actor.apply(params["actor"], obs)
    if setup.config.policy == "deterministic":
        return out
    return continuous.squashed_mode(out[0], *continuous.bounds(setup.spec))


def optimizer(hparams: HParams, config: Config) -> optim.PartOptimizer:
    """One Adam per group: critics and temperature at `learning_rate`, the actor at its own."""
    critic = box_agents.make_optimizer(hparams, config)
    txs = {"actor": box_agents.make_optimizer(hparams, config, hparams.actor_learning_rate),
           "critic": critic}
    if config.policy == "gaussian":
        txs["log_alpha"] = critic
    return optim.PartOptimizer(txs)


def init(key: PRNGKey, setup: Setup, hparams: HParams) -> State:
    """Fresh actor and critics (targets copies), alpha at its initial value, empty buffer."""
    config = setup.config
    actor_key, critic_key, env_key = jax.random.split(key, 3)
    params = {"actor": setup.network.actor.init(actor_key),
              "critic": setup.network.critic.init(critic_key)}
    if config.policy == "gaussian":
        params["log_alpha"] = jnp.log(hparams.alpha)
    return box_agents.init_state(env_key, setup, params, optimizer(hparams, config))


def temperature(params: Params, hparams: HParams, setup: Setup) -> jax.Array:
    """The entropy temperature alpha (0 for a deterministic policy)."""
    if setup.config.policy != "gaussian":
        return jnp.float32(0.0)
    if setup.config.autotune_alpha:
        return jnp.exp(params["log_alpha"])
    return hparams.alpha


def critic_target(state: State, steps: off_policy.NStep, key: PRNGKey, hparams: HParams,
                  setup: Setup) -> jax.Array:
    """`r + discount * (min_i Q'_i(s', a') - alpha log pi(a'|s'))`, `[B]`.

    `a'` comes from the target actor (deterministic, smoothed if `target_smoothing`) or is
    sampled from the current actor (gaussian, as in SAC).
    """
    gaussian = setup.config.policy == "gaussian"
    actor_params = state.params["actor"] if gaussian else state.target_params["actor"]
    sample_key, smooth_key = jax.random.split(key)
    next_action, next_log_prob = sample_action(actor_params, steps.next_obs, sample_key, setup)
    if setup.config.target_smoothing:
        next_action = continuous.smoothed_target_action(
            next_action, smooth_key, hparams.target_noise, hparams.target_noise_clip,
            *continuous.bounds(setup.spec))
    next_q = setup.network.critic.apply(state.target_params["critic"], steps.next_obs,
                                        next_action).min(axis=0)
    soft = next_q - temperature(state.params, hparams, setup) * next_log_prob
    return steps.reward + steps.discount * soft


def critic_loss(critic_params: Params, obs: jax.Array, action: jax.Array, target: jax.Array,
                setup: Setup):
    """Sum over critics of the mean half squared error to `target [B]`; `(loss, q [C, B])`."""
    q = setup.network.critic.apply(critic_params, obs, action)
    return jnp.sum(jnp.mean(0.5 * (q - target[None]) ** 2, axis=1)), q


def actor_loss(actor_params: Params, params: Params, obs: jax.Array, key: PRNGKey,
               hparams: HParams, setup: Setup):
    """`E[alpha log pi(a|s) - Q(s, a)]`, `a` from the actor (pathwise through the critic).

    Deterministic: `-Q_1(s, mu(s))` (DDPG; TD3 uses the first critic). Gaussian: the
    minimum over critics with the entropy term (SAC). Returns `(loss, log_prob [B])`.
    """
    action, log_prob = sample_action(actor_params, obs, key, setup)
    q = setup.network.critic.apply(params["critic"], obs, action)
    q = q.min(axis=0) if setup.config.policy == "gaussian" else q[0]
    alpha = jax.lax.stop_gradient(temperature(params, hparams, setup))
    return jnp.mean(alpha * log_prob - q), log_prob


def alpha_loss(log_alpha: jax.Array, log_prob: jax.Array, hparams: HParams,
               spec_dim: int) -> jax.Array:
    """SAC's temperature loss `-log_alpha * E[log pi + target_entropy]` (Haarnoja 2018b, eq. 18)."""
    target_entropy = -hparams.target_entropy_scale * spec_dim
    return -log_alpha * jnp.mean(jax.lax.stop_gradient(log_prob) + target_entropy)


def update(state: State, sample: Sample, key: PRNGKey, hparams: HParams, setup: Setup):
    """One critic step; every `policy_delay` critic steps an actor, temperature and target step.

    Returns:
      `(state, metrics)`: critic and actor losses, mean Q of the replayed actions, alpha,
      the policy's entropy estimate, the critic's gradient norm, skipped updates.
    """
    config = setup.config
    tx = optimizer(hparams, config)
    steps = off_policy.n_step(sample.items, hparams.gamma)
    target_key, actor_key = jax.random.split(key)
    target = critic_target(state, steps, target_key, hparams, setup)
    (c_loss, q), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        state.params["critic"], steps.obs, steps.action, target, setup)
    params, opt_state = tx.step(state.params, state.opt_state, "critic", c_grads)

    delayed = state.step % config.policy_delay == 0
    (a_loss, log_prob), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        params["actor"], params, steps.obs, actor_key, hparams, setup)
    params, opt_state = tx.step(params, opt_state, "actor", a_grads, apply=delayed)
    if config.policy == "gaussian" and config.autotune_alpha:
        t_grad = jax.grad(alpha_loss)(params["log_alpha"], log_prob, hparams,
                                      setup.spec.action_dim)
        params, opt_state = tx.step(params, opt_state, "log_alpha", t_grad, apply=delayed)
    moved = off_policy.update_target(params, state.target_params,
                                     state.step // config.policy_delay,
                                     config.target_update_period, hparams.tau)
    target_params = jax.tree.map(lambda new, old: jnp.where(delayed, new, old), moved,
                                 state.target_params)
    state = state.replace(params=params, opt_state=opt_state, target_params=target_params,
                          step=state.step + 1)
    return state, {"loss/critic": c_loss, "loss/actor": a_loss, "q/taken": q.mean(),
                   "alpha": temperature(params, hparams, setup),
                   "policy/entropy": -log_prob.mean(), "opt/grad_norm": optax.tree.norm(c_grads),
                   "opt/nonfinite_skipped": tx.skipped(opt_state)}


def collect_step(state: State, key: PRNGKey, hparams: HParams, setup: Setup):
    """One exploring step of every env copy, stored (`box_agents.collect_step` with `act`)."""
    return box_agents.collect_step(state, key, hparams, setup,
                                   lambda params, obs, k: act(params, obs, k, setup))


def iteration(state: State, key: PRNGKey, hparams: HParams, setup: Setup):
    """`rollout_len` exploring steps of every env copy, learning by `update`."""
    return box_agents.iteration(state, key, hparams, setup, collect_step, update)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TD3Config(Config):
    """TD3: DDPG with twin critics, target policy smoothing and delayed actor updates.

    Fujimoto et al. 2018, "Addressing Function Approximation Error in Actor-Critic
    Methods": DDPG with `num_critics` 2, `target_smoothing` on and `policy_delay` 2.
    """

    num_critics: int = 2
    policy_delay: int = 2
    target_smoothing: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class SACConfig(Config):
    """SAC: a squashed-Gaussian actor, twin critics and a tuned entropy temperature.

    Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications": the policy's own
    sampling explores, so `exploration_noise` is `none`.
    """

    policy: str = "gaussian"
    num_critics: int = 2
    exploration_noise: str = "none"


AGENT = Agent(name="ddpg", Config=Config, HParams=HParams, setup=setup, init=init,
              iteration=iteration, greedy_act=greedy_act, update=update)
TD3_AGENT = AGENT.variant("td3", config=TD3Config)
SAC_AGENT = AGENT.variant("sac", config=SACConfig)
