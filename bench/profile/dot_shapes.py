"""XLA:CPU time of the dense-layer dots of small MLPs, by shape and form.

Usage: `.venv/bin/python bench/profile/dot_shapes.py`. For a layer with batch B, fan-in I
and fan-out O: the weight gradient x^T dy (contracting the batch axis), the same with the
transpose materialised first, the forward x @ W, and the input gradient dy @ W^T; each
2,000 times in one compiled loop, best of 3, in microseconds.
"""

import _timing
import jax
import jax.numpy as jnp
from jax import lax

N = 2000
SHAPES = [(128, 64, 64), (128, 64, 2), (128, 64, 1), (128, 4, 64), (256, 256, 256),
          (256, 4, 256), (256, 256, 1), (128, 120, 84), (128, 84, 2), (512, 64, 64)]


def per_call(f, *shapes) -> float:
    """Microseconds per `f(*operands)`, the operands perturbed each step (no hoisting)."""
    xs = [jax.random.normal(jax.random.key(i), s) * 0.01 for i, s in enumerate(shapes)]

    def body(i, c):
        return c + f(*[x + c * 1e-9 for x in xs]).sum() * 1e-9

    loop = jax.jit(lambda: lax.fori_loop(0, N, body, jnp.float32(0)))
    return _timing.best_time(loop, repeats=3) / N * 1e6


def main() -> None:
    weight_grad = lambda a, b: lax.dot_general(a, b, (((0,), (0,)), ((), ())))  # noqa: E731
    transposed_first = lambda a, b: lax.optimization_barrier(a.T) @ b  # noqa: E731
    input_grad = lambda d, w: lax.dot_general(d, w, (((1,), (1,)), ((), ())))  # noqa: E731
    for b, i, o in SHAPES:
        x, dy, w = (b, i), (b, o), (i, o)
        print(f"B{b} in{i} out{o}: dW {per_call(weight_grad, x, dy):7.2f}  "
              f"dW transpose-first {per_call(transposed_first, x, dy):7.2f}  "
              f"forward {per_call(lambda a, v: a @ v, x, w):7.2f}  "
              f"dx {per_call(input_grad, dy, w):7.2f}")


if __name__ == "__main__":
    main()
