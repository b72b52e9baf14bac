"""The DCGAN generator and discriminator, and the GAN training step."""
from .dcgan import DCGAN, build_generator, build_discriminator

__all__ = ["DCGAN", "build_generator", "build_discriminator"]
