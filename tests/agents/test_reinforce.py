"""REINFORCE: weights and masks by hand, the estimate against the enumerated exact gradient
on a two-step tree (every weight and baseline), variance reduction, contracts."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import actor_critic, runner, testing
from jaxrl.agents import reinforce
from jaxrl.config import ConfigError
from jaxrl.envs.probes import ProbeTwoStepTree
from jaxrl.types import Transition

TINY = dict(num_envs=4, rollout_len=16, total_timesteps=4 * 16 * 5)


def _traj(rewards, terminated, truncated):
    """A one-column `[T, 1]` trajectory with zero observations."""
    r = jnp.asarray(rewards, jnp.float32)[:, None]
    col = lambda x: jnp.asarray(x, bool)[:, None]  # noqa: E731
    zeros = jnp.zeros(r.shape + (4,))
    return Transition(obs=zeros, action=jnp.zeros(r.shape, jnp.int32), reward=r,
                      terminated=col(terminated), truncated=col(truncated), next_obs=zeros)


class TestWeights:
    # Episode A: steps 0-2 (terminated), episode B: steps 3-4 (truncated), then an
    # unfinished episode at steps 5-6 that must be masked out.
    traj = _traj([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                 [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0])
    mask = [1, 1, 1, 1, 1, 0, 0]

    @pytest.mark.parametrize("jit", [False, True])
    @pytest.mark.parametrize("weight, expected", [
        ("return", [6.0, 6.0, 6.0, 9.0, 9.0]),
        ("reward_to_go", [6.0, 5.0, 3.0, 9.0, 5.0]),
        ("discounted_reward_to_go", [1 + .5 * 2 + .25 * 3, 2 + .5 * 3, 3.0, 4 + .5 * 5, 5.0]),
    ])
    def test_hand_worked_weights_and_mask(self, weight, expected, jit):
        setup = reinforce.setup(reinforce.Config(weight=weight, **TINY))
        fn = jax.jit(reinforce.episode_weights, static_argnames="setup") if jit else \
            reinforce.episode_weights
        w, mask = fn(self.traj, jnp.float32(0.5), setup=setup)
        np.testing.assert_array_equal(np.asarray(mask)[:, 0], self.mask)
        np.testing.assert_allclose(np.asarray(w)[:5, 0], expected, rtol=1e-6)

    def test_batch_counts_finished_episodes(self):
        setup = reinforce.setup(reinforce.Config(**TINY))
        state = reinforce.init(jax.random.key(0), setup, reinforce.HParams.create())
        batch = reinforce.make_batch(state, self.traj, reinforce.HParams.create(), setup)
        assert float(batch.num_episodes) == 2.0


# --- The exact gradient on the two-step tree, by enumerating its four paths -----------

TREE = dict(env="probe/two-step-tree", num_envs=2000, rollout_len=2,
            total_timesteps=2000 * 2, hidden_sizes=(8,))
GAMMA = 0.8


def _actor_leaves(tree):
    params = tree["params"]
    return jnp.concatenate([x.reshape(-1) for name in actor_critic.ACTOR_MODULES
                            for x in jax.tree.leaves(params[name])])


def exact_gradient(params, setup, weight, baseline, b_const=0.0):
    """`E[sum_t grad log pi(a_t|s_t) (G_t - b_t)]`, summed over the tree's four paths."""
    def log_pi(p, obs, a):
        dist, _ = actor_critic.policy(p, jnp.array([obs], jnp.float32), setup)
        return dist.log_prob(a)

    def value(obs):
        return float(actor_critic.policy(params, jnp.array([obs], jnp.float32), setup)[1])

    grad_log_pi = jax.grad(log_pi)
    total = 0.0
    for a in (0, 1):
        leaf = 2.0 * a - 1.0
        for b in (0, 1):
            prob = float(jnp.exp(log_pi(params, 0.0, a) + log_pi(params, leaf, b)))
            r0, r1 = ProbeTwoStepTree.ROOT_REWARD[a], ProbeTwoStepTree.LEAF_REWARD[a][b]
            g0, g1 = {"return": (r0 + r1, r0 + r1), "reward_to_go": (r0 + r1, r1),
                      "discounted_reward_to_go": (r0 + GAMMA * r1, r1)}[weight]
            b0, b1 = {"none": (0.0, 0.0), "mean": (b_const, b_const),
                      "value": (value(0.0), value(leaf))}[baseline]
            total = total + prob * (
                _actor_leaves(grad_log_pi(params, 0.0, a)) * (g0 - b0)
                + _actor_leaves(grad_log_pi(params, leaf, b)) * (g1 - b1))
    return np.asarray(total)


def sampled_gradients(setup, b_const, num_batches, seed=0):
    """`[num_batches, P]` REINFORCE estimates (minus the loss gradient), one per batch."""
    hparams = reinforce.HParams.create(gamma=GAMMA, ent_coef=0.0)
    state = reinforce.init(jax.random.key(7), setup, hparams).replace(
        baseline=jnp.float32(b_const))

    def one(key):
        reset_key, key = jax.random.split(key)
        st = actor_critic.restart_episodes(state, reset_key, setup)
        st, traj, _ = actor_critic.collect(st, key, setup)
        batch = reinforce.make_batch(st, traj, hparams, setup)
        grads = jax.grad(lambda p: reinforce.loss(p, batch, hparams, setup)[0])(st.params)
        return -_actor_leaves(grads), batch.num_episodes

    grads, episodes = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed),
                                                               num_batches))
    # Each copy ends one episode.
    assert np.all(np.asarray(episodes) == setup.config.num_envs)
    return np.asarray(grads), state.params


@pytest.mark.parametrize("weight, baseline", [
    ("return", "none"), ("reward_to_go", "none"), ("discounted_reward_to_go", "none"),
    ("reward_to_go", "mean"), ("reward_to_go", "value"), ("return", "value")])
def test_estimate_matches_enumerated_gradient(weight, baseline):
    setup = reinforce.setup(reinforce.Config(weight=weight, baseline=baseline, **TREE))
    grads, params = sampled_gradients(setup, b_const=0.7, num_batches=150)
    exact = exact_gradient(params, setup, weight, baseline, b_const=0.7)
    mean = grads.mean(0)
    stderr = grads.std(0, ddof=1) / np.sqrt(grads.shape[0])
    # Per component within 5 standard errors (about 1 in 1.7M by chance for a normal
    # mean; 34 components) and overall close in norm.
    z = np.abs(mean - exact) / (stderr + 1e-9)
    assert z.max() < 5.0, f"max z {z.max():.2f}; mean {mean}, exact {exact}"
    assert np.linalg.norm(mean - exact) < 0.05 * np.linalg.norm(exact) + 1e-4
    assert np.linalg.norm(exact) > 1e-2  # the check is not vacuous


def test_exact_gradient_is_the_gradient_of_the_expected_return():
    # With the whole-episode return and no baseline, E[...] is grad J, J = sum_paths P R.
    setup = reinforce.setup(reinforce.Config(weight="return", baseline="none", **TREE))
    params = reinforce.init(jax.random.key(7), setup, reinforce.HParams.create()).params

    def expected_return(p):
        def log_pi(obs, a):
            return actor_critic.policy(p, jnp.array([obs], jnp.float32), setup)[0].log_prob(a)
        return sum(jnp.exp(log_pi(0.0, a) + log_pi(2.0 * a - 1.0, b))
                   * (ProbeTwoStepTree.ROOT_REWARD[a] + ProbeTwoStepTree.LEAF_REWARD[a][b])
                   for a in (0, 1) for b in (0, 1))

    np.testing.assert_allclose(exact_gradient(params, setup, "return", "none"),
                               _actor_leaves(jax.grad(expected_return)(params)),
                               rtol=1e-4, atol=1e-6)


def test_baseline_lowers_variance():
    # Same key per batch: the baseline is the only difference. The constant baseline is
    # the mean weight, the running mean's target.
    grads_none, params = sampled_gradients(
        reinforce.setup(reinforce.Config(weight="reward_to_go", baseline="none", **TREE)),
        0.0, 60)
    grads_mean, _ = sampled_gradients(
        reinforce.setup(reinforce.Config(weight="reward_to_go", baseline="mean", **TREE)),
        0.9, 60)
    var_none = grads_none.var(0, ddof=1).sum()
    var_mean = grads_mean.var(0, ddof=1).sum()
    print(f"total variance: no baseline {var_none:.4g}, mean baseline {var_mean:.4g}")
    assert var_mean < 0.7 * var_none


# --- Contracts --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(weight="G"), "weight"), (dict(baseline="critic"), "baseline"),
    (dict(num_envs=0), "num_envs"), (dict(optimizer="sgd"), "optimizer"),
    (dict(env="Nope-v0"), "Nope-v0"), (dict(total_timesteps=10), "total_timesteps"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        reinforce.Config(**kwargs)


def test_running_baseline_moves_to_the_batch_mean():
    setup = reinforce.setup(reinforce.Config(baseline="mean", **TINY))
    hparams = reinforce.HParams.create(baseline_decay=0.5)
    state = reinforce.init(jax.random.key(0), setup, hparams)
    traj = TestWeights.traj
    batch = reinforce.make_batch(state, traj, hparams, setup)
    mean = float((batch.weight * batch.mask).sum() / batch.mask.sum())
    state, _ = reinforce.update(state, batch, hparams, setup)
    np.testing.assert_allclose(float(state.baseline), mean, rtol=1e-6)  # first batch
    batch2 = reinforce.make_batch(state, traj, hparams, setup)
    assert float(batch2.baseline[0]) == pytest.approx(mean)  # used on the next batch
    state, _ = reinforce.update(state, batch2, hparams, setup)
    np.testing.assert_allclose(float(state.baseline), mean, rtol=1e-6)  # 0.5 m + 0.5 m


def test_iteration_compiles_once_and_learns_something():
    setup = reinforce.setup(reinforce.Config(**TINY))
    hparams = reinforce.HParams.create()
    state = reinforce.init(jax.random.key(0), setup, hparams)
    chex.clear_trace_counter()
    iteration = jax.jit(chex.assert_max_traces(reinforce.iteration, n=1),
                        static_argnames="setup")
    update = jax.jit(chex.assert_max_traces(reinforce.update, n=1), static_argnames="setup")
    before = state.params
    for key in jax.random.split(jax.random.key(3), 3):
        state, metrics = iteration(state, key, hparams, setup)
    batch = reinforce.make_batch(state, TestWeights.traj, hparams, setup)
    for _ in range(2):
        state, _ = update(state, batch, hparams, setup)
    assert int(state.step) == 5
    testing.assert_tree_finite((state.params, metrics))
    assert not np.allclose(_actor_leaves(before), _actor_leaves(state.params))


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_vmap_over_seeds_equals_separate_runs(env):
    config = reinforce.Config(env=env, num_envs=2, rollout_len=200,
                              total_timesteps=2 * 200 * 3, baseline="mean")
    testing.assert_vmap_matches_separate(runner.make_train(reinforce.AGENT, config),
                                         jax.random.split(jax.random.key(1), 3),
                                         reinforce.HParams.create(), rtol=1e-6, atol=1e-6)


def test_runner_smoke_over_two_seeds():
    config = reinforce.Config(normalize_obs=True, **TINY)
    init_fn, iteration_fn = runner.parts(reinforce.AGENT, config)
    result = runner.run(init_fn, iteration_fn, num_iterations=config.num_iterations,
                        steps_per_iteration=config.steps_per_iteration,
                        hparams=reinforce.HParams.create(), num_seeds=2)
    assert result.metrics["loss/total"].shape == (2, config.num_iterations)
    assert np.isfinite(result.metrics["pg/num_episodes"]).all()
