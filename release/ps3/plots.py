"""Plots for ps3: the hyperparameter search (part 6) and the PyTorch training curves (part 10).

Nothing is drawn while the notebook is being autograded (to save time).
"""
import os

AUTOGRADING = os.environ.get("NBGRADER_EXECUTION") == "autograde"


def plot_search(search):
    """Training loss per epoch for every setting of the search, labelled with its validation accuracy.

    Args:
    - search (dict): {(learning rate, hidden units): (losses per epoch, validation accuracy)}.
    """
    if AUTOGRADING:
        return
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for (lr, num_hidden), (losses, accuracy) in search.items():
        ax.plot(range(1, len(losses) + 1), losses, label=f"lr {lr}, {num_hidden} hidden: {accuracy:.0%}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.set_title("Hyperparameter search on iris (validation accuracy in the legend)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def plot_curves(histories):
    """Training and validation loss, and validation accuracy, per epoch for each model.

    Args:
    - histories (dict): {model name: history from fit()}.
    """
    if AUTOGRADING:
        return
    import matplotlib.pyplot as plt

    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, history in histories.items():
        epochs = range(1, len(history["train_loss"]) + 1)
        line, = loss_ax.plot(epochs, history["train_loss"], "o-", label=f"{name} training")
        loss_ax.plot(epochs, history["validation_loss"], "s--", color=line.get_color(), label=f"{name} validation")
        accuracy_ax.plot(epochs, history["validation_accuracy"], "o-", color=line.get_color(),
                         label=f"{name} (test {history['test_accuracy']:.1%})")
    loss_ax.set(xlabel="epoch", ylabel="mean loss", yscale="log", title="Loss")
    accuracy_ax.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
    for ax in (loss_ax, accuracy_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()
