"""The heads integration checks, unchanged, against a gateway whose backbone runs on Triton:
training embeds its examples through Triton, Predict embeds its inputs through Triton."""

from __future__ import annotations

from tests.integration.test_heads import (  # noqa: F401 - collected here, run against Triton
    test_get_and_list_heads_describe_the_card,
    test_multi_label_and_regression_heads,
    test_other_tenants_see_nothing_of_acme,
    test_predict_top_k_scores_and_precomputed_embeddings,
    test_predicts_held_out_text_far_above_chance_and_as_well_as_hand_made_sklearn,
    test_train_head_returns_a_queued_job_at_once,
    test_training_again_makes_a_new_version_and_zero_means_latest,
    test_watch_streams_progress_until_success,
    trained,
)
