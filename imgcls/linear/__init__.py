"""Linear classifiers: multiclass SVM and softmax, ``f(x; W, b) = W x + b``."""
