"""Shared test settings: one torch thread and no GUI plots.

The models in the suite are tiny, so intra-op parallelism buys nothing, while OpenMP
threads spinning against each other on a shared 2-core machine made some files 5-50x
slower (ChemNet, small GPs, graph batches). Tests that need more threads set them.
"""

import matplotlib
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
