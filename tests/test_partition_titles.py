"""Partition catalogs are titled so that any client sorting by title lists them in time order."""

from __future__ import annotations

from stacwatchd.stac.layout import partition_title


def test_partition_titles_are_numeric_dates_under_the_collection_title():
    assert partition_title("ndvi", ("2024",)) == "ndvi 2024"
    assert partition_title("ndvi", ("2024", "05")) == "ndvi 2024-05"
    assert partition_title("ndvi", ("2024", "05", "17")) == "ndvi 2024-05-17"


def test_sorting_month_titles_alphabetically_sorts_them_in_time():
    months = [("2023", "12"), *(("2024", f"{m:02d}") for m in range(1, 13))]
    titles = [partition_title("NDVI composites", parts) for parts in months]
    assert sorted(titles) == titles
