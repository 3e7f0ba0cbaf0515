"""pipelines.plots: how flat, 2-D and colour images are laid out for drawing."""

import numpy as np
import pytest
import torch

from pipelines.plots import grid_shape, save_image_grid, tile_images
from vaecore.errors import FileWriteError


def test_grid_shape_keeps_2d_images_and_squares_flat_ones_when_it_can():
    assert grid_shape((28, 28), 784) == (28, 28)
    assert grid_shape((784,), 784) == (28, 28)  # flat MNIST is drawn as the square it was
    assert grid_shape((), 10) == (1, 10)  # not a square: one row
    # colour images are drawn in colour (they were drawn as one grey row of 588 pixels)
    assert grid_shape((14, 14, 3), 588) == (14, 14, 3) and grid_shape((3, 14, 14), 588) == (3, 14, 14)
    assert grid_shape((2, 7, 14), 196) == (14, 14)  # no axis holds channels: drawn flat
    assert grid_shape((3, 4, 5), 60) == (1, 60)  # read as 5 channels, which cannot be drawn: flat


def test_colour_images_tile_alike_with_channels_last_or_first(tmp_path):
    g = torch.Generator().manual_seed(0)
    last = torch.rand(5, 4, 6, 3, generator=g)  # [N, H, W, C]
    first = last.permute(0, 3, 1, 2)  # [N, C, H, W], as torch stores images
    mosaic = tile_images(last.reshape(5, -1), (4, 6, 3), ncols=3, pad=1)
    assert mosaic.shape == (2 * 5 + 1, 3 * 7 + 1, 3)
    np.testing.assert_array_equal(mosaic, tile_images(first.reshape(5, -1), (3, 4, 6), ncols=3, pad=1))
    np.testing.assert_array_equal(mosaic[6:10, 8:14], last[4].numpy())  # image 4: row 1, column 1
    grey = tile_images(torch.rand(2, 1, 4, 6), (1, 4, 6))  # one channel is grey
    assert grey.shape == (4 + 2, 2 * 7 + 1)
    path = save_image_grid(last.reshape(5, -1), tmp_path / "colour.png", (4, 6, 3))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_grid_makes_its_folders_and_names_a_path_it_cannot_write(tmp_path):
    # Its own mkdir ended in the bare "FileExistsError: [Errno 17] File exists: '.../a_file'".
    images = torch.rand(4, 16)
    assert save_image_grid(images, tmp_path / "new" / "grid.png", (4, 4)).is_file()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(FileWriteError, match=r"^cannot write .*/a_file/grid\.png: .*/a_file is a file, not a directory$"):
        save_image_grid(images, tmp_path / "a_file" / "grid.png", (4, 4))
