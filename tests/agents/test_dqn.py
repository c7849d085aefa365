"""DQN family: configs, shapes, promised effects, compile-once, warm-up, noise, vmap, probes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import cli, testing
from jaxrl.agents import REGISTRY, dqn
from jaxrl.config import ConfigError

# Few distinct configs, so the file compiles few programs: plain DQN and Rainbow.
TINY = dict(num_envs=2, rollout_len=10, total_timesteps=2 * 10 * 4, buffer_size=64,
            minibatch_size=8, learning_starts=40, train_frequency=5, target_update_period=2,
            hidden_sizes=(16,))
PLAIN = dqn.Config(**TINY)
RAINBOW = dqn.RainbowConfig(**TINY)
HPARAMS = dqn.HParams.create()

_init = jax.jit(dqn.init, static_argnames="config")
_collect_step = jax.jit(dqn.collect_step, static_argnames="config")
_update = jax.jit(dqn.update, static_argnames="config")


def collect(state, config, num_steps, key, hparams=HPARAMS):
    """`num_steps` jitted `collect_step`s; returns the state and the per-step noise/done."""
    noises, dones = [], []
    for k in jax.random.split(key, num_steps):
        state, episodes = _collect_step(state, k, hparams, config)
        noises.append(state.noise)
        dones.append(np.asarray(episodes["episode/done"]))
    return state, noises, np.stack(dones)


def filled_state(config, steps=20, seed=0, hparams=HPARAMS):
    state = _init(jax.random.key(seed), config, hparams)
    return collect(state, config, steps, jax.random.key(seed + 1), hparams)[0]


class TestConfig:

    @pytest.mark.parametrize("kwargs, field", [
        (dict(num_envs=0), "num_envs"),
        (dict(rollout_len=12), "train_frequency"),
        (dict(buffer_size=65), "buffer_size"),
        (dict(minibatch_size=200), "minibatch_size"),
        (dict(learning_starts=-1), "learning_starts"),
        (dict(n_step=0), "n_step"),
        (dict(n_step=40), "buffer_size"),
        (dict(num_atoms=1), "num_atoms"),
        (dict(v_min=5.0, v_max=5.0), "v_min"),
        (dict(v_max=float("inf")), "v_max"),
        (dict(priority_alpha=1.5), "priority_alpha"),
        (dict(noisy_sigma=0.0), "noisy_sigma"),
        (dict(loss="l1"), "loss"),
        (dict(exploration="ucb"), "exploration"),
        (dict(noise_resample="never"), "noise_resample"),
        (dict(double=1), "double"),
        (dict(anneal_lr="yes"), "anneal_lr"),
        (dict(hidden_sizes=(16, 0)), "hidden_sizes"),
        (dict(activation="sigmoid"), "activation"),
        (dict(env="CartPol-v1"), "CartPole-v1"),
        (dict(total_timesteps=10), "total_timesteps"),
        (dict(target_update_period=0), "target_update_period"),
    ])
    def test_bad_config_names_the_field(self, kwargs, field):
        with pytest.raises(ConfigError, match=field):
            dqn.Config(**{**TINY, **kwargs})

    @pytest.mark.parametrize("config_cls", [dqn.Config, dqn.C51Config, dqn.RainbowConfig])
    def test_continuous_env_is_refused_with_a_suggestion(self, config_cls):
        with pytest.raises(ConfigError, match="continuous") as e:
            config_cls(env="Pendulum-v1")
        assert "ddpg, td3 or sac" in str(e.value) and "Pendulum-v1" in str(e.value)

    @pytest.mark.parametrize("kwargs, field", [
        (dict(tau=0.0), "tau"),
        (dict(epsilon_start=1.5), "epsilon_start"),
        (dict(temperature_end=0.0), "temperature_end"),
        (dict(exploration_fraction=0.0), "exploration_fraction"),
        (dict(beta_start=-0.1), "beta_start"),
        (dict(learning_rate=0.0), "learning_rate"),
    ])
    def test_bad_hparams_name_the_field(self, kwargs, field):
        with pytest.raises(ConfigError, match=field):
            dqn.HParams.create(**kwargs)

    def test_presets_change_defaults_only(self):
        plain, c51, rainbow = dqn.Config(), dqn.C51Config(), dqn.RainbowConfig()
        assert not any(getattr(plain, s) for s in dqn._SWITCHES) and plain.n_step == 1
        assert c51.distributional and not c51.double and not c51.noisy
        assert all(getattr(rainbow, s) for s in dqn._SWITCHES) and rainbow.n_step == 3
        assert (plain.exploration_kind, rainbow.exploration_kind) == ("epsilon", "greedy")
        ablated = dqn.RainbowConfig(noisy=False)  # the paper's ablation: epsilon-greedy
        assert ablated.exploration_kind == "epsilon" and ablated.double
        assert (plain.batch_size, plain.num_iterations) == (500, 1000)
        # 50 learning phases per iteration, the first 1000 before learning_starts: 49001
        # updates (the phase that reaches learning_starts learns).
        assert plain.num_updates == 1000 * 50 - 1000 + 1

    @pytest.mark.parametrize("name", ["dqn", "c51", "rainbow"])
    def test_registry_and_cli_help_cover_every_field(self, name):
        agent = REGISTRY[name]
        for cls in (agent.Config, agent.HParams):
            docs = cli._field_docs(cls)
            assert set(docs) == {f.name for f in cli.dataclasses.fields(cls)}, cls
        assert agent.make_parts is dqn.make_parts and agent.__doc__

    def test_cli_flags_switch_a_preset_component_off(self):
        parser = cli._Parser()
        cli._add_field_flags(parser, dqn.RainbowConfig, "config")
        args = parser.parse_args(["--no-noisy", "--n-step", "1", "--v-min", "-50"])
        config = dqn.RainbowConfig(**cli._collect(args, dqn.RainbowConfig))
        assert (config.noisy, config.n_step, config.v_min, config.dueling) == (
            False, 1, -50.0, True)


class TestActing:

    def test_init_shapes_and_target_copy(self):
        for config in (PLAIN, RAINBOW):
            state = _init(jax.random.key(0), config, HPARAMS)
            chex.assert_trees_all_equal(state.params, state.target_params)
            assert state.obs.shape == (2, 4)
            assert int(state.env_steps) == 0 and int(state.step) == 0
            assert int(state.buffer.size) == 0
            if config.noisy:
                chex.assert_shape(state.noise["torso_0"][0], (2, 4))  # one draw per env
            else:
                assert state.noise == {}

    def test_exploration_schedule_and_actions(self):
        state = _init(jax.random.key(0), PLAIN, HPARAMS)
        # Linear from 1 to 0.05 over half of the 80 steps, then constant.
        eps = [float(dqn.explore_value(jnp.int32(s), HPARAMS, PLAIN)) for s in (0, 20, 40, 80)]
        np.testing.assert_allclose(eps, [1.0, 0.525, 0.05, 0.05], rtol=1e-6)
        obs = jax.random.normal(jax.random.key(1), (200, 4))
        keys = jax.random.split(jax.random.key(2), 200)
        act = jax.jit(jax.vmap(lambda o, k, e: dqn.act(state.params, {}, o, k, e, PLAIN),
                               in_axes=(0, 0, None)))
        greedy = jax.vmap(lambda o: dqn.greedy_act(state.params, o, None, PLAIN))(obs)
        assert greedy.dtype == jnp.int32
        np.testing.assert_array_equal(act(obs, keys, 0.0), greedy)
        uniform = np.asarray(act(obs, keys, 1.0))
        assert 60 < (uniform == 1).sum() < 140  # about half of 200

    def test_boltzmann_temperature(self):
        config = dqn.Config(**{**TINY, "exploration": "boltzmann"})
        params = _init(jax.random.key(0), PLAIN, HPARAMS).params
        obs = jnp.broadcast_to(jnp.array([0.1, 0.2, 0.3, 0.4]), (400, 4))
        keys = jax.random.split(jax.random.key(3), 400)
        q = dqn.q_values(params, obs[0], {}, config)
        act = jax.jit(jax.vmap(lambda o, k, t: dqn.act(params, {}, o, k, t, config),
                               in_axes=(0, 0, None)))
        np.testing.assert_array_equal(act(obs, keys, 1e-6), jnp.argmax(q))
        # p(a = 1) = sigmoid((q1 - q0) / T) with a large temperature: close to 1/2.
        frac = float((np.asarray(act(obs, keys, 100.0)) == 1).mean())
        expected = float(jax.nn.sigmoid((q[1] - q[0]) / 100.0))
        assert abs(frac - expected) < 0.1


class TestNoise:

    def test_noise_is_held_within_an_episode_and_redrawn_at_its_end(self):
        state = _init(jax.random.key(0), RAINBOW, HPARAMS)
        before = np.asarray(state.noise["torso_0"][0])
        _, noises, done = collect(state, RAINBOW, 60, jax.random.key(1))
        assert done.sum() >= 4  # CartPole under an untrained policy: short episodes
        for t in range(60):
            after = np.asarray(noises[t]["torso_0"][0])
            changed = np.any(after != before, axis=1)  # [N]
            np.testing.assert_array_equal(changed, done[t], err_msg=f"step {t}")
            before = after

    def test_step_resampling_redraws_every_step(self):
        config = dqn.RainbowConfig(**{**TINY, "noise_resample": "step"})
        noise = dqn.setup(config).network.sample_noise(jax.random.key(0))
        for done in (False, True):
            for c in (config, RAINBOW):
                fresh = dqn.renew_noise(noise, jnp.bool_(done), jax.random.key(1), c)
                moved = not np.array_equal(fresh["q" if "q" in fresh else "value"][1],
                                           noise["q" if "q" in noise else "value"][1])
                assert moved == (done or c.noise_resample == "step"), (done, c.noise_resample)
        assert dqn.renew_noise({}, jnp.bool_(True), jax.random.key(1), PLAIN) == {}

    def test_greedy_evaluation_uses_the_mean_network(self):
        state = _init(jax.random.key(0), RAINBOW, HPARAMS)
        obs = jax.random.normal(jax.random.key(1), (4,))
        zero = dqn.setup(RAINBOW).network.zero_noise
        expected = jnp.argmax(dqn.q_values(state.params, obs, zero, RAINBOW))
        assert dqn.greedy_act(state.params, obs, None, RAINBOW) == expected


def sample(config, state, key):
    return dqn.setup(config).buffer.sample(state.buffer, key, 0.4)


class TestUpdate:

    def test_update_compiles_once(self):
        state = filled_state(PLAIN)
        keys = jax.random.split(jax.random.key(4), 3)
        samples = [sample(PLAIN, state, k) for k in keys]
        chex.clear_trace_counter()
        update = jax.jit(chex.assert_max_traces(dqn.update, n=1), static_argnames="config")
        for batch, key in zip(samples, keys):
            state, metrics = update(state, batch, key, HPARAMS, PLAIN)
        assert int(state.step) == 3
        testing.assert_tree_finite((state.params, state.target_params, metrics))
        assert set(metrics) == {"loss/total", "q/taken", "opt/grad_norm", "opt/nonfinite_skipped"}

    def test_runner_chunk_compiles_once(self):
        # A chunk of 3 over a run of 4 iterations: the second call runs 1 and skips 2.
        state, (_, m2) = testing.run_chunks_compiling_once(dqn, PLAIN, HPARAMS, 3)
        assert int(state.env_steps) == PLAIN.total_timesteps and int(state.step) == 5
        assert np.isfinite(m2["loss/total"][0]) and np.isnan(m2["loss/total"][1:]).all()

    @pytest.mark.parametrize("tau", [1.0, 0.1])
    def test_target_update_every_period(self, tau):
        # Period 2: unchanged after update 1; at update 2 a copy (tau 1) or a Polyak step.
        hparams = dqn.HParams.create(tau=tau)
        state = filled_state(PLAIN)
        initial = state.target_params
        keys = jax.random.split(jax.random.key(5), 2)
        state, _ = _update(state, sample(PLAIN, state, keys[0]), keys[0], hparams, PLAIN)
        chex.assert_trees_all_equal(state.target_params, initial)
        state, _ = _update(state, sample(PLAIN, state, keys[1]), keys[1], hparams, PLAIN)
        if tau == 1.0:
            chex.assert_trees_all_equal(state.target_params, state.params)
        else:
            expected = jax.tree.map(lambda p, t: 0.1 * p + 0.9 * t, state.params, initial)
            chex.assert_trees_all_close(state.target_params, expected, rtol=1e-6, atol=1e-7)
        assert not np.allclose(state.target_params["params"]["q"]["kernel"],
                               initial["params"]["q"]["kernel"])

    def test_priority_update_changes_sampling(self):
        buffer = dqn.setup(RAINBOW).buffer
        state = filled_state(RAINBOW, steps=30)
        batch = buffer.sample(state.buffer, jax.random.key(7), 0.4)
        # New windows enter at the max priority (1): sampling starts uniform.
        np.testing.assert_allclose(batch.weights, 1.0)
        before = np.asarray(state.buffer.sum_tree)[state.buffer.sum_tree.shape[0] // 2:]
        state, _ = _update(state, batch, jax.random.key(8), HPARAMS, RAINBOW)
        after = np.asarray(state.buffer.sum_tree)[state.buffer.sum_tree.shape[0] // 2:]
        # The sampled windows now hold |loss|^alpha + eps (C51: the cross-entropy, > 0),
        # every other window keeps its priority.
        idx = np.unique(np.asarray(batch.indices))
        assert (np.abs(after[idx] - 1.0) > 1e-3).all() and (after[idx] > 1e-6).all()
        others = np.setdiff1d(np.arange(before.size), idx)
        np.testing.assert_array_equal(after[others], before[others])
        assert float(state.buffer.max_priority) == after.max()
        # So sampling is no longer uniform: importance weights now differ from 1.
        resampled = buffer.sample(state.buffer, jax.random.key(9), 0.4)
        assert np.asarray(resampled.weights).min() < 0.999


class TestTraining:

    def test_rainbow_smoke_two_seeds_and_vmap_equals_separate_runs(self):
        train = dqn.make_train(RAINBOW)
        keys = jax.random.split(jax.random.key(42), 2)
        state, metrics = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, HPARAMS)
        assert metrics["loss/total"].shape == (2, RAINBOW.num_iterations)
        testing.assert_tree_finite((state.params, {k: v for k, v in metrics.items()
                                                   if not k.startswith("episode/")}))
        np.testing.assert_array_equal(state.env_steps, [80, 80])
        # Warm-up: 2 envs x 10 steps per iteration in phases of 5 steps; learning starts
        # when env_steps reaches 40, after the 2nd phase of the 2nd iteration.
        np.testing.assert_array_equal(metrics["replay/learning"], [[0.0, 0.5, 1.0, 1.0]] * 2)
        np.testing.assert_array_equal(state.step, [5, 5])
        np.testing.assert_array_equal(metrics["loss/total"][:, 0], 0.0)  # finite for the guard
        testing.assert_seeds_differ(np.asarray(metrics["loss/total"])[:, -1:], "losses")
        single = jax.jit(train)
        for s in range(2):
            separate = single(keys[s], HPARAMS)
            for (path, a), b in zip(
                    jax.tree_util.tree_leaves_with_path(jax.tree.map(lambda x: x[s],
                                                                     (state, metrics))),
                    jax.tree.leaves(separate)):
                if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
                    a, b = jax.random.key_data(a), jax.random.key_data(b)
                a, b = np.asarray(a), np.asarray(b)
                where = f"seed {s} {jax.tree_util.keystr(path)}"
                if np.issubdtype(a.dtype, np.floating):
                    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=where)
                else:  # actions in the buffer, counters, keys: exactly
                    np.testing.assert_array_equal(a, b, err_msg=where)

    def test_truncation_is_bootstrapped_with_n_step_targets(self):
        # Reward 1 forever, cut by a 20-step time limit: Q = 1/(1-gamma) = 10 only if the
        # truncation bootstraps (treated as termination, Q would be about 6.5 on average).
        config = dqn.Config(env="probe/time-limit-endless", num_envs=2, rollout_len=50,
                            total_timesteps=2 * 50 * 40, buffer_size=800, minibatch_size=32,
                            learning_starts=200, train_frequency=1, gradient_steps=2,
                            target_update_period=20, n_step=3, hidden_sizes=(16,),
                            anneal_lr=False)
        hparams = dqn.HParams.create(gamma=0.9, learning_rate=1e-2)
        state, _ = jax.jit(dqn.make_train(config))(jax.random.key(0), hparams)
        q = dqn.q_values(state.params, jnp.zeros((1,)), {}, config)
        np.testing.assert_allclose(q, [10.0, 10.0], atol=0.5)
