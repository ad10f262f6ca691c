"""scikit-learn's estimator checks, where they apply to image transformers.

The checks feed 2-D float tables of a few columns; the image transformers
take (n, H, W[, C]) uint8 images and refuse anything else, as documented, so
every check that needs a 2-D float table to be accepted is an expected
failure for them (listed with that reason).  ``Pixels`` also takes tables and
passes every check.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from imgcls.features import HOG, ColorHistogram, KMeansFeatures, Pixels

# about 190 checks, ~25 s of CPU in all
pytestmark = pytest.mark.slow

_IMAGES_ONLY = "takes uint8 images (n, H, W[, C]); the check feeds a 2-D float table"


def _expected_failures(estimator):
    if isinstance(estimator, Pixels):
        return {}
    failures = {name: _IMAGES_ONLY for name in _TABLE_CHECKS}
    if isinstance(estimator, KMeansFeatures):  # it has n_iter_, so the check fits a table
        failures["check_transformer_n_iter"] = _IMAGES_ONLY
    return failures


#: Checks that fit or transform a 2-D table (the rest -- cloning, parameters,
#: repr, no work in __init__, not-fitted errors -- run as they are).
_TABLE_CHECKS = (
    "check_estimators_dtypes", "check_fit_score_takes_y", "check_estimators_fit_returns_self",
    "check_pipeline_consistency", "check_estimators_overwrite_params",
    "check_estimators_pickle", "check_f_contiguous_array_estimator",
    "check_transformer_data_not_an_array", "check_transformer_general",
    "check_transformer_preserve_dtypes", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_fit2d_1sample", "check_fit2d_1feature",
    "check_dict_unchanged", "check_dont_overwrite_parameters", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d",
   
    "check_dataframe_column_names_consistency", "check_transformer_get_feature_names_out",
    "check_transformer_get_feature_names_out_pandas", "check_estimators_empty_data_messages",
    "check_estimators_nan_inf", "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_requires_y_none", "check_estimator_sparse_array", "check_estimator_sparse_matrix",
    "check_estimator_sparse_tag", "check_dtype_object",
    "check_complex_data", "check_estimators_pickle(readonly_memmap=True)",
)


@parametrize_with_checks([Pixels(), HOG(), ColorHistogram(),
                          KMeansFeatures(n_centroids=2, n_patches=100, max_iter=2, random_state=0)],
                         expected_failed_checks=_expected_failures)
def test_sklearn_checks(estimator, check):
    check(estimator)
