"""A trained few-label model as a classifier, and its loading back from a run.

:class:`FewLabelClassifier` wraps M2, M1+M2 or M1's scikit-learn classifier behind
``predict`` / ``predict_proba``; :func:`load_classifier` rebuilds one from a run
directory's ``model.safetensors`` (the final self-training stage's, by default) and the
architecture stored with it (:func:`model_spec`), without unpickling code.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ssvae.data import as_pixels
from ssvae.fewlabel import MODEL_NAME, TrainResult
from ssvae.labels import as_label_tensor, check_labels
from ssvae.m1 import VAE, VAEConfig
from ssvae.m1m2 import M1M2
from ssvae.m2_config import M2Config
from ssvae.pixel_m2 import PixelM2
from ssvae.presets import FitConfig
from ssvae.selftrain import SELF_TRAIN_DIR
from vaecore.checkpoint import load_checkpoint
from vaecore.config import config_from_dict, config_to_dict, stored_field
from vaecore.errors import CheckpointError, InputDataError, InputDataWarning, integer_at_least
from vaecore.runtime import resolve_device


def image_rows(x: Tensor | np.ndarray, what: str) -> Tensor:
    """Images ``x`` `[N, ...]` as float pixels `[N, D]`, checked by :func:`ssvae.data.as_pixels`."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() else x).numpy()  # numpy has no bfloat16
    return torch.from_numpy(as_pixels(np.asarray(x), what)).flatten(1)  # flatten: an empty batch too


class FewLabelClassifier:
    """A trained few-label model with a scikit-learn-like interface.

    Inputs are images `[N, ...]` (numpy or torch) in `[0, 1]` (uint8 is scaled by 1/255),
    flattened to the model's input size; outputs are numpy arrays.

    Attributes:
        model: The underlying :class:`~ssvae.pixel_m2.PixelM2`, :class:`~ssvae.m1m2.M1M2` or
            :class:`~ssvae.m1features.M1Classifier`.
        result: Training summary (history, best epoch, errors), if trained here; its
            errors are the classifier q(y|x)'s, whatever ``bayes_samples`` is.
        bayes_samples: 0 = predict with the classifier q(y|x); k > 0 = with
            ``model.bayes_logits`` and k importance samples (``FitConfig.bayes_samples``).
    """

    def __init__(self, model: nn.Module, *, n_classes: int, result: TrainResult | None = None,
                 batch_size: int = 2000, bayes_samples: int = 0) -> None:
        integer_at_least("bayes_samples", bayes_samples, 0)
        if bayes_samples and not hasattr(model, "bayes_logits"):
            raise InputDataError(f"bayes_samples must be 0 for a model without a generative "
                                 f"classifier ({type(model).__name__}), got {bayes_samples}")
        self.model = model.eval()
        self.n_classes = n_classes
        self.result = result
        self.batch_size = batch_size
        self.bayes_samples = bayes_samples
        self.seconds = math.nan  # training wall time, set by fit_data
        self.m1_selection: Any = None  # for M1: the scikit-learn candidates and the chosen one

    @property
    def device(self) -> torch.device:
        """Where the model lives (every model holds its prior's buffers)."""
        return next(self.model.buffers()).device

    @property
    def input_dim(self) -> int:
        """Flattened image size D the model expects."""
        return self.model.m1.config.x_dim if hasattr(self.model, "m1") else self.model.m2.config.x_dim

    def _inputs(self, x: Tensor | np.ndarray) -> Tensor:
        t = image_rows(x, "x")
        if t.shape[1] != self.input_dim:
            # One image without its batch axis was read as rows of pixels: "28 pixels each".
            one = (f"; x of shape {tuple(np.shape(x))} is one image: give a batch of them, e.g. x[None]"
                   if t.numel() == self.input_dim else "")
            raise InputDataError(f"images have {t.shape[1]} pixels each; the model was trained on {self.input_dim}{one}")
        return t

    @torch.no_grad()
    def predict_proba(self, x: Tensor | np.ndarray, *, progress: bool = False) -> np.ndarray:
        """Class probabilities `[N, C]`; an image's depend on that image alone, ``bayes_samples`` or not.

        Repeatable, and the same whatever other images are scored beside it, in which
        order and batch size: Bayes' rule uses the same k draws for every image.

        ``progress`` shows a bar over the batches (self-training scores 50,000 MNIST
        training images by Bayes' rule in 1,000 of them).
        """
        t = self._inputs(x)
        if not len(t):  # split() would still hand the model one empty batch
            return np.zeros((0, self.n_classes), np.float32)
        score, per_pass = self.model.logits, self.batch_size
        if self.bayes_samples:
            k = self.bayes_samples

            def score(xb: Tensor) -> Tensor:
                # The same k draws, from a fixed seed, for every image: its answer is the same
                # every call and whatever images are scored beside it or in which order (draws
                # made batch after batch from one seeded stream changed 21 of 200 answers of a
                # little-trained model scored one at a time). The caller's generators are untouched.
                return self.model.bayes_logits(xb, k=k, seed=0)

            # The bound holds k * C decoder rows per example at once: take fewer examples
            # per pass (16 * batch_size rows in all: 50 images at k = 64 and 10 classes).
            per_pass = max(1, 16 * self.batch_size // (k * self.n_classes))
        batches = tqdm(t.split(per_pass), desc="scoring images", unit="batch", disable=not progress, leave=False)
        out = [score(xb.to(self.device)).softmax(-1).cpu() for xb in batches]
        return torch.cat(out).numpy()

    def predict(self, x: Tensor | np.ndarray) -> np.ndarray:
        """Most probable class `[N]` (int64)."""
        return self.predict_proba(x).argmax(1).astype(np.int64)

    def error(self, x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
        """Fraction of misclassified examples.

        Raises:
            InputDataError: ``y`` holds a label outside ``0..n_classes - 1`` (a -1 or an
                unseen class would count as an error of the model), or a count of rows
                other than ``x``'s.
        """
        labels = check_labels(as_label_tensor(y, what="y"), self.n_classes, what="y", allow_unlabelled=False).numpy()
        predicted = self.predict(x)
        if len(predicted) != len(labels):
            raise InputDataError(f"x has {len(predicted)} rows but y has {len(labels)}")
        return float((predicted != labels).mean())


def model_spec(model: nn.Module, config: FitConfig) -> dict[str, Any]:
    """The architecture of ``model`` as JSON, stored with its checkpoints.

    Only what shapes the weights (not how they are trained), so a resumed run may
    change its epochs or time budget; :func:`build_model` rebuilds the model from it.
    """
    spec: dict[str, Any] = {"kind": model.kind, "m2": config_to_dict(model.m2.config), "binarize": config.binarize}
    if isinstance(model, M1M2):
        spec["m1"] = config_to_dict(model.m1.config)
    return spec


def build_model(spec: dict[str, Any]) -> nn.Module:
    """An untrained model with the architecture ``spec`` describes (weights to be loaded)."""
    m2_config = config_from_dict(M2Config, spec["m2"])
    if spec["kind"] == "m2":
        return PixelM2(m2_config, binarize=spec["binarize"])
    if spec["kind"] == "m1m2":
        placeholder = torch.zeros(m2_config.x_dim, dtype=torch.int64)  # the real indices come with the weights
        return M1M2(VAE(config_from_dict(VAEConfig, spec["m1"])), m2_config, placeholder)
    raise InputDataError(f"cannot rebuild a model of kind {spec['kind']!r} from a checkpoint")


def final_stage(directory: str | os.PathLike) -> Path:
    """The directory of a run's final model: the deepest finished self-training stage.

    A ``vaelab fewlabel --self-train`` run keeps each later model in a ``self_train/``
    directory inside the previous one, and its ``metrics.json`` gives the last one's
    figures; a stage has finished once its own ``metrics.json`` is written.

    Warns:
        InputDataWarning: A later stage has begun but not finished (its model is not used).
    """
    stage = Path(directory)
    while (stage / SELF_TRAIN_DIR / "metrics.json").is_file():
        stage = stage / SELF_TRAIN_DIR
    if (stage / SELF_TRAIN_DIR).is_dir():
        warnings.warn(f"{stage / SELF_TRAIN_DIR} has not finished (no metrics.json; resume the run to finish it): "
                      f"using the model of {stage}", InputDataWarning, stacklevel=3)
    return stage


def load_classifier(path: str | os.PathLike, *, device: str | torch.device = "cpu",
                    bayes_samples: int | None = None) -> FewLabelClassifier:
    """Load the best model of a run (``DIR/model.safetensors`` or that file) as a classifier.

    For a run directory with self-training stages this is the final stage's model, whose
    figures the run's ``metrics.json`` gives (see :func:`final_stage`); name a stage's
    ``model.safetensors`` to load another. ``bayes_samples`` (see
    :class:`~ssvae.presets.FitConfig`) defaults to the run's own setting, read from its
    ``FitConfig`` beside the file (``fit_config.json`` of a ``vaelab fewlabel`` run,
    ``config.json`` of an ``ssvae.fit`` workdir), and to 0 without one.
    """
    path = Path(path)
    if path.is_dir():  # a self-trained run's own model.safetensors is its first stage's
        path = final_stage(path) / MODEL_NAME
    if not path.is_file() and _stored_fit_setting(path.parent, "model") == "m1":  # was "no checkpoint at ..."
        raise CheckpointError(f"{path.parent} is a model 'm1' run: its classifier (scikit-learn, on M1's features) "
                              "is not saved, only its M1 in m1/; use the classifier ssvae.fit returns, or model "
                              "m2 / m1m2, whose runs keep theirs")
    if bayes_samples is None:
        bayes_samples = int(_stored_fit_setting(path.parent, "bayes_samples") or 0)  # 0: older runs
    ckpt = load_checkpoint(path, device="cpu")
    if not {"kind", "m2"} <= set(ckpt.config):  # e.g. a `vaelab chem train` run's model.safetensors
        raise CheckpointError(f"{path} is not a few-label classifier: its config has {sorted(ckpt.config)}, "
                              "not the 'kind' and 'm2' of a vaelab fewlabel / ssvae.fit model")
    model = build_model(ckpt.config)
    model.load_state_dict(ckpt.payload["model"])
    return FewLabelClassifier(model.to(resolve_device(device)), n_classes=model.m2.config.n_classes,
                              bayes_samples=bayes_samples)


def _stored_fit_setting(directory: Path, name: str) -> Any:
    """A top-level setting of the FitConfig stored in a run directory; ``None`` if none says."""
    for file in ("fit_config.json", "config.json"):  # the CLI's config.json is its own run config
        if (value := stored_field(directory / file, name)) is not None:
            return value
    return None
