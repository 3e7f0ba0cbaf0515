"""chemvae: a molecule VAE (Gómez-Bombarelli et al. 2018) with a property head, on vaecore.

``chemvae.load(path)`` returns a trained :class:`~chemvae.model.MoleculeVAE`; its
``encode``, ``decode`` and ``predict_properties`` speak SMILES and latents.
"""

from chemvae.model import ChemVAEConfig, MoleculeVAE
from chemvae.persistence import load

__all__ = ["ChemVAEConfig", "MoleculeVAE", "load"]
