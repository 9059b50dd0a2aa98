"""Tables 2 and 4 say when their Inception Score rests on too few images to be cited."""

from __future__ import annotations

from diversity_cli.metrics.quality import IS_RELIABLE_N
from diversity_cli.reporting.tables.common import Line, Table
from diversity_cli.reporting.tables.render import metric_notes


def _table(n: int) -> Table:
    cells = [
        Line("2", "Base", "all", "is", measured_metric="is", measured="3.1", n=str(n)),
        Line("2", "Base", "all", "fid", measured_metric="fid", measured="20.0", n=str(n)),
    ]
    return Table("2", "Table 2", cells)


def test_small_n_inception_score_is_flagged():
    notes = metric_notes(_table(128))
    assert any("IS over 128 images is unreliable" in note for note in notes)


def test_enough_images_carry_no_caveat():
    assert not any("unreliable" in note for note in metric_notes(_table(IS_RELIABLE_N)))
