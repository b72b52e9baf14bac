"""Layers: parameters, input checks, and forward/backward calling ``backend.ops``."""
from .base import Layer, Sequential, flatten_parameters
from .linear import Linear
from .conv2d import Conv2d
from .conv_transpose2d import ConvTranspose2d
from .batchnorm import BatchNorm, BatchNormAct, bn_layers, fold_bias_into_bn, ghost_batches
from .activations import ReLU, LeakyReLU, Tanh, Sigmoid, fold_bias_into_act
from .shape import Flatten, Reshape
from .loss import SigmoidBCEWithLogits
from .geometry import same_padding, explicit_padding

__all__ = ["Layer", "Sequential", "flatten_parameters", "Linear", "Conv2d", "ConvTranspose2d",
           "BatchNorm", "BatchNormAct", "fold_bias_into_bn", "ghost_batches", "bn_layers", "ReLU", "LeakyReLU",
           "Tanh", "Sigmoid", "fold_bias_into_act", "Flatten", "Reshape",
           "SigmoidBCEWithLogits", "same_padding", "explicit_padding"]
