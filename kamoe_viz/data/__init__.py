"""Datasets: a registry of built-in sets (synthetic with known regimes, 2-D teaching sets, California Housing,
scikit-learn's bundled sets, sequences) and user CSVs, all loaded into one :class:`Dataset` shape."""

from kamoe_viz.data.base import Dataset
from kamoe_viz.data.csv import dataset_from_frame, read_csv_table
from kamoe_viz.data.registry import DEFAULT_DATASET, DatasetInfo, OptionSpec, dataset_info, list_datasets, load_dataset

__all__ = [
    "DEFAULT_DATASET",
    "Dataset",
    "DatasetInfo",
    "OptionSpec",
    "dataset_from_frame",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "read_csv_table",
]
