"""Figures for problem set 1: the network's computational graph and the training plot.

When nbgrader autogrades a submission the figures are not drawn: nobody looks at them there,
and matplotlib would add about a second to every submission.
"""
import os


def _autograding():
    return os.environ.get("NBGRADER_EXECUTION") == "autograde"

# (label, kind): values are round, operations are boxes
GRAPH = [
    ("$x$", "value"), ("Linear\n$W_1, b_1$", "op"), ("$h$", "value"), ("Tanh", "op"),
    ("$a$", "value"), ("Linear\n$W_2, b_2$", "op"), ("$y$", "value"), ("MSE\n(target $t$)", "op"),
    ("$L$", "value"),
]
GRADIENTS = [r"$\partial L/\partial x$", r"$\partial L/\partial h$", r"$\partial L/\partial a$",
             r"$\partial L/\partial y$"]


def draw_computational_graph():
    """Draw x -> Linear -> Tanh -> Linear -> MSE -> L with the forward and backward passes."""
    if _autograding():
        return
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(12, 3.2))
    xs = [1.4 * i for i in range(len(GRAPH))]
    for x, (label, kind) in zip(xs, GRAPH):
        style = "round,pad=0.3" if kind == "op" else "circle,pad=0.25"
        color = "#dbe9f6" if kind == "op" else "#fdf2d0"
        ax.add_patch(FancyBboxPatch((x - 0.35, -0.3), 0.7, 0.6, boxstyle=style, fc=color, ec="black"))
        ax.text(x, 0, label, ha="center", va="center", fontsize=10)
    for left, right in zip(xs, xs[1:]):
        ax.annotate("", xy=(right - 0.5, 0.15), xytext=(left + 0.5, 0.15),
                    arrowprops=dict(arrowstyle="->", color="black"))
    # backward: each operation turns dL/d(output) into dL/d(input)
    for i, text in enumerate(GRADIENTS):
        left, right = xs[2 * i], xs[2 * i + 2]
        ax.annotate("", xy=(left + 0.3, -0.55), xytext=(right - 0.3, -0.55),
                    arrowprops=dict(arrowstyle="->", color="tab:red"))
        ax.text(left + 0.2, -0.8, text, color="tab:red", fontsize=10)
    ax.text(xs[0] - 0.5, 0.75, "forward: values flow right", fontsize=10)
    ax.text(xs[0] - 0.5, -1.25, "backward: gradients flow left (each layer's backward(grad_output))",
            color="tab:red", fontsize=10)
    ax.set_xlim(xs[0] - 0.8, xs[-1] + 0.8)
    ax.set_ylim(-1.4, 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("Figure 1: the network and its computational graph")
    plt.show()


def plot_training(x, targets, predictions, losses):
    """Show the data with the trained network's fit, and the loss per epoch.

    Args:
    - x (np.array): inputs, shape (N, 1).
    - targets (np.array): targets, shape (N, 1).
    - predictions (np.array): the network's outputs after training, shape (N, 1).
    - losses (list of float): the training loss at each epoch.
    """
    if _autograding():
        return
    import matplotlib.pyplot as plt

    fig, (fit, curve) = plt.subplots(1, 2, figsize=(11, 4))
    fit.plot(x, targets, "b.", label="data")
    fit.plot(x, predictions, "r-", label="MLP after training")
    fit.set_xlabel("input")
    fit.set_ylabel("output")
    fit.legend()
    fit.grid(True)
    curve.plot(range(1, len(losses) + 1), losses)
    curve.axhline(0.15, color="gray", linestyle="--", label="required: below 0.15")
    curve.set_xlabel("epoch")
    curve.set_ylabel("MSE loss")
    curve.set_yscale("log")
    curve.legend()
    curve.grid(True)
    fig.suptitle(f"Training: final loss {losses[-1]:.4f}")
    plt.show()
