"""Trust-region kernels: conjugate gradient on SPD systems, the Fisher-vector product
against an explicitly built Fisher matrix, and the line search's guarantees."""

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized
from jax.flatten_util import ravel_pytree

from jaxrl import actor_critic, trust_region
from jaxrl.agents import trpo


def random_spd(seed, n, cond=20.0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eig = np.geomspace(1.0, cond, n)
    return (q * eig) @ q.T, rng.normal(size=n)


class ConjugateGradientTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(0, 1, 2)
    def test_solves_random_spd_system(self, seed):
        a, b = random_spd(seed, 12)
        a32, b32 = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
        solve = self.variant(lambda b: trust_region.conjugate_gradient(
            lambda v: a32 @ v, b, max_iters=40))
        x = np.asarray(solve(b32), np.float64)
        expected = np.linalg.solve(a, b)
        np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())

    def test_pytree_and_vmap_match_single_solves(self):
        systems = [random_spd(s, 6) for s in range(3)]
        a = jnp.asarray(np.stack([s[0] for s in systems]), jnp.float32)
        b = jnp.asarray(np.stack([s[1] for s in systems]), jnp.float32)

        def solve(a, b):  # b split into a two-leaf tree
            tree = {"u": b[:2], "w": b[2:]}
            matvec = lambda t: (lambda y: {"u": y[:2], "w": y[2:]})(  # noqa: E731
                a @ jnp.concatenate([t["u"], t["w"]]))
            x = trust_region.conjugate_gradient(matvec, tree, max_iters=30)
            return jnp.concatenate([x["u"], x["w"]])

        batched = jax.jit(jax.vmap(solve))(a, b)
        for i in range(3):
            np.testing.assert_allclose(batched[i], np.linalg.solve(*systems[i]), rtol=1e-4,
                                       atol=1e-5)

    def test_converged_solve_stays_finite(self):
        # The identity converges in one step; later iterations must not divide 0 by 0.
        x = trust_region.conjugate_gradient(lambda v: v, jnp.ones(4), max_iters=10)
        np.testing.assert_allclose(x, np.ones(4), rtol=1e-6)
        x0 = trust_region.conjugate_gradient(lambda v: v, jnp.zeros(4), max_iters=5)
        np.testing.assert_array_equal(x0, np.zeros(4))


# --- Fisher-vector products against an explicit Fisher ------------------------------

def tiny(env):
    setup = trpo.setup(trpo.Config(env=env, num_envs=2, rollout_len=4, total_timesteps=8,
                                   hidden_sizes=(3,), value_minibatches=1))
    params = trpo.init(jax.random.key(0), setup, trpo.HParams.create()).params
    obs = jax.random.normal(jax.random.key(1), (5,) + setup.spec.obs_shape)
    return setup, params, obs


def explicit_fisher(setup, actor, critic, obs):
    """`mean_s E_a~pi [grad log pi grad log pi^T]` (discrete: a sum over actions) or, for a
    diagonal Gaussian, `J_mu^T diag(1/sigma^2) J_mu + 2 J_s^T J_s` per state."""
    flat, unravel = ravel_pytree(actor)
    spec = setup.spec

    def head(theta, o):
        return actor_critic.heads(actor_critic.merge_params(unravel(theta), critic), o,
                                  setup)[0]

    total = np.zeros((flat.size, flat.size))
    for o in obs:
        if spec.discrete:
            logp = lambda th: jax.nn.log_softmax(head(th, o))  # noqa: E731
            p = np.exp(np.asarray(logp(flat)), dtype=np.float64)
            jac = np.asarray(jax.jacobian(logp)(flat), np.float64)  # [A, P]
            total += (jac.T * p) @ jac
        else:
            mean = lambda th: head(th, o)[0]  # noqa: E731
            log_std = lambda th: head(th, o)[1]  # noqa: E731
            jm = np.asarray(jax.jacobian(mean)(flat), np.float64)
            js = np.asarray(jax.jacobian(log_std)(flat), np.float64)
            inv_var = np.exp(-2.0 * np.asarray(log_std(flat), np.float64))
            total += (jm.T * inv_var) @ jm + 2.0 * js.T @ js
    return total / len(obs), flat, unravel


@parameterized.parameters("CartPole-v1", "Pendulum-v1")
class FisherTest(parameterized.TestCase):

    def test_fvp_matches_explicit_fisher(self, env):
        setup, params, obs = tiny(env)
        actor, critic = actor_critic.split_params(params)
        policy_params, _ = actor_critic.heads(params, obs, setup)
        batch = actor_critic.Batch(obs=obs, action=None, log_prob=None, value=None,
                                   advantage=None, target=None, policy_params=policy_params)
        fisher, flat, unravel = explicit_fisher(setup, actor, critic, obs)
        kl_fn = lambda a: trpo.kl_to_old(a, critic, batch, setup)  # noqa: E731
        for seed in range(3):
            v = np.random.default_rng(seed).normal(size=flat.size).astype(np.float32)
            for damping in (0.0, 0.1):
                fv = trust_region.fisher_vector_product(kl_fn, actor, unravel(v), damping)
                np.testing.assert_allclose(ravel_pytree(fv)[0], fisher @ v + damping * v,
                                           rtol=2e-4, atol=1e-6)
        assert np.abs(fisher).max() > 1e-3  # not vacuous


# --- The line search: every accepted step is inside the trust region ------------------

SETUP, PARAMS, _ = tiny("CartPole-v1")


def random_batch(seed, setup=SETUP, params=PARAMS, size=64):
    keys = jax.random.split(jax.random.key(seed), 4)
    obs_shape = setup.spec.obs_shape
    # Old policy: a perturbed copy of PARAMS, so the batch is not drawn from the current one.
    flat, unravel = ravel_pytree(params)
    old = unravel(flat + 0.3 * jax.random.normal(keys[0], flat.shape))
    obs = 2.0 * jax.random.normal(keys[1], (size,) + obs_shape)
    dist, _ = actor_critic.policy(old, obs, setup)
    action = dist.sample(seed=keys[2])
    policy_params, _ = actor_critic.heads(old, obs, setup)
    adv = jax.random.normal(keys[3], (size,))
    return actor_critic.Batch(obs=obs, action=action, log_prob=dist.log_prob(action),
                              value=jnp.zeros(size), advantage=adv, target=jnp.zeros(size),
                              policy_params=policy_params), old


def _step(params, batch, max_kl, backtrack):
    hparams = trpo.HParams.create().replace(max_kl=max_kl, backtrack_coef=backtrack)
    return trpo.policy_step(params, batch, hparams, SETUP)


_policy_step = jax.jit(_step)
_kl = jax.jit(lambda a, c, b: trpo.kl_to_old(a, c, b, SETUP))
_surrogate = jax.jit(lambda a, c, b: trpo.surrogate(a, c, b, SETUP))


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(seed=st.integers(0, 10_000), max_kl=st.sampled_from([1e-3, 1e-2, 5e-2]),
                  backtrack=st.sampled_from([0.5, 0.8]))
def test_every_accepted_step_satisfies_the_kl_constraint(seed, max_kl, backtrack):
    batch, old = random_batch(seed)
    new, metrics = _policy_step(old, batch, jnp.float32(max_kl), jnp.float32(backtrack))
    a_old, critic = actor_critic.split_params(old)
    a_new, critic_new = actor_critic.split_params(new)
    chex.assert_trees_all_equal(critic, critic_new)  # the critic never moves
    if float(metrics["trpo/accepted"]):
        kl = float(_kl(a_new, critic, batch))
        assert kl <= max_kl, (kl, max_kl)
        assert float(_surrogate(a_new, critic, batch)) > float(_surrogate(a_old, critic, batch))
        np.testing.assert_allclose(kl, float(metrics["trpo/kl"]), rtol=1e-4)
    else:
        chex.assert_trees_all_equal(a_old, a_new)


def test_steps_are_accepted_and_fill_the_region():
    accepted, kls = [], []
    for seed in range(8):
        batch, old = random_batch(seed)
        _, m = _policy_step(old, batch, jnp.float32(0.01), jnp.float32(0.8))
        accepted.append(float(m["trpo/accepted"]))
        kls.append(float(m["trpo/kl"]))
    assert sum(accepted) >= 6, accepted
    # The quadratic model puts the full step at the boundary: accepted KLs are close to it.
    assert max(kls) > 0.003, kls


def test_no_improvement_means_no_step():
    batch, old = random_batch(0)
    batch = batch.replace(advantage=jnp.zeros_like(batch.advantage))
    new, m = _policy_step(old, batch, jnp.float32(0.01), jnp.float32(0.8))
    assert float(m["trpo/accepted"]) == 0.0
    chex.assert_trees_all_equal(new, old)
