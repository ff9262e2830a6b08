"""The grading kernel and its sandbox: the judge's agent (the only course code a kernel runs
besides the shipped helpers), the sandbox from outside (bubblewrap's arguments, the kernel
manager) and from inside (confine), and the warm zygote that kernels are forked from. A kernel
sees these files read-only (coursekit.IN_THE_KERNEL, SANDBOX_SETUP) and no other course code."""
