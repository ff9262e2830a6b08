"""Real datasets that need no download, and minibatches to train on them.

This file ships with the assignments that train networks (students use it), so it needs NumPy
only. The data comes from files that installed packages carry: nothing is downloaded when a
notebook is graded.

- ``load("digits")``: scikit-learn's 8x8 handwritten digits (1797 images, 10 classes).
- ``load("iris")``: scikit-learn's iris flowers (150 samples, 4 features, 3 classes).
- ``load("fashion_mnist")``: FashionMNIST (28x28 clothing images, 10 classes) through
  torchvision, where it is installed and may download; the same code then trains on it.
"""
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np


@dataclass
class Dataset:
    """Features scaled to [0, 1] (images) or standardised (tables), one row per sample.

    Attributes:
    - X_train (np.array): shape (N_train, num_features).
    - y_train (np.array): integer labels, shape (N_train,).
    - X_test, y_test: the same for the test set.
    - num_classes (int).
    - image_shape (tuple or None): (height, width) when the features are an image's pixels.
    - X_val, y_val: a validation set taken from the training rows (``load(...,
      validation_fraction=...)``), for choosing hyperparameters; None otherwise.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple | None = None
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def num_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def Y_train(self) -> np.ndarray:
        """One-hot training targets, shape (N_train, num_classes)."""
        return one_hot(self.y_train, self.num_classes)

    @property
    def Y_test(self) -> np.ndarray:
        return one_hot(self.y_test, self.num_classes)


def one_hot(labels: np.ndarray | list[int], num_classes: int) -> np.ndarray:
    """Rows of the identity: one_hot([2, 0], 3) == [[0, 0, 1], [1, 0, 0]]."""
    return np.eye(num_classes)[np.asarray(labels, dtype=int)]


def minibatches(X: np.ndarray, Y: np.ndarray, batch_size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (X_batch, Y_batch) pairs that cover the data once, in an order shuffled by ``seed``."""
    for batch in batch_rows(len(X), batch_size, seed):
        yield X[batch], Y[batch]


def batch_rows(n: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """The row numbers of each minibatch that ``minibatches`` yields for ``n`` samples."""
    order = np.random.default_rng(seed).permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def _split(name, X, y, test_fraction, seed, **extra):
    """A shuffled train / test split (stratification is not needed at these sizes)."""
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = int(round(test_fraction * len(X)))
    test, train = order[:n_test], order[n_test:]
    return Dataset(name, X[train], y[train], X[test], y[test], int(y.max()) + 1, **extra)


def _hold_out(data, fraction):
    """``data`` with the first ``fraction`` of its (shuffled) training rows moved to a validation set."""
    n_val = int(round(fraction * len(data.X_train)))
    return replace(data, X_train=data.X_train[n_val:], y_train=data.y_train[n_val:],
                   X_val=data.X_train[:n_val], y_val=data.y_train[:n_val])


def _sklearn_file(filename):
    """A data file of scikit-learn's, read without importing scikit-learn (that takes seconds)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise RuntimeError("the datasets come with scikit-learn: pip install scikit-learn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / filename


def _digits(test_fraction, seed):
    table = np.loadtxt(_sklearn_file("digits.csv.gz"), delimiter=",")
    X, y = table[:, :-1] / 16.0, table[:, -1].astype(int)
    return _split("digits", X, y, test_fraction, seed, image_shape=(8, 8))


def _iris(test_fraction, seed):
    # the first line is a header: n_samples, n_features, class names
    table = np.loadtxt(_sklearn_file("iris.csv"), delimiter=",", skiprows=1)
    X, y = table[:, :-1], table[:, -1].astype(int)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return _split("iris", X, y, test_fraction, seed)


def _fashion_mnist(test_fraction, seed):
    """FashionMNIST's own train / test split (``test_fraction`` and ``seed`` do not apply)."""
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError as error:
        raise RuntimeError("FashionMNIST needs torchvision (and a network connection the first time); "
                           "use load('digits') here") from error
    parts = []
    for train in (True, False):
        data = FashionMNIST(Path.home() / ".cache" / "fashion_mnist", train=train, download=True)
        images = data.data.numpy().reshape(len(data.data), -1) / 255.0
        parts += [images, data.targets.numpy()]
    return Dataset("fashion_mnist", *parts, num_classes=10, image_shape=(28, 28))


LOADERS = {"digits": _digits, "iris": _iris, "fashion_mnist": _fashion_mnist}


def load(name: str = "digits", test_fraction: float = 0.2, seed: int = 0, validation_fraction: float = 0.0) -> Dataset:
    """Load a dataset by name (see the module docstring), split into training and test sets, and
    with ``validation_fraction`` of the training rows held out as a validation set."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {sorted(LOADERS)}")
    data = LOADERS[name](test_fraction, seed)
    return _hold_out(data, validation_fraction) if validation_fraction else data
