"""Helpers for part 6: the same MLP trained with PyTorch, and the plot of both runs.

PyTorch is optional. Without it, and while the notebook is being autograded (to save time),
the PyTorch run is skipped; so are the plots while autograding.
"""
import os

from datasets import minibatches

AUTOGRADING = os.environ.get("NBGRADER_EXECUTION") == "autograde"


def train_pytorch_twin(data, num_hidden, epochs, lr, momentum, batch_size):
    """Train PyTorch's version of MLP1 the way the notebook trains MyTorch's.

    Same architecture (Linear, ReLU, Linear), same initialisation (weights from N(0, 0.01),
    zero biases), same loss, optimizer, minibatches and float64 arithmetic.

    Args:
    - data (datasets.Dataset): the training and test sets.
    - num_hidden, epochs, lr, momentum, batch_size: as in the notebook.
    Returns:
    - (losses, accuracy): the mean training loss of every epoch and the test accuracy, or
      None when PyTorch is not installed or the notebook is being autograded.
    """
    if AUTOGRADING:
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(data.num_features, num_hidden), torch.nn.ReLU(),
                                torch.nn.Linear(num_hidden, data.num_classes)).double()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.normal_(0.0, 0.1)
            layer.bias.zero_()
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    for epoch in range(epochs):
        total = 0.0
        for X, Y in minibatches(data.X_train, data.Y_train, batch_size, seed=epoch):
            optimizer.zero_grad()
            loss = loss_fn(model(torch.tensor(X)), torch.tensor(Y))
            loss.backward()
            optimizer.step()
            total += loss.item() * len(X)
        losses.append(total / len(data.X_train))
    with torch.no_grad():
        predictions = model(torch.tensor(data.X_test)).argmax(dim=1).numpy()
    return losses, float((predictions == data.y_test).mean())


def plot_training(losses, accuracy, pytorch=None):
    """Print the test accuracies and plot the training losses of MyTorch (and PyTorch) per epoch.

    Args:
    - losses (list of float): MyTorch's mean training loss per epoch.
    - accuracy (float): MyTorch's test accuracy.
    - pytorch: (losses, accuracy) from train_pytorch_twin, or None.
    """
    print(f"MyTorch test accuracy: {accuracy:.3f}")
    if pytorch is not None:
        print(f"PyTorch test accuracy: {pytorch[1]:.3f}")
    if AUTOGRADING:
        return
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = range(1, len(losses) + 1)
    ax.plot(epochs, losses, "o-", label=f"MyTorch (test accuracy {accuracy:.1%})")
    if pytorch is not None:
        ax.plot(epochs, pytorch[0], "s--", label=f"PyTorch (test accuracy {pytorch[1]:.1%})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    plt.show()
