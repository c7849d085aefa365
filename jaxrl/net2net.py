"""Net2Net: grow a trained network without changing the function it computes.

Chen, Goodfellow and Shlens 2016, "Net2Net: Accelerating Learning via Knowledge Transfer"
(arXiv 1511.05641). `widen` is Net2WiderNet (section 2.3): a hidden layer of width `n`
becomes width `q > n` by a random replication mapping `g` (eq. 6: `g(j) = j` for `j < n`,
uniform over `0..n-1` beyond), the layer's incoming weights are copied by `g` and the
consuming layer's weights of unit `j` are divided by the number of copies of `g(j)`, so the
next layer's pre-activations are unchanged. `deepen` is Net2DeeperNet (section 2.4): a new
layer initialised to the identity after a hidden layer, exact for ReLU (`relu(h) = h` for
`h = relu(.) >= 0`). For other activations the paper's identity is not a fixed point; we
insert `eps * I` and scale the consuming weights by `1 / (eps * act'(0))`, which is exact
to first order in `eps`: for tanh `|tanh(eps h) / eps - h| <= eps^2 |h|^3 / 3` (and
`|h| <= 1`), for gelu/silu/elu the error is `O(eps h^2)`.

This module owns the parameter-pytree surgery for jaxrl's own networks (`networks.MLP`,
`networks.CNN` torsos inside `ActorCritic` and the plain `QNetwork`), read from the
parameter names Flax gives them (`chains`), and the rule for the optimizer state
(`grow_opt_state`: map Adam's moments with the same replication, or reset them). The
grown parameters have exactly the structure and shapes `network.init` gives at the new
width, so a caller rebuilds the network from a config with the new `hidden_sizes` (between
jitted phases) and continues with the mapped state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxrl.config import ConfigError, check_choice, check_int, check_real
from jaxrl.types import Params, PRNGKey

Path = tuple[str, ...]
OPT_RULES = ("map", "reset")
# act'(0) of each activation: the slope the scaled identity divides by (`deepen`).
SLOPE_AT_ZERO = {"relu": 1.0, "tanh": 1.0, "elu": 1.0, "gelu": 0.5, "silu": 0.5}


class Chain(NamedTuple):
    """One feed-forward path through a network's parameters.

    Attributes:
      convs: paths (into `params`) of the convolution layers, in call order.
      dense_parent: path of the module holding the dense hidden layers.
      dense_prefix: their name before `_i` (`Dense` in `MLP`, `torso` in `QNetwork`).
      num_dense: how many dense hidden layers.
      heads: paths of the layers the last hidden layer feeds.
    """

    convs: tuple[Path, ...]
    dense_parent: Path
    dense_prefix: str
    num_dense: int
    heads: tuple[Path, ...]

    def dense(self, i: int) -> Path:
        return self.dense_parent + (f"{self.dense_prefix}_{i}",)

    def layers(self) -> tuple[Path, ...]:
        """Every hidden layer's path in call order, convolutions first."""
        return self.convs + tuple(self.dense(i) for i in range(self.num_dense))


def _numbered(tree: dict, prefix: str) -> int:
    count = 0
    while f"{prefix}_{count}" in tree:
        count += 1
    return count


def _torso_chain(tree: dict, path: Path, heads: tuple[Path, ...]) -> Chain:
    """The chain of an `MLP` (`Dense_i`) or `CNN` (`Conv_i`, then `MLP_0/Dense_i`) module."""
    convs = tuple(path + (f"Conv_{i}",) for i in range(_numbered(tree, "Conv")))
    parent = path + ("MLP_0",) if "MLP_0" in tree else path
    node = tree["MLP_0"] if "MLP_0" in tree else tree
    return Chain(convs, parent, "Dense", _numbered(node, "Dense"), heads)


def chains(params: Params) -> list[Chain]:
    """The hidden-layer chains of a jaxrl network's parameters.

    Recognised: `ActorCritic` (separate `actor_torso`/`critic_torso`, or a shared `MLP_0`/
    `CNN_0`) with an `mlp` or `cnn` torso, and a plain (not noisy, `mlp` torso) `QNetwork`.

    Raises:
      ConfigError: another layout (a custom torso, a noisy or continuous network).
    """
    root = params.get("params", {}) if isinstance(params, dict) else {}
    pol, val = ("params", "PolicyHead_0", "Dense_0"), ("params", "ValueHead_0", "Dense_0")
    found = []
    if "actor_torso" in root and "critic_torso" in root:
        found = [_torso_chain(root["actor_torso"], ("params", "actor_torso"), (pol,)),
                 _torso_chain(root["critic_torso"], ("params", "critic_torso"), (val,))]
    elif "PolicyHead_0" in root and ("MLP_0" in root or "CNN_0" in root):
        name = "MLP_0" if "MLP_0" in root else "CNN_0"
        found = [_torso_chain(root[name], ("params", name), (pol, val))]
    elif "torso_0" in root and set(root["torso_0"]) == {"kernel", "bias"}:
        heads = tuple(("params", h) for h in ("q", "value", "advantage") if h in root)
        found = [Chain((), ("params",), "torso", _numbered(root, "torso"), heads)]
    if not found or any(c.num_dense == 0 for c in found):
        raise ConfigError("net2net grows ActorCritic and plain QNetwork parameters with an mlp "
                          f"or cnn torso; got top-level modules {sorted(root)}")
    return found


def _get(tree: dict, path: Path) -> Any:
    for name in path:
        tree = tree[name]
    return tree


def _set(tree: dict, path: Path, value: Any) -> dict:
    """A copy of the nested dict `tree` with `path` set to `value` (None: removed)."""
    if len(path) == 1:
        new = dict(tree)
        if value is None:
            new.pop(path[0], None)
        else:
            new[path[0]] = value
        return new
    return {**tree, path[0]: _set(tree[path[0]], path[1:], value)}


def replication_map(key: PRNGKey, old: int, new: int) -> jax.Array:
    """Net2WiderNet's mapping `g` (eq. 6): `[new]` int32, `g(j) = j` for `j < old`, then
    uniform over `0 .. old-1`."""
    extra = jax.random.randint(key, (new - old,), 0, old, dtype=jnp.int32)
    return jnp.concatenate([jnp.arange(old, dtype=jnp.int32), extra])


def _trailing(v: jax.Array, ndim: int) -> jax.Array:
    # Explicit leading ones, so strict rank promotion accepts the broadcast.
    return v.reshape((1,) * (ndim - v.ndim) + v.shape)


def widen_out(kernel: jax.Array, bias: jax.Array, g: jax.Array, counts: jax.Array,
              power: int = 0) -> tuple[jax.Array, jax.Array]:
    """The producing layer's parameters (or a moment of them) for the wider layer.

    Args:
      kernel: `[..., in, n]` (dense `[in, n]`, convolution `[h, w, in, n]`).
      bias: `[n]`.
      g: `[q]` replication mapping.
      counts: `[n]` copies of each old unit.
      power: 0 for parameters (copied); 1 and 2 for the first and second moments of their
        gradients, which a replica receives divided by its count (squared for `nu`).

    Returns:
      `(kernel [..., in, q], bias [q])`.
    """
    scale = counts[g].astype(kernel.dtype) ** power
    return jnp.take(kernel, g, axis=-1) / _trailing(scale, kernel.ndim), bias[g] / scale


def widen_in(kernel: jax.Array, g: jax.Array, counts: jax.Array, power: int = 1) -> jax.Array:
    """The consuming layer's kernel for a wider input: rows gathered by `g`, divided by the
    copies (Net2WiderNet's `U[j, h] / |{x | g(x) = g(j)}|`).

    Args:
      kernel: `[..., n, out]` (dense or convolution), or a dense kernel `[P * n, out]` after
        a flattened convolution with `n` channels at `P` positions.
      g: `[q]` replication mapping; counts: `[n]`.
      power: 1 for parameters; 0 for gradient moments (a replica's gradient is the old one).

    Returns:
      `[..., q, out]` or `[P * q, out]`.
    """
    n = counts.shape[0]
    flat = kernel.ndim == 2 and kernel.shape[0] != n
    if flat:
        kernel = kernel.reshape(kernel.shape[0] // n, n, kernel.shape[1])
    scale = counts[g].astype(kernel.dtype) ** power
    out = jnp.take(kernel, g, axis=-2) / _trailing(scale[:, None], kernel.ndim)
    return out.reshape(-1, out.shape[-1]) if flat else out


def _widen_tree(tree: Params, index: int, width: int, g: jax.Array, *, conv: bool,
                power_out: int, power_in: int,
                noise: tuple[float, PRNGKey] | None = None) -> Params:
    """Widen hidden layer `index` (dense, or convolution with `conv`) of every chain;
    `noise = (scale, key)` perturbs the replicated units' incoming weights."""
    for number, chain in enumerate(chains(tree)):
        layers = chain.convs if conv else tuple(chain.dense(i) for i in range(chain.num_dense))
        path = layers[index]
        layer = _get(tree, path)
        n = layer["bias"].shape[0]
        counts = jnp.bincount(g, length=n)
        kernel, bias = widen_out(layer["kernel"], layer["bias"], g, counts, power_out)
        if noise is not None:
            # Break the replicas' symmetry (section 2.3) on the units that were copied only.
            scale, key = noise
            replicated = _trailing((counts[g] > 1).astype(kernel.dtype), kernel.ndim)
            eps = jax.random.normal(jax.random.fold_in(key, number), kernel.shape,
                                    kernel.dtype)
            kernel = kernel + scale * jnp.std(layer["kernel"]) * eps * replicated
        tree = _set(tree, path, {**layer, "kernel": kernel, "bias": bias})
        all_layers = chain.layers()
        position = all_layers.index(path)
        consumers = ((all_layers[position + 1],) if position + 1 < len(all_layers)
                     else chain.heads)
        for c in consumers:
            consumer = _get(tree, c)
            tree = _set(tree, c, {**consumer,
                                  "kernel": widen_in(consumer["kernel"], g, counts, power_in)})
    return tree


def _hidden_width(params: Params, index: int, conv: bool) -> int:
    chain = chains(params)[0]
    layers = chain.convs if conv else tuple(chain.dense(i) for i in range(chain.num_dense))
    if not 0 <= index < len(layers):
        kind = "convolution" if conv else "dense hidden layer"
        raise ConfigError(f"layer index must be in 0..{len(layers) - 1} ({kind}s), got {index}")
    return int(_get(params, layers[index])["bias"].shape[0])


def widen(params: Params, index: int, width: int, key: PRNGKey, *, noise: float = 0.0,
          conv: bool = False) -> Params:
    """Net2WiderNet: hidden layer `index` widened to `width` units in every torso.

    The replication mapping is drawn from `key` and shared by the torsos. With `noise = 0`
    the network computes the same function (to float rounding). With `noise > 0`, the
    incoming weights of every replicated unit get Gaussian noise of standard deviation
    `noise * std(W)` (`W` the layer's old kernel) to break the replicas' symmetry; the
    pre-activations of those units then move by at most `sum_i |x_i| |dW_ij|`, and with
    1-Lipschitz activations (relu, tanh) the outputs by at most that propagated through
    `|W|` of the layers after it.

    Args:
      params: an `ActorCritic` or `QNetwork` parameter tree (see `chains`), unbatched.
      index: which dense hidden layer (`hidden_sizes[index]`), or convolution with `conv`.
      width: the new width, at least the current one.
      key: the mapping's (and the noise's) key.

    Returns:
      Parameters of the same network at the new width.
    """
    old = _hidden_width(params, index, conv)
    check_int("width", width)
    if width < old:
        raise ConfigError(f"width must be at least the current {old}, got {width}")
    check_real("noise", noise)
    map_key, noise_key = jax.random.split(key)
    g = replication_map(map_key, old, width)
    return _widen_tree(params, index, width, g, conv=conv, power_out=0, power_in=1,
                       noise=(noise, noise_key) if noise > 0 else None)


def _widen_moment(tree: Params, index: int, width: int, key: PRNGKey, power: int,
                  conv: bool) -> Params:
    """`widen` applied to a gradient moment (`power` 1: `mu`, 2: `nu`), same mapping."""
    old = _hidden_width(tree, index, conv)
    g = replication_map(jax.random.split(key)[0], old, width)
    return _widen_tree(tree, index, width, g, conv=conv, power_out=power, power_in=0)


def deepen(params: Params, index: int, activation: str, *, eps: float | None = None,
           moment: bool = False) -> Params:
    """Net2DeeperNet: insert a dense layer initialised to (scaled) identity after dense
    hidden layer `index` of every torso.

    With ReLU the result is exact (`eps` 1). Otherwise the new layer is `eps * I` and the
    layer after it is scaled by `1 / (eps * act'(0))`; default `eps` 1e-2 gives, for tanh,
    an output error bounded by the pre-activation error `eps^2 / 3` per unit (`|h| <= 1`)
    times `|W|` of the following layers (see the module docstring).

    Args:
      params: parameters (or, with `moment`, a gradient moment shaped like them: the new
        layer's is zero and the next layer's is kept).
      index: the dense hidden layer the new one follows.
      activation: the network's hidden activation.

    Returns:
      Parameters with one more hidden layer of width `hidden_sizes[index]`.
    """
    check_choice("activation", activation, SLOPE_AT_ZERO)
    if eps is None:
        eps = 1.0 if activation == "relu" else 1e-2
    eps = check_real("eps", eps)
    if eps <= 0:
        raise ConfigError(f"eps must be positive, got {eps}")
    width = _hidden_width(params, index, False)
    scale = eps * SLOPE_AT_ZERO[activation]
    for chain in chains(params):
        for i in reversed(range(index + 1, chain.num_dense)):
            params = _set(params, chain.dense(i + 1), _get(params, chain.dense(i)))
        ref = _get(params, chain.dense(index))
        eye = jnp.eye(width, dtype=ref["kernel"].dtype) * (0.0 if moment else eps)
        params = _set(params, chain.dense(index + 1),
                      {"kernel": eye, "bias": jnp.zeros_like(ref["bias"])})
        grown = chain._replace(num_dense=chain.num_dense + 1)
        following = ((grown.dense(index + 2),) if index + 2 < grown.num_dense
                     else chain.heads)
        if not moment:
            for path in following:
                layer = _get(params, path)
                params = _set(params, path, {**layer, "kernel": layer["kernel"] / scale})
    return params


def _map_opt(old: Any, new: Any, fn: Callable[[Any, int], Any]) -> Any:
    """Walk an optax state: moments (`mu`, `nu`, `trace`) through `fn(tree, power)`, other
    parts kept where their shapes did not change, else taken from the fresh `new` state."""
    if hasattr(old, "_fields"):
        moments = {"mu": 1, "nu": 2, "trace": 1}
        values = [fn(getattr(old, f), moments[f]) if f in moments
                  else _map_opt(getattr(old, f), getattr(new, f), fn) for f in old._fields]
        return type(old)(*values)
    if isinstance(old, (tuple, list)):
        return type(old)(_map_opt(o, n, fn) for o, n in zip(old, new))
    if isinstance(old, dict) and jax.tree.structure(old) != jax.tree.structure(new):
        return new
    same = (jax.tree.structure(old) == jax.tree.structure(new)
            and all(getattr(a, "shape", None) == getattr(b, "shape", None)
                    for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new))))
    return old if same else new


class Growth(NamedTuple):
    """One growth step, as recorded and replayed: `kind` `widen` or `deepen`."""

    kind: str
    index: int
    width: int = 0
    noise: float = 0.0
    activation: str = "relu"
    eps: float | None = None


def grow_params(params: Params, step: Growth, key: PRNGKey) -> Params:
    """`widen` or `deepen` as `step` says."""
    if step.kind == "widen":
        return widen(params, step.index, step.width, key, noise=step.noise)
    return deepen(params, step.index, step.activation, eps=step.eps)


def grow_opt_state(opt_state: Any, fresh: Any, step: Growth, key: PRNGKey, *,
                   rule: str = "map") -> Any:
    """The optimizer state for the grown parameters.

    `rule = "reset"`: `fresh`. `rule = "map"`: Adam's (or momentum's) moments are mapped
    with the same replication as the parameters: a replica's gradient on its incoming
    weights is the old one divided by its count (so `mu / c`, `nu / c^2`), on its outgoing
    weights the old one unchanged; a deepened layer's moments start at zero. Counters and
    other state keep their values.

    Args:
      opt_state: the state before growth (unbatched).
      fresh: the optimizer's state for the grown parameters, as `tx.init(new_params)`
        gives it (or its zeros: only its structure and shapes are read under `map`).
      key: the key `grow_params` used (the same mapping is drawn from it).
    """
    check_choice("rule", rule, OPT_RULES)
    if rule == "reset":
        return fresh
    if step.kind == "widen":
        def fn(tree, power):
            return _widen_moment(tree, step.index, step.width, key, power, False)
    else:
        def fn(tree, power):
            return deepen(tree, step.index, step.activation, eps=step.eps, moment=True)
    return _map_opt(opt_state, fresh, fn)


def hidden_sizes(params: Params) -> tuple[int, ...]:
    """The dense hidden widths of a network's parameters (its config's `hidden_sizes`)."""
    chain = chains(params)[0]
    return tuple(int(_get(params, chain.dense(i))["bias"].shape[0])
                 for i in range(chain.num_dense))
