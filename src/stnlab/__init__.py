"""stnlab: Spatial Transformer Network experiments on traffic-sign recognition."""

from stnlab.errors import StnlabError

IDSIA_COMMITTEE_ACC = 99.46
"""Top-1 test accuracy (%) of the IDSIA 25-network committee on GTSRB: the baseline every run is set against."""
GTSRB_TEST_IMAGES = 12630
"""Images of the official GTSRB test set, the only set the committee's accuracy was measured on."""


def committee_delta(metrics: dict) -> tuple[float | None, str]:
    """Points above the 99.46% committee, and what they were measured on.

    ``"test"``: test accuracy over the whole official test set (``data/test_images``; runs written before that
    count existed are taken as whole); ``"val"``: validation accuracy, for a run with no test result at all.
    A test over part of the test set (``trainer.limit_test_batches``, a small mirror) gives no delta: ``None``
    and the reason, e.g. ``"test on 320 of 12630 images"``.
    """
    test, images = metrics.get("test/acc"), metrics.get("data/test_images")
    if test is not None:
        if images is not None and int(images) != GTSRB_TEST_IMAGES:
            return None, f"test on {int(images)} of {GTSRB_TEST_IMAGES} images"
        return 100 * test - IDSIA_COMMITTEE_ACC, "test"
    if metrics.get("val/acc_best") is not None:
        return 100 * metrics["val/acc_best"] - IDSIA_COMMITTEE_ACC, "val"
    return None, "no accuracy"


__all__ = ["GTSRB_TEST_IMAGES", "IDSIA_COMMITTEE_ACC", "StnlabError", "committee_delta"]
