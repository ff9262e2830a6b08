"""Course staff's tools outside grading: the demo class (`make demo`), a new assignment's
scaffold (`make new-assignment`) and the fictional submissions (model solution, bugs, variants,
broken files) that the demo, the tests and the benchmarks grade."""
