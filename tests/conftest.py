"""Shared test settings: few threads (the suite runs on 2 shared cores) and no GUI plots."""

import matplotlib
import torch

matplotlib.use("Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))
