"""GAE against a plain NumPy loop, rlax as an oracle where it applies, and properties."""

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import rlax
from absl.testing import parameterized

from jaxrl import returns

T = 12


def numpy_gae(r, discount, v_tm1, v_t, cut, lam):
    """Reference: backward loop, bootstrapping in delta, recursion reset at every cut."""
    adv = np.zeros_like(r)
    acc = 0.0
    for t in reversed(range(len(r))):
        delta = r[t] + discount[t] * v_t[t] - v_tm1[t]
        acc = delta + (0.0 if cut[t] else discount[t] * lam * acc)
        adv[t] = acc
    return adv


def random_trajectory(seed, batch=5, length=T, gamma=0.99):
    """Random [B, T] trajectories with terminations and truncations.

    `v_t` is the next step's `v_tm1` except where an episode ended: there it is the value of
    the pre-reset observation (a different number), as in a real rollout.
    """
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(batch, length)).astype(np.float32)
    terminated = rng.random((batch, length)) < 0.15
    truncated = (rng.random((batch, length)) < 0.15) & ~terminated
    v_tm1 = rng.normal(size=(batch, length)).astype(np.float32)
    v_last = rng.normal(size=(batch, 1)).astype(np.float32)
    v_final = rng.normal(size=(batch, length)).astype(np.float32)
    v_next = np.concatenate([v_tm1[:, 1:], v_last], axis=1)
    cut = terminated | truncated
    v_t = np.where(cut, v_final, v_next).astype(np.float32)
    discount = (gamma * (1.0 - terminated)).astype(np.float32)
    return r, discount, v_tm1, v_t, cut.astype(np.float32)


class GaeTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("td0", 0.0), ("lambda_0.9", 0.9), ("mc", 1.0))
    def test_matches_numpy_loop(self, lambda_):
        r, d, v_tm1, v_t, cut = random_trajectory(seed=0)
        self.assertGreater(cut.sum(), 0)
        gae = self.variant(jax.vmap(returns.gae, in_axes=(0, 0, 0, 0, 0, None)))
        expected = np.stack([numpy_gae(*x, lambda_) for x in zip(r, d, v_tm1, v_t, cut)])
        np.testing.assert_allclose(gae(r, d, v_tm1, v_t, cut, lambda_), expected,
                                   rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_batched_form_is_time_major(self):
        r, d, v_tm1, v_t, cut = random_trajectory(seed=1)
        batched = self.variant(returns.batched_gae)
        out = batched(r.T, d.T, v_tm1.T, v_t.T, cut.T, 0.95)
        expected = np.stack([numpy_gae(*x, 0.95) for x in zip(r, d, v_tm1, v_t, cut)]).T
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)

    def test_equals_rlax_without_truncation(self):
        # With terminations only, rlax's GAE over values [v_0..v_T] is the same estimator.
        r, d, v_tm1, v_t, _ = random_trajectory(seed=2)
        terminated = (d == 0).astype(np.float32)
        for b in range(r.shape[0]):
            v_next = np.concatenate([v_tm1[b, 1:], v_t[b, -1:]])
            ours = returns.gae(r[b], d[b], v_tm1[b], v_next, terminated[b], 0.9)
            values = np.concatenate([v_tm1[b], v_t[b, -1:]])
            oracle = rlax.truncated_generalized_advantage_estimation(r[b], d[b], 0.9, values)
            np.testing.assert_allclose(ours, oracle, rtol=1e-5, atol=1e-5)

    def test_lambda_one_no_cuts_is_discounted_return_minus_value(self):
        r, _, v_tm1, _, _ = random_trajectory(seed=3)
        d = np.full_like(r, 0.97)
        for b in range(r.shape[0]):
            bootstrap = np.float32(1.5)
            v_t = np.concatenate([v_tm1[b, 1:], [bootstrap]])
            adv = returns.gae(r[b], d[b], v_tm1[b], v_t, np.zeros_like(r[b]), 1.0)
            g = rlax.discounted_returns(r[b], d[b], jnp.full_like(r[b], bootstrap))
            np.testing.assert_allclose(adv, g - v_tm1[b], rtol=1e-5, atol=1e-5)

    def test_truncation_bootstraps_from_final_observation(self):
        # Hand-worked: two steps, the first truncated. Step 0's advantage must use the value
        # of its own final observation (5.0), not the next episode's first value (100.0).
        r = np.array([1.0, 2.0], np.float32)
        d = np.array([0.5, 0.5], np.float32)
        v_tm1 = np.array([0.0, 100.0], np.float32)
        v_t = np.array([5.0, 10.0], np.float32)
        cut = np.array([1.0, 0.0], np.float32)
        adv = np.asarray(returns.gae(r, d, v_tm1, v_t, cut, 1.0))
        np.testing.assert_allclose(adv, [1.0 + 0.5 * 5.0 - 0.0, 2.0 + 0.5 * 10.0 - 100.0])


_gae = jax.jit(returns.gae)
floats = hnp.arrays(np.float32, (T,), elements=st.floats(-10, 10, width=32))
flags = hnp.arrays(np.float32, (T,), elements=st.sampled_from([0.0, 1.0]))


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(r=floats, v_tm1=floats, v_t=floats, cut=flags, lam=st.floats(0, 1))
def test_advantage_at_a_cut_is_the_td_error(r, v_tm1, v_t, cut, lam):
    discount = np.full(T, 0.99, np.float32)
    adv = np.asarray(_gae(r, discount, v_tm1, v_t, cut, lam))
    delta = r + discount * v_t - v_tm1
    np.testing.assert_allclose(adv[cut == 1], delta[cut == 1], rtol=1e-5, atol=1e-4)


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(r=floats, v_tm1=floats, v_t=floats, cut=flags, lam=st.floats(0, 1))
def test_steps_before_a_cut_ignore_everything_after_it(r, v_tm1, v_t, cut, lam):
    # Changing rewards after the first cut must not change any advantage up to that cut.
    hypothesis.assume(cut.sum() > 0)
    first = int(np.argmax(cut == 1))
    discount = np.full(T, 0.9, np.float32)
    r2 = r.copy()
    r2[first + 1:] += 3.0
    a = np.asarray(_gae(r, discount, v_tm1, v_t, cut, lam))
    b = np.asarray(_gae(r2, discount, v_tm1, v_t, cut, lam))
    np.testing.assert_array_equal(a[: first + 1], b[: first + 1])


def numpy_discounted_returns(r, discount, cut, bootstrap):
    """Reference: backward loop; a cut replaces the tail with the bootstrap value."""
    g = np.zeros_like(r)
    acc = 0.0
    for t in reversed(range(len(r))):
        acc = r[t] + discount[t] * (bootstrap[t] if cut[t] else acc)
        g[t] = acc
    return g


def numpy_episode_returns(r, cut):
    """Reference: split the window into episodes at cuts, give every step its episode's sum."""
    out = np.zeros_like(r)
    start = 0
    for t in range(len(r)):
        if cut[t] or t == len(r) - 1:
            out[start:t + 1] = r[start:t + 1].sum()
            start = t + 1
    return out


class DiscountedReturnsTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_numpy_loop(self):
        # Terminations (discount 0) and truncations (bootstrap from v_t, the final obs).
        r, d, _, v_t, cut = random_trajectory(seed=4)
        self.assertGreater(((d > 0) & (cut == 1)).sum(), 0)  # has truncations
        self.assertGreater((d == 0).sum(), 0)  # has terminations
        cut[:, -1] = 1.0  # bootstrap after the window from v_t[-1]
        fn = self.variant(jax.vmap(returns.discounted_returns))
        expected = np.stack([numpy_discounted_returns(*x) for x in zip(r, d, cut, v_t)])
        np.testing.assert_allclose(fn(r, d, cut, v_t), expected, rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_batched_form_is_time_major(self):
        r, d, _, v_t, cut = random_trajectory(seed=5)
        out = self.variant(returns.batched_discounted_returns)(r.T, d.T, cut.T, v_t.T)
        expected = np.stack([numpy_discounted_returns(*x) for x in zip(r, d, cut, v_t)]).T
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)

    @parameterized.named_parameters(("bootstrap", 1.5), ("no_bootstrap", 0.0))
    def test_no_cuts_equals_rlax(self, bootstrap):
        r, _, _, _, _ = random_trajectory(seed=6)
        d = np.full_like(r, 0.97)
        for b in range(r.shape[0]):
            # Only the last step is cut, to bootstrap after the window as rlax does.
            cut = np.zeros_like(r[b])
            cut[-1] = 1.0
            boot = np.full_like(r[b], bootstrap)
            ours = returns.discounted_returns(r[b], d[b], cut, boot)
            oracle = rlax.discounted_returns(r[b], d[b], jnp.float32(bootstrap))
            np.testing.assert_allclose(ours, oracle, rtol=1e-5, atol=1e-5)
        # With no cut at all the return beyond the window is 0.
        ours = returns.discounted_returns(r[0], d[0], np.zeros_like(r[0]), np.full_like(r[0], 9.0))
        oracle = rlax.discounted_returns(r[0], d[0], jnp.float32(0.0))
        np.testing.assert_allclose(ours, oracle, rtol=1e-5, atol=1e-5)

    def test_hand_worked_truncation_and_termination(self):
        # Steps 0-1: an episode truncated at step 1 (bootstrap 10); steps 2-3: one that
        # terminates at step 3 (bootstrap ignored, discount 0); 100.0 must never appear.
        r = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
        d = np.array([0.5, 0.5, 0.5, 0.0], np.float32)
        cut = np.array([0.0, 1.0, 0.0, 1.0], np.float32)
        boot = np.array([100.0, 10.0, 100.0, 100.0], np.float32)
        g = np.asarray(returns.discounted_returns(r, d, cut, boot))
        np.testing.assert_allclose(g, [1.0 + 0.5 * 7.0, 2.0 + 0.5 * 10.0, 3.0 + 0.5 * 4.0, 4.0])

    def test_inf_bootstrap_away_from_a_cut_does_not_leak(self):
        r = np.ones(3, np.float32)
        d = np.full(3, 0.5, np.float32)
        g = returns.discounted_returns(r, d, np.zeros(3, np.float32),
                                       np.full(3, np.inf, np.float32))
        np.testing.assert_allclose(g, [1.75, 1.5, 1.0])


class EpisodeReturnsTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_worked(self):
        # Episodes in the window: [0, 1] (ends at 1), [2, 3, 4] (ends at 4), [5, 6] (still
        # running at the end of the window: partial sum).
        r = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], np.float32)
        cut = np.array([0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0], np.float32)
        out = self.variant(returns.episode_returns)(r, cut)
        np.testing.assert_allclose(out, [3.0, 3.0, 12.0, 12.0, 12.0, 13.0, 13.0])

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_numpy_loop(self):
        r, _, _, _, cut = random_trajectory(seed=7)
        fn = self.variant(jax.vmap(returns.episode_returns))
        expected = np.stack([numpy_episode_returns(*x) for x in zip(r, cut)])
        np.testing.assert_allclose(fn(r, cut), expected, rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_batched_form_and_bool_cuts(self):
        r, _, _, _, cut = random_trajectory(seed=8)
        out = self.variant(returns.batched_episode_returns)(r.T, cut.T.astype(bool))
        expected = np.stack([numpy_episode_returns(*x) for x in zip(r, cut)]).T
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


_discounted_returns = jax.jit(returns.discounted_returns)
_episode_returns = jax.jit(returns.episode_returns)


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(r=floats, cut=flags)
def test_episode_return_is_the_undiscounted_return_at_each_episode_start(r, cut):
    # At an episode's first step, R(tau) is its undiscounted reward-to-go (gamma = 1).
    total = np.asarray(_episode_returns(r, cut))
    to_go = np.asarray(_discounted_returns(r, np.ones(T, np.float32), cut,
                                           np.zeros(T, np.float32)))
    starts = np.concatenate([[True], cut[:-1] == 1])
    np.testing.assert_allclose(total[starts], to_go[starts], rtol=1e-5, atol=1e-4)
    # And it is constant within an episode.
    episode_id = np.cumsum(starts)
    for e in np.unique(episode_id):
        np.testing.assert_array_equal(total[episode_id == e], total[episode_id == e][0])
