"""Inputs of the student's own: every hidden check draws its inputs from a generator seeded by
the student, the assignment and what they wrote (``student_key``, under the course's secret), so a
table made before grading, a classmate's outputs or a leaked hidden test are of no use.
"""
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import numpy as np


def student_key(assignment: str, student: str, code: tuple[str, ...] | list[str] = (), secret: bytes = b"") -> tuple[int, ...]:
    """The part of the hidden inputs' seed that is the student's own: four 32-bit words of an
    HMAC, under the course's ``secret`` (course_secret), of the assignment, the student id and
    the ``code`` they wrote (their answer and added cells). A regrade of the same submission meets
    the same inputs; a changed submission (one that tables what an earlier feedback showed of its
    inputs) new ones; and nobody without the secret, which no kernel can read, can compute them.
    () without a student (the source notebook: `make release` records PyTorch's values for the
    checks' own inputs)."""
    if not student:
        return ()
    written = hashlib.sha256("\0".join(code).encode()).hexdigest()
    digest = hmac.new(secret, f"hidden inputs\0{assignment}\0{student}\0{written}".encode(), hashlib.sha256).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))


SECRET_FILE = "hidden_inputs.key"  # in the course folder (nbgrader_config.py names it too)


def course_secret(path: str | Path) -> bytes:
    """The course's secret for the hidden inputs: the file ``path`` (``hidden_inputs.key`` in the
    course folder, readable by its owner alone, outside every kernel's view), made on first use.
    Keep it for the term: a new one gives every student new hidden inputs."""
    path = Path(path)
    if not path.exists():
        try:
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        except FileExistsError:  # made meanwhile by another grader
            pass
    return bytes.fromhex(path.read_text().strip())


def unseen(shape: tuple, x: np.ndarray) -> np.ndarray:
    """A gradient of ``shape`` for finite differences at ``x`` that no test sent to the kernel
    before: drawn from a generator seeded by ``x`` itself (so the same on every regrade), not the
    one a notebook's visible test uses, nor a hidden test's.

    Example: ``G = unseen((5, 4), x)`` for a layer's output of shape (5, 4) at ``x``"""
    seed = int.from_bytes(hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes()).digest()[:8], "little")
    return np.random.default_rng([7, seed]).normal(size=shape)


def extreme_values(rng: np.random.Generator, shape: tuple, low: float = 710.0, high: float = 1000.0) -> np.ndarray:
    """Values of ``shape`` whose sizes lie between ``low`` and ``high`` (past 709.8, where e**x
    overflows a float64), of both signs in every row of two entries or more, drawn from ``rng``:
    inputs no table made before grading can hold.

    Args:
    - rng: a hidden check's generator (``notebook.rng``).
    - shape: the values' shape.
    - low, high: the range of their sizes.

    Example: ``x = extreme_values(notebook.rng(9002), (2, 5))``"""
    values = rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    rows = values.reshape(-1, shape[-1]) if len(shape) > 1 else values.reshape(1, -1)
    if rows.shape[1] > 1:
        rows[:, 0], rows[:, 1] = np.abs(rows[:, 0]), -np.abs(rows[:, 1])
        for row in rows:
            rng.shuffle(row)
    return values


def extreme_scores(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Scores past +-709.8 (where e**z overflows) of the student's own, shape (n, k), each row with
    a runner-up within 2 of its largest (so a softmax of them is not all 0s and 1s).

    Args:
    - rng: a hidden check's generator (``notebook.rng``).
    - n, k: rows (examples) and columns (classes).

    Example: ``Z = extreme_scores(notebook.rng(9003), 4, 3)``"""
    Z = extreme_values(rng, (n, k))
    rows, top = np.arange(n), Z.argmax(axis=1)
    Z[rows, (top + 1 + rng.integers(k - 1, size=n)) % k] = Z[rows, top] - rng.uniform(0, 2, size=n)
    return Z
