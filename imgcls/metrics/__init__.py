"""Classification metrics: top-k accuracy, per-class accuracy, confusion matrix;
retrieval: recall@k of an approximate neighbour search.

All functions take labels as class *indices* ``0..n_classes-1`` (what
:func:`imgcls.datasets.load_dataset` returns) or any labels comparable with
``==`` for :func:`top_k_accuracy`.
"""

from .classification import confusion_matrix, per_class_accuracy, top_k_accuracy
from .retrieval import recall_at_k

__all__ = ["top_k_accuracy", "per_class_accuracy", "confusion_matrix", "recall_at_k"]
