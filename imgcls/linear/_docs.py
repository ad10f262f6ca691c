"""The parameter documentation shared by both estimators (one copy, two docstrings)."""

COMMON_PARAMETERS = """
    learning_rate : float, default=0.03
        Base step size (the optimiser's; with Adam about the largest change of a
        weight per step).  The defaults (Adam, 0.03, cosine decay, ``epochs="auto"``
        of batches of 256) reach ~0.925 test accuracy on MNIST in a few seconds;
        for ``"sgd"``/``"momentum"`` a larger rate (0.1-1) is usual.
    reg : float, default=1e-4
        L2 strength: the objective adds ``reg * sum(W_**2)`` (the bias is not
        penalised).
    epochs : int or "auto", default="auto"
        Passes over the training data (for ``optimizer="lbfgs"``: the maximum
        number of L-BFGS iterations, each one full pass plus line search).
        ``"auto"`` is a step budget: at least 5 epochs and 500 minibatch steps,
        at most 100 epochs (:func:`imgcls.linear.base.auto_epochs`; MNIST: 5
        epochs, scikit-learn's digits: 84); 500 L-BFGS iterations; 5 epochs a
        cosine period for ``partial_fit``.
    batch_size : int, default=256
        Samples per minibatch; ``batch_size >= n_samples`` is full-batch gradient descent.
    optimizer : {"adam", "sgd", "momentum", "nesterov", "lbfgs"}, default="adam"
        Update rule (:mod:`imgcls.linear.optim`).  ``"lbfgs"`` minimises the
        full-batch objective with SciPy's L-BFGS-B in float64 to a tight
        tolerance (exact optima on small problems; ignores ``batch_size``,
        ``schedule`` and ``early_stopping``; not for ``partial_fit``).
    momentum : float, default=0.9
        Momentum coefficient for ``"momentum"`` and ``"nesterov"``.
    schedule : {"constant", "step", "cosine"}, default="cosine"
        Learning-rate schedule (:mod:`imgcls.linear.schedules`), updated every minibatch.
    step_size : int, default=5
        Epochs between decays of the ``"step"`` schedule.
    gamma : float, default=0.5
        Decay factor of the ``"step"`` schedule.
    scale : "auto" or float, default="auto"
        Raw features are divided by this.  ``"auto"``: 255 for ``uint8`` input
        (raw pixels to [0, 1]), 1 for every other dtype.
    center : bool, default=True
        Subtract the mean training image (``mean_``).
    standardize : bool, default=False
        Also divide each feature by its training standard deviation (``scale_``).
    early_stopping : bool, default=False
        Stop when the validation accuracy has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, and keep the best epoch's weights.  The
        validation data is ``X_val, y_val`` of ``fit`` if given, else a
        stratified ``validation_fraction`` of the training data.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=3
    tol : float, default=1e-4
        Minimum improvement of the validation accuracy for early stopping.
    random_state : int or None, default=None
        Seed of the shuffling (and of the hold-out split).  The same seed and
        data give bit-for-bit the same model, for any number of threads.
    verbose : bool, default=False
        Print one line per epoch.

    Attributes
    ----------
    W_ : ndarray of shape (n_classes, n_features), float64
        One template per class, acting on preprocessed features.
    b_ : ndarray of shape (n_classes,), float64
    classes_ : ndarray of shape (n_classes,)
    input_scale_ : float
    mean_ : ndarray of shape (n_features,)
    scale_ : ndarray of shape (n_features,)
        Preprocessing: ``x' = (x / input_scale_ - mean_) / scale_``.
    history_ : list of dict
        Per epoch: ``epoch`` (1-based), ``loss`` (mean minibatch objective,
        measured before each step), ``train_acc`` (accuracy of those minibatch
        predictions), ``val_acc`` (None without validation data), ``lr`` (rate
        at the start of the epoch; None for L-BFGS).
    n_iter_ : int
        Epochs run.
    templates_ : ndarray of shape (n_classes, *image_shape_) or (n_classes, n_features)
        Rows of ``W_`` in image space (a property computed from ``W_``).
    n_features_in_ : int
    image_shape_ : tuple or None
        Shape of one input image, None for 2-D input.

    Notes
    -----
    Bias trick: the lecture appends a constant 1 to each ``x`` so that ``b``
    becomes a column of ``W``; here ``b`` is kept separate (the same model),
    which avoids copying the data to append the column and keeps the bias out
    of the L2 penalty.  See :mod:`imgcls.linear.losses`.
"""
