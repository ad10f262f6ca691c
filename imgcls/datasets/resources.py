"""The official files of the downloadable data sets: names, sizes, SHA-256, mirrors.

Sources of the checksums (never invented):

- MNIST: served ``.gz`` SHA-256 and sizes from TensorFlow Datasets
  (``tensorflow_datasets/url_checksums/mnist.txt``); SHA-256 of the decompressed
  IDX files from the official release (they equal ``SHA256SUMS.raw`` of the
  shared copy).
- Fashion-MNIST: served ``.gz`` SHA-256 and sizes from TensorFlow Datasets
  (``url_checksums/fashion_mnist.txt``).  The SHA-256 of the decompressed files
  is not recorded here (no trustworthy source was found), so an *uncompressed*
  or recompressed Fashion-MNIST copy loads with a warning instead of a check.
- CIFAR-10/100 binary archives: TensorFlow Datasets (``url_checksums/cifar10.txt``,
  ``cifar100.txt``); python-release archives: the values Keras pins in
  ``keras.datasets.cifar10/cifar100``.

``MIRRORS`` maps a data set to base URLs tried in order.  It is a plain module
dict so that tests (and users behind a proxy mirror) can replace it; every
loader also takes ``mirrors=[...]``.
"""

from __future__ import annotations

from .download import RemoteFile

#: Length in bytes of each decompressed IDX file, the same for MNIST and
#: Fashion-MNIST (same counts and image size): header (4 + 4 * ndim bytes) plus
#: n x 28 x 28 image bytes or n label bytes.  No copy is decompressed past these.
RAW_SIZES: dict[str, int] = {
    "train-images-idx3-ubyte": 16 + 60000 * 28 * 28,  # 47,040,016
    "train-labels-idx1-ubyte": 8 + 60000,  # 60,008
    "t10k-images-idx3-ubyte": 16 + 10000 * 28 * 28,  # 7,840,016
    "t10k-labels-idx1-ubyte": 8 + 10000,  # 10,008
}

FILES: dict[str, list[RemoteFile]] = {
    "mnist": [
        RemoteFile("train-images-idx3-ubyte.gz",
                   "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422,
                   "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                   raw_size=RAW_SIZES["train-images-idx3-ubyte"]),
        RemoteFile("train-labels-idx1-ubyte.gz",
                   "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881,
                   "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                   raw_size=RAW_SIZES["train-labels-idx1-ubyte"]),
        RemoteFile("t10k-images-idx3-ubyte.gz",
                   "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877,
                   "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                   raw_size=RAW_SIZES["t10k-images-idx3-ubyte"]),
        RemoteFile("t10k-labels-idx1-ubyte.gz",
                   "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542,
                   "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                   raw_size=RAW_SIZES["t10k-labels-idx1-ubyte"]),
    ],
    "fashion-mnist": [
        RemoteFile("train-images-idx3-ubyte.gz",
                   "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880,
                   raw_size=RAW_SIZES["train-images-idx3-ubyte"]),
        RemoteFile("train-labels-idx1-ubyte.gz",
                   "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515,
                   raw_size=RAW_SIZES["train-labels-idx1-ubyte"]),
        RemoteFile("t10k-images-idx3-ubyte.gz",
                   "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102,
                   raw_size=RAW_SIZES["t10k-images-idx3-ubyte"]),
        RemoteFile("t10k-labels-idx1-ubyte.gz",
                   "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148,
                   raw_size=RAW_SIZES["t10k-labels-idx1-ubyte"]),
    ],
    # The binary release is what a download fetches; the python release is
    # accepted when a user already has it (see ``ALTERNATIVE_FILES``).
    "cifar10": [
        RemoteFile("cifar-10-binary.tar.gz",
                   "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", 170052171),
    ],
    "cifar100": [
        RemoteFile("cifar-100-binary.tar.gz",
                   "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec", 168513733),
    ],
}

ALTERNATIVE_FILES: dict[str, list[RemoteFile]] = {
    "cifar10": [
        RemoteFile("cifar-10-python.tar.gz",
                   "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", 170498071),
    ],
    "cifar100": [
        RemoteFile("cifar-100-python.tar.gz",
                   "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", 169001437),
    ],
}

MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist",
        "https://storage.googleapis.com/cvdf-datasets/mnist",
    ],
    "fashion-mnist": [
        "https://fashion-mnist.s3.eu-central-1.amazonaws.com",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",
    ],
    "cifar10": ["https://www.cs.toronto.edu/~kriz"],
    "cifar100": ["https://www.cs.toronto.edu/~kriz"],
}


def known_file(dataset: str, filename: str) -> RemoteFile | None:
    """The official record of ``filename`` in ``dataset`` (either release), if any."""
    for remote in FILES.get(dataset, []) + ALTERNATIVE_FILES.get(dataset, []):
        if remote.filename == filename:
            return remote
    return None
