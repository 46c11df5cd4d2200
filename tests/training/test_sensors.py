"""Sensor layouts: uniform k x l grids, sensors anywhere read by bilinear interpolation of the
training data, channel subsets, and what is said about layouts that do not fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.user_dataset import user_dataset
from training.config import ConfigError, from_dict
from training.data import FieldSplit
from training.encoder_training import EncoderTrainConfig, sensor_indices, sensor_sequences
from training.sensors import SensorError, Sensors, sensors_from_config

DS = user_dataset(n_traj=3, n_time=2, ny=6, nx=8)  # x = 0, 0.125, ..., 0.875; y = 0, 1/3, ..., 5/3


def linear_split(a: float = 2.0, b: float = -3.0) -> FieldSplit:
    """Channel 0 = a x + b y, channel 1 = 1 + x y on DS's grid (points row-major over (y, x))."""
    xx, yy = np.meshgrid(DS["x"].values, DS["y"].values, indexing="xy")
    fields = np.stack([a * xx + b * yy, 1 + xx * yy], axis=-1).reshape(1, 1, -1, 2)
    return FieldSplit(torch.tensor(fields, dtype=torch.float64), torch.zeros(1, 1), torch.zeros(1, 2))


def config(**keys: object) -> EncoderTrainConfig:
    return from_dict(EncoderTrainConfig, dict(keys))


def test_grid_sensors_read_what_indexing_reads() -> None:
    sensors = sensors_from_config(DS, config(sensor_grid=[3, 4]))
    split = linear_split()
    expected = sensor_sequences(split, sensor_indices((6, 8), (3, 4)))
    torch.testing.assert_close(sensors.read(split), expected, rtol=0, atol=0)
    assert sensors.coordinates.shape == (12, 2)
    assert (sensors.nearest == sensor_indices((6, 8), (3, 4))).all()


def test_sensors_between_grid_points_interpolate_bilinearly() -> None:
    points = [[0.3, 0.5], [0.0, 0.0], [0.875, 5 / 3], [0.0625, 1 / 3]]
    sensors = sensors_from_config(DS, config(sensor_coordinates=points))
    y = sensors.read(linear_split()).reshape(2, 4)  # channel-major
    xs, ys = np.array(points).T
    np.testing.assert_allclose(y[0].numpy(), 2 * xs - 3 * ys, atol=1e-12)  # exact on a linear field
    # 1 + x y is bilinear inside each cell: exact too
    np.testing.assert_allclose(y[1].numpy(), 1 + xs * ys, atol=1e-12)
    np.testing.assert_allclose(sensors.weights.sum(axis=1), 1.0)
    assert sensors.nearest[1] == 0  # the corner sensor is grid point 0


def test_a_channel_subset_is_observed_in_the_order_given() -> None:
    sensors = sensors_from_config(DS, config(sensors_per_side=2, sensor_channels=["b"]))
    assert sensors.channels.tolist() == [1]
    split = linear_split()
    torch.testing.assert_close(sensors.read(split), sensor_sequences(split, sensors.nearest)[..., 4:])


def test_bad_layouts_say_what_to_change() -> None:
    with pytest.raises(SensorError, match=r"sensor\(s\) \[1\] lie outside the grid along x \(\[0, 0.875\]\)"):
        sensors_from_config(DS, config(sensor_coordinates=[[0.5, 0.5], [0.9, 0.5]]))
    with pytest.raises(SensorError, match=r"sensor_channels \['c'\] must name"):
        sensors_from_config(DS, config(sensor_channels=["c"]))
    with pytest.raises(SensorError, match="lower \\[encoder\\] sensors_per_side"):
        sensors_from_config(DS, config(sensors_per_side=7))
    with pytest.raises(ConfigError, match="not both"):
        config(sensor_grid=[2, 2], sensor_coordinates=[[0.5, 0.5]])
    with pytest.raises(ConfigError, match=r"\[x, y\] pairs"):
        config(sensor_coordinates=[[0.5, 0.5, 1.0]])


def test_payload_round_trip_and_older_checkpoints() -> None:
    sensors = sensors_from_config(DS, config(sensor_coordinates=[[0.3, 0.5]], sensor_channels=["b", "a"]))
    again = Sensors.from_payload(sensors.to_payload(), n_channels=2)
    split = linear_split()
    torch.testing.assert_close(again.read(split), sensors.read(split))
    legacy = Sensors.from_payload({"sensor_indices": [0, 9, 17]}, n_channels=2)
    torch.testing.assert_close(legacy.read(split), sensor_sequences(split, np.array([0, 9, 17])))


def test_a_grid_whose_rows_run_down_interpolates_the_same() -> None:
    """Latitudes stored north to south: y decreasing."""
    flipped = DS.isel(y=slice(None, None, -1))
    xx, yy = np.meshgrid(flipped["x"].values, flipped["y"].values, indexing="xy")
    fields = (2 * xx - 3 * yy).reshape(1, 1, -1, 1)
    split = FieldSplit(torch.tensor(fields), torch.zeros(1, 1), torch.zeros(1, 2))
    sensors = sensors_from_config(
        flipped, config(sensor_coordinates=[[0.3, 0.5], [0.7, 1.5]], sensor_channels=["a"])
    )
    np.testing.assert_allclose(
        sensors.read(split).numpy().ravel(), [2 * 0.3 - 1.5, 2 * 0.7 - 4.5], atol=1e-12
    )


def test_sensors_on_scattered_points_sit_on_the_nearest_data_point() -> None:
    points = DS.stack(point=("y", "x")).reset_index("point").reset_coords(["x", "y"])
    points = points.assign_coords(x=("point", points["x"].values), y=("point", points["y"].values))
    points = points.transpose("trajectory", "time", "channel", "point", ...)
    sensors = sensors_from_config(points, config(sensor_coordinates=[[0.3, 0.4], [0.86, 1.6]]))
    np.testing.assert_allclose(sensors.coordinates, [[0.25, 1 / 3], [0.875, 5 / 3]])
    assert sensors.nearest.tolist() == [1 * 8 + 2, 5 * 8 + 7]
    lattice = sensors_from_config(points, config(sensor_grid=[2, 4]))
    assert lattice.n_sensors == 8 and np.unique(lattice.nearest).size == 8
    with pytest.raises(SensorError, match=r"100 sensors but only \d+ distinct data points"):
        sensors_from_config(points, config(sensors_per_side=10))
