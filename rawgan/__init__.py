"""rawgan — an autograd-free deep-learning framework for DCGAN.

Architecture (imports only point downwards):

    rawgan.backend   arrays + op implementations: reference (naive NumPy, the truth), fastcpu
                     (fast NumPy, the CPU default), cuda (CuPy or CPU emulation)
    rawgan.layers    Layer classes: parameters, shape checks, forward/backward calling backend ops
    rawgan.optim     Adam over a network's flat parameter buffer
    rawgan.models    the DCGAN generator and discriminator
    rawgan.data      CelebA preparation (shards) and the batch loader
    rawgan.train / rawgan.sample   command-line programs
"""
__version__ = "0.1.0"
