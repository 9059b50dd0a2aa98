"""Run tags name a sampling setting; `parse_tag` reads one back, so a table can ask for any setting by that name."""

import pytest

from diversity_cli.sampling.tags import parse_tag, run_tag

SETTINGS = [
    ("base", 1, 0.0, None),
    ("distilled", 1, 0.0, None),
    ("skip_first", 1, 0.0, None),
    ("hybrid", 1, 0.0, None),
    ("hybrid", 2, 7.5, None),
    ("hybrid", 1, 3.0, 5),
    ("hybrid", 3, 0.0, 10),
    ("replace_final", 3, 4.0, 15),
    ("hybrid", 1, 1e-05, None),  # :g writes these with an exponent
    ("hybrid", 1, 1.5e06, 5),
]


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_tag_reads_back_as_the_setting_that_wrote_it(setting):
    assert parse_tag(run_tag(*setting)) == setting


@pytest.mark.parametrize(
    "tag",
    ["hybrid", "hybrid_k", "hybrid_kx", "hybrid_k1_g0", "hybrid_k01", "hybrid_k1_bs5_g3", "base_k1", "hybrid_k1 "],
)
def test_a_name_run_tag_never_writes_is_not_a_setting(tag):
    assert parse_tag(tag) is None
