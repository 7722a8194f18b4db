"""Install eeprune-jax: `pip install -e ".[test]"`."""
import setuptools

setuptools.setup(
    name="eeprune-jax",
    version="0.1.0",
    description="Dataset pruning with early-exit networks (EEPrune) in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["eeprune_jax", "eeprune_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.8",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "ml-collections>=0.1.1",
        # Every process that imports JAX loads ml_dtypes: 0.7.0's extension took 1.35 s to
        # load here against 0.01 s for 0.6.0 (same numpy 2.4.6), about 1.5 s of each run's,
        # test's and benchmark process's start-up (a tiny run's mask and scores: same bits).
        "ml_dtypes!=0.7.0",
        "absl-py",
        "numpy",
        "scikit-learn",  # the embedded digits data set
        "pillow",  # JPEG-npz sources
        "tqdm",
        "tensorboardX",  # TensorBoard event files without TensorFlow
        # tf.data backend and TFDS sources. Only eeprune_jax.data.tfdata and
        # eeprune_jax.data.sources.tfds import them, so the device-resident backend runs without.
        "tensorflow-cpu; platform_machine=='x86_64'",
        "tensorflow; platform_machine!='x86_64'",
        "tensorflow-datasets",
        # grain backend: random-access reads (ArrayRecord through tfds.data_source) in
        # worker processes; simplejpeg decodes its JPEGs and OpenCV resizes its crops
        # (eeprune_jax/data/host_augment.py: both measured against Pillow).
        "grain>=0.2.18",
        "array-record",
        "simplejpeg",
        "opencv-python-headless",
        "importlib_resources",  # tfds download_and_prepare imports it, tfds does not require it
    ],
    extras_require={
        "plots": ["matplotlib"],
        # gs:// workdirs and data dirs (Orbax/TFDS go through TensorFlow's gfile; the
        # TensorBoard writer needs the GCS client).
        "gcs": ["google-cloud-storage", "gcsfs"],
        "test": [
            # pytest 9.2 gives nodes structured ids, and xdist 3.8's `--dist loadgroup` then
            # silently stops grouping (pytest-dev/pytest-xdist#1386): every module fixture
            # that trains would be rebuilt per worker. tests/conftest.py checks the grouping.
            "pytest<9.2",
            "pytest-xdist",
            "matplotlib",
            # JAX's compilation cache evicts (tests/conftest.py caps it) under a file lock.
            "filelock",
        ],
    },
)
