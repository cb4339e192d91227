"""The record table's schema is the contract between engines and everything after: pin it."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import call, simulate, site, topology, trace, transfer

from sim import records

PINNED = [
    ("engine", "str"), ("session_id", "int64"), ("site", "str"), ("site_class", "str"), ("family", "str"),
    ("access_profile", "str"), ("technology", "str"), ("medium", "str"), ("app", "str"), ("traffic", "str"),
    ("kind", "str"), ("direction", "str"), ("urgency", "str"), ("far_profile", "str"), ("start_s", "float64"),
    ("end_s", "float64"), ("completed", "bool"),
    ("duration_s", "float64"), ("setup_s", "float64"), ("first_data_s", "float64"), ("size_bytes", "float64"),
    ("mean_rate_bps", "float64"),
    ("target_rate_bps", "float64"), ("min_rate_bps", "float64"), ("share_at_target", "float64"),
    ("share_below_min", "float64"), ("one_way_delay_s", "float64"), ("one_way_delay_p95_s", "float64"),
    ("jitter_s", "float64"), ("loss", "float64"), ("queue_delay_s", "float64"), ("rtt_s", "float64"),
    ("bottleneck", "str"),
]


def test_schema_is_pinned():
    assert list(records.RECORD_COLUMNS.items()) == PINNED
    assert records.FORMAT_VERSION == 3


@pytest.fixture
def des_records():
    topo = topology(site("a", down_bps=10e6, up_bps=2e6, rtt_s=0.02))
    return simulate(topo, trace(transfer("a", 0.0, 1e6), call("a", 1.0, 60.0), transfer("a", 2.0, 3e6, "up"))).records


def test_simulator_emits_exactly_the_schema(des_records):
    assert list(des_records.columns) == [name for name, _ in PINNED]
    assert [str(t) for t in des_records.dtypes] == [t for _, t in PINNED]
    assert set(des_records["engine"]) == {"des"}
    assert len(des_records) == 3


def test_parquet_round_trip_keeps_every_value(tmp_path, des_records):
    path = tmp_path / "records.parquet"
    records.write(des_records, path, records.RECORD_COLUMNS)
    pd.testing.assert_frame_equal(records.read(path, records.RECORD_COLUMNS), des_records)


def test_a_table_with_a_missing_column_is_refused(tmp_path, des_records):
    with pytest.raises(ValueError, match="missing \\['loss'\\]"):
        records.write(des_records.drop(columns="loss"), tmp_path / "x.parquet", records.RECORD_COLUMNS)


def test_reading_some_columns_still_checks_the_whole_schema(tmp_path, des_records):
    path = tmp_path / "records.parquet"
    records.write(des_records, path, records.RECORD_COLUMNS)
    some = records.read(path, records.RECORD_COLUMNS, only=["app", "duration_s"])
    pd.testing.assert_frame_equal(some, des_records[["app", "duration_s"]])
    with pytest.raises(ValueError, match="no such record table columns"):
        records.read(path, records.RECORD_COLUMNS, only=["app", "speed"])
    des_records.drop(columns="loss").to_parquet(path, index=False)
    with pytest.raises(ValueError, match="missing \\['loss'\\]"):
        records.read(path, records.RECORD_COLUMNS, only=["app"])


def test_text_can_be_read_as_categories(tmp_path, des_records):
    path = tmp_path / "records.parquet"
    records.write(des_records, path, records.RECORD_COLUMNS)
    some = records.read(path, records.RECORD_COLUMNS, only=["app", "duration_s"], categories=True)
    assert [str(t) for t in some.dtypes] == ["category", "float64"]
    assert some["app"].astype(str).tolist() == des_records["app"].tolist()


@pytest.mark.parametrize("options", [{}, {"columns": ["app", "duration_s", "completed"]},
                                     {"read_dictionary": ["site", "app"]},
                                     {"columns": ["site", "end_s"], "filters": [("app", "in", ["video"])],
                                      "read_dictionary": ["site"]}])
def test_a_table_reads_as_pandas_reads_it(tmp_path, des_records, options):
    """read_parquet gives pandas.read_parquet's frame: values, column types (text, categories, NaN) and index."""
    path = tmp_path / "records.parquet"
    frame = pd.concat([des_records] * 3, ignore_index=True)
    frame.loc[1, "bottleneck"] = None  # missing text reads back as pandas reads it
    frame.to_parquet(path, index=False, row_group_size=4)  # several row groups: chunked columns
    ours, theirs = records.read_parquet(path, **options), pd.read_parquet(path, **options)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    assert list(ours.dtypes) == list(theirs.dtypes)
    assert ours.index.equals(theirs.index) and type(ours.index) is type(theirs.index)
