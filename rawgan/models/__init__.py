"""The DCGAN generator and discriminator, and the GAN training step."""
from .dcgan import DCGAN, build_discriminator, build_generator, draw_z, frozen_buffers

__all__ = ["DCGAN", "build_generator", "build_discriminator", "draw_z", "frozen_buffers"]
