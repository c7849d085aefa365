"""DQN family: configs, shapes, promised effects, compile-once, warm-up, noise, vmap, probes."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import cli, runner, testing
from jaxrl.agents import REGISTRY, dqn
from jaxrl.config import ConfigError

# Few distinct configs, so the file compiles few programs: plain DQN and Rainbow.
TINY = dict(num_envs=2, rollout_len=10, total_timesteps=2 * 10 * 4, buffer_size=64,
            minibatch_size=8, learning_starts=40, train_frequency=5, target_update_period=2,
            hidden_sizes=(16,))
PLAIN = dqn.Config(**TINY)
RAINBOW = dqn.RainbowConfig(**TINY)
HPARAMS = dqn.HParams.create()


@functools.cache
def built(config):
    """`dqn.setup(config)`, built once per config (as the runner does) and reused."""
    return dqn.setup(config)


@functools.cache
def _jitted(config):
    """`init`, `collect_step` and `update` jitted, each closed over `built(config)`."""
    s = built(config)
    return (jax.jit(lambda key, hp: dqn.init(key, s, hp)),
            jax.jit(lambda state, key, hp: dqn.collect_step(state, key, hp, s)),
            jax.jit(lambda state, sample, key, hp: dqn.update(state, sample, key, hp, s)))


def _init(key, config, hparams):
    return _jitted(config)[0](key, hparams)


def _collect_step(state, key, hparams, config):
    return _jitted(config)[1](state, key, hparams)


def _update(state, sample, key, hparams, config):
    return _jitted(config)[2](state, sample, key, hparams)


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
        (dict(torso="rnn"), "torso"),
        (dict(env="CartPol-v1"), "CartPole-v1"),
        (dict(total_timesteps=10), "total_timesteps"),
        (dict(target_update_period=0), "target_update_period"),
    ])
    def test_bad_config_names_the_field(self, kwargs, field):
        with pytest.raises(ConfigError, match=field):
            dqn.Config(**{**TINY, **kwargs})

    def test_a_cnn_torso_on_flat_observations_is_refused_at_setup(self):
        with pytest.raises(ConfigError, match="torso cnn needs image observations"):
            dqn.AGENT.setup(dqn.Config(**{**TINY, "torso": "cnn"}))

    @pytest.mark.parametrize("config_cls", [dqn.Config, dqn.C51Config, dqn.RainbowConfig])
    def test_continuous_env_is_refused_with_a_suggestion(self, config_cls):
        with pytest.raises(ConfigError, match="continuous") as e:
            dqn.AGENT.setup(config_cls(env="Pendulum-v1"))
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
        assert (plain.steps_per_iteration, plain.num_iterations) == (500, 1000)
        # 50 learning phases per iteration, the first 1000 before learning_starts: 49001
        # updates (the phase that reaches learning_starts learns).
        assert plain.num_updates == 1000 * 50 - 1000 + 1

    @pytest.mark.parametrize("name, record, config_cls", [
        ("dqn", "AGENT", dqn.Config), ("c51", "C51_AGENT", dqn.C51Config),
        ("rainbow", "RAINBOW_AGENT", dqn.RainbowConfig)])
    def test_registry_and_cli_help_cover_every_field(self, name, record, config_cls):
        agent = REGISTRY[name]
        for cls in (agent.Config, agent.HParams):
            docs = cli._field_docs(cls)
            assert set(docs) == {f.name for f in cli.dataclasses.fields(cls)}, cls
            assert all(docs.values()), cls
        assert agent is getattr(dqn, record) and agent.name == name
        assert (agent.Config, agent.HParams) == (config_cls, dqn.HParams)
        assert (agent.setup, agent.init, agent.iteration, agent.greedy_act, agent.loss,
                agent.update) == (dqn.setup, dqn.init, dqn.iteration, dqn.greedy_act,
                                  dqn.loss, dqn.update)
        assert agent.doc

    def test_cli_flags_switch_a_preset_component_off(self):
        parser = cli._Parser()
        cli._add_field_flags(parser, dqn.RainbowConfig, "config")
        args = parser.parse_args(["--no-noisy", "--n-step", "1", "--v-min", "-50"])
        config = dqn.RainbowConfig(**cli._collect(args, dqn.RainbowConfig))
        assert (config.noisy, config.n_step, config.v_min, config.dueling) == (
            False, 1, -50.0, True)


class _Features(nn.Module):
    """A torso given from Python: one tanh layer of 5 features."""

    @nn.compact
    def __call__(self, obs):
        return nn.tanh(nn.Dense(5)(obs))


class TestActing:

    @pytest.mark.parametrize("env, torso, kernel_shape", [
        ("Breakout-MinAtar", "cnn", None),
        ("CartPole-v1", _Features(), (4, 5)),
    ])
    def test_config_torso_builds_the_network(self, env, torso, kernel_shape):
        # Rainbow: with a torso other than `mlp` only the heads are noisy.
        config = dqn.RainbowConfig(**{**TINY, "env": env, "torso": torso})
        s = dqn.setup(config)
        state = jax.jit(lambda key: dqn.init(key, s, HPARAMS))(jax.random.key(0))
        kernels = [leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(
            state.params) if "kernel" in jax.tree_util.keystr(path)]
        if kernel_shape is None:  # the CNN: convolution kernels [h, w, in, out]
            assert any(len(shape) == 4 for shape in kernels), kernels
        else:
            assert kernel_shape in kernels, kernels
        assert "torso_0" not in state.params["params"]  # not the MLP torso
        assert state.noise and not any(name.startswith("torso_") for name in state.noise)
        q = dqn.q_values(state.params, state.obs, s.network.zero_noise, s)
        chex.assert_shape(q, (2, s.spec.num_actions))

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
        setup = built(PLAIN)
        # Linear from 1 to 0.05 over half of the 80 steps, then constant.
        eps = [float(dqn.explore_value(jnp.int32(s), HPARAMS, PLAIN)) for s in (0, 20, 40, 80)]
        np.testing.assert_allclose(eps, [1.0, 0.525, 0.05, 0.05], rtol=1e-6)
        obs = jax.random.normal(jax.random.key(1), (200, 4))
        keys = jax.random.split(jax.random.key(2), 200)
        act = jax.jit(jax.vmap(lambda o, k, e: dqn.act(state.params, {}, o, k, e, setup),
                               in_axes=(0, 0, None)))
        greedy = jax.vmap(lambda o: dqn.greedy_act(state.params, o, None, setup))(obs)
        assert greedy.dtype == jnp.int32
        np.testing.assert_array_equal(act(obs, keys, 0.0), greedy)
        uniform = np.asarray(act(obs, keys, 1.0))
        assert 60 < (uniform == 1).sum() < 140  # about half of 200

    def test_boltzmann_temperature(self):
        s = dqn.setup(dqn.Config(**{**TINY, "exploration": "boltzmann"}))
        params = _init(jax.random.key(0), PLAIN, HPARAMS).params
        obs = jnp.broadcast_to(jnp.array([0.1, 0.2, 0.3, 0.4]), (400, 4))
        keys = jax.random.split(jax.random.key(3), 400)
        q = dqn.q_values(params, obs[0], {}, s)
        act = jax.jit(jax.vmap(lambda o, k, t: dqn.act(params, {}, o, k, t, s),
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
        step = dqn.setup(dqn.RainbowConfig(**{**TINY, "noise_resample": "step"}))
        noise = step.network.sample_noise(jax.random.key(0))
        for done in (False, True):
            for s in (step, built(RAINBOW)):
                fresh = dqn.renew_noise(noise, jnp.bool_(done), jax.random.key(1), s)
                moved = not np.array_equal(fresh["q" if "q" in fresh else "value"][1],
                                           noise["q" if "q" in noise else "value"][1])
                resample = s.config.noise_resample
                assert moved == (done or resample == "step"), (done, resample)
        assert dqn.renew_noise({}, jnp.bool_(True), jax.random.key(1), built(PLAIN)) == {}

    def test_greedy_evaluation_uses_the_mean_network(self):
        state = _init(jax.random.key(0), RAINBOW, HPARAMS)
        obs = jax.random.normal(jax.random.key(1), (4,))
        s = built(RAINBOW)
        expected = jnp.argmax(dqn.q_values(state.params, obs, s.network.zero_noise, s))
        assert dqn.greedy_act(state.params, obs, None, s) == expected


def sample(config, state, key):
    return built(config).buffer.sample(state.buffer, key, 0.4)


class TestUpdate:

    def test_update_compiles_once(self):
        state = filled_state(PLAIN)
        keys = jax.random.split(jax.random.key(4), 3)
        samples = [sample(PLAIN, state, k) for k in keys]
        s = built(PLAIN)

        def update_plain(state, sample, key, hparams):
            return dqn.update(state, sample, key, hparams, s)

        chex.clear_trace_counter()
        update = jax.jit(chex.assert_max_traces(update_plain, n=1))
        for batch, key in zip(samples, keys):
            state, metrics = update(state, batch, key, HPARAMS)
        assert int(state.step) == 3
        testing.assert_tree_finite((state.params, state.target_params, metrics))
        assert set(metrics) == {"loss/total", "q/taken", "opt/grad_norm", "opt/nonfinite_skipped"}

    def test_runner_chunk_compiles_once(self):
        # A chunk of 3 over a run of 4 iterations: the second call runs 1 and skips 2.
        state, (_, m2) = testing.run_chunks_compiling_once(dqn.AGENT, PLAIN, HPARAMS, 3)
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
        buffer = built(RAINBOW).buffer
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
        train = runner.make_train(dqn.RAINBOW_AGENT, RAINBOW)
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
        s = dqn.setup(config)
        state, _ = jax.jit(runner.make_train(dqn.AGENT, config, s))(jax.random.key(0), hparams)
        q = dqn.q_values(state.params, jnp.zeros((1,)), {}, s)
        np.testing.assert_allclose(q, [10.0, 10.0], atol=0.5)
