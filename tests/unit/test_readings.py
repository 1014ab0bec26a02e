import numpy as np
import pandas as pd
import pytest

from streamae.core.fields import infer_fields, model_inputs
from streamae.core.readings import DataError, frame_to_readings, read_table


def test_csv_with_iso_timestamps_and_no_key(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("timestamp,a,b,label\n2026-01-01T00:00:00Z,1,2,0\n2026-01-01T00:01:00+00:00,3,4,1\n")
    frame = read_table(path)
    assert frame["timestamp"].tolist() == [1_767_225_600.0, 1_767_225_660.0]
    assert [f.name for f in model_inputs(infer_fields(frame))] == ["a", "b"]
    r = frame_to_readings(frame, ["a", "b"], "h.csv")
    assert r.keys.tolist() == ["default", "default"] and r.offsets.tolist() == [0, 1]


def test_parquet_with_epoch_seconds_and_keys(tmp_path):
    path = tmp_path / "h.parquet"
    pd.DataFrame({"timestamp": [10.0, 20.0], "key": [1, 2], "x": [0.5, 1.5]}).to_parquet(path)
    frame = read_table(path)
    r = frame_to_readings(frame, [f.name for f in model_inputs(infer_fields(frame))], "h.parquet")
    assert r.keys.tolist() == ["1", "2"] and r.ts.tolist() == [10.0, 20.0]
    np.testing.assert_array_equal(r.values[:, 0], [0.5, 1.5])


@pytest.mark.parametrize(
    "content,message",
    [
        ("time,a\n1,2\n", "no 'timestamp' column"),
        ("timestamp,a\nyesterday,2\n", "neither epoch seconds nor ISO 8601"),
    ],
)
def test_unusable_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_missing_values_and_columns_are_reported(tmp_path):
    frame = pd.DataFrame({"timestamp": [1.0, 2.0], "a": [1.0, np.nan]})
    with pytest.raises(DataError, match="row 1, column 'a'"):
        frame_to_readings(frame, ["a"], "f")
    with pytest.raises(DataError, match=r"missing feature column\(s\) \['b'\]"):
        frame_to_readings(frame, ["a", "b"], "f")
