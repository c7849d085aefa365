"""Imitation agents: the cloning loss and gradient by hand, DAgger's aggregation and beta
schedule, the discriminator objectives against NumPy, the poisoned-reward test, and
compile-once / vmap checks on tiny configs."""

import dataclasses
import os
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jaxrl import demos, envs, runner, testing
from jaxrl.agents import imitation as im
from jaxrl.agents import ppo
from jaxrl.config import ConfigError, stack_hparams
from jaxrl.agent import Setup
from jaxrl.envs.wrappers import Wrapper
from jaxrl.types import Transition

sys.path.insert(0, os.path.dirname(__file__))
import imitation_data  # noqa: E402

TINY = dict(num_envs=2, rollout_len=8, total_timesteps=48, hidden_sizes=(8,))


@pytest.fixture(scope="module")
def files():
    return imitation_data.files()


# ---- behaviour cloning: loss and gradient on a hand-worked batch

def _setup(env_id, **kwargs):
    config = im.CloneConfig(env=env_id, **TINY, **kwargs)
    env, params = envs.make(env_id)
    spec = envs.env_spec(env, params)
    return Setup(config=config, env=None, env_params=None, spec=spec,
                 network=im._network(config, spec))


def _head_grad(grads):
    return np.asarray(grads["params"]["PolicyHead_0"]["Dense_0"]["bias"])


class CloneLossTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_discrete_cross_entropy_and_gradient(self):
        setup = _setup("CartPole-v1")
        params = testing.constant_actor_critic_params(
            setup.network.init(jax.random.key(0)), [0.0, np.log(3.0)], 0.0)
        # pi = [1/4, 3/4] on every state; actions 1, 1, 0.
        batch = im.Labelled(obs=jnp.ones((3, 4)), action=jnp.array([1, 1, 0]))
        loss_fn = self.variant(lambda p, b: im.clone_loss(p, b, None, setup))
        loss, metrics = loss_fn(params, batch)
        expected = -(2 * np.log(0.75) + np.log(0.25)) / 3
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
        np.testing.assert_allclose(metrics["bc/accuracy"], 2 / 3, rtol=1e-6)
        grads = jax.grad(lambda p: loss_fn(p, batch)[0])(params)
        # d/dlogits of the mean cross-entropy: mean over rows of softmax - onehot.
        onehot = np.eye(2)[[1, 1, 0]]
        np.testing.assert_allclose(_head_grad(grads), (np.array([0.25, 0.75]) - onehot).mean(0),
                                   rtol=1e-5, atol=1e-7)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("nll", "nll"), ("mse", "mse"))
    def test_continuous_loss_and_gradient(self, kind):
        setup = _setup("Pendulum-v1", continuous_loss=kind)
        params = testing.constant_actor_critic_params(
            setup.network.init(jax.random.key(0)), [0.5], 0.0)
        log_std = 0.3
        params["params"]["PolicyHead_0"]["log_std"] = jnp.array([log_std])
        a = np.array([[1.5], [0.0], [-0.5]], np.float32)
        batch = im.Labelled(obs=jnp.ones((3, 3)), action=jnp.asarray(a))
        loss_fn = self.variant(lambda p, b: im.clone_loss(p, b, None, setup))
        loss, metrics = loss_fn(params, batch)
        err = 0.5 - a[:, 0]
        sigma2 = np.exp(2 * log_std)
        np.testing.assert_allclose(metrics["bc/mse"], np.mean(err ** 2), rtol=1e-5)
        grads = jax.grad(lambda p: loss_fn(p, batch)[0])(params)
        if kind == "mse":
            np.testing.assert_allclose(loss, np.mean(err ** 2), rtol=1e-5)
            np.testing.assert_allclose(_head_grad(grads), [np.mean(2 * err)], rtol=1e-5)
        else:
            nll = 0.5 * err ** 2 / sigma2 + log_std + 0.5 * np.log(2 * np.pi)
            np.testing.assert_allclose(loss, nll.mean(), rtol=1e-5)
            np.testing.assert_allclose(_head_grad(grads), [np.mean(err / sigma2)], rtol=1e-5)
            np.testing.assert_allclose(grads["params"]["PolicyHead_0"]["log_std"],
                                       [np.mean(1 - err ** 2 / sigma2)], rtol=1e-5)


def test_sample_rows_and_demo_rows_mask_a_prefix():
    idx = np.asarray(im.sample_rows(jax.random.key(0), jnp.int32(7), 2000))
    assert idx.min() == 0 and idx.max() == 6 and len(np.unique(idx)) == 7
    episode = jnp.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    assert [int(im.demo_rows(episode, jnp.float32(k))) for k in (0, 1, 2, 3, 9)] == [9, 3, 5, 9, 9]


# ---- DAgger: aggregation, beta schedule, labels

def _numpy_ring(capacity, batches, budget):
    rows, used = [], 0
    for obs, n in batches:
        take = min(n, budget - used) if budget else n
        rows.extend(obs[:max(take, 0)])
        used += max(take, 0)
    rows = rows[-capacity:] if len(rows) > capacity else rows
    return rows, used


def test_aggregate_fills_wraps_and_counts_like_a_numpy_ring():
    capacity = 5
    data = im.Aggregate(obs=jnp.zeros((capacity, 1)), action=jnp.zeros((capacity,), jnp.int32),
                        size=jnp.int32(0), cursor=jnp.int32(0), labels=jnp.int32(0))
    agg = jax.jit(im.aggregate)
    ids = iter(range(1, 100))
    written = []
    for n in (3, 0, 2, 3, 1):  # 3 rows in a batch of 3, then 0, 2, 3, 1
        obs = np.array([[next(ids)] for _ in range(3)], np.float32)
        data = agg(data, jnp.asarray(obs), jnp.asarray(obs[:, 0], jnp.int32), jnp.int32(n))
        written.extend(obs[:n, 0].tolist())
        assert int(data.size) == min(len(written), capacity)
        assert int(data.cursor) == len(written) % capacity
        assert int(data.labels) == len(written)
        # Row i holds the newest label written at position i of the ring.
        expected = {}
        for pos, v in enumerate(written):
            expected[pos % capacity] = v
        for i, v in expected.items():
            assert float(data.obs[i, 0]) == v and int(data.action[i]) == v


def test_beta_schedule():
    betas = jax.jit(im.beta_schedule)(jnp.arange(4), jnp.float32(0.8), jnp.float32(0.5))
    np.testing.assert_allclose(betas, [0.8, 0.4, 0.2, 0.1], rtol=1e-6)
    np.testing.assert_allclose(im.beta_schedule(jnp.arange(3), 1.0, 0.0), [1, 0, 0])


def scripted_dagger_setup(config, demo_path=None):
    """`dagger_setup` with the scripted expert in place of a run folder's policy."""
    if demo_path:
        config = dataclasses.replace(config, demos=demo_path)
    return im.setup_with_expert(config, imitation_data.scripted_expert())


@pytest.fixture(scope="module")
def scripted_demos(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("demos") / "demos.npz")
    demos.save(path, demos.first_episodes(
        demos.record(imitation_data.scripted_expert(), 1, seed=0), 1))
    return path


@pytest.fixture(scope="module")
def dagger_run(scripted_demos):
    # A budget that runs out in the second iteration: 16 labels, then 4, then none.
    budget = demos.load(scripted_demos).size + 20
    config = im.DAggerConfig(env="CartPole-v1", capacity=2000, label_budget=budget, **TINY)
    setup = scripted_dagger_setup(config, scripted_demos)
    hparams = im.DAggerHParams.create(beta_init=1.0, beta_decay=0.0)
    state, metrics = jax.jit(runner.make_train(im.DAGGER_AGENT, config, setup))(
        jax.random.key(0), hparams)
    return config, setup, state, metrics


def test_dagger_labels_visited_states_with_the_expert(dagger_run, scripted_demos):
    config, setup, state, metrics = dagger_run
    demo = demos.load(scripted_demos)
    per_iter = config.steps_per_iteration
    labels = np.asarray(metrics["dagger/expert_labels"])
    assert per_iter == 16
    np.testing.assert_array_equal(labels, demo.size + np.array([16, 20, 20]))
    np.testing.assert_array_equal(metrics["dagger/dataset_size"], labels)
    np.testing.assert_array_equal(metrics["dagger/beta"], [1.0, 0.0, 0.0])
    data = state.data
    # The demonstrations come first, then the labelled visited states.
    np.testing.assert_array_equal(data.obs[:demo.size], demo.obs)
    n = int(data.size)
    obs = data.obs[demo.size:n]
    expected = jax.vmap(setup.extras["expert"].act)(obs, jax.random.split(jax.random.key(0),
                                                                          obs.shape[0]))
    np.testing.assert_array_equal(data.action[demo.size:n], expected)


# ---- adversarial imitation: objectives against NumPy

class DiscriminatorTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_logistic_loss_matches_numpy(self):
        rng = np.random.default_rng(0)
        le, lp = rng.normal(size=7).astype(np.float32) * 3, rng.normal(size=5).astype(np.float32)
        sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
        expected = -np.mean(np.log(sig(le))) - np.mean(np.log(1 - sig(lp)))
        np.testing.assert_allclose(self.variant(im.discriminator_loss)(le, lp), expected,
                                   rtol=1e-5)
        # GAIL's reward -log(1 - D) and AIRL's log D - log(1 - D).
        np.testing.assert_allclose(im.policy_reward(jnp.asarray(lp), "softplus"),
                                   -np.log(1 - sig(lp)), rtol=1e-5)
        np.testing.assert_allclose(im.policy_reward(jnp.asarray(lp), "logit"),
                                   np.log(sig(lp)) - np.log(1 - sig(lp)), rtol=1e-4, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_airl_f_matches_numpy(self):
        g, h0, h1 = (np.array(x, np.float32) for x in ([1., -2., .5], [.3, .1, -1.], [2., 4., 8.]))
        term = np.array([False, True, False])
        f = self.variant(im.airl_f)(g, h0, h1, term, 0.9)
        np.testing.assert_allclose(f, [1 + 0.9 * 2 - .3, -2 + 0 - .1, .5 + 0.9 * 8 + 1.],
                                   rtol=1e-6)


def test_disc_inputs_one_hot_and_clipped():
    cart = envs.env_spec(*envs.make("CartPole-v1"))
    x = im.disc_inputs(jnp.ones((2, 4)), jnp.array([0, 1]), cart)
    np.testing.assert_array_equal(x[:, 4:], [[1, 0], [0, 1]])
    pend = envs.env_spec(*envs.make("Pendulum-v1"))
    x = im.disc_inputs(jnp.ones((2, 3)), jnp.array([[5.0], [-0.5]]), pend)
    np.testing.assert_array_equal(x[:, 3], [2.0, -0.5])


# ---- the env's reward never reaches the learner

class Poisoned(Wrapper):
    """CartPole whose reward is huge noise: any learner that used it would change."""

    def step(self, key, state, action, params=None):
        obs, state, reward, term, trunc, info = self._env.step(key, state, action, params)
        noise = jax.random.normal(jax.random.fold_in(key, 7)) * 1e6
        return obs, state, reward * 0 + noise, term, trunc, info


POISONED = "CartPole-v1-poisoned-reward-test"


@pytest.fixture(scope="module")
def poisoned_demos(scripted_demos, tmp_path_factory):
    if POISONED not in envs.list_envs():
        envs.register(POISONED, lambda: Poisoned(envs.make("CartPole-v1")[0]))
    d = demos.load(scripted_demos)
    path = str(tmp_path_factory.mktemp("poison") / "demos.npz")
    demos.save(path, d.replace(env=POISONED))
    return path


@pytest.mark.parametrize("agent", [
    im.GAIL_AGENT, pytest.param(im.AIRL_AGENT, marks=pytest.mark.slow)], ids=["gail", "airl"])
def test_poisoned_env_reward_changes_nothing(agent, scripted_demos, poisoned_demos):
    kw = dict(**{**TINY, "total_timesteps": 32}, num_minibatches=2)
    clean = agent.Config(env="CartPole-v1", demos=scripted_demos, **kw)
    poisoned = agent.Config(env=POISONED, demos=poisoned_demos, **kw)
    hparams = ppo.HParams.create()
    out = [jax.jit(runner.make_train(agent, c))(jax.random.key(3), hparams)
           for c in (clean, poisoned)]
    chex.assert_trees_all_equal(out[0][0].params, out[1][0].params)
    chex.assert_trees_all_equal(out[0][0].addons[agent.name].params,
                                out[1][0].addons[agent.name].params)
    # The true reward is only logged, and the poison shows there.
    assert abs(float(out[1][1][f"{agent.name}/env_reward_mean"][-1])) > 1e3
    np.testing.assert_array_equal(out[0][1][f"{agent.name}/env_reward_mean"], 1.0)


@pytest.mark.slow
def test_poison_does_change_plain_ppo(poisoned_demos):
    kw = dict(**{**TINY, "total_timesteps": 32}, num_minibatches=2)
    outs = [jax.jit(runner.make_train(ppo.AGENT, ppo.Config(env=e, **kw)))(
        jax.random.key(3), ppo.HParams.create()) for e in ("CartPole-v1", POISONED)]
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), outs[0][0].params,
                        outs[1][0].params)
    assert max(jax.tree.leaves(diff)) > 1e-3


# ---- compile once, vmap over seeds and dataset sizes, config refusals

@pytest.mark.parametrize("name", ["bc"] + [pytest.param(n, marks=pytest.mark.slow)
                                           for n in ("dagger", "gail", "airl")])
def test_runner_chunk_compiles_once(name, files):
    agent = {"bc": im.BC_AGENT, "dagger": im.DAGGER_AGENT, "gail": im.GAIL_AGENT,
             "airl": im.AIRL_AGENT}[name]
    extra = {"dagger": dict(expert=files["expert"], capacity=2000)}.get(name, {})
    if name in ("gail", "airl"):
        extra = dict(num_minibatches=2)
    config = agent.Config(env="CartPole-v1", demos=files["demos"], **TINY, **extra)
    state, metrics = testing.run_chunks_compiling_once(agent, config, agent.HParams.create(), 2)
    testing.assert_tree_finite(state.params, "params")
    assert np.isfinite(metrics[0]["opt/grad_norm"]).all()


@pytest.mark.slow
def test_bc_vmaps_over_seeds_and_dataset_sizes(files):
    config = im.CloneConfig(env="CartPole-v1", demos=files["demos"], **TINY)
    train = runner.make_train(im.BC_AGENT, config)
    keys = jax.random.split(jax.random.key(0), 2)
    testing.assert_vmap_matches_separate(train, keys, im.CloneHParams.create(), rtol=1e-5,
                                         atol=1e-6)
    sizes = stack_hparams([im.CloneHParams.create(demo_episodes=k) for k in (1.0, 3.0)])
    _, metrics = jax.jit(jax.vmap(train, in_axes=(None, 0)))(keys[0], sizes)
    demo = demos.load(files["demos"])
    np.testing.assert_array_equal(metrics["bc/dataset_size"][:, 0],
                                  [np.sum(demo.episode < 1), demo.size])


def test_configs_refuse_bad_values(files):
    with pytest.raises(ConfigError, match="normalize_obs must be false"):
        im.CloneConfig(demos=files["demos"], normalize_obs=True)
    with pytest.raises(ConfigError, match="continuous_loss must be one of nll, mse"):
        im.CloneConfig(continuous_loss="l1")
    with pytest.raises(ConfigError, match="demos is required"):
        im.BC_AGENT.setup(im.CloneConfig())
    with pytest.raises(ConfigError, match="expert is required"):
        im.DAGGER_AGENT.setup(im.DAggerConfig())
    with pytest.raises(ConfigError, match="capacity"):
        im.DAggerConfig(capacity=4)
    with pytest.raises(ConfigError, match="not on env 'Acrobot-v1'"):
        im.GAIL_AGENT.setup(im.AdversarialConfig(env="Acrobot-v1", demos=files["demos"]))
    with pytest.raises(ConfigError, match="was trained on 'CartPole-v1'"):
        im.DAGGER_AGENT.setup(im.DAggerConfig(env="Acrobot-v1", expert=files["expert"]))
    with pytest.raises(ConfigError, match="disc_learning_rate"):
        im.AdversarialConfig(disc_learning_rate=0.0)
    with pytest.raises(ConfigError, match="reward f is AIRL's"):
        im.AdversarialConfig(reward="f")
    with pytest.raises(ConfigError, match="reward must be one of softplus, logit, f"):
        im.AIRLConfig(reward="linear")


def test_gradient_reversal_flips_the_feature_gradient_and_nothing_else():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    params = {"phi": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
              "clf": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
              "task": jnp.asarray(rng.normal(size=(4,)), jnp.float32)}

    def losses(p, reverse):
        feat = jnp.tanh(x @ p["phi"])
        dom_in = im.gradient_reversal(feat, jnp.float32(0.7)) if reverse else feat
        domain = jnp.mean(jax.nn.softplus(dom_in @ p["clf"]))
        task = jnp.mean(jnp.square(feat @ p["task"]))
        return domain, task

    total = lambda p, r: sum(losses(p, r))  # noqa: E731
    plain, rev = jax.grad(total)(params, False), jax.grad(total)(params, True)
    domain_only = jax.grad(lambda p: losses(p, False)[0])(params)
    task_only = jax.grad(lambda p: losses(p, False)[1])(params)
    # Forward values are unchanged.
    np.testing.assert_allclose(losses(params, True), losses(params, False), rtol=1e-6)
    # The classifier and task heads get the same gradients as without reversal ...
    np.testing.assert_allclose(rev["clf"], plain["clf"], rtol=1e-6)
    np.testing.assert_allclose(rev["task"], plain["task"], rtol=1e-6)
    # ... and the feature extractor gets the task gradient minus 0.7 x the domain gradient.
    np.testing.assert_allclose(rev["phi"], task_only["phi"] - 0.7 * domain_only["phi"],
                               rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda f: jnp.sum(im.gradient_reversal(f, 2.0) * 3.0))(x)
    np.testing.assert_allclose(g, -6.0 * np.ones_like(x))


def test_without_demos_the_expert_run_is_recorded_at_setup(files):
    config = im.CloneConfig(env="CartPole-v1", expert=files["expert"], expert_episodes=2,
                            **TINY)
    data = im.BC_AGENT.setup(config).extras["demos"]
    assert int(data.episode[-1]) == 1
    expert = demos.load_expert(files["expert"], __import__("jaxrl.agents").agents.REGISTRY)
    np.testing.assert_array_equal(
        data.action, jax.vmap(expert.act)(data.obs, jax.random.split(jax.random.key(0),
                                                                     data.obs.shape[0])))


def test_learned_reward_replaces_rewards_by_g_minus_baseline():
    from jaxrl.agent import init_addons, transform
    config = im.AIRLConfig(env="CartPole-v1", disc_hidden_sizes=(8,), **TINY)
    spec = envs.env_spec(*envs.make("CartPole-v1"))
    setup = Setup(config=config, env=None, env_params=None, spec=spec,
                  network=im._network(config, spec))
    disc = im._disc_init(jax.random.key(0), setup).params
    addon = im.learned_reward(disc, config, baseline=0.25)
    setup = dataclasses.replace(setup, addons=(addon,))
    obs = jax.random.normal(jax.random.key(1), (3, 2, 4))
    traj = Transition(obs=obs, action=jnp.zeros((3, 2), jnp.int32),
                         reward=jnp.full((3, 2), 7.0), terminated=jnp.zeros((3, 2), bool),
                         truncated=jnp.zeros((3, 2), bool), next_obs=obs)
    addons = init_addons(jax.random.key(2), setup)
    out, addons = transform(addons, traj, jax.random.key(3), setup)
    g = im.airl_g(disc, obs.reshape(6, 4), config).reshape(3, 2)
    np.testing.assert_allclose(out.reward, g - 0.25, rtol=1e-6)
    _, metrics = addon.after(addons["airl_reward"], {}, None, setup)
    np.testing.assert_allclose(metrics["airl_reward/extrinsic_mean"], 7.0)
    with pytest.raises(ConfigError, match="airl run"):
        im.learned_reward(disc, im.AdversarialConfig())


def test_setup_with_expert_refuses_another_env():
    with pytest.raises(ConfigError, match="acts on 'CartPole-v1', not on env 'Acrobot-v1'"):
        im.setup_with_expert(im.DAggerConfig(env="Acrobot-v1"), imitation_data.scripted_expert())


@pytest.mark.slow
def test_bc_learns_cartpole_from_three_scripted_episodes(files):
    # Greedy evaluation: an episode may not end inside the last iterations' play.
    from jaxrl import experiment
    config = im.CloneConfig(env="CartPole-v1", demos=files["demos"], total_timesteps=8 * 64 * 40)
    train = jax.jit(jax.vmap(runner.make_train(im.BC_AGENT, config), in_axes=(0, None)))
    state, _ = train(jax.random.split(jax.random.key(0), 4), im.CloneHParams.create())
    returns = experiment.evaluate(im.BC_AGENT, im.BC_AGENT.setup(config), state.params,
                                  num_episodes=10, seed=1).mean(axis=1)
    print("BC from 3 scripted episodes, greedy return per seed:", returns)
    assert returns.mean() >= 400, returns


@pytest.mark.slow
def test_gail_learns_cartpole_without_rewards(scripted_demos):
    config = im.AdversarialConfig(env="CartPole-v1", demos=scripted_demos,
                                  total_timesteps=300_000)
    per_seed = testing.learning_check(im.GAIL_AGENT, config, ppo.HParams.create())
    assert np.nanmean(per_seed) >= 400, per_seed
