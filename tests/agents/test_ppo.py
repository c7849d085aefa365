"""PPO: the loss on a hand-worked example, contracts, compile-once, vmap equality, probes."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import actor_critic, envs, rollout, runner, testing
from jaxrl.agents import ppo
from jaxrl.config import ConfigError, stack_hparams

TINY = dict(num_envs=4, rollout_len=16, total_timesteps=4 * 16 * 6, num_epochs=2,
            num_minibatches=2)


def fixed_policy_params(config, logits_bias, value_bias):
    """Parameters whose policy logits (or mean) and value ignore the observation."""
    params = ppo.init(jax.random.key(0), ppo.setup(config), ppo.HParams.create()).params
    return testing.constant_actor_critic_params(params, logits_bias, value_bias)


class TestLoss:
    """pi = [0.25, 0.75] and V = 2 for every observation; eps = 0.2, vf 0.5, ent 0.01."""

    config = ppo.Config(normalize_advantages=False, **TINY)
    setup = ppo.setup(config)
    hparams = ppo.HParams.create(clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)

    def batch(self):
        return ppo.Batch(
            obs=jnp.zeros((4, 4)),
            action=jnp.array([1, 0, 1, 0]),
            log_prob=jnp.log(jnp.array([0.5, 0.5, 0.75, 0.2])),
            value=jnp.array([2.0, 1.5, 2.5, 1.0]),
            advantage=jnp.array([1.0, 2.0, -1.0, -2.0]),
            target=jnp.array([3.0, 1.0, 4.0, 1.5]))

    @pytest.mark.parametrize("jit", [False, True])
    def test_hand_worked_example(self, jit):
        params = fixed_policy_params(self.config, [0.0, np.log(3.0)], 2.0)
        loss = ppo.loss
        if jit:
            loss = jax.jit(ppo.loss, static_argnames="setup")
        total, m = loss(params, self.batch(), self.hparams, setup=self.setup)
        # ratios 0.75/0.5, 0.25/0.5, 0.75/0.75, 0.25/0.2 = 1.5, 0.5, 1, 1.25
        # min(r A, clip(r) A): min(1.5, 1.2)=1.2; min(1.0, 1.6)=1.0; -1; min(-2.5, -2.4)=-2.5
        actor = -(1.2 + 1.0 - 1.0 - 2.5) / 4
        # value: max of unclipped and clipped squared errors, halved:
        # (2-3)^2=1 | (2-1)^2=1 vs (1.7-1)^2 | (2-4)^2=4 vs (2.3-4)^2 | (2-1.5)^2 vs (1.2-1.5)^2
        value = (0.5 + 0.5 + 2.0 + 0.125) / 4
        entropy = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
        kl = np.mean([(r - 1) - np.log(r) for r in (1.5, 0.5, 1.0, 1.25)])
        np.testing.assert_allclose(m["loss/actor"], actor, rtol=1e-5)
        np.testing.assert_allclose(m["loss/value"], value, rtol=1e-5)
        np.testing.assert_allclose(m["loss/entropy"], entropy, rtol=1e-5)
        np.testing.assert_allclose(total, actor + 0.5 * value - 0.01 * entropy, rtol=1e-5)
        np.testing.assert_allclose(m["ppo/approx_kl"], kl, rtol=1e-5)
        np.testing.assert_allclose(m["ppo/clip_frac"], 0.75)

    def test_unclipped_value_loss_and_normalised_advantages(self):
        config = ppo.Config(normalize_advantages=True, clip_value_loss=False, **TINY)
        params = fixed_policy_params(config, [0.0, np.log(3.0)], 2.0)
        _, m = ppo.loss(params, self.batch(), self.hparams, ppo.setup(config))
        adv = np.array([1.0, 2.0, -1.0, -2.0])
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        ratio = np.array([1.5, 0.5, 1.0, 1.25])
        actor = -np.mean(np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv))
        value = 0.5 * np.mean((2.0 - np.array([3.0, 1.0, 4.0, 1.5])) ** 2)
        np.testing.assert_allclose(m["loss/actor"], actor, rtol=1e-5)
        np.testing.assert_allclose(m["loss/value"], value, rtol=1e-5)

    def test_gaussian_log_prob_and_entropy(self):
        config = ppo.Config(env="Pendulum-v1", normalize_advantages=False, **TINY)
        params = fixed_policy_params(config, [0.5], 0.0)
        params["params"]["PolicyHead_0"]["log_std"] = jnp.array([np.log(2.0)], jnp.float32)
        batch = ppo.Batch(obs=jnp.zeros((2, 3)), action=jnp.array([[1.5], [-0.5]]),
                          log_prob=jnp.zeros(2), value=jnp.zeros(2),
                          advantage=jnp.array([1.0, 1.0]), target=jnp.zeros(2))
        hp = ppo.HParams.create(clip_eps=100.0)  # no clipping: actor = -mean(ratio)
        _, m = ppo.loss(params, batch, hp, ppo.setup(config))
        logp = -0.5 * ((np.array([1.5, -0.5]) - 0.5) / 2.0) ** 2 - np.log(2.0) \
            - 0.5 * np.log(2 * np.pi)
        np.testing.assert_allclose(m["loss/actor"], -np.mean(np.exp(logp)), rtol=1e-5)
        np.testing.assert_allclose(m["loss/entropy"], 0.5 * np.log(2 * np.pi * np.e * 4.0),
                                   rtol=1e-5)


class TestConfig:

    @pytest.mark.parametrize("kwargs, field", [
        (dict(num_envs=0), "num_envs"),
        (dict(num_envs=True), "num_envs"),
        (dict(rollout_len=-1), "rollout_len"),
        (dict(num_minibatches=3), "num_minibatches"),
        (dict(total_timesteps=100), "total_timesteps"),
        (dict(hidden_sizes=(64, 0)), "hidden_sizes"),
        (dict(hidden_sizes=[64]), "hidden_sizes"),
        (dict(activation="sigmoid"), "activation"),
        (dict(env="NoSuchEnv-v0"), "NoSuchEnv-v0"),
        (dict(anneal_lr=1), "anneal_lr"),
        (dict(num_envs=4, rollout_len=16, num_minibatches=64), "minibatches of one"),
    ])
    def test_bad_config_names_the_field(self, kwargs, field):
        with pytest.raises(ConfigError, match=field):
            ppo.Config(**kwargs)

    @pytest.mark.parametrize("kwargs, field", [
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(gamma=1.01), "gamma"),
        (dict(gae_lambda=-0.5), "gae_lambda"),
        (dict(clip_eps=float("nan")), "clip_eps"),
        (dict(ent_coef="0.1"), "ent_coef"),
        (dict(bogus=1.0), "bogus"),
        (dict(learning_rate=np.array([1e-3, -1.0])), "learning_rate"),
    ])
    def test_bad_hparams_name_the_field(self, kwargs, field):
        with pytest.raises(ConfigError, match=field):
            ppo.HParams.create(**kwargs)

    def test_derived_sizes(self):
        c = ppo.Config(num_envs=4, rollout_len=128, total_timesteps=500_000)
        assert (c.steps_per_iteration, c.num_iterations, c.num_updates) == (512, 976, 976 * 16)


def _tiny_state(setup, hparams):
    return ppo.init(jax.random.key(0), setup, hparams)


def _learn(state, batch, key, hparams, setup):
    return actor_critic.minibatch_epochs(
        state, batch, key, lambda st, mb: ppo.update(st, mb, hparams, setup),
        setup.config.num_epochs, setup.config.num_minibatches)


class TestCompileOnce:
    config = ppo.Config(**TINY)
    setup = ppo.setup(config)
    hparams = ppo.HParams.create()

    def make_batch(self, key):
        s = self.setup
        collect = rollout.make_rollout(s.env, s.env_params,
                                       functools.partial(ppo.act, setup=s),
                                       self.config.rollout_len)
        state = _tiny_state(self.setup, self.hparams)
        _, _, traj, _ = collect(state.params, state.env_state, state.obs, key)
        return ppo.make_batch(state.params, traj, self.hparams, self.setup)

    def test_update_compiles_once(self):
        state = _tiny_state(self.setup, self.hparams)
        batches = [jax.tree.map(lambda x: x[:32], self.make_batch(k))
                   for k in jax.random.split(jax.random.key(1), 3)]
        chex.clear_trace_counter()
        update = jax.jit(chex.assert_max_traces(ppo.update, n=1), static_argnames="setup")
        for b in batches:
            state, metrics = update(state, b, self.hparams, self.setup)
        assert int(state.step) == 3
        testing.assert_tree_finite((state.params, metrics))

    def test_learn_and_iteration_compile_once(self):
        state = _tiny_state(self.setup, self.hparams)
        batch = self.make_batch(jax.random.key(2))
        chex.clear_trace_counter()
        learn = jax.jit(chex.assert_max_traces(_learn, n=1), static_argnames="setup")
        iteration = jax.jit(chex.assert_max_traces(ppo.iteration, n=1),
                            static_argnames="setup")
        for key in jax.random.split(jax.random.key(3), 3):
            state, _ = learn(state, batch, key, self.hparams, self.setup)
            state, metrics = iteration(state, key, self.hparams, self.setup)
        assert int(state.step) == 6 * self.config.num_epochs * self.config.num_minibatches
        testing.assert_tree_finite(state.params)

    def test_runner_chunk_compiles_once(self):
        init_fn, iteration_fn = runner.parts(ppo.AGENT, self.config)
        state = init_fn(jax.random.key(0), self.hparams)
        # A chunk of 4 over a run of 6 iterations: the second call runs 2 and skips 2.
        chunk = runner.make_chunk(iteration_fn, 4, self.config.num_iterations)
        chex.clear_trace_counter()
        jitted = jax.jit(chex.assert_max_traces(chunk, n=1))
        run_key = jax.random.key(5)
        state, m1 = jitted(state, run_key, jnp.int32(0), self.hparams)
        state, m2 = jitted(state, run_key, jnp.int32(4), self.hparams)
        assert int(state.step) == 6 * self.config.num_epochs * self.config.num_minibatches
        assert np.isfinite(m2["loss/total"][:2]).all() and np.isnan(m2["loss/total"][2:]).all()

    def test_hparam_sweep_compiles_once(self):
        train = runner.make_train(ppo.AGENT, self.config)
        hps = stack_hparams([ppo.HParams.create(learning_rate=lr, gamma=g)
                             for lr, g in [(1e-4, 0.9), (1e-3, 0.99), (3e-3, 0.95)]])
        keys = jax.random.split(jax.random.key(0), 2)

        def train_fn(key, hparams):
            return train(key, hparams)

        chex.clear_trace_counter()
        sweep = jax.jit(jax.vmap(jax.vmap(chex.assert_max_traces(train_fn, n=1),
                                          in_axes=(0, None)), in_axes=(None, 0)))
        _, metrics = sweep(keys, hps)
        _, metrics = sweep(keys, hps)
        assert metrics["loss/total"].shape == (3, 2, self.config.num_iterations)
        # Different learning rates give different parameters after training.
        testing.assert_seeds_differ(metrics["loss/total"][:, 0], "loss per learning rate")


class TestSeeds:

    @pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
    def test_vmap_over_seeds_equals_separate_runs(self, env):
        config = ppo.Config(env=env, **TINY)
        keys = jax.random.split(jax.random.key(42), 4)
        testing.assert_vmap_matches_separate(runner.make_train(ppo.AGENT, config), keys,
                                             ppo.HParams.create(), rtol=1e-6, atol=1e-6)

    def test_actions_identical_and_seeds_differ(self):
        config = ppo.Config(**TINY)
        hparams = ppo.HParams.create()
        s = ppo.setup(config)
        collect = rollout.make_rollout(s.env, s.env_params,
                                       functools.partial(ppo.act, setup=s),
                                       config.rollout_len)

        def first_rollout(key):
            init_key, run_key = jax.random.split(key)
            state = ppo.init(init_key, s, hparams)
            return collect(state.params, state.env_state, state.obs, run_key)[2]

        keys = jax.random.split(jax.random.key(7), 4)
        batched = jax.jit(jax.vmap(first_rollout))(keys)
        for i in range(4):
            single = jax.jit(first_rollout)(keys[i])
            np.testing.assert_array_equal(batched.action[i], single.action)
            np.testing.assert_allclose(batched.obs[i], single.obs, rtol=1e-6, atol=1e-6)
        testing.assert_seeds_differ(np.asarray(batched.action), "actions")
        testing.assert_seeds_differ(np.asarray(batched.obs), "observations")


class TruncationAsTermination(envs.wrappers.Wrapper):
    """The common bug, on purpose: a time limit reported as a terminal state."""

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, action, params)
        return obs, state, reward, terminated | truncated, truncated & False, info


envs.register("test/time-limit-as-terminal",
              lambda: TruncationAsTermination(testing.ProbeTimeLimitEndless()))


def _train_value(env, gamma, total, obs_values):
    config = ppo.Config(env=env, num_envs=8, rollout_len=32, total_timesteps=total,
                        num_epochs=4, num_minibatches=4, clip_value_loss=False,
                        anneal_lr=False)
    hparams = ppo.HParams.create(learning_rate=3e-3, gamma=gamma, gae_lambda=0.95)
    state, metrics = jax.jit(runner.make_train(ppo.AGENT, config))(jax.random.key(0), hparams)
    network = ppo.setup(config).network
    obs = jnp.asarray(obs_values, jnp.float32).reshape(-1, 1)
    return np.asarray(network.apply(state.params, obs)[1]), metrics


class TestProbes:
    """Learned values on probe environments whose exact values are known."""

    def test_time_limit_value_is_bootstrapped(self):
        # Reward 1 forever, cut by a 20-step time limit: V = 1/(1-gamma) = 10 only if the
        # truncation is bootstrapped. Treating it as termination gives about 6.
        v, _ = _train_value("probe/time-limit-endless", 0.9, 8 * 32 * 60, [0.0])
        v_bug, _ = _train_value("test/time-limit-as-terminal", 0.9, 8 * 32 * 60, [0.0])
        assert abs(v[0] - 10.0) < 0.5, v
        assert v_bug[0] < 8.0, v_bug

    def test_one_step_delay_values(self):
        v, _ = _train_value("probe/one-step-delay", 0.8, 8 * 32 * 40, [0.0, 1.0])
        np.testing.assert_allclose(v, [0.8, 1.0], atol=0.1)

    def test_action_reward_is_learned(self):
        config = ppo.Config(env="probe/action-reward", num_envs=8, rollout_len=16,
                            total_timesteps=8 * 16 * 40)
        hparams = ppo.HParams.create(learning_rate=3e-3)
        _, metrics = jax.jit(runner.make_train(ppo.AGENT, config))(jax.random.key(0), hparams)
        assert np.nanmean(metrics["episode/return"][-5:]) > 0.95


class TestAdaptiveKL:
    """The adaptive-KL variant (PPO1): its loss by hand, beta's direction, contracts."""

    config = ppo.KLConfig(normalize_advantages=False, **TINY)
    setup = ppo.setup(config)
    hparams = ppo.KLHParams.create(vf_coef=0.5, ent_coef=0.0, kl_min=0.01, kl_max=0.02)

    @pytest.mark.parametrize("jit", [False, True])
    def test_penalised_surrogate_by_hand(self, jit):
        # New policy [0.25, 0.75] everywhere; old policies differ per state.
        params = fixed_policy_params(ppo.Config(**TINY), [0.0, np.log(3.0)], 2.0)  # same net
        old = np.array([[0.5, 0.5], [0.1, 0.9], [0.25, 0.75]])
        actions = np.array([1, 0, 1])
        adv = np.array([1.0, -2.0, 0.5])
        batch = ppo.Batch(obs=jnp.zeros((3, 4)), action=jnp.asarray(actions),
                          log_prob=jnp.log(jnp.asarray(old[np.arange(3), actions])),
                          value=jnp.zeros(3), advantage=jnp.asarray(adv),
                          target=jnp.full(3, 2.0), policy_params=jnp.log(jnp.asarray(old)))
        loss = jax.jit(ppo.loss, static_argnames="setup") if jit else ppo.loss
        total, m = loss(params, batch, self.hparams, setup=self.setup, beta=3.0)
        new = np.array([0.25, 0.75])
        ratio = new[actions] / old[np.arange(3), actions]
        kl = (old * np.log(old / new)).sum(1).mean()
        np.testing.assert_allclose(m["ppo/kl"], kl, rtol=1e-5)
        np.testing.assert_allclose(m["loss/actor"], -(ratio * adv).mean() + 3.0 * kl, rtol=1e-5)
        np.testing.assert_allclose(total, m["loss/actor"], rtol=1e-6)  # V = target, ent 0

    def _state_and_batch(self):
        state = ppo.init(jax.random.key(0), self.setup, self.hparams)
        state, traj, _ = ppo.actor_critic.collect(state, jax.random.key(1), self.setup)
        return state, ppo.make_batch(state.params, traj, self.hparams, self.setup)

    def test_beta_moves_toward_the_band(self):
        state, batch = self._state_and_batch()
        assert float(state.beta) == 1.0 and batch.policy_params is not None
        # KL forced to 0 (the policy has not moved): below kl_min, beta halves.
        low, m = ppo.adapt_beta(state, batch, self.hparams, self.setup)
        assert float(m["ppo/iteration_kl"]) < 1e-6 and float(low.beta) == 0.5
        # KL forced far above kl_max (old logits pushed apart): beta doubles.
        far = batch.replace(policy_params=batch.policy_params + jnp.array([[3.0, -3.0]]))
        high, m = ppo.adapt_beta(state, far, self.hparams, self.setup)
        assert float(m["ppo/iteration_kl"]) > 0.02 and float(high.beta) == 2.0
        # Inside the band: unchanged.
        hp = ppo.KLHParams.create(kl_min=0.0, kl_max=10.0)
        same, _ = ppo.adapt_beta(state, far, hp, self.setup)
        assert float(same.beta) == 1.0

    def test_iteration_compiles_once_and_logs_beta(self):
        state = ppo.init(jax.random.key(0), self.setup, self.hparams)
        chex.clear_trace_counter()
        iteration = jax.jit(chex.assert_max_traces(ppo.iteration, n=1),
                            static_argnames="setup")
        betas = []
        for key in jax.random.split(jax.random.key(3), 3):
            state, metrics = iteration(state, key, self.hparams, self.setup)
            betas.append(float(metrics["ppo/beta"]))
        assert betas[0] == 1.0 and "ppo/iteration_kl" in metrics and "ppo/kl" in metrics
        testing.assert_tree_finite(state.params)

    def test_vmap_over_seeds_equals_separate_runs(self):
        config = ppo.KLConfig(env="Pendulum-v1", **TINY)
        testing.assert_vmap_matches_separate(runner.make_train(ppo.AGENT, config),
                                             jax.random.split(jax.random.key(4), 3),
                                             ppo.KLHParams.create(), rtol=1e-6, atol=1e-6)

    def test_bad_input(self):
        with pytest.raises(ConfigError, match="clip_value_loss"):
            ppo.KLConfig(clip_value_loss=True)
        with pytest.raises(ConfigError, match="kl_min"):
            ppo.KLHParams.create(kl_min=0.1, kl_max=0.01)
        with pytest.raises(ConfigError, match="kl_factor"):
            ppo.KLHParams.create(kl_factor=1.0)
