"""Imitation learning: behaviour cloning, DAgger, and adversarial imitation (GAIL, AIRL).

No agent here learns from the env's reward; each one learns from an expert, either a
demonstrations file (`jaxrl.demos`, `Config.demos`) or a trained run's policy queried
inside the jitted run (`Config.expert`, a run folder). Datasets and experts are loaded by
`setup`, once, outside any trace, and closed over in `Setup.extras`.

* `bc`: behaviour cloning (Pomerleau 1991): maximum likelihood of the expert's actions
  (cross-entropy for discrete actions, Gaussian log-likelihood or squared error of the
  mean for continuous ones), minibatches drawn from the first `demo_episodes` episodes
  (a traced hyperparameter, so a `vmap` sweeps dataset sizes in one compile). Each
  iteration takes `gradient_steps` steps, then plays `rollout_len` greedy steps in each
  env copy, so `episode/return` reports how the clone does.
* `dagger`: DAgger (Ross, Gordon and Bagnell 2011, algorithm 3.1): the env is driven by
  the expert with probability `beta_i = beta_init * beta_decay ** i` per step (iteration
  `i` from 0) and by the learner otherwise; the expert labels every visited state; the
  labels are aggregated in a fixed-capacity pytree dataset (a ring over the oldest rows,
  `aggregate`), optionally seeded with demonstrations; the learner is then trained on
  the aggregate as in `bc`. Labels are counted against `label_budget`.
* `gail`: Ho and Ermon 2016: a discriminator `D(s, a)` is trained to tell expert pairs
  from the policy's (logistic loss, `discriminator_loss`), and PPO (`jaxrl.agents.ppo`)
  maximises `-log(1 - D(s, a))`.
* `airl`: Fu, Luo and Levine 2018: the discriminator's logit is
  `f(s, a, s') - log pi(a|s)` with `f = g(s) + gamma h(s') - h(s)` (`airl_f`): `g` is a
  state-only reward and `h` a shaping potential, so `g` transfers to a fresh learner
  (`learned_reward`); PPO maximises the logit `f - log pi` (or, `reward = "softplus"`,
  `-log(1 - D)` as GAIL does: where the agent can end the episode, a reward that is often
  negative teaches it to end it early).

`gradient_reversal` is the building block of third-person imitation (Stadie et al. 2017);
the third-person agent itself is not written yet.

Both adversarial agents are PPO with a discriminator add-on (`discriminator`): its
`transform` takes `disc_steps` Adam steps on the rollout against as many expert rows,
then replaces the rollout's rewards by the discriminator's, so the env's reward never
reaches the learner; it is only logged (`episode/return`, `{name}/env_reward_mean`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import actor_critic, demos as demos_lib, networks, optim, rollout, sparse
from jaxrl import config as cfg
from jaxrl.agent import Addon, Agent, BaseConfig, Setup, make_env
from jaxrl.agents import ppo
from jaxrl.config import ConfigError, hparam
from jaxrl.types import Params, PRNGKey, Transition

CONTINUOUS_LOSSES = ("nll", "mse")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sources:
    """Where an imitation learner's expert data comes from: the fields every imitation
    config shares (each subclasses it before its base config).

    Attributes:
      demos: a demonstrations file (`jaxrl demos RUN_DIR --out FILE.npz`).
      expert: an expert's run folder (any agent's newest checkpoint). DAgger queries it;
        the others, without `demos`, record `expert_episodes` greedy episodes from it at
        setup.
      expert_seed: which of the expert run's seeds acts.
      expert_episodes: episodes recorded from `expert` when `demos` is not given.
    """

    demos: str = ""
    expert: str = ""
    expert_seed: int = 0
    expert_episodes: int = 16

    def __post_init__(self):
        super().__post_init__()
        for name in ("demos", "expert"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a path (a string), got "
                                  f"{getattr(self, name)!r}")
        cfg.check_int("expert_seed", self.expert_seed, zero=True)
        cfg.check_int("expert_episodes", self.expert_episodes)
        if self.normalize_obs:
            raise ConfigError("normalize_obs must be false for imitation: demonstrations "
                              "hold raw observations")


def load_expert(config: Sources) -> demos_lib.Expert:
    """`config.expert`'s policy (`jaxrl.demos.load_expert`), trained on `config.env`."""
    from jaxrl.agents import REGISTRY

    expert = demos_lib.load_expert(config.expert, REGISTRY, expert_seed=config.expert_seed)
    if expert.env != config.env:
        raise ConfigError(f"expert {config.expert!r} was trained on {expert.env!r}, not on env "
                          f"{config.env!r}")
    return expert


def load_demos(config: Sources, spec: Any) -> demos_lib.Demos:
    """`config.demos` checked against `config.env` and `spec` or, without it,
    `expert_episodes` episodes recorded from `config.expert`; as device arrays."""
    if config.demos:
        return demos_lib.as_jax(demos_lib.load(config.demos, env=config.env, spec=spec))
    if config.expert:
        return demos_lib.as_jax(demos_lib.record(load_expert(config), config.expert_episodes))
    raise ConfigError("demos is required for imitation agents: --demos FILE.npz (record one "
                      "with `jaxrl demos RUN_DIR`) or --expert RUN_DIR")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CloneConfig(Sources, BaseConfig):
    """Behaviour cloning from demonstrations (discrete or continuous actions).

    The fields not listed are `Sources`' and `jaxrl.agent.BaseConfig`'s; `num_envs *
    rollout_len` is the greedy evaluation play per iteration.

    Attributes:
      gradient_steps: minibatch steps on the dataset per iteration.
      minibatch_size: rows per minibatch, drawn uniformly with replacement.
      continuous_loss: `nll` (Gaussian log-likelihood) or `mse` (squared error of the
        mean), for continuous actions.
    """

    num_envs: int = 8
    rollout_len: int = 64
    total_timesteps: int = 8 * 64 * 40
    gradient_steps: int = 50
    minibatch_size: int = 64
    continuous_loss: str = "nll"

    def __post_init__(self):
        super().__post_init__()
        cfg.check_positive_int(self, ("gradient_steps", "minibatch_size"))
        cfg.check_choice("continuous_loss", self.continuous_loss, CONTINUOUS_LOSSES)


@struct.dataclass
class CloneHParams(cfg.HParamsBase):
    """Attributes:
      learning_rate: Adam step size.
      max_grad_norm: threshold of global gradient-norm clipping.
      demo_episodes: learn from the first this many demonstration episodes (0: all);
        traced, so a `vmap` over it sweeps dataset sizes in one compile.
    """

    learning_rate: jax.Array = hparam(1e-3, low=0.0, low_open=True)
    max_grad_norm: jax.Array = hparam(10.0, low=0.0, low_open=True)
    demo_episodes: jax.Array = hparam(0.0, low=0.0)


@struct.dataclass
class CloneState:
    """Training state of a cloning learner, for one seed."""

    params: Params
    opt_state: optax.OptState
    env_state: Any  # gymnax state, leading axis N
    obs: jax.Array  # [N, *obs_shape]
    step: jax.Array  # int32 scalar: gradient steps taken


@struct.dataclass
class Labelled:
    """A batch of states with the expert's actions: obs `[B, *obs_shape]`, action `[B, ...]`."""

    obs: jax.Array
    action: jax.Array


def optimizer(hparams: CloneHParams) -> optax.GradientTransformation:
    """Adam (eps 1e-5) after global-norm clipping, both traced from `hparams`."""
    return optim.make_optimizer("adam", hparams.learning_rate, hparams.max_grad_norm, None)


def _network(config: Any, spec: Any) -> networks.Network:
    return networks.make_actor_critic(spec, config.hidden_sizes, config.activation,
                                      torso=config.torso)


def clone_setup(config: CloneConfig) -> Setup:
    """The env, the policy network and the demonstrations (`extras["demos"]`), once."""
    env, env_params, spec = make_env(config.env)
    return Setup(config=config, env=env, env_params=env_params, spec=spec,
                 network=_network(config, spec),
                 extras={"demos": load_demos(config, spec)})


def init_learner(key: PRNGKey, setup: Setup, hparams: Any) -> CloneState:
    """Fresh policy parameters, optimizer state and `num_envs` reset env copies."""
    params_key, env_key = jax.random.split(key)
    params = setup.network.init(params_key)
    env_state, obs = rollout.reset_envs(setup.env, setup.env_params, env_key,
                                        setup.config.num_envs)
    return CloneState(params=params, opt_state=optimizer(hparams).init(params),
                      env_state=env_state, obs=obs, step=jnp.int32(0))


greedy_act = actor_critic.greedy_act


def clone_loss(params: Params, batch: Labelled, hparams: Any, setup: Setup):
    """Behaviour-cloning loss on a batch (the mean over its rows).

    Discrete: cross-entropy `-log softmax(logits)[a]`; continuous: the Gaussian negative
    log-likelihood `-log N(a; mu, sigma)` summed over action dimensions (`nll`), or
    `sum_j (mu_j - a_j)^2` (`mse`).

    Args:
      batch: `Labelled` with leaves `[B, ...]`.

    Returns:
      `(loss, {"loss/bc": loss, "bc/accuracy" or "bc/mse": ...})`.
    """
    del hparams
    policy_params, _ = actor_critic.heads(params, batch.obs, setup)
    if setup.spec.discrete:
        per_row = optax.softmax_cross_entropy_with_integer_labels(policy_params, batch.action)
        extra = {"bc/accuracy": jnp.mean(jnp.argmax(policy_params, -1) == batch.action)}
    else:
        mean = policy_params[0]
        sq = jnp.sum(jnp.square(mean - batch.action), axis=-1)
        extra = {"bc/mse": sq.mean()}
        if setup.config.continuous_loss == "mse":
            per_row = sq
        else:
            per_row = -networks.distribution(policy_params, False).log_prob(batch.action)
    total = per_row.mean()
    return total, {"loss/bc": total, **extra}


def clone_update(state: Any, batch: Labelled, hparams: Any, setup: Setup):
    """One gradient step of `clone_loss`: `(state, metrics)`."""
    return optim.gradient_step(clone_loss, state, batch, optimizer(hparams), hparams, setup)


def sample_rows(key: PRNGKey, count: jax.Array, batch_size: int) -> jax.Array:
    """`[batch_size]` int32 indices uniform over rows `0 .. count-1` (`count` traced, >= 1)."""
    count = jnp.maximum(count, 1)
    u = jax.random.uniform(key, (batch_size,))
    return jnp.minimum((u * count).astype(jnp.int32), count - 1)


def demo_rows(episode: jax.Array, demo_episodes: jax.Array) -> jax.Array:
    """Rows of the first `demo_episodes` episodes (all rows for 0): int32 scalar.

    Args:
      episode: `[D]` episode ids, episode-major (so those rows are a prefix).
    """
    first = jnp.sum(episode < demo_episodes).astype(jnp.int32)
    return jnp.where(demo_episodes > 0, first, episode.shape[0]).astype(jnp.int32)


def fit(state: Any, data: Labelled, count: jax.Array, key: PRNGKey, hparams: Any,
        setup: Setup):
    """`gradient_steps` minibatch steps of `clone_loss` on the first `count` rows of `data`.

    Returns:
      `(state, metrics)`, metrics averaged over the steps.
    """
    config = setup.config

    def step(state, step_key):
        idx = sample_rows(step_key, count, config.minibatch_size)
        return clone_update(state, jax.tree.map(lambda x: x[idx], data), hparams, setup)

    state, metrics = jax.lax.scan(step, state,
                                  jax.random.split(key, config.gradient_steps))
    return state, jax.tree.map(jnp.mean, metrics)


def play(state: Any, act: Any, params: Any, key: PRNGKey, setup: Setup):
    """`rollout_len` steps of `act(params, obs, key)` in every env copy.

    Returns:
      `(state, traj [T, N], episodes)` with the envs advanced.
    """
    run = rollout.make_rollout(setup.env, setup.env_params, act, setup.config.rollout_len)
    env_state, obs, traj, episodes = run(params, state.env_state, state.obs, key)
    return state.replace(env_state=env_state, obs=obs), traj, episodes


def clone_iteration(state: CloneState, key: PRNGKey, hparams: CloneHParams, setup: Setup):
    """`gradient_steps` cloning steps on the demonstrations, then greedy play."""
    learn_key, play_key = jax.random.split(key)
    data = setup.extras["demos"]
    count = demo_rows(data.episode, hparams.demo_episodes)
    state, metrics = fit(state, Labelled(obs=data.obs, action=data.action), count,
                         learn_key, hparams, setup)
    state, _, episodes = play(state, functools.partial(greedy_act, setup=setup),
                              state.params, play_key, setup)
    return state, {**metrics, "bc/dataset_size": count.astype(jnp.float32),
                   **rollout.episode_metrics(episodes)}


BC_AGENT = Agent(name="bc", Config=CloneConfig, HParams=CloneHParams, setup=clone_setup,
                 init=init_learner, iteration=clone_iteration, greedy_act=greedy_act,
                 loss=clone_loss, update=clone_update)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DAggerConfig(CloneConfig):
    """DAgger: the learner drives, an expert run labels what it visits, aggregate, retrain.

    The fields not listed are `CloneConfig`'s; `expert` is required, `demos` optional
    (it seeds the aggregate). Each iteration collects `rollout_len` steps in `num_envs`
    copies under the beta-mixed policy.

    Attributes:
      capacity: rows the aggregate holds; the oldest are overwritten past it.
      label_budget: expert labels allowed in all, demonstrations included (0: no limit);
        states visited after it is spent are not labelled or added.
    """

    capacity: int = 50_000
    label_budget: int = 0

    def __post_init__(self):
        super().__post_init__()
        cfg.check_int("capacity", self.capacity)
        cfg.check_int("label_budget", self.label_budget, zero=True)
        if self.capacity < self.steps_per_iteration:
            raise ConfigError(f"capacity ({self.capacity}) must be at least num_envs * "
                              f"rollout_len ({self.steps_per_iteration})")


@struct.dataclass
class DAggerHParams(CloneHParams):
    """Attributes:
      beta_init: probability the expert acts in iteration 0 (Ross et al.'s `beta_1`).
      beta_decay: `beta_i = beta_init * beta_decay ** i` (their `p`; 0: the expert acts
        only in iteration 0).
    """

    beta_init: jax.Array = hparam(1.0, low=0.0, high=1.0)
    beta_decay: jax.Array = hparam(0.5, low=0.0, high=1.0)


@struct.dataclass
class Aggregate:
    """A fixed-capacity dataset of expert-labelled states: a ring over the oldest rows.

    Attributes:
      obs: [C, *obs_shape]; action: [C, ...] the expert's labels.
      size: int32, valid rows (rows `0 .. size-1` once written in order; all `C` when full).
      cursor: int32, the next row written.
      labels: int32, expert labels taken in all (demonstrations included).
    """

    obs: jax.Array
    action: jax.Array
    size: jax.Array
    cursor: jax.Array
    labels: jax.Array


@struct.dataclass
class DAggerState(CloneState):
    """`CloneState` plus the aggregate and the iteration count (for the beta schedule)."""

    data: Aggregate
    iteration: jax.Array  # int32 scalar: iterations done (the beta schedule's i)


def aggregate(data: Aggregate, obs: jax.Array, action: jax.Array,
              num_new: jax.Array) -> Aggregate:
    """Write the first `num_new` rows of a batch at the cursor, wrapping around.

    Args:
      obs: `[B, *obs_shape]`, action: `[B, ...]`; `B` at most the capacity.
      num_new: int32 scalar in `[0, B]`: rows to add (the rest are dropped).

    Returns:
      The aggregate with `size = min(size + num_new, C)`, the cursor moved by `num_new`
      modulo `C`, and `num_new` more labels counted.
    """
    capacity = data.obs.shape[0]
    chex.assert_equal_shape_prefix([obs, action], 1)
    rows = jnp.arange(obs.shape[0])
    # Rows past num_new go to index C, which `mode="drop"` discards.
    idx = jnp.where(rows < num_new, (data.cursor + rows) % capacity, capacity)
    return Aggregate(obs=data.obs.at[idx].set(obs, mode="drop"),
                     action=data.action.at[idx].set(action.astype(data.action.dtype),
                                                    mode="drop"),
                     size=jnp.minimum(data.size + num_new, capacity).astype(jnp.int32),
                     cursor=((data.cursor + num_new) % capacity).astype(jnp.int32),
                     labels=(data.labels + num_new).astype(jnp.int32))


def beta_schedule(iteration: jax.Array, beta_init: jax.Array,
                  beta_decay: jax.Array) -> jax.Array:
    """`beta_i = beta_init * beta_decay ** i`: the expert's share of control in iteration
    `i` (Ross et al. 2011, section 3: `beta_i = p^(i-1)` with their `i` from 1)."""
    return beta_init * jnp.power(beta_decay, iteration.astype(jnp.float32))


def dagger_setup(config: DAggerConfig) -> Setup:
    """The env, the network, the expert run's policy and, if given, demos."""
    if not config.expert:
        raise ConfigError("expert is required for dagger: --expert RUN_DIR (a trained run)")
    return setup_with_expert(config, load_expert(config))


def setup_with_expert(config: DAggerConfig, expert: demos_lib.Expert) -> Setup:
    """`dagger_setup` with any `Expert` (an oracle, a scripted policy) in place of a run
    folder's: `runner.make_train(DAGGER_AGENT, config, setup_with_expert(config, e))`."""
    if expert.env != config.env:
        raise ConfigError(f"the expert acts on {expert.env!r}, not on env {config.env!r}")
    env, env_params, spec = make_env(config.env)
    extras = {"expert": expert}
    if config.demos:
        data = load_demos(config, spec)
        if data.size > config.capacity:
            raise ConfigError(f"capacity ({config.capacity}) must hold the {data.size} rows "
                              f"of demos {config.demos!r}")
        extras["demos"] = data
    return Setup(config=config, env=env, env_params=env_params, spec=spec,
                 network=_network(config, spec), extras=extras)


def dagger_init(key: PRNGKey, setup: Setup, hparams: DAggerHParams) -> DAggerState:
    """`init_learner` plus the aggregate, seeded with the first `demo_episodes` episodes."""
    state = init_learner(key, setup, hparams)
    spec, capacity = setup.spec, setup.config.capacity
    data = Aggregate(
        obs=jnp.zeros((capacity,) + spec.obs_shape, jnp.float32),
        action=jnp.zeros((capacity,) + spec.action_shape,
                         jnp.int32 if spec.discrete else jnp.float32),
        size=jnp.int32(0), cursor=jnp.int32(0), labels=jnp.int32(0))
    if "demos" in setup.extras:
        demos = setup.extras["demos"]
        data = aggregate(data, demos.obs, demos.action,
                         demo_rows(demos.episode, hparams.demo_episodes))
    return actor_critic.extend_state(state, DAggerState, data=data, iteration=jnp.int32(0))


def mixed_act(params: tuple, obs: jax.Array, key: PRNGKey, setup: Setup) -> jax.Array:
    """The expert's action with probability `beta`, else the learner's greedy one.

    Args:
      params: `(learner_params, beta)`.
    """
    learner, beta = params
    expert_key, coin_key = jax.random.split(key)
    expert = setup.extras["expert"].act(obs, expert_key)
    own = greedy_act(learner, obs, None, setup)
    return jnp.where(jax.random.uniform(coin_key) < beta, expert, own.astype(expert.dtype))


def dagger_iteration(state: DAggerState, key: PRNGKey, hparams: DAggerHParams,
                     setup: Setup):
    """Roll out the beta-mixture, label the visited states, aggregate, retrain.

    Metrics: `dagger/beta`, `dagger/expert_labels` (all labels so far),
    `dagger/dataset_size`, the cloning metrics, and `episode/*` of the mixed rollout.
    """
    config = setup.config
    play_key, label_key, learn_key = jax.random.split(key, 3)
    beta = beta_schedule(state.iteration, hparams.beta_init, hparams.beta_decay)
    state, traj, episodes = play(state, functools.partial(mixed_act, setup=setup),
                                 (state.params, beta), play_key, setup)
    obs = traj.obs.reshape((-1,) + traj.obs.shape[2:])  # [T*N, ...]
    labels = jax.vmap(setup.extras["expert"].act)(
        obs, jax.random.split(label_key, obs.shape[0]))
    num_new = jnp.int32(obs.shape[0])
    if config.label_budget:
        num_new = jnp.clip(config.label_budget - state.data.labels, 0, num_new)
    data = aggregate(state.data, obs, labels, num_new)
    state = state.replace(data=data, iteration=state.iteration + 1)
    state, metrics = fit(state, Labelled(obs=data.obs, action=data.action), data.size,
                         learn_key, hparams, setup)
    return state, {**metrics, "dagger/beta": beta,
                   "dagger/expert_labels": data.labels.astype(jnp.float32),
                   "dagger/dataset_size": data.size.astype(jnp.float32),
                   **rollout.episode_metrics(episodes)}


DAGGER_AGENT = Agent(name="dagger", Config=DAggerConfig, HParams=DAggerHParams,
                     setup=dagger_setup, init=dagger_init, iteration=dagger_iteration,
                     greedy_act=greedy_act, loss=clone_loss, update=clone_update)


KINDS = ("gail", "airl")
POLICY_REWARDS = ("softplus", "logit", "f")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdversarialConfig(Sources, ppo.Config):
    """GAIL: PPO on a discriminator's reward, -log(1 - D(s, a)); never the env's reward.

    The fields not listed are `Sources`' and `jaxrl.agents.ppo.Config`'s.

    Attributes:
      disc_hidden_sizes: hidden layers of the discriminator's networks.
      disc_learning_rate: Adam step size of the discriminator.
      disc_steps: discriminator steps per iteration, each on the whole rollout against as
        many expert rows.
      reward: what PPO maximises from the discriminator's logit `l`: `softplus`
        (`-log(1 - D)`, Ho and Ermon's; always positive) or `logit` (`log D - log(1 - D)`,
        Fu et al.'s). In an env where the agent can end the episode the sign matters
        (Kostrikov et al. 2019): a reward that is often negative teaches it to end
        episodes early, so AIRL on such an env needs `softplus`. `f` (AIRL only): the
        logit plus `log pi`, i.e. `f(s, a, s')` without the entropy term that pays a
        continuous policy for widening.
    """

    kind = "gail"
    disc_hidden_sizes: tuple[int, ...] = (64, 64)
    disc_learning_rate: float = 3e-4
    disc_steps: int = 4
    reward: str = "softplus"

    def __post_init__(self):
        super().__post_init__()
        cfg.check_choice("reward", self.reward, POLICY_REWARDS)
        if self.reward == "f" and self.kind != "airl":
            raise ConfigError("reward f is AIRL's f(s, a, s'); gail allows softplus, logit")
        cfg.check_sizes("disc_hidden_sizes", self.disc_hidden_sizes)
        lr = cfg.check_real("disc_learning_rate", self.disc_learning_rate)
        if lr <= 0:
            raise ConfigError(f"disc_learning_rate must be in (0, inf), got {lr!r}")
        cfg.check_int("disc_steps", self.disc_steps)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AIRLConfig(AdversarialConfig):
    """AIRL: PPO on f(s,a,s') - log pi(a|s), f = g(s) + gamma h(s') - h(s); g transfers.

    The fields are `AdversarialConfig`'s; `reward` defaults to the paper's `logit`.
    """

    kind = "airl"
    reward: str = "logit"


def _head(config: Any) -> sparse.Head:
    return sparse.Head(1, tuple(config.disc_hidden_sizes), "tanh")


def disc_inputs(obs: jax.Array, action: jax.Array, spec: Any) -> jax.Array:
    """`[B, obs_dim + action_dim]`: flattened observations and one-hot (discrete) or
    box-clipped (continuous: the env sees only the clipped action) actions."""
    flat = obs.reshape(obs.shape[0], -1)
    if spec.discrete:
        act = jax.nn.one_hot(action, spec.num_actions)
    else:
        low, high = jnp.asarray(spec.action_low)[None], jnp.asarray(spec.action_high)[None]
        act = jnp.clip(action.reshape(action.shape[0], -1), low, high)
    return jnp.concatenate([flat, act], axis=-1)


def discriminator_loss(logit_expert: jax.Array, logit_policy: jax.Array) -> jax.Array:
    """Logistic loss of a discriminator `D = sigmoid(logit)`, expert labelled 1.

    `-mean log D(expert) - mean log(1 - D(policy))` (Ho and Ermon 2016, eq. 17, with
    their D the probability of the *policy*, i.e. `1 - D` here), written with
    `-log sigmoid(l) = softplus(-l)` and `-log(1 - sigmoid(l)) = softplus(l)`.

    Args:
      logit_expert: `[B]` logits on expert pairs; logit_policy: `[B']` on the policy's.
    """
    chex.assert_rank([logit_expert, logit_policy], 1)
    return jnp.mean(jax.nn.softplus(-logit_expert)) + jnp.mean(jax.nn.softplus(logit_policy))


def airl_f(g_tm1: jax.Array, h_tm1: jax.Array, h_t: jax.Array, terminated_t: jax.Array,
           gamma: jax.Array) -> jax.Array:
    """AIRL's `f(s, a, s') = g(s) + gamma h(s') - h(s)`, `h(s') = 0` at termination.

    Fu et al. 2018, eq. 4 (with a state-only `g`, section 5); a terminal state is
    absorbing, so its potential is 0, as in potential-based shaping.

    Args:
      g_tm1, h_tm1: `[B]` reward and potential of the state the action was taken from.
      h_t: `[B]` potential of the state it led to; terminated_t: `[B]` bool.
    """
    chex.assert_rank([g_tm1, h_tm1, h_t, terminated_t], 1)
    return g_tm1 + gamma * jnp.where(terminated_t, 0.0, h_t) - h_tm1


@struct.dataclass
class DiscState:
    """The discriminator add-on's state (`state.addons[kind]`).

    Attributes:
      params: `{"d": ...}` (GAIL) or `{"g": ..., "h": ...}` (AIRL).
      opt_state, step: its Adam state and step count.
      policy_params: AIRL: the policy's parameters at collection time (written by the
        iteration before each rollout, for `log pi`); GAIL: None.
      gamma: float32, the agent's discount (AIRL's shaping), written the same way.
      tally: logged means since the last iteration.
    """

    params: Params
    opt_state: optax.OptState
    step: jax.Array
    policy_params: Any
    gamma: jax.Array
    tally: sparse.Tally


def disc_logits(params: Params, batch: Transition, policy_params: Any, gamma: jax.Array,
                setup: Setup) -> jax.Array:
    """The discriminator's logits `[B]` on a flat batch of transitions (see module doc)."""
    config = setup.config
    head = _head(config)
    if config.kind == "gail":
        return head.apply(params["d"], disc_inputs(batch.obs, batch.action, setup.spec))[:, 0]
    flat = lambda o: o.reshape(o.shape[0], -1)  # noqa: E731
    g = head.apply(params["g"], flat(batch.obs))[:, 0]
    h_tm1 = head.apply(params["h"], flat(batch.obs))[:, 0]
    h_t = head.apply(params["h"], flat(batch.next_obs))[:, 0]
    f = airl_f(g, h_tm1, h_t, batch.terminated, gamma)
    dist, _ = actor_critic.policy(jax.lax.stop_gradient(policy_params), batch.obs, setup)
    return f - dist.log_prob(batch.action)


def _disc_loss(params: Params, batches: tuple, policy_params: Any, gamma: jax.Array,
               setup: Setup):
    expert, own = batches
    logit_e = disc_logits(params, expert, policy_params, gamma, setup)
    logit_p = disc_logits(params, own, policy_params, gamma, setup)
    total = discriminator_loss(logit_e, logit_p)
    return total, {"loss_disc": total,
                   "expert_accuracy": jnp.mean(logit_e > 0),
                   "policy_accuracy": jnp.mean(logit_p < 0)}


def policy_reward(logit: jax.Array, form: str) -> jax.Array:
    """The reward PPO maximises from the discriminator's logits `[B]`: `softplus`,
    `-log(1 - D) = softplus(logit)` (GAIL's); `logit`, `log D - log(1 - D)` (AIRL's)."""
    return jax.nn.softplus(logit) if form == "softplus" else logit


def _expert_transitions(demos: demos_lib.Demos, key: PRNGKey, size: int) -> Transition:
    idx = sample_rows(key, jnp.int32(demos.size), size)
    return Transition(obs=demos.obs[idx], action=demos.action[idx], reward=demos.reward[idx],
                      terminated=demos.terminated[idx], truncated=demos.truncated[idx],
                      next_obs=demos.next_obs[idx])


TALLY = ("env_reward_mean", "disc_reward_mean", "loss_disc", "expert_accuracy",
         "policy_accuracy")


def _disc_init(key: PRNGKey, setup: Setup) -> DiscState:
    config, spec = setup.config, setup.spec
    head = _head(config)
    obs_dim = math.prod(spec.obs_shape)
    if config.kind == "gail":
        params = {"d": head.init(key, jnp.zeros((1, obs_dim + spec.action_dim)))}
        policy_params = None
    else:
        g_key, h_key, pi_key = jax.random.split(key, 3)
        params = {"g": head.init(g_key, jnp.zeros((1, obs_dim))),
                  "h": head.init(h_key, jnp.zeros((1, obs_dim)))}
        policy_params = setup.network.init(pi_key)
    return DiscState(params=params,
                     opt_state=optax.adam(config.disc_learning_rate).init(params),
                     step=jnp.int32(0), policy_params=policy_params, gamma=jnp.float32(0.99),
                     tally=sparse.empty_tally(TALLY))


def _disc_transform(astate: DiscState, transitions: Transition, key: PRNGKey, setup: Setup):
    config = setup.config
    flat = sparse.flatten_batch(transitions, transitions.reward.ndim)
    size = flat.reward.shape[0]
    keys = jax.random.split(key, config.disc_steps)
    expert = jax.vmap(lambda k: _expert_transitions(setup.extras["demos"], k, size))(keys)

    def one(astate, expert_batch):
        return optim.gradient_step(_disc_loss, astate, (expert_batch, flat),
                                   optax.adam(config.disc_learning_rate),
                                   astate.policy_params, astate.gamma, setup)

    astate, metrics = jax.lax.scan(one, astate, expert)
    metrics = jax.tree.map(lambda m: m[0], metrics)  # before this batch's updates
    logit = disc_logits(astate.params, flat, astate.policy_params, astate.gamma, setup)
    if config.reward == "f":
        dist, _ = actor_critic.policy(astate.policy_params, flat.obs, setup)
        reward = logit + dist.log_prob(flat.action)
    else:
        reward = policy_reward(logit, config.reward)
    tally = sparse.add_to_tally(
        astate.tally, size, env_reward_mean=flat.reward.mean(),
        disc_reward_mean=reward.mean(),
        **{k: metrics[k] for k in ("loss_disc", "expert_accuracy", "policy_accuracy")})
    # The env's reward is replaced, not added to: it never reaches the learner.
    return (transitions.replace(reward=reward.reshape(transitions.reward.shape)),
            astate.replace(tally=tally))


def discriminator(name: str) -> Addon:
    """The discriminator add-on of `gail` / `airl` (its settings are `setup.config`'s)."""
    return Addon(name, init=_disc_init, transform=_disc_transform,
                 after=lambda a, m, k, setup: sparse.report(a, m, k, name=name))


def _adversarial_setup(config: AdversarialConfig) -> Setup:
    inner = actor_critic.setup(config)
    return dataclasses.replace(inner, addons=(discriminator(config.kind),),
                               extras={"demos": load_demos(config, inner.spec)})


def _adversarial_iteration(state: actor_critic.State, key: PRNGKey, hparams: ppo.HParams,
                           setup: Setup):
    """PPO's iteration with the discriminator add-on; first hands the add-on what its hooks
    cannot see (the policy's parameters for AIRL's `log pi`, the discount)."""
    name = setup.config.kind
    astate = state.addons[name]
    astate = astate.replace(gamma=hparams.gamma,
                            policy_params=state.params if name == "airl" else None)
    state, metrics = ppo.iteration(state.replace(addons={**state.addons, name: astate}),
                                   key, hparams, setup)
    astate, metrics = setup.addons[0].after(state.addons[name], metrics, key, setup)
    return state.replace(addons={**state.addons, name: astate}), metrics


GAIL_AGENT = Agent(name="gail", Config=AdversarialConfig, HParams=ppo.HParams,
                   setup=_adversarial_setup, init=ppo.init, iteration=_adversarial_iteration,
                   greedy_act=ppo.greedy_act, loss=ppo.loss, update=ppo.update)
AIRL_AGENT = GAIL_AGENT.variant("airl", config=AIRLConfig)


def airl_g(disc_params: Params, obs: jax.Array, config: AdversarialConfig) -> jax.Array:
    """AIRL's state-only reward `g(s)` `[B]` for observations `[B, *obs_shape]`."""
    return _head(config).apply(disc_params["g"], obs.reshape(obs.shape[0], -1))[:, 0]


def learned_reward(disc_params: Params, config: AdversarialConfig, *, baseline: float = 0.0,
                   name: str = "airl_reward") -> Addon:
    """AIRL's state-only reward `g(s) - baseline` as an add-on replacing any agent's env
    reward (Fu et al. 2018, section 7.1: re-optimising a transferred reward).

    AIRL recovers `g` up to a constant. Where the agent can end the episode, the constant
    decides whether staying alive pays (Kostrikov et al. 2019), so pass a `baseline`: e.g.
    `g`'s minimum over the expert's states (`airl_g`), which makes every expert state's
    reward non-negative.

    Args:
      disc_params: one seed's `DiscState.params` of a trained `airl` run.
      config: that run's `AIRLConfig` (the network's sizes).
      baseline: subtracted from `g`.
    """
    if config.kind != "airl":
        raise ConfigError("learned_reward needs an airl run's discriminator (g is AIRL's)")
    def transform(astate, transitions: Transition, key: PRNGKey, setup: Setup):
        flat = sparse.flatten_batch(transitions, transitions.reward.ndim)
        g = airl_g(disc_params, flat.obs, config) - baseline
        tally = sparse.add_to_tally(astate.tally, g.size,
                                    extrinsic_mean=flat.reward.mean(), intrinsic_mean=g.mean())
        return (transitions.replace(reward=g.reshape(transitions.reward.shape)),
                astate.replace(tally=tally))

    return Addon(name, init=lambda key, setup: sparse.RewardState(
        tally=sparse.empty_tally(("extrinsic_mean", "intrinsic_mean"))),
        transform=transform, after=lambda a, m, k, setup: sparse.report(a, m, k, name=name))





@jax.custom_vjp
def gradient_reversal(features: jax.Array, scale: jax.Array) -> jax.Array:
    """Identity forward; the backward pass multiplies the incoming gradient by `-scale`.

    Ganin and Lempitsky 2015 (the gradient reversal layer), used by Stadie, Abbeel and
    Sutskever 2017 (third-person imitation) between a feature extractor and a domain
    classifier, so that one loss trains the classifier to tell the views apart and the
    features to make them indistinguishable. `scale` gets no gradient.

    Args:
      features: any shape; scale: scalar, the reversal weight (their lambda).
    """
    del scale
    return features


def _reversal_fwd(features, scale):
    return features, scale


def _reversal_bwd(scale, g):
    return -scale * g, jnp.zeros_like(scale)


gradient_reversal.defvjp(_reversal_fwd, _reversal_bwd)


__all__ = ["AIRL_AGENT", "AIRLConfig", "AdversarialConfig", "Aggregate", "BC_AGENT",
           "CloneConfig", "CloneHParams", "DAGGER_AGENT", "DAggerConfig", "DAggerHParams",
           "GAIL_AGENT", "Labelled", "Sources", "aggregate", "airl_f", "airl_g",
           "beta_schedule", "clone_loss", "demo_rows", "disc_inputs", "discriminator",
           "discriminator_loss", "gradient_reversal", "learned_reward", "policy_reward",
           "sample_rows", "setup_with_expert"]
